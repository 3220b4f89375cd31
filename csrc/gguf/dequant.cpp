// CPU dequantization of GGUF block formats to float32.
//
// Bit-exact with gguf-py's gguf.quants.dequantize (and ggml's dequantize_row_*):
// every value is computed in float32 with the same operations in the same order
// (scale products first, then one multiply and at most one add/subtract).
// This file is compiled with -ffp-contract=off so no FMA changes the rounding.
//
// Block layouts (little-endian; "f16" is an IEEE half; QK_K = 256):
//   Q4_0  (32 el, 18 B): f16 d | u8 qs[16]                 x = d * ((q & 15) - 8)
//   Q4_1  (32 el, 20 B): f16 d | f16 m | u8 qs[16]         x = d * q + m
//   Q5_0  (32 el, 22 B): f16 d | u32 qh | u8 qs[16]        x = d * ((q | hbit << 4) - 16)
//   Q5_1  (32 el, 24 B): f16 d | f16 m | u32 qh | u8 qs[16]  x = d * (q | hbit << 4) + m
//   Q8_0  (32 el, 34 B): f16 d | i8 qs[32]                 x = q * d
//     In Q4/Q5 blocks element i < 16 is the low nibble of qs[i], element i + 16 its high nibble;
//     the fifth bit of element i is bit i of qh.
//   Q2_K  (256 el, 84 B): u8 scales[16] | u8 qs[64] | f16 d | f16 dmin
//     16 sub-blocks of 16; scale = d * (scales[s] & 15), min = dmin * (scales[s] >> 4)
//     element 128 j + 32 l + i = (qs[32 j + i] >> 2 l) & 3;  x = scale * q - min
//   Q3_K  (256 el, 110 B): u8 hmask[32] | u8 qs[64] | u8 scales[12] | f16 d
//     16 sub-blocks of 16 with 6-bit signed scales (low 4 bits from scales[0..7] nibbles,
//     high 2 bits from scales[8..11]) minus 32; low 2 bits as in Q2_K; element 32 b + i
//     takes bit b of hmask[i]; q = low - (bit ? 0 : 4);  x = (d * scale) * q
//   Q4_K  (256 el, 144 B): f16 d | f16 dmin | u8 scales[12] | u8 qs[128]
//     8 sub-blocks of 32 with 6-bit scale and min packed in scales[12];
//     element 64 j + 32 h + i = (qs[32 j + i] >> 4 h) & 15;  x = (d * sc) * q - (dmin * m)
//   Q5_K  (256 el, 176 B): f16 d | f16 dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]
//     as Q4_K, plus the fifth bit of element 32 b + i is bit b of qh[i]
//   Q6_K  (256 el, 210 B): u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d
//     element 128 j + 64 h + i (i < 64) low nibble = (ql[64 j + i] >> 4 h) & 15;
//     element 128 j + 32 l + i (i < 32) high 2 bits = (qh[32 j + i] >> 2 l) & 3;
//     x = (d * scales[e / 16]) * ((low | high << 4) - 32)
#include "gguf/dequant.h"

#include <cstring>

#include "core/error.h"
#include "core/half.h"

namespace inferlab {
namespace {

inline float ld_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

inline uint32_t ld_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void deq_f32(const uint8_t* src, float* dst, int64_t n) { std::memcpy(dst, src, (size_t)n * 4); }

void deq_f16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = ld_f16(src + 2 * i);
}

void deq_bf16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = bf16_to_f32(h);
  }
}

void deq_q4_0(const uint8_t* b, float* y) {
  const float d = ld_f16(b);
  const uint8_t* qs = b + 2;
  for (int i = 0; i < 16; ++i) {
    y[i] = d * (float)((int)(qs[i] & 15) - 8);
    y[i + 16] = d * (float)((int)(qs[i] >> 4) - 8);
  }
}

void deq_q4_1(const uint8_t* b, float* y) {
  const float d = ld_f16(b);
  const float m = ld_f16(b + 2);
  const uint8_t* qs = b + 4;
  for (int i = 0; i < 16; ++i) {
    y[i] = d * (float)(qs[i] & 15) + m;
    y[i + 16] = d * (float)(qs[i] >> 4) + m;
  }
}

void deq_q5_0(const uint8_t* b, float* y) {
  const float d = ld_f16(b);
  const uint32_t qh = ld_u32(b + 2);
  const uint8_t* qs = b + 6;
  for (int i = 0; i < 16; ++i) {
    const int lo = (int)((qs[i] & 15) | (((qh >> i) & 1) << 4));
    const int hi = (int)((qs[i] >> 4) | (((qh >> (i + 16)) & 1) << 4));
    y[i] = d * (float)(lo - 16);
    y[i + 16] = d * (float)(hi - 16);
  }
}

void deq_q5_1(const uint8_t* b, float* y) {
  const float d = ld_f16(b);
  const float m = ld_f16(b + 2);
  const uint32_t qh = ld_u32(b + 4);
  const uint8_t* qs = b + 8;
  for (int i = 0; i < 16; ++i) {
    const int lo = (int)((qs[i] & 15) | (((qh >> i) & 1) << 4));
    const int hi = (int)((qs[i] >> 4) | (((qh >> (i + 16)) & 1) << 4));
    y[i] = d * (float)lo + m;
    y[i + 16] = d * (float)hi + m;
  }
}

void deq_q8_0(const uint8_t* b, float* y) {
  const float d = ld_f16(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int i = 0; i < 32; ++i) y[i] = (float)qs[i] * d;
}

void deq_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = ld_f16(b + 80);
  const float dmin = ld_f16(b + 82);
  for (int j = 0; j < 2; ++j)
    for (int l = 0; l < 4; ++l)
      for (int i = 0; i < 32; ++i) {
        const int e = 128 * j + 32 * l + i;
        const uint8_t sc = scales[e / 16];
        const float dl = d * (float)(sc & 15);
        const float ml = dmin * (float)(sc >> 4);
        const int q = (qs[32 * j + i] >> (2 * l)) & 3;
        y[e] = dl * (float)q - ml;
      }
}

void deq_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  const float d = ld_f16(b + 108);
  float dl[16];
  for (int k = 0; k < 16; ++k) {
    const int lo = k < 8 ? (sc[k] & 15) : (sc[k - 8] >> 4);
    const int hi = (sc[8 + (k & 3)] >> (2 * (k >> 2))) & 3;
    dl[k] = d * (float)((lo | (hi << 4)) - 32);
  }
  for (int j = 0; j < 2; ++j)
    for (int l = 0; l < 4; ++l)
      for (int i = 0; i < 32; ++i) {
        const int e = 128 * j + 32 * l + i;
        const int low = (qs[32 * j + i] >> (2 * l)) & 3;
        const int hbit = (hmask[i] >> (e / 32)) & 1;
        const int q = low - (hbit ? 0 : 4);
        y[e] = dl[e / 16] * (float)q;
      }
}

// 6-bit scales and mins of Q4_K / Q5_K (8 sub-blocks).
inline void k_scale_min(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 63;
    mn[j] = s[4 + j] & 63;
    sc[4 + j] = (uint8_t)((s[8 + j] & 15) | ((s[j] >> 2) & 0x30));
    mn[4 + j] = (uint8_t)((s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30));
  }
}

void deq_q4_k(const uint8_t* b, float* y) {
  const float d = ld_f16(b);
  const float dmin = ld_f16(b + 2);
  uint8_t sc[8], mn[8];
  k_scale_min(b + 4, sc, mn);
  const uint8_t* qs = b + 16;
  for (int s = 0; s < 8; ++s) {
    const float ds = d * (float)sc[s];
    const float dm = dmin * (float)mn[s];
    const int j = s / 2, h = s % 2;
    for (int i = 0; i < 32; ++i) {
      const int q = (qs[32 * j + i] >> (4 * h)) & 15;
      y[32 * s + i] = ds * (float)q - dm;
    }
  }
}

void deq_q5_k(const uint8_t* b, float* y) {
  const float d = ld_f16(b);
  const float dmin = ld_f16(b + 2);
  uint8_t sc[8], mn[8];
  k_scale_min(b + 4, sc, mn);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int s = 0; s < 8; ++s) {
    const float ds = d * (float)sc[s];
    const float dm = dmin * (float)mn[s];
    const int j = s / 2, h = s % 2;
    for (int i = 0; i < 32; ++i) {
      const int q = ((qs[32 * j + i] >> (4 * h)) & 15) | (((qh[i] >> s) & 1) << 4);
      y[32 * s + i] = ds * (float)q - dm;
    }
  }
}

void deq_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = ld_f16(b + 208);
  float dl[16];
  for (int k = 0; k < 16; ++k) dl[k] = d * (float)scales[k];
  for (int j = 0; j < 2; ++j)
    for (int r = 0; r < 128; ++r) {
      const int e = 128 * j + r;
      const int h = r / 64, i = r % 64;      // low nibble: element 128 j + 64 h + i
      const int l = r / 32, i2 = r % 32;     // high bits:  element 128 j + 32 l + i2
      const int low = (ql[64 * j + i] >> (4 * h)) & 15;
      const int high = (qh[32 * j + i2] >> (2 * l)) & 3;
      y[e] = dl[e / 16] * (float)((low | (high << 4)) - 32);
    }
}

using BlockFn = void (*)(const uint8_t*, float*);

}  // namespace

void dequantize_row(GGMLType type, const void* src_v, float* dst, int64_t n) {
  const GGMLTypeTraits* tr = ggml_type_traits((int32_t)type);
  if (tr == nullptr || !tr->can_dequantize)
    throw NotSupportedError(str_cat("dequantize_row: ggml type ", tr ? tr->name : "unknown", " (id ", (int32_t)type,
                                    ") cannot be dequantized"));
  IL_CHECK_ARG(n >= 0, "dequantize_row: n must be >= 0, got ", n);
  IL_CHECK_ARG(n % tr->block_size == 0, "dequantize_row: n (", n, ") must be a multiple of the ", tr->name,
               " block size ", tr->block_size);
  if (n == 0) return;
  IL_CHECK_ARG(src_v != nullptr && dst != nullptr, "dequantize_row: src and dst must not be null");
  const uint8_t* src = static_cast<const uint8_t*>(src_v);
  BlockFn fn = nullptr;
  switch (type) {
    case GGMLType::F32: deq_f32(src, dst, n); return;
    case GGMLType::F16: deq_f16(src, dst, n); return;
    case GGMLType::BF16: deq_bf16(src, dst, n); return;
    case GGMLType::Q4_0: fn = deq_q4_0; break;
    case GGMLType::Q4_1: fn = deq_q4_1; break;
    case GGMLType::Q5_0: fn = deq_q5_0; break;
    case GGMLType::Q5_1: fn = deq_q5_1; break;
    case GGMLType::Q8_0: fn = deq_q8_0; break;
    case GGMLType::Q2_K: fn = deq_q2_k; break;
    case GGMLType::Q3_K: fn = deq_q3_k; break;
    case GGMLType::Q4_K: fn = deq_q4_k; break;
    case GGMLType::Q5_K: fn = deq_q5_k; break;
    case GGMLType::Q6_K: fn = deq_q6_k; break;
    default:
      throw NotSupportedError(str_cat("dequantize_row: ggml type ", tr->name, " cannot be dequantized"));
  }
  const int64_t nb = n / tr->block_size;
  for (int64_t i = 0; i < nb; ++i) fn(src + i * tr->type_size, dst + i * tr->block_size);
}

}  // namespace inferlab
