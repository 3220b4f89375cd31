// Each area binds itself into the extension module `inferlab._core`.
#pragma once
#include <pybind11/pybind11.h>

namespace inferlab {
namespace py = pybind11;
void bind_core(py::module_& m);       // DeviceArray, devices, streams       (bind_core.cpp)
void bind_gguf(py::module_& m);       // GGUF reader                         (bind_gguf.cpp)
void bind_tokenizer(py::module_& m);  // tokenizers                          (bind_tokenizer.cpp)
void bind_kernels(py::module_& m);    // kernel library I                    (bind_kernels.cpp)
void bind_matmul(py::module_& m);     // QWeight, matmul                     (bind_matmul.cpp)
void bind_attention(py::module_& m);  // KVCache, attention                  (bind_attention.cpp)
void bind_model(py::module_& m);      // Model, generation                   (bind_model.cpp)
}  // namespace inferlab
