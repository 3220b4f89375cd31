// The arithmetic of ops::sample, shared bit-for-bit by the CPU twin and the CUDA kernel (compiled by
// g++ with -ffp-contract=off and by nvcc with explicit round-to-nearest intrinsics), so that the same
// logits, seed and offset give the same token on both devices:
//   z_i    = penalised(logit_i) / temperature              (IEEE division on both)
//   key_i  = order-preserving uint32 of z_i (NaN lowest)    (all comparisons of z go through keys)
//   e_i    = exp(z_i - max z) by a fixed polynomial         (float, identical operation sequence)
//   mass_i = floor(e_i * 2^40) as uint64                    (all sums are exact integer sums)
//   u      = Philox4x32-10(key = seed, counter = (offset, row, 0)) -> 64 random bits
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define IL_SHD __host__ __device__ __forceinline__
#else
#define IL_SHD inline
#endif

namespace inferlab {
namespace sampling {

constexpr float kMassScale = 1099511627776.0f;  // 2^40: e = 1 (the max token) has mass 2^40
constexpr float kMinExpArg = -28.0f;             // exp(-28) < 2^-40: smaller weights have mass 0

IL_SHD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
IL_SHD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
IL_SHD float fdiv(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
IL_SHD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
IL_SHD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// Order-preserving key: key(a) < key(b) iff a < b for non-NaN floats; NaN gets the lowest key 0.
IL_SHD uint32_t float_key(float z) {
  const uint32_t b = float_bits(z);
  if ((b & 0x7fffffffu) > 0x7f800000u) return 0u;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Logit after the CTRL repetition penalty (when `penalised`) and the temperature (when > 0).
IL_SHD float adjusted_logit(float logit, bool penalised, float penalty, float temperature) {
  float l = logit;
  if (penalised) l = l > 0.f ? fdiv(l, penalty) : fmul(l, penalty);
  if (temperature > 0.f) l = fdiv(l, temperature);
  return l;
}

// exp(d) for d in [kMinExpArg, 0]: 2^n * P(f) with x = d log2(e), n = floor(x + 1/2), f = x - n,
// P the degree-7 Taylor polynomial of 2^f (relative error < 1e-7 on [-1/2, 1/2]).
IL_SHD float det_exp(float d) {
  const float x = fmul(d, 1.44269504088896341f);
  const float n = floorf(fadd(x, 0.5f));
  const float f = fadd(x, -n);
  float p = 1.5252733804059841e-05f;          // ln2^7 / 7!
  p = fadd(fmul(p, f), 1.5403530393381610e-04f);  // ln2^6 / 6!
  p = fadd(fmul(p, f), 1.3333558146428443e-03f);  // ln2^5 / 5!
  p = fadd(fmul(p, f), 9.6181291076284772e-03f);  // ln2^4 / 4!
  p = fadd(fmul(p, f), 5.5504108664821580e-02f);  // ln2^3 / 3!
  p = fadd(fmul(p, f), 2.4022650695910071e-01f);  // ln2^2 / 2!
  p = fadd(fmul(p, f), 6.9314718055994531e-01f);  // ln2
  p = fadd(fmul(p, f), 1.0f);
  const int ni = (int)n;  // in [-41, 0]
  return fmul(p, bits_float((uint32_t)(ni + 127) << 23));
}

// Unnormalised probability e = exp(z - zmax) in [0, 1] (exactly 1 for the maximum, 0 below exp(-28)).
IL_SHD float weight(float z, float zmax) {
  if (z == zmax) return 1.0f;
  const float d = fadd(z, -zmax);
  if (!(d >= kMinExpArg)) return 0.0f;  // also NaN
  return det_exp(d);
}
IL_SHD uint64_t mass_of_weight(float e) {
  return (uint64_t)fmul(e, kMassScale);  // exact scaling, truncating conversion
}

// Philox4x32-10 (Salmon et al., SC'11), as in Random123.
IL_SHD void philox4x32_10(uint32_t ctr[4], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint64_t p0 = (uint64_t)0xD2511F53u * ctr[0];
    const uint64_t p1 = (uint64_t)0xCD9E8D57u * ctr[2];
    const uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    const uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    const uint32_t c1 = ctr[1], c3 = ctr[3];
    ctr[0] = hi1 ^ c1 ^ k0;
    ctr[1] = lo1;
    ctr[2] = hi0 ^ c3 ^ k1;
    ctr[3] = lo0;
  }
}

// The 64 random bits of (seed, offset, row): Philox keyed by seed, counter (offset lo, offset hi, row, 0).
IL_SHD uint64_t random_bits(uint64_t seed, uint64_t offset, uint32_t row) {
  uint32_t c[4] = {(uint32_t)offset, (uint32_t)(offset >> 32), row, 0u};
  philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
  return ((uint64_t)c[0] << 32) | c[1];
}

// floor(bits * total / 2^64): a uniform integer in [0, total).
IL_SHD uint64_t scale_bits(uint64_t bits, uint64_t total) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(bits, total);
#else
  return (uint64_t)(((unsigned __int128)bits * total) >> 64);
#endif
}

// Nucleus threshold in mass units: tokens whose strictly-higher mass is below it are kept (>= 1).
IL_SHD uint64_t top_p_threshold(float top_p, uint64_t total) {
  const uint64_t t = (uint64_t)((double)top_p * (double)total);
  return t < 1 ? 1 : t;
}

}  // namespace sampling
}  // namespace inferlab
