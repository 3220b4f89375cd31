// int8 activations (ops::matmul's int8_activations), host side: the fake quantization that the CPU twin
// applies to x, bit-exact with the CUDA decode kernel's quantize_run16 (kernels/cuda/matmul_kernels.cuh).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace inferlab {
namespace cpu {

// In place, per 16-element run of x [t, k] (k % 16 == 0): d = max|x| / 127, x <- d * round(x / d)
// (round half to even; x * (127 / max|x|) rounded once, by a fused multiply-add). A run holding NaN
// becomes NaN.
inline void quantize_x_int8_runs(float* x, int64_t t, int64_t k) {
  for (int64_t r = 0; r < t * (k / 16); ++r) {
    float* v = x + r * 16;
    float amax = 0.f;
    bool nan = false;
    for (int i = 0; i < 16; ++i) {
      nan |= std::isnan(v[i]);
      amax = std::max(amax, std::fabs(v[i]));
    }
    if (nan) {
      for (int i = 0; i < 16; ++i) v[i] = NAN;
      continue;
    }
    const float inv = amax > 0.f ? 127.0f / amax : 0.f;
    const float d = amax * (1.0f / 127.0f);
    for (int i = 0; i < 16; ++i) {
      const float q = std::fma(v[i], inv, 12582912.0f) - 12582912.0f;  // an integer in [-127, 127]
      v[i] = d * q;
    }
  }
}

}  // namespace cpu
}  // namespace inferlab
