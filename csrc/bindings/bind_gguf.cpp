// GGUF reader bindings: inferlab._core.gguf. The Pythonic wrapper is python/inferlab/gguf.py.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>

#include "bindings/bindings.h"
#include "gguf/dequant.h"
#include "gguf/gguf.h"

namespace inferlab {

namespace {

// Metadata strings should be UTF-8; undecodable bytes become U+FFFD rather than failing the whole dict.
py::str to_py_str(const std::string& s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), (Py_ssize_t)s.size(), "replace");
  if (o == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(o);
}

template <class T>
py::list numeric_list(const uint8_t* p, uint64_t n) {
  py::list out((size_t)n);
  for (uint64_t k = 0; k < n; ++k) {
    T v;
    std::memcpy(&v, p + k * sizeof(T), sizeof(T));
    out[(size_t)k] = py::cast(v);
  }
  return out;
}

py::list bool_list(const uint8_t* p, uint64_t n) {
  py::list out((size_t)n);
  for (uint64_t k = 0; k < n; ++k) out[(size_t)k] = py::bool_(p[k] != 0);
  return out;
}

py::object value_to_py(const GGUFValue& v) {
  switch (v.type) {
    case GGUFValueType::UINT8: case GGUFValueType::UINT16: case GGUFValueType::UINT32: case GGUFValueType::UINT64:
      return py::int_(v.u);
    case GGUFValueType::INT8: case GGUFValueType::INT16: case GGUFValueType::INT32: case GGUFValueType::INT64:
      return py::int_(v.i);
    case GGUFValueType::FLOAT32: case GGUFValueType::FLOAT64: return py::float_(v.f);
    case GGUFValueType::BOOL: return py::bool_(v.b);
    case GGUFValueType::STRING: return to_py_str(v.s);
    case GGUFValueType::ARRAY: break;
  }
  const uint8_t* p = v.array_data;
  const uint64_t n = v.array_count;
  switch (v.array_type) {
    case GGUFValueType::UINT8: return numeric_list<uint8_t>(p, n);
    case GGUFValueType::INT8: return numeric_list<int8_t>(p, n);
    case GGUFValueType::UINT16: return numeric_list<uint16_t>(p, n);
    case GGUFValueType::INT16: return numeric_list<int16_t>(p, n);
    case GGUFValueType::UINT32: return numeric_list<uint32_t>(p, n);
    case GGUFValueType::INT32: return numeric_list<int32_t>(p, n);
    case GGUFValueType::UINT64: return numeric_list<uint64_t>(p, n);
    case GGUFValueType::INT64: return numeric_list<int64_t>(p, n);
    case GGUFValueType::FLOAT32: return numeric_list<float>(p, n);
    case GGUFValueType::FLOAT64: return numeric_list<double>(p, n);
    case GGUFValueType::BOOL: return bool_list(p, n);
    case GGUFValueType::STRING: {
      py::list out(v.array_strings.size());
      for (size_t k = 0; k < v.array_strings.size(); ++k) out[k] = to_py_str(v.array_strings[k]);
      return out;
    }
    case GGUFValueType::ARRAY: {
      py::list out(v.array_values.size());
      for (size_t k = 0; k < v.array_values.size(); ++k) out[k] = value_to_py(v.array_values[k]);
      return out;
    }
  }
  return py::none();
}

// The GGUF type name of a value: "uint32", "string", "array[float32]", "array[array]".
std::string value_type_str(const GGUFValue& v) {
  if (v.type != GGUFValueType::ARRAY) return gguf_value_type_name(v.type);
  return str_cat("array[", gguf_value_type_name(v.array_type), "]");
}

py::tuple tensor_tuple(const GGUFTensorInfo& t) {
  py::tuple shape(t.ne.size());
  for (size_t d = 0; d < t.ne.size(); ++d) shape[d] = py::int_(t.ne[d]);
  return py::make_tuple(to_py_str(t.name), shape, ggml_type_traits((int32_t)t.type)->name, t.offset, t.nbytes);
}

// NumPy shape of a tensor: reversed ggml order (ne[n-1], ..., ne[0]).
std::vector<py::ssize_t> numpy_shape(const GGUFTensorInfo& t) {
  std::vector<py::ssize_t> shape(t.ne.rbegin(), t.ne.rend());
  return shape;
}

void make_readonly(py::array& a) {
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
}

}  // namespace

void bind_gguf(py::module_& m) {
  py::module_ g = m.def_submodule("gguf", "GGUF reader (memory-mapped, validated)");

  py::class_<GGUFFile, std::shared_ptr<GGUFFile>>(g, "GGUFFile", "A validated, memory-mapped GGUF file.")
      .def(py::init([](const std::string& path) {
             py::gil_scoped_release nogil;
             return GGUFFile::open(path);
           }),
           py::arg("path"))
      .def_static(
          "from_bytes",
          [](py::bytes data) {
            // Copy the bytes so the file owns them; the aliasing deleter keeps the buffer alive.
            auto buf = std::make_shared<std::string>(data);
            auto f = GGUFFile::from_memory(reinterpret_cast<const uint8_t*>(buf->data()), buf->size());
            GGUFFile* raw = f.get();
            return std::shared_ptr<GGUFFile>(raw, [f, buf](GGUFFile*) mutable {
              f.reset();
              buf.reset();
            });
          },
          py::arg("data"), "Parses a GGUF image held in memory (a copy is kept).")
      .def_property_readonly("version", &GGUFFile::version)
      .def_property_readonly("alignment", &GGUFFile::alignment)
      .def_property_readonly("data_offset", &GGUFFile::data_offset)
      .def_property_readonly("file_size", &GGUFFile::file_size)
      .def_property_readonly("path", &GGUFFile::path)
      .def_property_readonly("architecture", [](const GGUFFile& f) { return to_py_str(f.architecture()); })
      .def("keys",
           [](const GGUFFile& f) {
             py::list out;
             for (const auto& k : f.keys()) out.append(to_py_str(k));
             return out;
           })
      .def("has", &GGUFFile::has, py::arg("key"))
      .def("get", [](const GGUFFile& f, const std::string& key) { return value_to_py(f.get(key)); }, py::arg("key"))
      .def("value_type", [](const GGUFFile& f, const std::string& key) { return value_type_str(f.get(key)); },
           py::arg("key"), "GGUF type of a metadata value, e.g. 'uint32' or 'array[string]'.")
      .def("metadata",
           [](const GGUFFile& f) {
             py::dict d;
             for (const auto& k : f.keys()) d[to_py_str(k)] = value_to_py(f.get(k));
             return d;
           })
      // Typed getters (same checks as the C++ consumers use).
      .def("get_int", py::overload_cast<const std::string&>(&GGUFFile::get_int, py::const_), py::arg("key"))
      .def("get_float", py::overload_cast<const std::string&>(&GGUFFile::get_float, py::const_), py::arg("key"))
      .def("get_bool", &GGUFFile::get_bool, py::arg("key"), py::arg("default"))
      .def("get_str", [](const GGUFFile& f, const std::string& key) { return to_py_str(f.get_str(key)); },
           py::arg("key"))
      .def("get_str_array",
           [](const GGUFFile& f, const std::string& key) {
             const auto& v = f.get_str_array(key);
             py::list out(v.size());
             for (size_t k = 0; k < v.size(); ++k) out[k] = to_py_str(v[k]);
             return out;
           },
           py::arg("key"))
      .def("get_f32_array", &GGUFFile::get_f32_array, py::arg("key"))
      .def("get_i32_array", &GGUFFile::get_i32_array, py::arg("key"))
      .def("tensors",
           [](const GGUFFile& f) {
             py::list out;
             for (const auto& t : f.tensors()) out.append(tensor_tuple(t));
             return out;
           },
           "List of (name, shape in ggml order, type name, offset, nbytes).")
      .def("tensor_info", [](const GGUFFile& f, const std::string& name) { return tensor_tuple(f.tensor(name)); },
           py::arg("name"))
      .def("has_tensor", [](const GGUFFile& f, const std::string& name) { return f.find_tensor(name) != nullptr; },
           py::arg("name"))
      .def(
          "raw",
          [](py::object self, const std::string& name) {
            const GGUFFile& f = self.cast<const GGUFFile&>();
            const GGUFTensorInfo& t = f.tensor(name);
            // NumPy-order shape with the last axis in bytes: (ne[n-1], ..., ne[1], row_bytes).
            std::vector<py::ssize_t> shape = numpy_shape(t);
            if (shape.empty()) shape.push_back(1);
            shape.back() = (py::ssize_t)ggml_row_size(t.type, t.ne.empty() ? 1 : t.ne[0]);
            py::array a(py::dtype::of<uint8_t>(), shape, {}, t.data, self);  // base = self: keeps the mapping alive
            make_readonly(a);
            return a;
          },
          py::arg("name"),
          "Zero-copy read-only uint8 view of a tensor's bytes, shaped (ne[n-1], ..., ne[1], bytes per row).")
      .def(
          "dequantize",
          [](const GGUFFile& f, const std::string& name) {
            const GGUFTensorInfo& t = f.tensor(name);
            const GGMLTypeTraits* tr = ggml_type_traits((int32_t)t.type);
            if (!tr->can_dequantize)
              throw NotSupportedError(str_cat("tensor '", t.name, "' has type ", tr->name,
                                              ", which inferlab cannot dequantize"));
            py::array_t<float> out(numpy_shape(t));
            float* dst = out.mutable_data();
            {
              py::gil_scoped_release nogil;
              f.dequantize(t, dst);
            }
            return out;
          },
          py::arg("name"), "Dequantizes a tensor to float32 in NumPy order (reversed ggml shape).");

  g.def(
      "dequantize_bytes",
      [](py::array_t<uint8_t, py::array::c_style> data, const std::string& type, int64_t n) {
        const int32_t id = ggml_type_from_name(type.c_str());
        IL_CHECK_ARG(id >= 0, "type: unknown ggml type name '", type, "'");
        const GGMLTypeTraits* tr = ggml_type_traits(id);
        IL_CHECK_ARG(n >= 0 && n % tr->block_size == 0, "n: ", n, " must be a non-negative multiple of the ",
                     tr->name, " block size ", tr->block_size);
        IL_CHECK_ARG((uint64_t)data.size() == (uint64_t)(n / tr->block_size * tr->type_size), "data: ", n,
                     " elements of ", tr->name, " take ", n / tr->block_size * tr->type_size, " bytes, got ",
                     data.size());
        py::array_t<float> out((py::ssize_t)n);
        const uint8_t* src = data.data();
        float* dst = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          dequantize_row((GGMLType)id, src, dst, n);
        }
        return out;
      },
      py::arg("data"), py::arg("type"), py::arg("n"), "Dequantizes n elements of raw GGML blocks to float32.");
}

}  // namespace inferlab
