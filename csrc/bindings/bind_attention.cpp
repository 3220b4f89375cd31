// inferlab._core.attention: KVCache and the attention ops (thin wrappers over kernels/ops.h), plus
// CUDA-event timers used by benchmarks/_bench_attention.py.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <functional>
#include <memory>
#include <string>

#include "bindings/bindings.h"
#include "kernels/ops.h"

#ifdef INFERLAB_WITH_CUDA
#include "core/cuda_check.h"
#endif

namespace inferlab {

namespace {

KVCacheConfig make_config(int n_layers, int n_kv_heads, int head_dim, int max_tokens, const std::string& dtype,
                          const std::string& device, int n_seqs) {
  KVCacheConfig c;
  c.n_layers = n_layers;
  c.n_kv_heads = n_kv_heads;
  c.head_dim = head_dim;
  c.max_tokens = max_tokens;
  c.n_seqs = n_seqs;
  c.dtype = dtype_from_name(dtype);
  c.device = device_from_name(device);
  return c;
}

void check_layer_index(const KVCache& c, int layer) {
  IL_CHECK_ARG(layer >= 0 && layer < c.config().n_layers, "layer ", layer, " out of range: the KV cache has ",
               c.config().n_layers, " layers");
}

#ifdef INFERLAB_WITH_CUDA
// Mean milliseconds of fn() over `iters` runs on inferlab's stream, after `warmup` untimed runs.
double time_on_stream(const std::function<void()>& fn, int iters, int warmup) {
  for (int i = 0; i < warmup; ++i) fn();
  cudaStream_t s = current_stream();
  cudaEvent_t a, b;
  IL_CUDA_CHECK(cudaEventCreate(&a));
  IL_CUDA_CHECK(cudaEventCreate(&b));
  IL_CUDA_CHECK(cudaEventRecord(a, s));
  for (int i = 0; i < iters; ++i) fn();
  IL_CUDA_CHECK(cudaEventRecord(b, s));
  IL_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0.f;
  IL_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / iters;
}
#endif

}  // namespace

void bind_attention(py::module_& m) {
  py::module_ a = m.def_submodule("attention", "KV cache and attention kernels (kernel library II)");

  py::class_<KVCache, std::shared_ptr<KVCache>>(a, "KVCache", R"doc(
KV cache of all layers. Per layer, k(layer) and v(layer) are [n_seqs, n_kv_heads, max_tokens, head_dim]
arrays (row-major): element (s, h, t, d) is dim d of kv-head h at position t of sequence slot s.
Allocation checks free memory first and raises DeviceMemoryError saying needed vs free.)doc")
      .def(py::init([](int n_layers, int n_kv_heads, int head_dim, int max_tokens, const std::string& dtype,
                       const std::string& device, int n_seqs) {
             KVCacheConfig c = make_config(n_layers, n_kv_heads, head_dim, max_tokens, dtype, device, n_seqs);
             py::gil_scoped_release r;
             return std::make_shared<KVCache>(c);
           }),
           py::arg("n_layers"), py::arg("n_kv_heads"), py::arg("head_dim"), py::arg("max_tokens"),
           py::arg("dtype") = "float16", py::arg("device") = "cpu", py::arg("n_seqs") = 1)
      .def_static("bytes_needed",
                  [](int n_layers, int n_kv_heads, int head_dim, int max_tokens, const std::string& dtype,
                     int n_seqs) {
                    return KVCache::bytes_needed(
                        make_config(n_layers, n_kv_heads, head_dim, max_tokens, dtype, "cpu", n_seqs));
                  },
                  py::arg("n_layers"), py::arg("n_kv_heads"), py::arg("head_dim"), py::arg("max_tokens"),
                  py::arg("dtype") = "float16", py::arg("n_seqs") = 1)
      .def("memory_bytes", &KVCache::memory_bytes, "Bytes held by K and V of all layers.")
      .def("k", [](KVCache& c, int layer) { check_layer_index(c, layer); return c.k(layer); }, py::arg("layer"),
           "Keys of one layer: a DeviceArray view [n_seqs, n_kv_heads, max_tokens, head_dim] (shares storage).")
      .def("v", [](KVCache& c, int layer) { check_layer_index(c, layer); return c.v(layer); }, py::arg("layer"),
           "Values of one layer, like k().")
      .def("reserve_decode_workspace", &KVCache::reserve_decode_workspace, py::arg("n_q_heads"),
           "Allocate attention_decode's scratch now (e.g. before capturing a CUDA graph).")
      .def_property_readonly("n_layers", [](const KVCache& c) { return c.config().n_layers; })
      .def_property_readonly("n_kv_heads", [](const KVCache& c) { return c.config().n_kv_heads; })
      .def_property_readonly("head_dim", [](const KVCache& c) { return c.config().head_dim; })
      .def_property_readonly("max_tokens", [](const KVCache& c) { return c.config().max_tokens; })
      .def_property_readonly("n_seqs", [](const KVCache& c) { return c.config().n_seqs; })
      .def_property_readonly("dtype_name", [](const KVCache& c) { return std::string(dtype_name(c.config().dtype)); })
      .def_property_readonly("device", [](const KVCache& c) { return std::string(device_name(c.device())); });

  using py::arg;
  auto nogil = py::call_guard<py::gil_scoped_release>();
  a.def("kv_cache_store", &ops::kv_cache_store, arg("cache"), arg("layer"), arg("k"), arg("v"), arg("seq_slots"),
        arg("positions"), nogil, "Write k, v [T, Hkv, D] at (seq_slots[t], positions[t]) of one layer.");
  a.def("attention_prefill", &ops::attention_prefill, arg("q"), arg("k"), arg("v"), arg("out"), arg("scale"),
        arg("causal"), arg("window"), nogil, "Self-attention without a cache; out [T, Hq, D] is written.");
  a.def("attention_prefill_cached", &ops::attention_prefill_cached, arg("q"), arg("cache"), arg("layer"), arg("seq"),
        arg("start_pos"), arg("out"), arg("scale"), arg("window"), nogil,
        "Chunked causal prefill over the cache (the chunk's K/V must already be stored).");
  a.def("attention_decode", &ops::attention_decode, arg("q"), arg("cache"), arg("layer"), arg("seq_lens"),
        arg("out"), arg("scale"), arg("window"), nogil, "One query token per sequence slot over the cache.");

#ifdef INFERLAB_WITH_CUDA
  // Benchmark timers: mean ms per call, measured with CUDA events on inferlab's stream.
  a.def("_time_prefill",
        [](const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, float scale, bool causal, int window,
           int iters) {
          return time_on_stream([&] { ops::attention_prefill(q, k, v, out, scale, causal, window); }, iters, 3);
        },
        arg("q"), arg("k"), arg("v"), arg("out"), arg("scale"), arg("causal"), arg("window"), arg("iters"), nogil);
  a.def("_time_decode",
        [](const Tensor& q, const KVCache& cache, int layer, const Tensor& seq_lens, Tensor& out, float scale,
           int window, int iters) {
          return time_on_stream([&] { ops::attention_decode(q, cache, layer, seq_lens, out, scale, window); }, iters,
                                3);
        },
        arg("q"), arg("cache"), arg("layer"), arg("seq_lens"), arg("out"), arg("scale"), arg("window"), arg("iters"),
        nogil);
  a.def("_time_copy",
        [](size_t nbytes, int iters) {
          Tensor src = Tensor::empty({(int64_t)nbytes}, DType::U8, Device::CUDA);
          Tensor dst = Tensor::empty({(int64_t)nbytes}, DType::U8, Device::CUDA);
          IL_CUDA_CHECK(cudaMemsetAsync(src.data(), 1, nbytes, current_stream()));
          return time_on_stream(
              [&] {
                IL_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), nbytes, cudaMemcpyDeviceToDevice,
                                              current_stream()));
              },
              iters, 3);
        },
        arg("nbytes"), arg("iters"), nogil, "Mean ms of one device-to-device copy of nbytes (reads + writes).");
#endif
}

}  // namespace inferlab
