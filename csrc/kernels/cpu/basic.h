// CPU twins of the kernel-library-I ops (kernels/ops.h). Arguments are already validated by the
// entry points in kernels/ops_basic.cpp; float arithmetic is float32 like the CUDA kernels.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "kernels/ops.h"
#include "kernels/qweight.h"

namespace inferlab {
namespace cpu {

void embedding(const Tensor& ids, const Tensor& table, Tensor& out);
void embedding_q(const Tensor& ids, const QWeight& table, Tensor& out);
// residual: undefined or F32 [T, D]; b: undefined for RMSNorm; layer_norm selects the formula.
void norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor* residual, float eps, bool layer_norm,
          Tensor& out);
void rope(const Tensor& x, const Tensor& positions, float theta, int n_rot, ops::RopeStyle style, Tensor& out);
void add(const Tensor& a, const Tensor& b, Tensor& out);
void add_bias(Tensor& x, const Tensor& bias);
void swiglu(const Tensor& gate, const Tensor& up, Tensor& out);
void swiglu_fused(const Tensor& gate_up, Tensor& out);
void gelu(const Tensor& x, Tensor& out);
void convert(const Tensor& x, Tensor& out);
void softmax(const Tensor& x, Tensor& out);
void sample(const Tensor& logits, const ops::SamplingParams& p, const Tensor& prev_tokens, Tensor& tokens);

}  // namespace cpu
}  // namespace inferlab
