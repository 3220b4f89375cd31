// inferlab._core.matmul: QWeight and matmul (thin; the Python API is python/inferlab/kernels/_matmul.py).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <optional>

#include "bindings/bindings.h"
#include "gguf/gguf.h"
#include "kernels/ops.h"
#include "kernels/qweight_layout.h"
#ifdef INFERLAB_WITH_CUDA
#include "kernels/cuda/matmul.cuh"
#endif

namespace inferlab {

namespace {

GGMLType type_from_name(const std::string& name) {
  const int32_t id = ggml_type_from_name(name.c_str());
  IL_CHECK_ARG(id >= 0, "unknown GGML type name '", name, "'");
  return (GGMLType)id;
}

QWeight from_tensor_info(const GGUFTensorInfo& ti, Device dev) {
  py::gil_scoped_release release;
  return qweight_from_gguf(ti, dev);
}

}  // namespace

void bind_matmul(py::module_& m) {
  py::module_ mm = m.def_submodule("matmul", "Matrix multiplication on GGUF weights");

  py::class_<QWeight>(mm, "QWeight", "A weight W[n, k] in a GGUF block format on the CPU or CUDA.")
      .def_static(
          "from_bytes",
          [](py::array_t<uint8_t, py::array::c_style | py::array::forcecast> raw, const std::string& type_name,
             int64_t n, int64_t k, const std::string& device, const std::string& name) {
            const GGMLType t = type_from_name(type_name);
            const GGMLTypeTraits* tr = ggml_type_traits((int32_t)t);
            IL_CHECK_ARG(n > 0 && k > 0, "n and k must be positive, got n=", n, ", k=", k);
            IL_CHECK_ARG(k % tr->block_size == 0, "k=", k, " is not a multiple of the ", tr->name, " block size ",
                         tr->block_size);
            const int64_t need = n * ggml_row_size(t, k);
            IL_CHECK_ARG(raw.size() == need, "raw holds ", raw.size(), " bytes but a ", tr->name, " weight of shape [",
                         n, ", ", k, "] needs ", need);
            const Device dev = device_from_name(device);
            const uint8_t* src = raw.data();
            py::gil_scoped_release release;
            return QWeight::from_host(name, t, n, k, src, dev);
          },
          py::arg("raw"), py::arg("type_name"), py::arg("n"), py::arg("k"), py::arg("device") = "cpu",
          py::arg("name") = "weight")
      .def_static(
          "from_gguf_path",
          [](const std::string& path, const std::string& tensor, const std::string& device) {
            const Device dev = device_from_name(device);
            std::shared_ptr<GGUFFile> f = GGUFFile::open(path);
            return from_tensor_info(f->tensor(tensor), dev);
          },
          py::arg("path"), py::arg("tensor"), py::arg("device") = "cpu")
      .def_static(
          "from_gguf_file",
          [](const GGUFFile& f, const std::string& tensor, const std::string& device) {
            return from_tensor_info(f.tensor(tensor), device_from_name(device));
          },
          py::arg("file"), py::arg("tensor"), py::arg("device") = "cpu")
      .def_property_readonly("name", [](const QWeight& w) { return w.name; })
      .def_property_readonly("type", [](const QWeight& w) {
        const GGMLTypeTraits* tr = ggml_type_traits((int32_t)w.type);
        return std::string(tr ? tr->name : "?");
      })
      .def_property_readonly("type_id", [](const QWeight& w) { return (int32_t)w.type; })
      .def_property_readonly("n", [](const QWeight& w) { return w.n; })
      .def_property_readonly("k", [](const QWeight& w) { return w.k; })
      .def_property_readonly("nbytes", [](const QWeight& w) { return w.nbytes(); })
      .def_property_readonly("row_bytes", [](const QWeight& w) { return w.row_bytes(); })
      .def_property_readonly("device", [](const QWeight& w) { return std::string(device_name(w.device())); })
      .def_property_readonly("layout", [](const QWeight& w) { return w.layout; })
      .def_property_readonly("data", [](const QWeight& w) { return w.data; })
      .def("gguf_bytes", [](const QWeight& w) {
        std::vector<uint8_t> b;
        {
          py::gil_scoped_release release;
          b = qweight_gguf_bytes(w);
        }
        py::array_t<uint8_t> out((py::ssize_t)b.size());
        std::memcpy(out.mutable_data(), b.data(), b.size());
        return out;
      }, "The weight's bytes in GGUF layout (a host copy).")
      .def("dequantize", [](const QWeight& w) {
        py::array_t<float> out({(py::ssize_t)w.n, (py::ssize_t)w.k});
        float* dst = out.mutable_data();
        {
          py::gil_scoped_release release;
          qweight_dequantize_host(w, dst);
        }
        return out;
      }, "W as float32 [n, k] on the host (C++ dequantize_row).");

  mm.def(
      "matmul",
      [](const Tensor& x, const QWeight& w, Tensor& y, std::optional<Tensor> bias, bool int8_activations) {
        py::gil_scoped_release release;
        ops::matmul(x, w, y, bias ? *bias : Tensor(), int8_activations);
      },
      py::arg("x"), py::arg("w"), py::arg("y"), py::arg("bias") = py::none(), py::arg("int8_activations") = false,
      "y[T, N] = x[T, K] . W[N, K]^T (+ bias[N]); writes y. int8_activations: see inferlab.kernels.matmul.");
  mm.def(
      "dequantize_to",
      [](const QWeight& w, Tensor& out) {
        py::gil_scoped_release release;
        qweight_dequantize_to(w, out);
      },
      py::arg("w"), py::arg("out"), "Writes W into out [n, k] (float32 or float16) on the weight's device.");
  mm.def(
      "bench_matmul_ms",
      [](const Tensor& x, const std::vector<const QWeight*>& ws, Tensor& y, int iters, const std::string& path,
         bool int8_activations) -> double {
#ifdef INFERLAB_WITH_CUDA
        require_cuda("bench_matmul_ms");
        IL_CHECK_ARG(!ws.empty(), "no weights");
        std::vector<cuda::MatmulParams> calls;
        for (const QWeight* w : ws) {
          ops::matmul(x, *w, y, Tensor(), int8_activations);  // validates (and runs once)
          cuda::MatmulParams p;
          p.x = x.data(); p.x_dtype = x.dtype(); p.y = y.data(); p.y_dtype = y.dtype(); p.w = w; p.t = x.size(0);
          p.x_int8 = int8_activations;
          if (path == "fused") p.path = cuda::MatmulPath::Fused;
          else if (path == "fused_staged") p.path = cuda::MatmulPath::FusedStaged;
          else if (path == "fused_splitk") p.path = cuda::MatmulPath::FusedSplitK;
          else if (path == "fused_mma") p.path = cuda::MatmulPath::FusedMma;
          else if (path == "cublas") p.path = cuda::MatmulPath::Cublas;
          else IL_CHECK_ARG(path == "auto", "path must be 'auto', 'fused', 'fused_mma', 'fused_staged', 'fused_splitk' or "
                            "'cublas', got '", path, "'");
          calls.push_back(p);
        }
        py::gil_scoped_release release;
        return cuda::bench_matmul_ms(calls.data(), (int)calls.size(), iters);
#else
        (void)x; (void)ws; (void)y; (void)iters; (void)path; (void)int8_activations;
        require_cuda("bench_matmul_ms");
        return 0.0;
#endif
      },
      py::arg("x"), py::arg("weights"), py::arg("y"), py::arg("iters") = 50, py::arg("path") = "auto",
      py::arg("int8_activations") = false,
      "ms per matmul(x, w, y) on CUDA, cycling through `weights`, timed as a CUDA graph replay. path: 'auto', "
      "'fused' (the decode kernels, in chunks of 8 rows), 'fused_mma' (the tensor-core decode kernel), 'fused_staged' / "
      "'fused_splitk' (one of the two float32 decode kernels) or 'cublas' (dequantize to fp16 + cuBLAS).");
  mm.def(
      "set_pdl",
      [](bool on) -> bool {
#ifdef INFERLAB_WITH_CUDA
        return cuda::set_pdl_enabled(on);
#else
        (void)on;
        return false;
#endif
      },
      py::arg("on"),
      "Programmatic dependent launch of the CUDA decode kernels (Hopper+; on by default). Returns the previous "
      "setting. For measurements.");
  mm.def(
      "tune_mma_decode",
      [](int ring_kib, int warps, int fold, int cluster) {
#ifdef INFERLAB_WITH_CUDA
        cuda::tune_mma_decode(ring_kib, warps, fold, cluster);
#else
        (void)ring_kib; (void)warps; (void)fold; (void)cluster;
        require_cuda("tune_mma_decode");
#endif
      },
      py::arg("ring_kib") = 64, py::arg("warps") = 8, py::arg("fold") = -1, py::arg("cluster") = 0,
      "Tensor-core decode kernel knobs, for measurements: KiB of weight tiles in flight per block (its "
      "shared-memory ring, 1..96, at least two tiles; 0: auto, as much as leaves two blocks per multiprocessor, "
      "at least 64), warps per block (1..8) and, for one row of x, the path (fold: -1 per type, 0 per run in "
      "fp16, 1 folded scales where the type has them (Q4_K, Q5_K), 2 the integer path where the type has it "
      "(Q8_0, Q4_K, Q6_K: int8 mma, x as 16-bit integers per 32 elements; see inferlab.kernels.matmul)) and "
      "blocks per cluster that share the staging of x (0: auto, 1, 2, 4, 8). The defaults are the measured "
      "choice.");
  mm.def(
      "tune_direct_decode",
      [](int mode, int warps, int depth, int tiles, int persist) {
#ifdef INFERLAB_WITH_CUDA
        cuda::tune_direct_decode(mode, warps, depth, tiles, persist);
#else
        (void)mode; (void)warps; (void)depth; (void)tiles; (void)persist;
        require_cuda("tune_direct_decode");
#endif
      },
      py::arg("mode") = 1, py::arg("warps") = 8, py::arg("depth") = 0, py::arg("tiles") = 0, py::arg("persist") = -1,
      "Direct tensor-core decode kernel for one row of x (Q4_K, Q6_K, Q8_0, F16; weights loaded into "
      "registers, no shared-memory ring), for measurements: mode 1 on (the default), 0 off (the ring kernel, "
      "tune_mma_decode, runs instead); warps per row tile of 16 rows (1..8); weight buffers per warp (2..4; "
      "0: per type; with the early load order of Q4_K / Q6_K / Q8_0, depth - 1 units are in flight); row "
      "tiles per block (1..2; 0: auto), which share one staging of x; persist: at most that many blocks per "
      "multiprocessor (1..4), each walking several row tiles with its loads running ahead across them, 0 one "
      "block per row tile (or pair), -1 auto. The defaults are the measured choice.");
  mm.def(
      "bench_copy_ms",
      [](const std::vector<Tensor>& dsts, const std::vector<Tensor>& srcs, int iters) -> double {
#ifdef INFERLAB_WITH_CUDA
        require_cuda("bench_copy_ms");
        IL_CHECK_ARG(!dsts.empty() && dsts.size() == srcs.size(), "need as many dsts as srcs (>= 1)");
        std::vector<void*> d;
        std::vector<const void*> s;
        const size_t nb = srcs[0].nbytes();
        for (size_t i = 0; i < dsts.size(); ++i) {
          IL_CHECK_ARG(dsts[i].device() == Device::CUDA && srcs[i].device() == Device::CUDA, "buffers must be on CUDA");
          IL_CHECK_ARG(dsts[i].nbytes() == nb && srcs[i].nbytes() == nb, "all buffers must have the same size");
          d.push_back(dsts[i].data());
          s.push_back(srcs[i].data());
        }
        py::gil_scoped_release release;
        return cuda::bench_copy_ms(d.data(), s.data(), (int)d.size(), nb, iters);
#else
        (void)dsts; (void)srcs; (void)iters;
        require_cuda("bench_copy_ms");
        return 0.0;
#endif
      },
      py::arg("dsts"), py::arg("srcs"), py::arg("iters") = 50,
      "ms per device-to-device copy (cycling through the buffers), timed as a CUDA graph replay.");
  mm.def(
      "bench_read_ms",
      [](const std::vector<Tensor>& srcs, int iters, int mode, int64_t rows) -> double {
#ifdef INFERLAB_WITH_CUDA
        require_cuda("bench_read_ms");
        IL_CHECK_ARG(!srcs.empty(), "need at least one buffer in srcs");
        std::vector<const void*> s;
        const size_t nb = srcs[0].nbytes();
        for (const Tensor& t : srcs) {
          IL_CHECK_ARG(t.device() == Device::CUDA, "srcs must be on CUDA");
          IL_CHECK_ARG(t.nbytes() == nb, "all buffers in srcs must have the same size");
          s.push_back(t.data());
        }
        py::gil_scoped_release release;
        return cuda::bench_read_ms(s.data(), (int)s.size(), nb, iters, mode, rows);
#else
        (void)srcs; (void)iters; (void)mode; (void)rows;
        require_cuda("bench_read_ms");
        return 0.0;
#endif
      },
      py::arg("srcs"), py::arg("iters") = 50, py::arg("mode") = 0, py::arg("rows") = 0,
      "ms per call of a kernel that only reads a buffer's bytes (cycling through the buffers; mode 0: 16-byte "
      "loads, 4 in flight per thread; 1: 8 in flight, twice the threads; 2: the copy engine into shared memory; "
      "3: the direct decode kernel's pattern over `rows` rows (tiles of 16 rows, 128-byte chunks per warp); "
      "programmatic dependent launch as the decode kernels), timed as a CUDA graph replay: the read-side bound "
      "of a decode kernel streaming that many bytes.");
  mm.def("supports", [](const std::string& type_name) {
    const int32_t id = ggml_type_from_name(type_name.c_str());
    return id >= 0 && matmul_supports((GGMLType)id);
  }, py::arg("type_name"), "Whether matmul supports a GGML type name.");
}

}  // namespace inferlab
