// PLACEHOLDER: filled in by its area's work.
#include "bindings/bindings.h"
namespace inferlab {
void bind_model(py::module_& m) {}
}
