// inferlab._core.kernels: kernel library I on DeviceArrays (outputs are passed in), plus the timing
// and copy helpers used by benchmarks/kernels.py. The NumPy-facing API is python/inferlab/kernels/_basic.py.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>

#include "bindings/bindings.h"
#include "core/tensor.h"
#include "kernels/dequant_group.h"
#include "kernels/ops.h"
#include "kernels/sample_math.h"

#ifdef INFERLAB_WITH_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#endif

namespace inferlab {

namespace {
Tensor opt(const std::optional<Tensor>& t) { return t ? *t : Tensor(); }
}  // namespace

void bind_kernels(py::module_& root) {
  py::module_ m = root.def_submodule("kernels", "Kernel library I (checked entry points of kernels/ops.h)");
  using py::arg;
  const auto nogil = py::call_guard<py::gil_scoped_release>();

  m.def("embedding", &ops::embedding, arg("ids"), arg("table"), arg("out"), nogil,
        "out[t, :] = table[ids[t], :]");
  m.def("embedding_q",
        [](const Tensor& ids, const Tensor& data, int ggml_type, int64_t n, int64_t k, Tensor& out,
           const std::string& name) {
          QWeight q;
          q.name = name;
          q.type = (GGMLType)ggml_type;
          q.n = n;
          q.k = k;
          q.data = data;
          ops::embedding_q(ids, q, out);
        },
        arg("ids"), arg("data"), arg("ggml_type"), arg("n"), arg("k"), arg("out"), arg("name") = "table", nogil,
        "Embedding from a GGUF-typed table: data holds n rows of k elements in GGUF blocks (uint8).");
  m.def("embedding_qw", &ops::embedding_q, arg("ids"), arg("table"), arg("out"), nogil,
        "Embedding from a QWeight (as built by the matmul module; any layout its device supports).");
  m.def("rms_norm", &ops::rms_norm, arg("x"), arg("w"), arg("eps"), arg("out"), nogil);
  m.def("add_rms_norm", &ops::add_rms_norm, arg("residual"), arg("x"), arg("w"), arg("eps"), arg("out"), nogil);
  m.def("layer_norm",
        [](const Tensor& x, const Tensor& w, const std::optional<Tensor>& b, float eps, Tensor& out) {
          ops::layer_norm(x, w, opt(b), eps, out);
        },
        arg("x"), arg("w"), arg("b"), arg("eps"), arg("out"), nogil);
  m.def("add_layer_norm",
        [](Tensor& residual, const Tensor& x, const Tensor& w, const std::optional<Tensor>& b, float eps,
           Tensor& out) { ops::add_layer_norm(residual, x, w, opt(b), eps, out); },
        arg("residual"), arg("x"), arg("w"), arg("b"), arg("eps"), arg("out"), nogil);
  m.def("rope",
        [](const Tensor& x, const Tensor& positions, float theta, int n_rot, int style, Tensor& out) {
          ops::rope(x, positions, theta, n_rot, (ops::RopeStyle)style, out);
        },
        arg("x"), arg("positions"), arg("theta"), arg("n_rot"), arg("style"), arg("out"), nogil,
        "style: 0 = norm (adjacent pairs), 1 = neox (halves)");
  m.def("add", &ops::add, arg("a"), arg("b"), arg("out"), nogil);
  m.def("add_bias", &ops::add_bias, arg("x"), arg("bias"), nogil);
  m.def("swiglu", &ops::swiglu, arg("gate"), arg("up"), arg("out"), nogil);
  m.def("swiglu_fused", &ops::swiglu_fused, arg("gate_up"), arg("out"), nogil);
  m.def("gelu", &ops::gelu, arg("x"), arg("out"), nogil);
  m.def("convert", &ops::convert, arg("x"), arg("out"), nogil);
  m.def("softmax", &ops::softmax, arg("x"), arg("out"), nogil);
  m.def("sample",
        [](const Tensor& logits, const std::optional<Tensor>& prev, Tensor& tokens, float temperature, int top_k,
           float top_p, float min_p, float repetition_penalty, uint64_t seed, uint64_t offset) {
          ops::SamplingParams p;
          p.temperature = temperature;
          p.top_k = top_k;
          p.top_p = top_p;
          p.min_p = min_p;
          p.repetition_penalty = repetition_penalty;
          p.seed = seed;
          p.offset = offset;
          ops::sample(logits, p, opt(prev), tokens);
        },
        arg("logits"), arg("prev_tokens"), arg("tokens"), arg("temperature"), arg("top_k"), arg("top_p"),
        arg("min_p"), arg("repetition_penalty"), arg("seed"), arg("offset"), nogil);

  // ---- test hooks: the host build of code the CUDA kernels run -------------------------------
  m.def("_philox4x32_10",
        [](std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
          uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
          sampling::philox4x32_10(c, key[0], key[1]);
          return std::array<uint32_t, 4>{c[0], c[1], c[2], c[3]};
        },
        arg("counter"), arg("key"), "Philox4x32-10 block (for known-answer tests).");
  m.def("_random_bits", &sampling::random_bits, arg("seed"), arg("offset"), arg("row"),
        "The 64 random bits sample() draws for (seed, offset, row).");
  m.def("_dequant_groups",
        [](int ggml_type, const Tensor& data, int64_t k) {
          IL_CHECK_ARG(qgroup::supported(ggml_type), "unsupported GGML type ", ggml_type);
          IL_CHECK_ARG(data.device() == Device::CPU, "data must be on the CPU");
          IL_CHECK_ARG(k > 0 && k % qgroup::block_elems(ggml_type) == 0, "bad k ", k);
          const int64_t nbytes = k / qgroup::block_elems(ggml_type) * qgroup::block_bytes(ggml_type);
          IL_CHECK_ARG((int64_t)data.nbytes() >= nbytes, "data holds ", data.nbytes(), " bytes, need ", nbytes);
          Tensor out = Tensor::empty({k}, DType::F32, Device::CPU);
          for (int64_t g = 0; g < k / 32; ++g)
            qgroup::dequant_group(ggml_type, data.data_as<uint8_t>(), g, out.data_as<float>() + 32 * g);
          return out;
        },
        arg("ggml_type"), arg("data"), arg("k"),
        "Dequantizes one row with the device embedding's group code, run on the host (tests).");

  // ---- benchmark helpers -----------------------------------------------------------------------
  m.def("copy_async",
        [](Tensor& dst, const Tensor& src) {
          IL_CHECK_ARG(dst.nbytes() == src.nbytes(), "dst holds ", dst.nbytes(), " bytes but src ", src.nbytes());
          memcpy_any(dst.data(), dst.device(), src.data(), src.device(), src.nbytes(), false);
        },
        arg("dst"), arg("src"), nogil, "Byte copy ordered on inferlab's stream, without waiting.");
  m.def("cuda_time_ms",
        [](const py::function& fn, int iters, int warmup) -> double {
#ifdef INFERLAB_WITH_CUDA
          require_cuda("cuda_time_ms");
          IL_CHECK_ARG(iters >= 1 && warmup >= 0, "iters must be >= 1 and warmup >= 0");
          for (int i = 0; i < warmup; ++i) fn();
          cudaStream_t s = current_stream();
          cudaEvent_t a, b;
          IL_CUDA_CHECK(cudaEventCreate(&a));
          IL_CUDA_CHECK(cudaEventCreate(&b));
          IL_CUDA_CHECK(cudaEventRecord(a, s));
          for (int i = 0; i < iters; ++i) fn();
          IL_CUDA_CHECK(cudaEventRecord(b, s));
          float ms = 0.f;
          {
            py::gil_scoped_release r;
            IL_CUDA_CHECK(cudaEventSynchronize(b));
          }
          IL_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
          IL_CUDA_CHECK(cudaEventDestroy(a));
          IL_CUDA_CHECK(cudaEventDestroy(b));
          return (double)ms / iters;
#else
          (void)fn; (void)iters; (void)warmup;
          require_cuda("cuda_time_ms");
          return 0.0;
#endif
        },
        arg("fn"), arg("iters") = 20, arg("warmup") = 3,
        "Mean milliseconds per call of fn(), timed with CUDA events on inferlab's stream.");
}

}  // namespace inferlab
