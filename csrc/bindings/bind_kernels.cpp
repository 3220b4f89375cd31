// PLACEHOLDER: filled in by its area's work.
#include "bindings/bindings.h"
namespace inferlab {
void bind_kernels(py::module_& m) {}
}
