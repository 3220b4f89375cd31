// DeviceArray (inferlab::Tensor), device queries. The NumPy-facing conveniences
// (from_numpy, numpy, dtype objects) are completed in python/inferlab/_tensor.py.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>

#include "bindings/bindings.h"
#include "bindings/dlpack.h"
#include "core/device.h"
#include "core/tensor.h"
#include "kernels/cpu/threads.h"

namespace inferlab {

namespace {

std::vector<int64_t> to_shape(const py::sequence& s) {
  std::vector<int64_t> shape;
  for (auto v : s) shape.push_back(v.cast<int64_t>());
  return shape;
}

struct DLPackCtx {
  Tensor t;  // keeps storage alive
  std::vector<int64_t> shape;
  DLManagedTensor managed;
};

void dlpack_deleter(DLManagedTensor* self) { delete static_cast<DLPackCtx*>(self->manager_ctx); }

DLDataType dl_dtype(DType d) {
  switch (d) {
    case DType::F32: return {kDLFloat, 32, 1};
    case DType::F16: return {kDLFloat, 16, 1};
    case DType::BF16: return {kDLBfloat, 16, 1};
    case DType::I32: return {kDLInt, 32, 1};
    case DType::I64: return {kDLInt, 64, 1};
    case DType::U8: return {kDLUInt, 8, 1};
    case DType::I8: return {kDLInt, 8, 1};
  }
  return {kDLUInt, 8, 1};
}

int current_device_index() {
  return 0;  // inferlab uses device 0
}

}  // namespace

void bind_core(py::module_& m) {
  m.def("built_with_cuda", &built_with_cuda, "Whether this build contains CUDA kernels.");
  m.def("cuda_available", &cuda_available, "Whether a CUDA GPU can be used.");
  m.def("cpu_threads", &cpu::num_threads,
        "Threads of the CPU kernels' worker pool, the caller included (INFERLAB_NUM_THREADS, else the hardware's).");
  m.def("synchronize", &synchronize, "Wait for all inferlab work queued on the GPU.");
  m.def("devices", [] {
    py::list out;
    for (const auto& d : devices()) {
      py::dict x;
      x["index"] = d.index;
      x["name"] = d.name;
      x["total_memory"] = d.total_memory;
      x["free_memory"] = d.free_memory;
      x["compute_capability"] = py::make_tuple(d.cc_major, d.cc_minor);
      x["multiprocessors"] = d.multiprocessors;
      out.append(x);
    }
    return out;
  });
  m.def("mem_get_info", [] {
    size_t fr = 0, tot = 0;
    mem_get_info(&fr, &tot);
    return py::make_tuple(fr, tot);
  }, "(free, total) bytes of GPU memory.");

  py::class_<Tensor>(m, "DeviceArray", R"doc(
A dense row-major array on the CPU or a CUDA GPU, owned by inferlab.

Create one with ``DeviceArray.from_numpy(arr, device="cuda")`` or ``DeviceArray.empty(shape, dtype, device)``;
read it back with ``.numpy()``. It supports ``__dlpack__`` so ``torch.from_dlpack`` and ``cupy.from_dlpack``
take it without a copy.)doc")
      .def_static("empty", [](py::sequence shape, const std::string& dtype, const std::string& device) {
        return Tensor::empty(to_shape(shape), dtype_from_name(dtype), device_from_name(device));
      }, py::arg("shape"), py::arg("dtype") = "float32", py::arg("device") = "cuda")
      .def_static("_from_buffer", [](py::array arr, const std::string& dtype, const std::string& device) {
        // arr: C-contiguous array whose bytes are the data; dtype names the element type.
        DType dt = dtype_from_name(dtype);
        IL_CHECK_ARG((arr.flags() & py::array::c_style) != 0, "array must be C-contiguous");
        IL_CHECK_ARG((size_t)arr.itemsize() == dtype_size(dt), "array itemsize ", arr.itemsize(),
                     " does not match dtype ", dtype);
        std::vector<int64_t> shape(arr.shape(), arr.shape() + arr.ndim());
        Device dev = device_from_name(device);
        if (dev == Device::CPU) {
          // Zero-copy: the tensor keeps the NumPy array alive.
          auto* keep = new py::object(arr);
          return Tensor::from_blob(const_cast<void*>(arr.data()), shape, dt, Device::CPU, [keep](void*) {
            py::gil_scoped_acquire g;
            delete keep;
          });
        }
        Tensor host = Tensor::from_blob(const_cast<void*>(arr.data()), shape, dt, Device::CPU);
        Tensor t = Tensor::empty(shape, dt, dev);
        t.copy_from(host);
        return t;
      }, py::arg("arr"), py::arg("dtype"), py::arg("device"))
      .def("_to_bytes_array", [](const Tensor& t) {
        // A uint8 NumPy array of the bytes: a view for CPU tensors, a copy for GPU ones.
        if (t.device() == Device::CPU) {
          auto* keep = new Tensor(t);
          py::capsule owner(keep, [](void* p) { delete static_cast<Tensor*>(p); });
          return py::array(py::dtype("uint8"), {(py::ssize_t)t.nbytes()}, {1}, (const uint8_t*)t.data(), owner);
        }
        py::array_t<uint8_t> out((py::ssize_t)t.nbytes());
        {
          py::gil_scoped_release r;
          memcpy_any(out.mutable_data(), Device::CPU, t.data(), t.device(), t.nbytes(), true);
        }
        return py::array(out);
      })
      .def("_copy_from", [](Tensor& self, const Tensor& src) { self.copy_from(src); }, py::arg("src"))
      .def("to", [](const Tensor& t, const std::string& device) { return t.to(device_from_name(device)); },
           py::arg("device"), "Copy to another device ('cpu' or 'cuda').")
      .def("reshape", [](const Tensor& t, py::sequence shape) { return t.view(to_shape(shape)); })
      .def_property_readonly("shape", [](const Tensor& t) {
        py::tuple s(t.ndim());
        for (int i = 0; i < t.ndim(); ++i) s[i] = t.shape()[i];
        return s;
      })
      .def_property_readonly("dtype_name", [](const Tensor& t) { return std::string(dtype_name(t.dtype())); })
      .def_property_readonly("device", [](const Tensor& t) { return std::string(device_name(t.device())); })
      .def_property_readonly("ndim", &Tensor::ndim)
      .def_property_readonly("size", &Tensor::numel)
      .def_property_readonly("nbytes", &Tensor::nbytes)
      .def_property_readonly("data_ptr", [](const Tensor& t) { return (uintptr_t)t.data(); })
      .def("__len__", [](const Tensor& t) {
        IL_CHECK_ARG(t.ndim() > 0, "len() of a 0-d DeviceArray");
        return t.shape()[0];
      })
      .def("__repr__", &Tensor::repr)
      .def("__dlpack_device__", [](const Tensor& t) {
        return py::make_tuple(t.device() == Device::CUDA ? (int)kDLCUDA : (int)kDLCPU,
                              t.device() == Device::CUDA ? current_device_index() : 0);
      })
      .def("__dlpack__", [](const Tensor& t, py::object stream, py::kwargs) {
        // Our work is ordered on inferlab's stream; make it visible to any consumer stream.
        if (t.device() == Device::CUDA) synchronize();
        auto* ctx = new DLPackCtx();
        ctx->t = t;
        ctx->shape = t.shape();
        DLTensor& dl = ctx->managed.dl_tensor;
        dl.data = t.data();
        dl.device = {t.device() == Device::CUDA ? (int32_t)kDLCUDA : (int32_t)kDLCPU,
                     t.device() == Device::CUDA ? current_device_index() : 0};
        dl.ndim = t.ndim();
        dl.dtype = dl_dtype(t.dtype());
        dl.shape = ctx->shape.data();
        dl.strides = nullptr;  // compact row-major
        dl.byte_offset = 0;
        ctx->managed.manager_ctx = ctx;
        ctx->managed.deleter = dlpack_deleter;
        return py::capsule(&ctx->managed, "dltensor", [](PyObject* cap) {
          // Called when the capsule dies; only free it if no consumer took ownership.
          if (PyCapsule_IsValid(cap, "dltensor")) {
            auto* mt = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
            if (mt && mt->deleter) mt->deleter(mt);
          } else {
            PyErr_Clear();
          }
        });
      }, py::arg("stream") = py::none());
}

}  // namespace inferlab
