// Device-side decoding of QWeight blocks (CUDA), shared by matmul, the fp16 dequantizer and embedding.
//
// On CUDA a QWeight is either a float type (F32 / F16 / BF16, layout 0: plain row-major [n, k]) or a
// quantized type in the split layout (layout 1, see kernels/qweight_layout.h): per block a 16-byte aligned
// payload (quant bits) and a small side record (fp16 scales).
//
// Unit of work: a "unit" is what one thread decodes from one block: QT<T>::RUNS runs of 16 consecutive
// elements (each run has one scale). A block has QT<T>::LPB units, `sub` in [0, LPB). For float types a
// "block" is 16 elements and there is one unit with one run.
//
//   typename QT<T>::Regs r;
//   QT<T>::load(r, QT<T>::payload(v, row, blk), QT<T>::side(v, row, blk), sub);    // global loads
//   for j in [0, RUNS): element offset in the block = QT<T>::run_offset(sub, j);
//     QT<T>::run(r, sub, j, q, s, m);   // q[4]: four "quarters" of 4 elements each
//     value[4*i + e] = s * QT<T>::cvt(q[i]).e + m           (float types: cvt(q[i]) directly; s=1, m=0)
//
// Quantized quarters are 4 bytes, each byte an unsigned code c, value (c - OFF); cvt() turns 4 codes into
// floats with the 2^23 magic-number trick (exact, no int->float conversion instructions).
// Simple entry points for other kernels: dequant_unit() and dequant_element() at the bottom.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <vector_functions.h>
#include <vector_types.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/error.h"
#include "core/half.h"
#include "core/ggml_types.h"
#include "kernels/qweight.h"
#include "kernels/qweight_layout.h"

namespace inferlab {
namespace cuda {

// Device view of a QWeight's data.
struct QView {
  const uint8_t* pay = nullptr;   // split layout: payload array; float types: the [n, k] data
  const uint8_t* side = nullptr;  // split layout: side array (unused for float types)
  int64_t n = 0, k = 0;           // rows, columns
  int64_t nb = 0;                 // blocks per row (float types: k / 16)
  int64_t sst = 0;                // split layout: bytes from one row's sides to the next (split_side_stride)
};

// ---------------------------------------------------------------------------------------------
// Small helpers. IL_HD functions also compile as plain host C++ (without nvcc), so the decoding and the
// matmul lane logic can be checked on a machine without a GPU (tests/cuda_emu).
// ---------------------------------------------------------------------------------------------
#if defined(__CUDACC__)
#define IL_HD __host__ __device__ __forceinline__
#else
#define IL_HD inline
#endif

IL_HD float u2f(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

IL_HD uint32_t f2u(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

IL_HD float h2f(uint32_t bits16) {
#ifdef __CUDA_ARCH__
  return __half2float(__ushort_as_half((unsigned short)(bits16 & 0xffffu)));
#else
  return fp16_to_f32((uint16_t)(bits16 & 0xffffu));
#endif
}

// Two packed fp16 -> float2.
IL_HD float2 h2x2f(uint32_t w) {
#ifdef __CUDA_ARCH__
  return __half22float2(*reinterpret_cast<const __half2*>(&w));
#else
  return make_float2(fp16_to_f32((uint16_t)(w & 0xffffu)), fp16_to_f32((uint16_t)(w >> 16)));
#endif
}

IL_HD uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#ifdef __CUDA_ARCH__
  return __byte_perm(x, y, s);
#else
  const uint64_t v = ((uint64_t)y << 32) | x;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= (uint32_t)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xffu) << (8 * i);
  return r;
#endif
}

// Weight loads. SH = false: global memory (ld_stream16: streaming, evict-first, for payloads read once;
// ld_ro*: read-only cache, for the small side records). SH = true: the same bytes staged in shared memory
// (the tensor-core decode kernel bulk-copies tiles of the split layout there; a plain dereference of a
// pointer into shared memory compiles to a shared load).
template <bool SH = false>
IL_HD uint4 ld_stream16(const uint8_t* p) {
#ifdef __CUDA_ARCH__
  if constexpr (SH) return *reinterpret_cast<const uint4*>(p);
  else return __ldcs(reinterpret_cast<const uint4*>(p));
#else
  uint4 v;
  std::memcpy(&v, p, 16);
  return v;
#endif
}
template <bool SH = false>
IL_HD uint4 ld_ro16(const uint8_t* p) {
#ifdef __CUDA_ARCH__
  if constexpr (SH) return *reinterpret_cast<const uint4*>(p);
  else return __ldg(reinterpret_cast<const uint4*>(p));
#else
  uint4 v;
  std::memcpy(&v, p, 16);
  return v;
#endif
}
template <bool SH = false>
IL_HD uint2 ld_ro8(const uint8_t* p) {
#ifdef __CUDA_ARCH__
  if constexpr (SH) return *reinterpret_cast<const uint2*>(p);
  else return __ldg(reinterpret_cast<const uint2*>(p));
#else
  uint2 v;
  std::memcpy(&v, p, 8);
  return v;
#endif
}
template <bool SH = false>
IL_HD uint32_t ld_ro4(const uint8_t* p) {
#ifdef __CUDA_ARCH__
  if constexpr (SH) return *reinterpret_cast<const unsigned int*>(p);
  else return __ldg(reinterpret_cast<const unsigned int*>(p));
#else
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
#endif
}
template <bool SH = false>
IL_HD uint32_t ld_ro2(const uint8_t* p) {
#ifdef __CUDA_ARCH__
  if constexpr (SH) return *reinterpret_cast<const unsigned short*>(p);
  else return __ldg(reinterpret_cast<const unsigned short*>(p));
#else
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
#endif
}

// s * x + m rounded like ggml's (and gguf-py's) dequantizers: product and sum rounded separately.
IL_HD float scale_add(float s, float x, float m) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(__fmul_rn(s, x), m);
#else
  const float p = s * x;
  return p + m;
#endif
}

// 4 byte codes -> 4 floats (code - off): byte placed in the mantissa of 2^23, then 2^23 + off subtracted.
IL_HD float4 codes_to_float4(uint32_t v, float magic_off) {
  float4 r;
  r.x = u2f(byte_perm(v, 0x4B000000u, 0x7440u)) - magic_off;
  r.y = u2f(byte_perm(v, 0x4B000000u, 0x7441u)) - magic_off;
  r.z = u2f(byte_perm(v, 0x4B000000u, 0x7442u)) - magic_off;
  r.w = u2f(byte_perm(v, 0x4B000000u, 0x7443u)) - magic_off;
  return r;
}
// Bits 0..3 of x -> bit 0 of bytes 0..3.
IL_HD uint32_t spread4(uint32_t x) { return (x * 0x00204081u) & 0x01010101u; }
IL_HD uint32_t word_of(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}
// Small unsigned int (< 2^23) to float without a conversion instruction.
IL_HD float small_u2f(uint32_t v) { return u2f(0x4B000000u | v) - 8388608.0f; }
// ggml's get_scale_min_k4: 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes in words
// a, b, c; branch-free, small ints to float without conversion instructions.
IL_HD void scale_min_k4(uint32_t a, uint32_t b, uint32_t c, int j, float& sc, float& mn) {
  const uint32_t sel = 0x4440u | (uint32_t)(j & 3);  // byte j & 3 of the word, other bytes zero
  const uint32_t A = byte_perm(a, 0u, sel), B = byte_perm(b, 0u, sel), C = byte_perm(c, 0u, sel);
  const bool hi = j >= 4;
  const uint32_t s = hi ? ((C & 0xFu) | ((A >> 6) << 4)) : (A & 63u);
  const uint32_t m = hi ? ((C >> 4) | ((B >> 6) << 4)) : (B & 63u);
  sc = small_u2f(s);
  mn = small_u2f(m);
}
constexpr float kMagic = 8388608.0f;  // 2^23

// Words of v rotated: result word i = word (i + rot) & 3 of v.
IL_HD uint4 rotate_words(uint4 v, int rot) {
  if (rot & 1) v = make_uint4(v.y, v.z, v.w, v.x);
  if (rot & 2) v = make_uint4(v.z, v.w, v.x, v.y);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Per-type traits. Common members:
//   QK (elements per block), LPB (units per block), RUNS (runs per unit), PB / SB (split payload / side
//   bytes), HAS_MIN (value = s*q + m), IS_FLOAT, Quarter, Regs, payload(), side(), load(), run_offset(),
//   run(), cvt().
// ---------------------------------------------------------------------------------------------
template <GGMLType T> struct QT;

template <int QK_, int LPB_, int RUNS_, int PB_, int SB_, bool HAS_MIN_, int OFF_>
struct QTQuant {
  static constexpr int QK = QK_, LPB = LPB_, RUNS = RUNS_, PB = PB_, SB = SB_;
  static constexpr bool HAS_MIN = HAS_MIN_, IS_FLOAT = false;
  // ROT_REGS: rotate_regs(r, rot) rotates the loaded words so that run() yields its quarters already in
  // the order (i + rot) & 3 (one rotation per unit instead of one per run; used by the matmul kernel).
  static constexpr bool ROT_REGS = false;
  static constexpr float MAGIC_OFF = kMagic + (float)OFF_;
  using Quarter = uint32_t;
  static IL_HD const uint8_t* payload(const QView& v, int64_t row, int64_t blk) {
    return v.pay + (row * v.nb + blk) * PB;
  }
  static IL_HD const uint8_t* side(const QView& v, int64_t row, int64_t blk) {
    return v.side + row * v.sst + blk * SB;
  }
  static IL_HD float4 cvt(uint32_t q) { return codes_to_float4(q, MAGIC_OFF); }
};

// Q4_0: d * (q - 8); payload qs[16] (element j: low nibble of qs[j], element j+16: high nibble); side d.
template <> struct QT<GGMLType::Q4_0> : QTQuant<32, 1, 2, 16, 2, false, 8> {
  struct Regs { uint4 q; float d; };
  template <bool SH = false>
  static IL_HD void load(Regs& r, const uint8_t* p, const uint8_t* s, int) {
    r.q = ld_stream16<SH>(p);
    r.d = h2f(ld_ro2<SH>(s));
  }
  static constexpr bool ROT_REGS = true;
  static IL_HD void rotate_regs(Regs& r, int rot) { r.q = rotate_words(r.q, rot); }
  static IL_HD int run_offset(int, int j) { return 16 * j; }
  static IL_HD void run(const Regs& r, int, int j, uint32_t q[4], float& s, float& m) {
    const int sh = 4 * j;
#pragma unroll
    for (int i = 0; i < 4; ++i) q[i] = (word_of(r.q, i) >> sh) & 0x0F0F0F0Fu;
    s = r.d;
    m = 0.f;
  }
};

// Q4_1: d * q + m; side d, m.
template <> struct QT<GGMLType::Q4_1> : QTQuant<32, 1, 2, 16, 4, true, 0> {
  struct Regs { uint4 q; float d, m; };
  template <bool SH = false>
  static IL_HD void load(Regs& r, const uint8_t* p, const uint8_t* s, int) {
    r.q = ld_stream16<SH>(p);
    const uint32_t dm = ld_ro4<SH>(s);
    r.d = h2f(dm);
    r.m = h2f(dm >> 16);
  }
  static constexpr bool ROT_REGS = true;
  static IL_HD void rotate_regs(Regs& r, int rot) { r.q = rotate_words(r.q, rot); }
  static IL_HD int run_offset(int, int j) { return 16 * j; }
  static IL_HD void run(const Regs& r, int, int j, uint32_t q[4], float& s, float& m) {
    const int sh = 4 * j;
#pragma unroll
    for (int i = 0; i < 4; ++i) q[i] = (word_of(r.q, i) >> sh) & 0x0F0F0F0Fu;
    s = r.d;
    m = r.m;
  }
};

// Q5_0: d * (q - 16), q = nibble | (bit e of qh) << 4; side qh (u32), d.
template <> struct QT<GGMLType::Q5_0> : QTQuant<32, 1, 2, 16, 8, false, 16> {
  struct Regs { uint4 q; uint32_t qh; float d; };
  template <bool SH = false>
  static IL_HD void load(Regs& r, const uint8_t* p, const uint8_t* s, int) {
    r.q = ld_stream16<SH>(p);
    const uint2 sd = ld_ro8<SH>(s);
    r.qh = sd.x;
    r.d = h2f(sd.y);
  }
  static IL_HD int run_offset(int, int j) { return 16 * j; }
  static IL_HD void run(const Regs& r, int, int j, uint32_t q[4], float& s, float& m) {
    const int sh = 4 * j;
#pragma unroll
    for (int i = 0; i < 4; ++i)
      q[i] = ((word_of(r.q, i) >> sh) & 0x0F0F0F0Fu) | (spread4((r.qh >> (16 * j + 4 * i)) & 0xFu) << 4);
    s = r.d;
    m = 0.f;
  }
};

// Q5_1: d * q + m; side qh, d, m.
template <> struct QT<GGMLType::Q5_1> : QTQuant<32, 1, 2, 16, 8, true, 0> {
  struct Regs { uint4 q; uint32_t qh; float d, m; };
  template <bool SH = false>
  static IL_HD void load(Regs& r, const uint8_t* p, const uint8_t* s, int) {
    r.q = ld_stream16<SH>(p);
    const uint2 sd = ld_ro8<SH>(s);
    r.qh = sd.x;
    r.d = h2f(sd.y);
    r.m = h2f(sd.y >> 16);
  }
  static IL_HD int run_offset(int, int j) { return 16 * j; }
  static IL_HD void run(const Regs& r, int, int j, uint32_t q[4], float& s, float& m) {
    const int sh = 4 * j;
#pragma unroll
    for (int i = 0; i < 4; ++i)
      q[i] = ((word_of(r.q, i) >> sh) & 0x0F0F0F0Fu) | (spread4((r.qh >> (16 * j + 4 * i)) & 0xFu) << 4);
    s = r.d;
    m = r.m;
  }
};

// Q8_0: d * q, q int8 (code = q ^ 0x80, OFF 128); two units of 16 per block.
template <> struct QT<GGMLType::Q8_0> : QTQuant<32, 2, 1, 32, 2, false, 128> {
  struct Regs { uint4 q; float d; };
  template <bool SH = false>
  static IL_HD void load(Regs& r, const uint8_t* p, const uint8_t* s, int sub) {
    r.q = ld_stream16<SH>(p + 16 * sub);
    r.d = h2f(ld_ro2<SH>(s));
  }
  static IL_HD int run_offset(int sub, int) { return 16 * sub; }
  static IL_HD void run(const Regs& r, int, int, uint32_t q[4], float& s, float& m) {
#pragma unroll
    for (int i = 0; i < 4; ++i) q[i] = word_of(r.q, i) ^ 0x80808080u;
    s = r.d;
    m = 0.f;
  }
};

// Q2_K: element 128n + 32j + l = crumb j of qs[32n + l]; scale byte sc[8n + 2j + l/16]:
// d * (sc & 15) * q - dmin * (sc >> 4). Unit sub: qs bytes [16 sub, +16), n = sub/2, 4 runs (j).
template <> struct QT<GGMLType::Q2_K> : QTQuant<256, 4, 4, 80, 4, true, 0> {
  struct Regs { uint4 q; uint2 sc; float d, dmin; };
  template <bool SH = false>
  static IL_HD void load(Regs& r, const uint8_t* p, const uint8_t* s, int sub) {
    r.q = ld_stream16<SH>(p + 16 + 16 * sub);
    r.sc = ld_ro8<SH>(p + 8 * (sub >> 1));
    const uint32_t dd = ld_ro4<SH>(s);
    r.d = h2f(dd);
    r.dmin = h2f(dd >> 16);
  }
  static constexpr bool ROT_REGS = true;
  static IL_HD void rotate_regs(Regs& r, int rot) { r.q = rotate_words(r.q, rot); }
  static IL_HD int run_offset(int sub, int j) {
    return 128 * (sub >> 1) + 32 * j + 16 * (sub & 1);
  }
  static IL_HD void run(const Regs& r, int sub, int j, uint32_t q[4], float& s, float& m) {
    const int sh = 2 * j;
#pragma unroll
    for (int i = 0; i < 4; ++i) q[i] = (word_of(r.q, i) >> sh) & 0x03030303u;
    const int bi = 2 * j + (sub & 1);  // byte index within the 8 loaded scale bytes
    const uint32_t sc = ((bi < 4 ? r.sc.x : r.sc.y) >> (8 * (bi & 3))) & 0xffu;
    s = r.d * small_u2f(sc & 0xFu);
    m = -r.dmin * small_u2f(sc >> 4);
  }
};

// Q3_K: element 128n + 32j + l: q = crumb j of qs[32n + l] - (bit (4n + j) of hmask[l] ? 0 : 4),
// value d * (scale6[8n + 2j + l/16] - 32) * q. Code = crumb | hbit << 2, OFF 4.
template <> struct QT<GGMLType::Q3_K> : QTQuant<256, 4, 4, 96, 16, false, 4> {
  struct Regs { uint4 q, h; uint32_t s0, s1, s2; float d; };  // s0..s2: the 12 packed scale bytes
  template <bool SH = false>
  static IL_HD void load(Regs& r, const uint8_t* p, const uint8_t* s, int sub) {
    r.q = ld_stream16<SH>(p + 32 + 16 * sub);
    r.h = ld_stream16<SH>(p + 16 * (sub & 1));
    const uint4 sd = ld_ro16<SH>(s);
    r.s0 = sd.x; r.s1 = sd.y; r.s2 = sd.z;
    r.d = h2f(sd.w);
  }
  static constexpr bool ROT_REGS = true;
  static IL_HD void rotate_regs(Regs& r, int rot) {
    r.q = rotate_words(r.q, rot);
    r.h = rotate_words(r.h, rot);
  }
  static IL_HD int run_offset(int sub, int j) {
    return 128 * (sub >> 1) + 32 * j + 16 * (sub & 1);
  }
  static IL_HD void run(const Regs& r, int sub, int j, uint32_t q[4], float& s, float& m) {
    const int n = sub >> 1;
    const int sh = 2 * j, hb = 4 * n + j;
#pragma unroll
    for (int i = 0; i < 4; ++i)
      q[i] = ((word_of(r.q, i) >> sh) & 0x03030303u) | (((word_of(r.h, i) >> hb) & 0x01010101u) << 2);
    // 6-bit scale `is`: low 4 bits in nibble (is >> 3) of byte (is & 7), high 2 bits at 2 (is >> 2) of byte 8 + (is & 3).
    const int is = 8 * n + 2 * j + (sub & 1);
    const uint32_t sel = 0x4440u | (uint32_t)(is & 3);
    const uint32_t lb = byte_perm((is & 4) ? r.s1 : r.s0, 0u, sel);
    const uint32_t hbyte = byte_perm(r.s2, 0u, sel);
    const uint32_t code = ((lb >> (4 * (is >> 3))) & 0xFu) | (((hbyte >> (2 * (is >> 2))) & 3u) << 4);
    s = r.d * (u2f(0x4B000000u | code) - (8388608.0f + 32.0f));
    m = 0.f;
  }
};

// Q4_K: element 64c + l (l < 32): low nibble of qs[32c + l], sub-block 2c; 64c + 32 + l: high nibble,
// sub-block 2c + 1; value d * sc * q - dmin * mn. Unit sub: qs bytes [16 sub, +16), c = sub/2.
template <> struct QT<GGMLType::Q4_K> : QTQuant<256, 8, 2, 128, 16, true, 0> {
  struct Regs { uint4 q; uint32_t s0, s1, s2; float d, dmin; };  // s0..s2: scales[0..11]
  template <bool SH = false>
  static IL_HD void load(Regs& r, const uint8_t* p, const uint8_t* s, int sub) {
    r.q = ld_stream16<SH>(p + 16 * sub);
    const uint4 sd = ld_ro16<SH>(s);  // d | dmin << 16, scales[0..11]
    r.s0 = sd.y; r.s1 = sd.z; r.s2 = sd.w;
    r.d = h2f(sd.x);
    r.dmin = h2f(sd.x >> 16);
  }
  static constexpr bool ROT_REGS = true;
  static IL_HD void rotate_regs(Regs& r, int rot) { r.q = rotate_words(r.q, rot); }
  static IL_HD int run_offset(int sub, int j) { return 64 * (sub >> 1) + 16 * (sub & 1) + 32 * j; }
  static IL_HD void run(const Regs& r, int sub, int j, uint32_t q[4], float& s, float& m) {
    const int sh = 4 * j;
#pragma unroll
    for (int i = 0; i < 4; ++i) q[i] = (word_of(r.q, i) >> sh) & 0x0F0F0F0Fu;
    float sc, mn;
    scale_min_k4(r.s0, r.s1, r.s2, 2 * (sub >> 1) + j, sc, mn);
    s = r.d * sc;
    m = -r.dmin * mn;
  }
};

// Q5_K: as Q4_K plus a fifth bit: bit (sub-block index) of qh[l % 32].
template <> struct QT<GGMLType::Q5_K> : QTQuant<256, 8, 2, 160, 16, true, 0> {
  struct Regs { uint4 q, h; uint32_t s0, s1, s2; float d, dmin; };  // s0..s2: scales[0..11]
  template <bool SH = false>
  static IL_HD void load(Regs& r, const uint8_t* p, const uint8_t* s, int sub) {
    r.q = ld_stream16<SH>(p + 32 + 16 * sub);
    r.h = ld_stream16<SH>(p + 16 * (sub & 1));
    const uint4 sd = ld_ro16<SH>(s);
    r.s0 = sd.y; r.s1 = sd.z; r.s2 = sd.w;
    r.d = h2f(sd.x);
    r.dmin = h2f(sd.x >> 16);
  }
  static IL_HD int run_offset(int sub, int j) { return 64 * (sub >> 1) + 16 * (sub & 1) + 32 * j; }
  static IL_HD void run(const Regs& r, int sub, int j, uint32_t q[4], float& s, float& m) {
    const int sh = 4 * j;
    const int sb = 2 * (sub >> 1) + j;
#pragma unroll
    for (int i = 0; i < 4; ++i)
      q[i] = ((word_of(r.q, i) >> sh) & 0x0F0F0F0Fu) | (((word_of(r.h, i) >> sb) & 0x01010101u) << 4);
    float sc, mn;
    scale_min_k4(r.s0, r.s1, r.s2, sb, sc, mn);
    s = r.d * sc;
    m = -r.dmin * mn;
  }
};

// Q6_K: half h (128 elements): element 128h + e: ql nibble (e < 64: low of ql[64h + e], else high of
// ql[64h + e - 64]) | ((qh[32h + e % 32] >> 2 (e / 32)) & 3) << 4, minus 32, times d * scales[8h + e/16].
// Unit sub: ql bytes [16 sub, +16): h = sub/4, runs at e = 16 (sub%4) (low) and 64 + 16 (sub%4) (high).
template <> struct QT<GGMLType::Q6_K> : QTQuant<256, 8, 2, 208, 2, false, 32> {
  struct Regs { uint4 ql, qh; uint2 sc; float d; };
  template <bool SH = false>
  static IL_HD void load(Regs& r, const uint8_t* p, const uint8_t* s, int sub) {
    r.ql = ld_stream16<SH>(p + 16 * sub);
    r.qh = ld_stream16<SH>(p + 128 + 16 * (2 * (sub >> 2) + (sub & 1)));
    r.sc = ld_ro8<SH>(p + 192 + 8 * (sub >> 2));
    r.d = h2f(ld_ro2<SH>(s));
  }
  static IL_HD int run_offset(int sub, int j) { return 128 * (sub >> 2) + 64 * j + 16 * (sub & 3); }
  static IL_HD void run(const Regs& r, int sub, int j, uint32_t q[4], float& s, float& m) {
    const int sh = 4 * j;
    const int hs = 2 * (2 * j + ((sub & 3) >> 1));
#pragma unroll
    for (int i = 0; i < 4; ++i)
      q[i] = ((word_of(r.ql, i) >> sh) & 0x0F0F0F0Fu) | (((word_of(r.qh, i) >> hs) & 0x03030303u) << 4);
    const uint32_t w = j == 0 ? r.sc.x : r.sc.y;
    const uint32_t sc = ((w >> (8 * (sub & 3))) & 0xffu) ^ 0x80u;  // int8 scale + 128
    s = r.d * (small_u2f(sc) - 128.0f);
    m = 0.f;
  }
};

// Float types (layout 0, row-major [n, k], k % 16 == 0): a "block" is 16 elements, one unit, one run.
template <int ESIZE>
struct QTFloat {
  static constexpr int QK = 16, LPB = 1, RUNS = 1, PB = 16 * ESIZE, SB = 0;
  static constexpr bool HAS_MIN = false, IS_FLOAT = true, ROT_REGS = false;
  static IL_HD const uint8_t* payload(const QView& v, int64_t row, int64_t blk) {
    return v.pay + (row * v.nb + blk) * PB;
  }
  static IL_HD const uint8_t* side(const QView&, int64_t, int64_t) { return nullptr; }
  static IL_HD int run_offset(int, int) { return 0; }
};

template <> struct QT<GGMLType::F16> : QTFloat<2> {
  using Quarter = uint2;
  struct Regs { uint4 a, b; };
  template <bool SH = false>
  static IL_HD void load(Regs& r, const uint8_t* p, const uint8_t*, int) {
    r.a = ld_stream16<SH>(p);
    r.b = ld_stream16<SH>(p + 16);
  }
  static IL_HD void run(const Regs& r, int, int, uint2 q[4], float& s, float& m) {
    q[0] = make_uint2(r.a.x, r.a.y); q[1] = make_uint2(r.a.z, r.a.w);
    q[2] = make_uint2(r.b.x, r.b.y); q[3] = make_uint2(r.b.z, r.b.w);
    s = 1.f; m = 0.f;
  }
  static IL_HD float4 cvt(uint2 q) {
    const float2 f0 = h2x2f(q.x), f1 = h2x2f(q.y);
    return make_float4(f0.x, f0.y, f1.x, f1.y);
  }
};

template <> struct QT<GGMLType::BF16> : QTFloat<2> {
  using Quarter = uint2;
  struct Regs { uint4 a, b; };
  template <bool SH = false>
  static IL_HD void load(Regs& r, const uint8_t* p, const uint8_t*, int) {
    r.a = ld_stream16<SH>(p);
    r.b = ld_stream16<SH>(p + 16);
  }
  static IL_HD void run(const Regs& r, int, int, uint2 q[4], float& s, float& m) {
    q[0] = make_uint2(r.a.x, r.a.y); q[1] = make_uint2(r.a.z, r.a.w);
    q[2] = make_uint2(r.b.x, r.b.y); q[3] = make_uint2(r.b.z, r.b.w);
    s = 1.f; m = 0.f;
  }
  static IL_HD float4 cvt(uint2 q) {
    return make_float4(u2f(q.x << 16), u2f(q.x & 0xffff0000u), u2f(q.y << 16), u2f(q.y & 0xffff0000u));
  }
};

template <> struct QT<GGMLType::F32> : QTFloat<4> {
  using Quarter = uint4;
  struct Regs { uint4 a, b, c, d; };
  template <bool SH = false>
  static IL_HD void load(Regs& r, const uint8_t* p, const uint8_t*, int) {
    r.a = ld_stream16<SH>(p);
    r.b = ld_stream16<SH>(p + 16);
    r.c = ld_stream16<SH>(p + 32);
    r.d = ld_stream16<SH>(p + 48);
  }
  static IL_HD void run(const Regs& r, int, int, uint4 q[4], float& s, float& m) {
    q[0] = r.a; q[1] = r.b; q[2] = r.c; q[3] = r.d;
    s = 1.f; m = 0.f;
  }
  static IL_HD float4 cvt(uint4 q) {
    return make_float4(u2f(q.x), u2f(q.y), u2f(q.z), u2f(q.w));
  }
};

// ---------------------------------------------------------------------------------------------
// Simple entry points
// ---------------------------------------------------------------------------------------------

// Decodes unit `sub` of block `blk` of row `row`: out[16 j + e] is element run_offset(sub, j) + e of the
// block, j < RUNS. Bit-exact with ggml's dequantize_row (and so with inferlab's CPU dequantize_row).
template <GGMLType T>
IL_HD void dequant_unit(const QView& v, int64_t row, int64_t blk, int sub, float* out) {
  using Q = QT<T>;
  typename Q::Regs r;
  Q::load(r, Q::payload(v, row, blk), Q::side(v, row, blk), sub);
#pragma unroll
  for (int j = 0; j < Q::RUNS; ++j) {
    typename Q::Quarter q[4];
    float s, m;
    Q::run(r, sub, j, q, s, m);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float4 f = Q::cvt(q[i]);
      out[16 * j + 4 * i + 0] = Q::IS_FLOAT ? f.x : scale_add(s, f.x, m);
      out[16 * j + 4 * i + 1] = Q::IS_FLOAT ? f.y : scale_add(s, f.y, m);
      out[16 * j + 4 * i + 2] = Q::IS_FLOAT ? f.z : scale_add(s, f.z, m);
      out[16 * j + 4 * i + 3] = Q::IS_FLOAT ? f.w : scale_add(s, f.w, m);
    }
  }
}

// One element W[row, col] (slow; for gathers of a few rows, e.g. embeddings). Float types need k % 16 == 0
// for the unit-based paths but this function reads float types directly and works for any k.
template <GGMLType T>
IL_HD float dequant_element(const QView& v, int64_t row, int64_t col) {
  using Q = QT<T>;
  if constexpr (T == GGMLType::F32) {
    return reinterpret_cast<const float*>(v.pay)[row * v.k + col];
  } else if constexpr (T == GGMLType::F16) {
    return h2f(reinterpret_cast<const uint16_t*>(v.pay)[row * v.k + col]);
  } else if constexpr (T == GGMLType::BF16) {
    return u2f((uint32_t)reinterpret_cast<const uint16_t*>(v.pay)[row * v.k + col] << 16);
  } else {
    const int64_t blk = col / Q::QK;
    const int e = (int)(col % Q::QK);
    // Find the unit and run holding element e.
    for (int sub = 0; sub < Q::LPB; ++sub) {
      for (int j = 0; j < Q::RUNS; ++j) {
        const int o = Q::run_offset(sub, j);
        if (e >= o && e < o + 16) {
          typename Q::Regs r;
          Q::load(r, Q::payload(v, row, blk), Q::side(v, row, blk), sub);
          typename Q::Quarter q[4];
          float s, m;
          Q::run(r, sub, j, q, s, m);
          const int i = (e - o) >> 2;
          const float4 f = Q::cvt(i == 0 ? q[0] : i == 1 ? q[1] : i == 2 ? q[2] : q[3]);
          const int c = (e - o) & 3;
          const float x = c == 0 ? f.x : c == 1 ? f.y : c == 2 ? f.z : f.w;
          return scale_add(s, x, m);
        }
      }
    }
    return 0.f;
  }
}

// ---------------------------------------------------------------------------------------------
// Host helpers
// ---------------------------------------------------------------------------------------------

// Device view of a CUDA QWeight (float types: layout 0; quantized: layout 1, checked by the caller).
inline QView make_qview(const QWeight& w) {
  QView v;
  v.n = w.n;
  v.k = w.k;
  v.pay = static_cast<const uint8_t*>(w.data.data());
  const bool is_float = is_float_type(w.type);
  if (is_float) {
    v.nb = w.k / 16;
  } else {
    v.nb = w.k / ggml_type_traits((int32_t)w.type)->block_size;
    v.side = v.pay + split_side_offset(w.type, w.n, w.k);
    v.sst = split_side_stride(w.type, w.k);
  }
  return v;
}

template <GGMLType T> using QTypeTag = std::integral_constant<GGMLType, T>;

// Calls f(QTypeTag<T>{}) for the runtime type t (one of the 13 matmul types); throws NotSupportedError
// otherwise. Use in launchers: dispatch_qtype(w.type, [&](auto tag) { kernel<decltype(tag)::value><<<...>>>(...); });
template <class F>
void dispatch_qtype(GGMLType t, F&& f) {
  switch (t) {
    case GGMLType::F32: f(QTypeTag<GGMLType::F32>{}); return;
    case GGMLType::F16: f(QTypeTag<GGMLType::F16>{}); return;
    case GGMLType::BF16: f(QTypeTag<GGMLType::BF16>{}); return;
    case GGMLType::Q4_0: f(QTypeTag<GGMLType::Q4_0>{}); return;
    case GGMLType::Q4_1: f(QTypeTag<GGMLType::Q4_1>{}); return;
    case GGMLType::Q5_0: f(QTypeTag<GGMLType::Q5_0>{}); return;
    case GGMLType::Q5_1: f(QTypeTag<GGMLType::Q5_1>{}); return;
    case GGMLType::Q8_0: f(QTypeTag<GGMLType::Q8_0>{}); return;
    case GGMLType::Q2_K: f(QTypeTag<GGMLType::Q2_K>{}); return;
    case GGMLType::Q3_K: f(QTypeTag<GGMLType::Q3_K>{}); return;
    case GGMLType::Q4_K: f(QTypeTag<GGMLType::Q4_K>{}); return;
    case GGMLType::Q5_K: f(QTypeTag<GGMLType::Q5_K>{}); return;
    case GGMLType::Q6_K: f(QTypeTag<GGMLType::Q6_K>{}); return;
    default: break;
  }
  const GGMLTypeTraits* tr = ggml_type_traits((int32_t)t);
  throw NotSupportedError(str_cat("CUDA kernels do not support GGML type ", tr ? tr->name : "unknown"));
}

}  // namespace cuda
}  // namespace inferlab
