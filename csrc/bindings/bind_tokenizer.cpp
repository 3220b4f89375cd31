// PLACEHOLDER: filled in by its area's work.
#include "bindings/bindings.h"
namespace inferlab {
void bind_tokenizer(py::module_& m) {}
}
