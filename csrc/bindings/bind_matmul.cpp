// PLACEHOLDER: filled in by its area's work.
#include "bindings/bindings.h"
namespace inferlab {
void bind_matmul(py::module_& m) {}
}
