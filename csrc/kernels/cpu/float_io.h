// CPU-side float32 views of F32 / F16 / BF16 storage and the DType -> storage-type dispatch.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"

namespace inferlab {
namespace cpu {

struct f16_t { uint16_t bits; };
struct bf16_t { uint16_t bits; };

inline float to_f32(float x) { return x; }
inline float to_f32(f16_t x) { return fp16_to_f32(x.bits); }
inline float to_f32(bf16_t x) { return bf16_to_f32(x.bits); }

template <class T> inline T from_f32(float x);
template <> inline float from_f32<float>(float x) { return x; }
template <> inline f16_t from_f32<f16_t>(float x) { return f16_t{f32_to_fp16(x)}; }
template <> inline bf16_t from_f32<bf16_t>(float x) { return bf16_t{f32_to_bf16(x)}; }

// dst[i] = float(src[i]) / dst[i] = T(src[i]); plain loops the compiler vectorizes for float.
template <class T> inline void load_row(const T* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = to_f32(src[i]);
}
template <> inline void load_row<float>(const float* src, float* dst, int64_t n) {
  if (src != dst) std::memmove(dst, src, (size_t)n * sizeof(float));
}
template <class T> inline void store_row(const float* src, T* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = from_f32<T>(src[i]);
}
template <> inline void store_row<float>(const float* src, float* dst, int64_t n) {
  if (src != dst) std::memmove(dst, src, (size_t)n * sizeof(float));
}
// Row of a runtime-typed tensor (parameters such as norm weights) as float.
inline void load_row_any(const void* src, DType t, float* dst, int64_t n) {
  switch (t) {
    case DType::F16: load_row(static_cast<const f16_t*>(src), dst, n); break;
    case DType::BF16: load_row(static_cast<const bf16_t*>(src), dst, n); break;
    default: load_row(static_cast<const float*>(src), dst, n); break;
  }
}

// Sum in double precision with 4 independent accumulators (vectorizes; accurate for long rows).
inline float sum8(const float* x, int64_t n) {
  double acc[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) acc[k] += (double)x[i + k];
  double s = (acc[0] + acc[2]) + (acc[1] + acc[3]);
  for (; i < n; ++i) s += (double)x[i];
  return (float)s;
}

}  // namespace cpu
}  // namespace inferlab

// Calls BODY with `using NAME = <storage type>` for a float DType.
#define IL_CPU_DISPATCH_FLOAT(DT, NAME, ...)                                                   \
  do {                                                                                        \
    switch (DT) {                                                                             \
      case ::inferlab::DType::F32: { using NAME = float; __VA_ARGS__; break; }                \
      case ::inferlab::DType::F16: { using NAME = ::inferlab::cpu::f16_t; __VA_ARGS__; break; } \
      case ::inferlab::DType::BF16: { using NAME = ::inferlab::cpu::bf16_t; __VA_ARGS__; break; } \
      default: throw ::inferlab::ValueError("internal: unsupported float dtype in CPU dispatch"); \
    }                                                                                         \
  } while (0)
