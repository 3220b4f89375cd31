// inferlab._core.model: the C++ Model behind python/inferlab/model.py (which adds tokenization, stop
// strings, streaming and chat templates).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>

#include "bindings/bindings.h"
#include "model/model.h"

namespace inferlab {

namespace {

// Owns the model so that close() frees device memory at once, whatever Python references remain.
struct ModelHandle {
  std::unique_ptr<Model> m;
  Model& get() {
    if (!m) throw ValueError("this Model is closed");
    return *m;
  }
};

// Token ids from any Python sequence / NumPy array of integers; ValueError naming `arg` otherwise.
std::vector<int32_t> to_ids(const py::handle& obj, const char* arg) {
  if (py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj))
    throw ValueError(str_cat(arg, " must be a sequence of token ids, got a string"));
  if (!py::hasattr(obj, "__len__") || !py::hasattr(obj, "__iter__"))
    throw ValueError(str_cat(arg, " must be a sequence of token ids, got ", Py_TYPE(obj.ptr())->tp_name));
  std::vector<int32_t> out;
  out.reserve(py::len(obj));
  size_t i = 0;
  for (py::handle v : obj) {
    if (py::isinstance<py::bool_>(v) || !py::hasattr(v, "__index__"))
      throw ValueError(str_cat(arg, "[", i, "] must be an integer token id, got ", std::string(py::repr(v))));
    const py::int_ iv = py::reinterpret_steal<py::int_>(PyNumber_Index(v.ptr()));
    if (!iv) throw py::error_already_set();
    int overflow = 0;
    const long long x = PyLong_AsLongLongAndOverflow(iv.ptr(), &overflow);
    if (overflow || x < INT32_MIN || x > INT32_MAX)
      throw ValueError(str_cat(arg, "[", i, "] = ", std::string(py::repr(v)), " is out of range for a token id"));
    out.push_back((int32_t)x);
    ++i;
  }
  return out;
}

py::array_t<float> to_numpy(const std::vector<int64_t>& shape, const float* data) {
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  py::array_t<float> a(s);
  size_t n = 1;
  for (int64_t d : shape) n *= (size_t)d;
  if (n) std::memcpy(a.mutable_data(), data, n * sizeof(float));
  return a;
}

py::dict config_dict(const Model& m) {
  const ModelConfig& c = m.config();
  const ArchQuirks& q = c.quirks;
  py::dict d;
  d["arch"] = c.arch;
  d["name"] = c.name;
  d["n_layers"] = c.n_layers;
  d["d_model"] = c.d_model;
  d["n_heads"] = c.n_heads;
  d["n_kv_heads"] = c.n_kv_heads;
  d["head_dim"] = c.head_dim;
  d["d_ff"] = c.d_ff;
  d["vocab_size"] = c.vocab;
  d["n_ctx_train"] = c.n_ctx_train;
  d["n_ctx"] = m.n_ctx();
  d["n_seqs"] = m.n_seqs();
  d["n_batch"] = m.options().n_batch;
  d["kv_dtype"] = std::string(dtype_name(m.options().kv_dtype));
  d["device"] = std::string(device_name(m.options().device));
  d["norm_eps"] = c.norm_eps;
  d["rope_theta"] = c.rope_theta;
  d["n_rot"] = c.n_rot;
  d["sliding_window"] = c.sliding_window;
  d["attn_scale"] = c.attn_scale;
  // quirks
  d["norm"] = q.norm == NormKind::RMS ? "rms" : "layer";
  d["mlp"] = q.mlp == MlpKind::SwiGLU ? "swiglu" : "gelu";
  d["rope_style"] = !q.rope ? "none" : (q.rope_style == ops::RopeStyle::Neox ? "neox" : "norm");
  d["qkv_bias"] = q.qkv_bias || q.linear_bias;
  d["linear_bias"] = q.linear_bias;
  d["fused_qkv"] = q.qkv_layout == QKVLayout::Fused;
  d["fused_gate_up"] = q.fused_gate_up;
  d["learned_positions"] = q.learned_positions;
  d["tied_embeddings"] = m.tied_embeddings();
  d["fused_weights"] = m.fused_weights();
  return d;
}

}  // namespace

void bind_model(py::module_& root) {
  py::module_ m = root.def_submodule("model", "The model and its forward pass");
  m.def("supported_architectures", [] {
    py::list out;
    for (const auto& q : arch_table()) out.append(q.name);
    return out;
  });

  m.def("_emulate_device_weights", [](const std::string& path, size_t window) {
    std::vector<DeviceWeightImage> ws;
    {
      py::gil_scoped_release r;
      ws = emulate_device_weights(path, window);
    }
    py::list out;
    for (const auto& w : ws) {
      const GGMLTypeTraits* tr = ggml_type_traits((int32_t)w.type);
      out.append(py::make_tuple(w.name, tr ? tr->name : "?", w.n, w.k, w.layout,
                                py::bytes(reinterpret_cast<const char*>(w.gguf_bytes.data()), w.gguf_bytes.size())));
    }
    return out;
  }, py::arg("path"), py::arg("window"),
     "Testing aid: the weights as the CUDA loader lays them out, assembled on the host through window-byte "
     "staging windows and converted back to GGUF layout: [(name, type, n, k, layout, bytes)].");

  py::class_<ModelHandle>(m, "Model")
      .def(py::init([](const std::string& path, const std::string& device, int n_ctx, int n_seqs, int n_batch,
                       const std::string& kv_dtype, bool progress, bool cuda_graphs, int fuse_weights,
                       bool int8_activations) {
             ModelOptions o;
             o.device = device_from_name(device);
             o.n_ctx = n_ctx;
             o.n_seqs = n_seqs;
             o.n_batch = n_batch;
             o.kv_dtype = dtype_from_name(kv_dtype);
             o.progress = progress;
             o.cuda_graphs = cuda_graphs;
             o.fuse_weights = fuse_weights;
             o.int8_activations = int8_activations;
             auto h = std::make_unique<ModelHandle>();
             {
               py::gil_scoped_release r;
               h->m = std::make_unique<Model>(path, o);
             }
             return h;
           }),
           py::arg("path"), py::arg("device") = "cpu", py::arg("n_ctx") = 4096, py::arg("n_seqs") = 1,
           py::arg("n_batch") = 512, py::arg("kv_dtype") = "float16", py::arg("progress") = false,
           py::arg("cuda_graphs") = true, py::arg("fuse_weights") = -1, py::arg("int8_activations") = false)
      .def("close", [](ModelHandle& h) {
        py::gil_scoped_release r;
        h.m.reset();
      })
      .def_property_readonly("closed", [](const ModelHandle& h) { return !h.m; })
      .def("config", [](ModelHandle& h) { return config_dict(h.get()); })
      .def("memory_report", [](ModelHandle& h) {
        const MemoryReport r = h.get().memory_report();
        py::dict d;
        d["device"] = r.device;
        d["weights"] = r.weights;
        d["mapped_weights"] = r.mapped_weights;
        d["kv_cache"] = r.kv_cache;
        d["workspace"] = r.workspace;
        d["reserve"] = r.reserve;
        d["total"] = r.total;
        d["free_at_load"] = r.free_at_load;
        return d;
      })
      .def("graph_status", [](ModelHandle& h) { return h.get().graph_status(); })
      .def("graphs_captured", [](ModelHandle& h) { return h.get().graphs_captured(); })
      .def_property_readonly("n_ctx", [](ModelHandle& h) { return h.get().n_ctx(); })
      .def_property_readonly("n_seqs", [](ModelHandle& h) { return h.get().n_seqs(); })
      .def_property_readonly("vocab_size", [](ModelHandle& h) { return h.get().config().vocab; })
      .def("seq_len", [](ModelHandle& h, int slot) { return h.get().seq_len(slot); }, py::arg("slot"))
      .def("reset", [](ModelHandle& h) { h.get().reset(); })
      .def("logits", [](ModelHandle& h, py::object ids_obj) {
        Model& m = h.get();
        std::vector<int32_t> ids = to_ids(ids_obj, "ids");
        py::array_t<float> out({(py::ssize_t)ids.size(), (py::ssize_t)m.config().vocab});
        float* p = out.mutable_data();
        {
          py::gil_scoped_release r;
          m.logits(ids, p);
        }
        return out;
      }, py::arg("ids"), "Teacher-forced logits [T, vocab] (float32).")
      .def("trace", [](ModelHandle& h, py::object ids_obj) {
        Model& m = h.get();
        std::vector<int32_t> ids = to_ids(ids_obj, "ids");
        std::vector<TraceEntry> entries;
        {
          py::gil_scoped_release r;
          entries = m.trace(ids);
        }
        py::dict d;
        d["tokens"] = py::cast(ids);
        py::list layers;
        for (int l = 0; l < m.config().n_layers; ++l) layers.append(py::dict());
        for (const TraceEntry& e : entries) {
          py::array_t<float> a = to_numpy(e.shape, e.data.data());
          if (e.layer < 0)
            d[py::str(e.name)] = a;
          else
            layers[(size_t)e.layer].cast<py::dict>()[py::str(e.name)] = a;
        }
        d["layers"] = layers;
        return d;
      }, py::arg("ids"))
      .def("prefill", [](ModelHandle& h, py::list prompts) {
        Model& m = h.get();
        std::vector<std::vector<int32_t>> ps;
        for (size_t i = 0; i < prompts.size(); ++i) ps.push_back(to_ids(prompts[i], "prompt"));
        py::gil_scoped_release r;
        m.prefill(ps);
      }, py::arg("prompts"))
      .def("decode", [](ModelHandle& h, py::object tokens, std::vector<bool> active) {
        Model& m = h.get();
        std::vector<int32_t> t = to_ids(tokens, "tokens");
        std::vector<uint8_t> a(active.begin(), active.end());
        py::gil_scoped_release r;
        m.decode(t, a);
      }, py::arg("tokens"), py::arg("active"))
      .def("sample", [](ModelHandle& h, int B, float temperature, int top_k, float top_p, float min_p,
                        float repetition_penalty, std::vector<uint64_t> seeds, uint64_t step) {
        Model& m = h.get();
        ops::SamplingParams p;
        p.temperature = temperature;
        p.top_k = top_k;
        p.top_p = top_p;
        p.min_p = min_p;
        p.repetition_penalty = repetition_penalty;
        py::gil_scoped_release r;
        return m.sample(B, p, seeds, step);
      }, py::arg("B"), py::arg("temperature"), py::arg("top_k"), py::arg("top_p"), py::arg("min_p"),
         py::arg("repetition_penalty"), py::arg("seeds"), py::arg("step"))
      .def("copy_logits", [](ModelHandle& h, int B) {
        Model& m = h.get();
        IL_CHECK_ARG(B >= 1 && B <= m.n_seqs(), "B must be in [1, n_seqs=", m.n_seqs(), "], got ", B);
        py::array_t<float> out({(py::ssize_t)B, (py::ssize_t)m.config().vocab});
        float* p = out.mutable_data();
        {
          py::gil_scoped_release r;
          m.copy_logits(B, p);
        }
        return out;
      }, py::arg("B"), "Logits rows 0..B-1 of the last prefill/decode.");
}

}  // namespace inferlab
