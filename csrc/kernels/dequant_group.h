// Dequantization of one 32-element group of a GGUF-typed row, compiled for both the host and the
// device (nvcc). Used by the CUDA embedding_q kernel; the CPU build exposes it to the tests
// (_core.kernels._dequant_groups) so the device code path is checked against gguf-py in CI.
// Layouts follow ggml (see csrc/gguf/dequant.cpp); every block type holds a whole number of groups.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/ggml_types.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#define IL_QG_HD __host__ __device__ __forceinline__
#else
#define IL_QG_HD inline
#endif

namespace inferlab {
namespace qgroup {

IL_QG_HD float half_bits(const uint8_t* p) {
  const uint16_t h = (uint16_t)(p[0] | (p[1] << 8));
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) { mant <<= 1; --exp; }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

IL_QG_HD float bf16_bits(const uint8_t* p) {
  const uint32_t bits = (uint32_t)(p[0] | (p[1] << 8)) << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

// Q4_K / Q5_K: 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
IL_QG_HD void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Bytes per row block and elements per block, for the types handled here (0 when unsupported).
IL_QG_HD int block_elems(int32_t t) {
  switch ((GGMLType)t) {
    case GGMLType::F32: case GGMLType::F16: case GGMLType::BF16: return 32;  // treated as 32-element groups
    case GGMLType::Q4_0: case GGMLType::Q4_1: case GGMLType::Q5_0: case GGMLType::Q5_1: case GGMLType::Q8_0:
      return 32;
    case GGMLType::Q2_K: case GGMLType::Q3_K: case GGMLType::Q4_K: case GGMLType::Q5_K: case GGMLType::Q6_K:
      return 256;
    default: return 0;
  }
}
IL_QG_HD int block_bytes(int32_t t) {
  switch ((GGMLType)t) {
    case GGMLType::F32: return 128;
    case GGMLType::F16: case GGMLType::BF16: return 64;
    case GGMLType::Q4_0: return 18;
    case GGMLType::Q4_1: return 20;
    case GGMLType::Q5_0: return 22;
    case GGMLType::Q5_1: return 24;
    case GGMLType::Q8_0: return 34;
    case GGMLType::Q2_K: return 84;
    case GGMLType::Q3_K: return 110;
    case GGMLType::Q4_K: return 144;
    case GGMLType::Q5_K: return 176;
    case GGMLType::Q6_K: return 210;
    default: return 0;
  }
}
IL_QG_HD bool supported(int32_t t) { return block_elems(t) != 0; }

// y[0..32) = elements [32 g, 32 g + 32) of the row starting at `row` (GGUF block layout).
IL_QG_HD void dequant_group(int32_t type, const uint8_t* row, int64_t g, float* y) {
  switch ((GGMLType)type) {
    case GGMLType::F32: {
      const uint8_t* p = row + g * 128;
      for (int l = 0; l < 32; ++l) {
#if defined(__CUDA_ARCH__)
        y[l] = reinterpret_cast<const float*>(p)[l];
#else
        std::memcpy(&y[l], p + 4 * l, 4);
#endif
      }
      return;
    }
    case GGMLType::F16: {
      const uint8_t* p = row + g * 64;
      for (int l = 0; l < 32; ++l) y[l] = half_bits(p + 2 * l);
      return;
    }
    case GGMLType::BF16: {
      const uint8_t* p = row + g * 64;
      for (int l = 0; l < 32; ++l) y[l] = bf16_bits(p + 2 * l);
      return;
    }
    case GGMLType::Q4_0: {  // {half d; u8 qs[16]}: y[j] = d (lo(qs[j]) - 8), y[j+16] = d (hi(qs[j]) - 8)
      const uint8_t* b = row + g * 18;
      const float d = half_bits(b);
      const uint8_t* qs = b + 2;
      for (int j = 0; j < 16; ++j) {
        y[j] = d * (float)((qs[j] & 0xF) - 8);
        y[j + 16] = d * (float)((qs[j] >> 4) - 8);
      }
      return;
    }
    case GGMLType::Q4_1: {  // {half d, m; u8 qs[16]}: y = d q + m
      const uint8_t* b = row + g * 20;
      const float d = half_bits(b), m = half_bits(b + 2);
      const uint8_t* qs = b + 4;
      for (int j = 0; j < 16; ++j) {
        y[j] = d * (float)(qs[j] & 0xF) + m;
        y[j + 16] = d * (float)(qs[j] >> 4) + m;
      }
      return;
    }
    case GGMLType::Q5_0: {  // {half d; u8 qh[4]; u8 qs[16]}: 5th bit from qh
      const uint8_t* b = row + g * 22;
      const float d = half_bits(b);
      const uint32_t qh = (uint32_t)b[2] | ((uint32_t)b[3] << 8) | ((uint32_t)b[4] << 16) | ((uint32_t)b[5] << 24);
      const uint8_t* qs = b + 6;
      for (int j = 0; j < 16; ++j) {
        const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
        y[j] = d * (float)(((qs[j] & 0xF) | h0) - 16);
        y[j + 16] = d * (float)(((qs[j] >> 4) | h1) - 16);
      }
      return;
    }
    case GGMLType::Q5_1: {  // {half d, m; u8 qh[4]; u8 qs[16]}
      const uint8_t* b = row + g * 24;
      const float d = half_bits(b), m = half_bits(b + 2);
      const uint32_t qh = (uint32_t)b[4] | ((uint32_t)b[5] << 8) | ((uint32_t)b[6] << 16) | ((uint32_t)b[7] << 24);
      const uint8_t* qs = b + 8;
      for (int j = 0; j < 16; ++j) {
        const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
        y[j] = d * (float)((qs[j] & 0xF) | h0) + m;
        y[j + 16] = d * (float)((qs[j] >> 4) | h1) + m;
      }
      return;
    }
    case GGMLType::Q8_0: {  // {half d; i8 qs[32]}
      const uint8_t* b = row + g * 34;
      const float d = half_bits(b);
      for (int j = 0; j < 32; ++j) y[j] = d * (float)(int8_t)b[2 + j];
      return;
    }
    case GGMLType::Q2_K: {  // {u8 scales[16]; u8 qs[64]; half d, dmin}
      const uint8_t* b = row + (g / 8) * 84;
      const int s = (int)(g % 8), n = s / 4, j = s % 4, shift = 2 * j;
      const float d = half_bits(b + 80), dmin = half_bits(b + 82);
      const uint8_t* q = b + 16 + 32 * n;
      for (int h = 0; h < 2; ++h) {
        const int sc = b[8 * n + 2 * j + h];
        const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
        for (int l = 0; l < 16; ++l) y[16 * h + l] = dl * (float)((q[16 * h + l] >> shift) & 3) - ml;
      }
      return;
    }
    case GGMLType::Q3_K: {  // {u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d}
      const uint8_t* b = row + (g / 8) * 110;
      const int s = (int)(g % 8), n = s / 4, j = s % 4, shift = 2 * j;
      const uint8_t m = (uint8_t)(1u << (4 * n + j));
      const float d_all = half_bits(b + 108);
      const uint8_t* hm = b;
      const uint8_t* q = b + 32 + 32 * n;
      const uint8_t* sc = b + 96;
      for (int h = 0; h < 2; ++h) {
        // 6-bit scale number `is` (0..15): low 4 bits from sc[0..7], high 2 bits from sc[8..11]
        const int is = 8 * n + 2 * j + h;
        const int lo = is < 8 ? (sc[is] & 0xF) : (sc[is - 8] >> 4);
        const int hi = (sc[8 + (is % 4)] >> (2 * (is / 4))) & 3;
        const float dl = d_all * (float)((lo | (hi << 4)) - 32);
        for (int l = 0; l < 16; ++l) {
          const int qv = (q[16 * h + l] >> shift) & 3;
          y[16 * h + l] = dl * (float)(qv - ((hm[16 * h + l] & m) ? 0 : 4));
        }
      }
      return;
    }
    case GGMLType::Q4_K: {  // {half d, dmin; u8 scales[12]; u8 qs[128]}
      const uint8_t* b = row + (g / 8) * 144;
      const int s = (int)(g % 8);
      const float d = half_bits(b), dmin = half_bits(b + 2);
      int sc, mn;
      scale_min_k4(s, b + 4, sc, mn);
      const float d1 = d * (float)sc, m1 = dmin * (float)mn;
      const uint8_t* q = b + 16 + 32 * (s / 2);
      for (int l = 0; l < 32; ++l) y[l] = d1 * (float)((s & 1) ? (q[l] >> 4) : (q[l] & 0xF)) - m1;
      return;
    }
    case GGMLType::Q5_K: {  // {half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}
      const uint8_t* b = row + (g / 8) * 176;
      const int s = (int)(g % 8);
      const float d = half_bits(b), dmin = half_bits(b + 2);
      int sc, mn;
      scale_min_k4(s, b + 4, sc, mn);
      const float d1 = d * (float)sc, m1 = dmin * (float)mn;
      const uint8_t* qh = b + 16;
      const uint8_t* ql = b + 48 + 32 * (s / 2);
      const uint8_t u = (uint8_t)(1u << s);
      for (int l = 0; l < 32; ++l) {
        const int lo = (s & 1) ? (ql[l] >> 4) : (ql[l] & 0xF);
        y[l] = d1 * (float)(lo + ((qh[l] & u) ? 16 : 0)) - m1;
      }
      return;
    }
    case GGMLType::Q6_K: {  // {u8 ql[128]; u8 qh[64]; i8 scales[16]; half d}
      const uint8_t* b = row + (g / 8) * 210;
      const int s = (int)(g % 8), n = s / 4, r = s % 4;
      const float d = half_bits(b + 208);
      const uint8_t* ql = b + 64 * n + ((r & 1) ? 32 : 0);
      const uint8_t* qh = b + 128 + 32 * n;
      const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * n + 2 * r;
      for (int l = 0; l < 32; ++l) {
        const int lo = (r & 2) ? (ql[l] >> 4) : (ql[l] & 0xF);
        const int q = (lo | (((qh[l] >> (2 * r)) & 3) << 4)) - 32;
        y[l] = d * (float)sc[l / 16] * (float)q;
      }
      return;
    }
    default:
      for (int l = 0; l < 32; ++l) y[l] = 0.f;
      return;
  }
}

}  // namespace qgroup
}  // namespace inferlab
