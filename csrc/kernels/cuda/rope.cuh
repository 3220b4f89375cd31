// Rotary position embedding.
#pragma once
#include <cstdint>

#include "core/device.h"
#include "core/dtype.h"

namespace inferlab {
namespace cuda {

struct RopeParams {
  const void* x = nullptr;          // [T, H, D], x_dtype
  const int32_t* positions = nullptr; // [T]
  void* out = nullptr;              // [T, H, D], out_dtype; may be exactly x (same dtype)
  DType x_dtype = DType::F32, out_dtype = DType::F32;
  int64_t T = 0;                    // tokens
  int64_t H = 0;                    // heads
  int64_t D = 0;                    // head dim
  int n_rot = 0;                    // rotated dims per head (even, <= D); the rest are copied
  float theta = 10000.f;            // base: pair i turns by pos * theta^(-2i/n_rot)
  int style = 0;                    // 0: adjacent pairs (2i, 2i+1); 1: halves (i, i + n_rot/2)
};

void launch_rope(const RopeParams& p, cudaStream_t stream);

}  // namespace cuda
}  // namespace inferlab
