// PLACEHOLDER until kernel library I lands.
#include "kernels/ops.h"
namespace inferlab { namespace ops {
void embedding(const Tensor&, const Tensor&, Tensor&) { throw NotSupportedError("not implemented yet"); }
void embedding_q(const Tensor&, const QWeight&, Tensor&) { throw NotSupportedError("not implemented yet"); }
void rms_norm(const Tensor&, const Tensor&, float, Tensor&) { throw NotSupportedError("not implemented yet"); }
void add_rms_norm(Tensor&, const Tensor&, const Tensor&, float, Tensor&) { throw NotSupportedError("not implemented yet"); }
void layer_norm(const Tensor&, const Tensor&, const Tensor&, float, Tensor&) { throw NotSupportedError("not implemented yet"); }
void add_layer_norm(Tensor&, const Tensor&, const Tensor&, const Tensor&, float, Tensor&) { throw NotSupportedError("not implemented yet"); }
void rope(const Tensor&, const Tensor&, float, int, RopeStyle, Tensor&) { throw NotSupportedError("not implemented yet"); }
void add(const Tensor&, const Tensor&, Tensor&) { throw NotSupportedError("not implemented yet"); }
void add_bias(Tensor&, const Tensor&) { throw NotSupportedError("not implemented yet"); }
void swiglu(const Tensor&, const Tensor&, Tensor&) { throw NotSupportedError("not implemented yet"); }
void swiglu_fused(const Tensor&, Tensor&) { throw NotSupportedError("not implemented yet"); }
void gelu(const Tensor&, Tensor&) { throw NotSupportedError("not implemented yet"); }
void softmax(const Tensor&, Tensor&) { throw NotSupportedError("not implemented yet"); }
void sample(const Tensor&, const SamplingParams&, const Tensor&, Tensor&) { throw NotSupportedError("not implemented yet"); }
}}
