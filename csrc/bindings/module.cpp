#include <pybind11/pybind11.h>

#include "bindings/bindings.h"
#include "core/error.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "inferlab C++/CUDA core";
  // Exception mapping. std::invalid_argument (hence inferlab::ValueError) already maps to ValueError.
  static py::exception<inferlab::GGUFError> gguf_error(m, "GGUFError", PyExc_ValueError);
  static py::exception<inferlab::DeviceMemoryError> mem_error(m, "DeviceMemoryError", PyExc_MemoryError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const inferlab::GGUFError& e) {
      py::set_error(gguf_error, e.what());
    } catch (const inferlab::DeviceMemoryError& e) {
      py::set_error(mem_error, e.what());
    } catch (const inferlab::FileNotFound& e) {
      py::set_error(PyExc_FileNotFoundError, e.what());
    } catch (const inferlab::NotSupportedError& e) {
      py::set_error(PyExc_NotImplementedError, e.what());
    }
  });
  inferlab::bind_core(m);
  inferlab::bind_gguf(m);
  inferlab::bind_tokenizer(m);
  inferlab::bind_kernels(m);
  inferlab::bind_matmul(m);
  inferlab::bind_attention(m);
  inferlab::bind_model(m);
}
