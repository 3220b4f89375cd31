// RMSNorm and LayerNorm over the last axis, optionally fused with the residual add.
#pragma once
#include <cstdint>

#include "core/device.h"
#include "core/dtype.h"

namespace inferlab {
namespace cuda {

struct NormParams {
  const void* x = nullptr;   // [rows, d], x_dtype (F32/F16/BF16)
  const void* w = nullptr;   // [d], w_dtype
  const void* b = nullptr;   // [d], b_dtype; LayerNorm only (nullptr: no bias)
  float* residual = nullptr; // [rows, d] F32 or nullptr; when set: residual += x, then normalise residual
  void* out = nullptr;       // [rows, d], out_dtype; may be exactly x or residual (same dtype)
  DType x_dtype = DType::F32, w_dtype = DType::F32, b_dtype = DType::F32, out_dtype = DType::F32;
  int64_t rows = 0;          // T
  int64_t d = 0;             // D, normalised dimension
  float eps = 1e-6f;
  bool layer_norm = false;   // false: out = x / sqrt(mean(x^2) + eps) * w
                             // true:  out = (x - mean) / sqrt(var + eps) * w + b
};

void launch_norm(const NormParams& p, cudaStream_t stream);

}  // namespace cuda
}  // namespace inferlab
