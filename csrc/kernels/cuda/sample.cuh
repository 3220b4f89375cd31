// Token sampling from logits (greedy, temperature, top-k, top-p, min-p, repetition penalty).
#pragma once
#include <cstdint>

#include "core/device.h"

namespace inferlab {
namespace cuda {

struct SampleParams {
  const float* logits = nullptr;      // [B, V]
  const int32_t* prev = nullptr;      // [B, P] previous tokens for the repetition penalty, or nullptr
  int32_t* tokens = nullptr;          // [B] out
  int64_t B = 0, V = 0, P = 0;        // V <= 2^20
  float temperature = 0.f;            // 0: greedy
  int32_t top_k = 0;                  // 0 or >= V: off
  float top_p = 1.f;                  // >= 1: off
  float min_p = 0.f;                  // <= 0: off
  float repetition_penalty = 1.f;     // 1: off
  uint64_t seed = 0, offset = 0;
};

// One block per row; the arithmetic is kernels/sample_math.h, shared with the CPU twin.
void launch_sample(const SampleParams& p, cudaStream_t stream);

}  // namespace cuda
}  // namespace inferlab
