// CPU matmul on GGUF weights: rows of W are dequantized once (dequantize_row) into a per-thread float
// buffer and dotted with every row of x by small register-blocked SIMD kernels. Work is spread over a
// persistent worker pool by tiles of output rows.
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/threads.h"
#include "kernels/int8_activations.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "gguf/dequant.h"

namespace inferlab {
namespace cpu {

// ============================================================================================
// Dot-product kernels: out[r * TX + t] = sum_i w[r][i] * x[t][i]
// ============================================================================================
namespace {

typedef float v8f __attribute__((vector_size(32)));

template <int RW, int TX>
inline __attribute__((always_inline)) void dot_tile(const float* const* w, const float* const* x, int64_t k,
                                                    float* out) {
  v8f acc[RW][TX];
  for (int r = 0; r < RW; ++r)
    for (int t = 0; t < TX; ++t) acc[r][t] = v8f{0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    v8f xv[TX];
    for (int t = 0; t < TX; ++t) std::memcpy(&xv[t], x[t] + i, sizeof(v8f));
    for (int r = 0; r < RW; ++r) {
      v8f wv;
      std::memcpy(&wv, w[r] + i, sizeof(v8f));
      for (int t = 0; t < TX; ++t) acc[r][t] += wv * xv[t];
    }
  }
  for (int r = 0; r < RW; ++r) {
    for (int t = 0; t < TX; ++t) {
      const v8f a = acc[r][t];
      float s = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
      for (int64_t j = i; j < k; ++j) s += w[r][j] * x[t][j];
      out[r * TX + t] = s;
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define IL_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define IL_CLONES
#endif

IL_CLONES void dot_2x4(const float* const* w, const float* const* x, int64_t k, float* out) { dot_tile<2, 4>(w, x, k, out); }
IL_CLONES void dot_1x4(const float* const* w, const float* const* x, int64_t k, float* out) { dot_tile<1, 4>(w, x, k, out); }
IL_CLONES void dot_2x1(const float* const* w, const float* const* x, int64_t k, float* out) { dot_tile<2, 1>(w, x, k, out); }
IL_CLONES void dot_1x1(const float* const* w, const float* const* x, int64_t k, float* out) { dot_tile<1, 1>(w, x, k, out); }

// ---- Row decoders: ggml's dequantization loops, written so the compiler vectorizes them (block bytes
// copied to locals so stores to y cannot alias them, fixed trip counts, no per-element branches) and
// compiled for AVX2 where available. Results equal dequantize_row's up to FMA contraction.
#define IL_INLINE inline __attribute__((always_inline))

IL_INLINE float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

// fp16 -> fp32 without branches (vectorizable): normal and subnormal via a 2^112 rescale, inf / nan kept.
IL_INLINE float fp16_bits_to_f32(uint16_t h) {
  const uint32_t em = h & 0x7fffu;
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t bits = em << 13;
  float f;
  std::memcpy(&f, &bits, 4);
  f *= 0x1p112f;
  uint32_t r;
  std::memcpy(&r, &f, 4);
  r = em >= 0x7c00u ? (bits | 0x7f800000u) : r;
  r |= sign;
  std::memcpy(&f, &r, 4);
  return f;
}

IL_INLINE void blk_q4_0(const uint8_t* b, float* __restrict y) {
  uint8_t qs[16];
  std::memcpy(qs, b + 2, 16);
  const float d = f16_at(b);
  for (int i = 0; i < 16; ++i) {
    y[i] = d * (float)((int)(qs[i] & 15) - 8);
    y[i + 16] = d * (float)((int)(qs[i] >> 4) - 8);
  }
}

IL_INLINE void blk_q4_1(const uint8_t* b, float* __restrict y) {
  uint8_t qs[16];
  std::memcpy(qs, b + 4, 16);
  const float d = f16_at(b), m = f16_at(b + 2);
  for (int i = 0; i < 16; ++i) {
    y[i] = d * (float)(qs[i] & 15) + m;
    y[i + 16] = d * (float)(qs[i] >> 4) + m;
  }
}

IL_INLINE void blk_q5(const uint8_t* qsp, uint32_t qh, float d, float m, int off, float* __restrict y) {
  uint8_t qs[16];
  std::memcpy(qs, qsp, 16);
  for (int i = 0; i < 16; ++i) {
    const int lo = (int)((qs[i] & 15u) | (((qh >> i) & 1u) << 4));
    const int hi = (int)((qs[i] >> 4) | (((qh >> (i + 16)) & 1u) << 4));
    y[i] = d * (float)(lo - off) + m;
    y[i + 16] = d * (float)(hi - off) + m;
  }
}

IL_INLINE void blk_q8_0(const uint8_t* b, float* __restrict y) {
  int8_t qs[32];
  std::memcpy(qs, b + 2, 32);
  const float d = f16_at(b);
  for (int i = 0; i < 32; ++i) y[i] = (float)qs[i] * d;
}

IL_INLINE void blk_q2_k(const uint8_t* b, float* __restrict y) {
  uint8_t sc[16], q[64];
  std::memcpy(sc, b, 16);
  std::memcpy(q, b + 16, 64);
  const float d = f16_at(b + 80), dmin = f16_at(b + 82);
  for (int n = 0; n < 2; ++n)
    for (int j = 0; j < 4; ++j)
      for (int h = 0; h < 2; ++h) {
        const uint8_t s = sc[8 * n + 2 * j + h];
        const float dl = d * (float)(s & 0xF), ml = dmin * (float)(s >> 4);
        float* yy = y + 128 * n + 32 * j + 16 * h;
        const uint8_t* qq = q + 32 * n + 16 * h;
        for (int l = 0; l < 16; ++l) yy[l] = dl * (float)((qq[l] >> (2 * j)) & 3) - ml;
      }
}

IL_INLINE void blk_q3_k(const uint8_t* b, float* __restrict y) {
  uint8_t hm[32], q[64], s12[12];
  std::memcpy(hm, b, 32);
  std::memcpy(q, b + 32, 64);
  std::memcpy(s12, b + 96, 12);
  const float d = f16_at(b + 108);
  int sc[16];
  for (int is = 0; is < 16; ++is) {
    const int lo = is < 8 ? (s12[is] & 0xF) : (s12[is - 8] >> 4);
    const int hi = (s12[8 + (is & 3)] >> (2 * (is >> 2))) & 3;
    sc[is] = (lo | (hi << 4)) - 32;
  }
  for (int n = 0; n < 2; ++n)
    for (int j = 0; j < 4; ++j)
      for (int h = 0; h < 2; ++h) {
        const float dl = d * (float)sc[8 * n + 2 * j + h];
        const int bit = 4 * n + j;
        float* yy = y + 128 * n + 32 * j + 16 * h;
        const uint8_t* qq = q + 32 * n + 16 * h;
        const uint8_t* hh = hm + 16 * h;
        for (int l = 0; l < 16; ++l)
          yy[l] = dl * (float)((int)((qq[l] >> (2 * j)) & 3) - (int)(((hh[l] >> bit) & 1) ^ 1) * 4);
      }
}

IL_INLINE void scale_min_k4(int j, const uint8_t* s, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

IL_INLINE void blk_q4_k(const uint8_t* b, float* __restrict y) {
  uint8_t s[12], q[128];
  std::memcpy(s, b + 4, 12);
  std::memcpy(q, b + 16, 128);
  const float d = f16_at(b), dmin = f16_at(b + 2);
  for (int c = 0; c < 4; ++c)
    for (int h = 0; h < 2; ++h) {
      int sc, m;
      scale_min_k4(2 * c + h, s, sc, m);
      const float d1 = d * (float)sc, m1 = dmin * (float)m;
      float* yy = y + 64 * c + 32 * h;
      const uint8_t* qq = q + 32 * c;
      for (int l = 0; l < 32; ++l) yy[l] = d1 * (float)((qq[l] >> (4 * h)) & 0xF) - m1;
    }
}

IL_INLINE void blk_q5_k(const uint8_t* b, float* __restrict y) {
  uint8_t s[12], qh[32], q[128];
  std::memcpy(s, b + 4, 12);
  std::memcpy(qh, b + 16, 32);
  std::memcpy(q, b + 48, 128);
  const float d = f16_at(b), dmin = f16_at(b + 2);
  for (int c = 0; c < 4; ++c)
    for (int h = 0; h < 2; ++h) {
      int sc, m;
      const int sb = 2 * c + h;
      scale_min_k4(sb, s, sc, m);
      const float d1 = d * (float)sc, m1 = dmin * (float)m;
      float* yy = y + 64 * c + 32 * h;
      const uint8_t* qq = q + 32 * c;
      for (int l = 0; l < 32; ++l)
        yy[l] = d1 * (float)(((qq[l] >> (4 * h)) & 0xF) | (((qh[l] >> sb) & 1) << 4)) - m1;
    }
}

IL_INLINE void blk_q6_k(const uint8_t* b, float* __restrict y) {
  uint8_t ql[128], qh[64];
  int8_t sc[16];
  std::memcpy(ql, b, 128);
  std::memcpy(qh, b + 128, 64);
  std::memcpy(sc, b + 192, 16);
  const float d = f16_at(b + 208);
  for (int n = 0; n < 2; ++n)
    for (int g = 0; g < 4; ++g)      // 32-element group: low/high nibble, ql offset 0/32, qh shift 2g
      for (int h = 0; h < 2; ++h) {  // 16-element half of the group (its own scale)
        const float ds = d * (float)sc[8 * n + 2 * g + h];
        float* yy = y + 128 * n + 32 * g + 16 * h;
        const uint8_t* lq = ql + 64 * n + 32 * (g & 1) + 16 * h;
        const uint8_t* hq = qh + 32 * n + 16 * h;
        const int lsh = 4 * (g >> 1), hsh = 2 * g;
        for (int l = 0; l < 16; ++l)
          yy[l] = ds * (float)((int)(((lq[l] >> lsh) & 0xF) | (((hq[l] >> hsh) & 3) << 4)) - 32);
      }
}

// One weight row (k elements, GGUF layout) to float32.
IL_CLONES void decode_row(GGMLType t, const uint8_t* __restrict src, float* __restrict dst, int64_t k) {
  switch (t) {
    case GGMLType::F16:
      for (int64_t i = 0; i < k; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = fp16_bits_to_f32(h);
      }
      return;
    case GGMLType::BF16:
      for (int64_t i = 0; i < k; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        const uint32_t u = (uint32_t)h << 16;
        std::memcpy(dst + i, &u, 4);
      }
      return;
    case GGMLType::Q4_0:
      for (int64_t b = 0; b < k / 32; ++b) blk_q4_0(src + 18 * b, dst + 32 * b);
      return;
    case GGMLType::Q4_1:
      for (int64_t b = 0; b < k / 32; ++b) blk_q4_1(src + 20 * b, dst + 32 * b);
      return;
    case GGMLType::Q5_0:
      for (int64_t b = 0; b < k / 32; ++b) {
        const uint8_t* p = src + 22 * b;
        uint32_t qh;
        std::memcpy(&qh, p + 2, 4);
        blk_q5(p + 6, qh, f16_at(p), 0.f, 16, dst + 32 * b);
      }
      return;
    case GGMLType::Q5_1:
      for (int64_t b = 0; b < k / 32; ++b) {
        const uint8_t* p = src + 24 * b;
        uint32_t qh;
        std::memcpy(&qh, p + 4, 4);
        blk_q5(p + 8, qh, f16_at(p), f16_at(p + 2), 0, dst + 32 * b);
      }
      return;
    case GGMLType::Q8_0:
      for (int64_t b = 0; b < k / 32; ++b) blk_q8_0(src + 34 * b, dst + 32 * b);
      return;
    case GGMLType::Q2_K:
      for (int64_t b = 0; b < k / 256; ++b) blk_q2_k(src + 84 * b, dst + 256 * b);
      return;
    case GGMLType::Q3_K:
      for (int64_t b = 0; b < k / 256; ++b) blk_q3_k(src + 110 * b, dst + 256 * b);
      return;
    case GGMLType::Q4_K:
      for (int64_t b = 0; b < k / 256; ++b) blk_q4_k(src + 144 * b, dst + 256 * b);
      return;
    case GGMLType::Q5_K:
      for (int64_t b = 0; b < k / 256; ++b) blk_q5_k(src + 176 * b, dst + 256 * b);
      return;
    case GGMLType::Q6_K:
      for (int64_t b = 0; b < k / 256; ++b) blk_q6_k(src + 210 * b, dst + 256 * b);
      return;
    default:
      dequantize_row(t, src, dst, k);
      return;
  }
}

struct Job {
  const MatmulParams* p;
  const float* x;     // [t, k] float32
  int64_t rows_per_tile;
  int64_t row_bytes;
};

inline void store_y(const MatmulParams& p, int64_t t, int64_t row, float v) {
  if (p.bias) v += p.bias[row];
  if (p.y_dtype == DType::F32)
    static_cast<float*>(p.y)[t * p.n + row] = v;
  else
    static_cast<uint16_t*>(p.y)[t * p.n + row] = f32_to_fp16(v);
}

void tile_fn(int64_t tile, void* ctx) {
  const Job& job = *static_cast<const Job*>(ctx);
  const MatmulParams& p = *job.p;
  const int64_t r0 = tile * job.rows_per_tile;
  const int64_t r1 = std::min(p.n, r0 + job.rows_per_tile);
  const int64_t nr = r1 - r0, k = p.k;

  // Weight rows as float32: F32 weights are used in place, everything else is dequantized once.
  thread_local std::vector<float> buf;
  std::vector<const float*> wrow((size_t)nr);
  if (p.type == GGMLType::F32) {
    for (int64_t r = 0; r < nr; ++r) wrow[r] = reinterpret_cast<const float*>(p.w + (r0 + r) * job.row_bytes);
  } else {
    if ((int64_t)buf.size() < nr * k) buf.resize((size_t)(nr * k));
    for (int64_t r = 0; r < nr; ++r) {
      decode_row(p.type, p.w + (r0 + r) * job.row_bytes, buf.data() + r * k, k);
      wrow[r] = buf.data() + r * k;
    }
  }

  float out[8];
  int64_t t = 0;
  for (; t + 4 <= p.t; t += 4) {
    const float* xs[4] = {job.x + t * k, job.x + (t + 1) * k, job.x + (t + 2) * k, job.x + (t + 3) * k};
    int64_t r = 0;
    for (; r + 2 <= nr; r += 2) {
      dot_2x4(&wrow[r], xs, k, out);
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 4; ++b) store_y(p, t + b, r0 + r + a, out[a * 4 + b]);
    }
    for (; r < nr; ++r) {
      dot_1x4(&wrow[r], xs, k, out);
      for (int b = 0; b < 4; ++b) store_y(p, t + b, r0 + r, out[b]);
    }
  }
  for (; t < p.t; ++t) {
    const float* xs[1] = {job.x + t * k};
    int64_t r = 0;
    for (; r + 2 <= nr; r += 2) {
      dot_2x1(&wrow[r], xs, k, out);
      store_y(p, t, r0 + r, out[0]);
      store_y(p, t, r0 + r + 1, out[1]);
    }
    for (; r < nr; ++r) {
      dot_1x1(&wrow[r], xs, k, out);
      store_y(p, t, r0 + r, out[0]);
    }
  }
}

}  // namespace

void matmul(const MatmulParams& p) {
  if (p.t == 0 || p.n == 0) return;
  const bool int8_x = p.x_int8 && p.t <= kInt8MaxT && !is_float_type(p.type);
  // x as float32.
  std::vector<float> xf;
  const float* x = static_cast<const float*>(p.x);
  if (int8_x && p.x_dtype == DType::F32) {
    xf.assign(x, x + p.t * p.k);
    quantize_x_int8_runs(xf.data(), p.t, p.k);
    x = xf.data();
  } else if (p.x_dtype != DType::F32) {
    const int64_t cnt = p.t * p.k;
    xf.resize((size_t)cnt);
    const uint16_t* src = static_cast<const uint16_t*>(p.x);
    if (p.x_dtype == DType::F16)
      for (int64_t i = 0; i < cnt; ++i) xf[i] = fp16_to_f32(src[i]);
    else if (p.x_dtype == DType::BF16)
      for (int64_t i = 0; i < cnt; ++i) xf[i] = bf16_to_f32(src[i]);
    else
      throw ValueError(str_cat("x has dtype ", dtype_name(p.x_dtype), "; expected float32, float16 or bfloat16"));
    if (int8_x) quantize_x_int8_runs(xf.data(), p.t, p.k);
    x = xf.data();
  }
  Job job;
  job.p = &p;
  job.x = x;
  job.row_bytes = ggml_row_size(p.type, p.k);
  // Few tokens: small tiles (more parallelism, the dequantized rows stay in L1/L2). Many tokens: larger
  // tiles so x is streamed fewer times.
  job.rows_per_tile = p.t < 8 ? 4 : 32;
  const int64_t ntiles = (p.n + job.rows_per_tile - 1) / job.rows_per_tile;
  if (p.n * p.k * std::max<int64_t>(p.t, 4) < (int64_t)1 << 18) {
    for (int64_t i = 0; i < ntiles; ++i) tile_fn(i, &job);  // too small to be worth waking the workers
  } else {
    parallel_for(ntiles, tile_fn, &job);
  }
}

}  // namespace cpu
}  // namespace inferlab
