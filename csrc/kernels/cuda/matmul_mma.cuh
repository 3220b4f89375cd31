// Tensor-core decode kernel (matmul.cu mmq_kernel): y[T, N] = x[T, K] . W[N, K]^T for T <= 8, with W
// quantized (any GGUF block type) or F16. Lane logic as IL_HD functions, so that it also compiles as host
// C++ and is checked without a GPU (tests/cuda_emu/mmv_emu.cpp).
//
// Why: the float32 decode kernels spend about 7 instructions per weight (decode to float32, one FMA per
// weight per row of x), which caps them far below the memory bandwidth for 4- to 8-bit weights. Here a
// weight costs about 1.5 instructions of fp16 decoding, and the multiply is one mma.m16n8k16 per 8 weights
// of a lane, the same for any T <= 8 (x rows are the mma's 8 columns).
//
// Numerics (the precision class of the prefill path, see matmul.cuh):
//   * W is decoded to fp16: a code byte c becomes the exact fp16 1024 + c (byte_perm with 0x64), minus
//     1024 + OFF exactly, times the unit's scale s rounded to fp16, plus its min m rounded to fp16, with one
//     rounding (fma). F16 weights are used as they are.
//   * x is staged in shared memory as fp16, scaled per row of x by a power of two 2^-e when its largest
//     magnitude reaches 2^15 (exact; undone on the float32 result), so large activations never overflow.
//     Inf / NaN in x pass through.
//   * Products are exact, accumulation is float32 (mma), the partial sums of the warps are float32.
//
// Work split. A block owns kMmqRows = 16 rows of W (the mma's M) and walks K in chunks of MmqTile<TY>::CB
// ggml blocks. The 16 rows' bytes of a chunk (payloads and sides, as laid out in the split layout) are
// copied into a shared-memory ring of `stages` tiles by the copy engine (cp.async.bulk, completing on one
// mbarrier per tile): a block keeps up to `stages` chunks of weight bytes in flight without holding them
// in registers, which is what a matrix-vector product needs to reach memory bandwidth (at about 1 us of
// memory latency, 4 TB/s needs ~4 MB in flight over the chip: 30 KB per multiprocessor). Lane l is
// (g, tig) = (l / 4, l % 4) in the mma's fragment layout: it decodes rows g and g + 8 of the tile, and the
// four lanes of a quad decode four consecutive units (dequant.cuh) of those rows: warp step s covers units
// 4 s + tig. Steps of a chunk are dealt to the warps round-robin (split K); once every warp is done with a
// tile, the warps refill it with the chunk `stages` further on. x is staged once per block (after the ring's
// first tiles are requested, as it comes from the previous kernel); with clusters (MmvArgs::cluster), each
// block of a cluster of consecutive row blocks stages 1 / cluster of x into the shared memory of all of
// them, so x is read from L2 once per cluster.
// For quarter i (elements 4i..4i+3) of run j of its unit, a lane's A fragment holds
//   a[0] = W[g][e .. e+1], a[1] = W[g+8][e .. e+1], a[2] = W[g][e+2 .. e+3], a[3] = W[g+8][e+2 .. e+3]
// and its B fragment  b[0] = x[g][e .. e+1], b[1] = x[g][e+2 .. e+3]   (row T - 1 for g >= T: column g
// of the product is never stored),
// with e the element index of the quarter: the mma's k index (2 tig + {0, 1, 8, 9}) maps to the same four
// elements of x and W in every lane with that tig, so the product sums exactly the right pairs. Lane
// (g, tig) ends up holding y[2 tig + {0, 1}][row g, g + 8] (C fragment); the warps' sums meet in shared memory.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/half.h"
#include "kernels/cuda/matmul_kernels.cuh"

namespace inferlab {
namespace cuda {

constexpr int kMmqRows = 16;              // rows of W per block (mma M)
constexpr int kMmqMaxWarps = 8;           // warps per block (fewer when a row has few steps)
constexpr int kMmqStageTarget = 20 * 1024;  // bytes of one ring tile (at least; see MmqTile)
constexpr int kMmqRingDefault = 64 * 1024;  // bytes of the ring (tiles in flight) per block by default
constexpr int kMmqPad = 8;                // halves of padding per staged row of x (spreads banks over rows)
constexpr int kMmqSmemMax = 96 * 1024;    // staged x per launch; more rows of x run in chunks
constexpr int kMmqMaxT = 8;               // rows of x per launch (mma N)
constexpr int kMmqMaxCluster = 8;         // blocks per cluster sharing the staging of x, at most

template <GGMLType TY>
constexpr bool mmq_supported() {
  return !QT<TY>::IS_FLOAT || TY == GGMLType::F16;
}
// Row stride (halves) of the staged x, and its bytes for t rows (rounded to 128: the ring follows it).
IL_HD int64_t mmq_ldx(int64_t k) { return k + kMmqPad; }
// Staged x: t rows of fp16 (stride mmq_ldx), then, for T = 1, the float32 sums of its 16-element groups
// (k / 16 of them, see the folded path below); the ring follows, 128-byte aligned.
IL_HD int64_t mmq_xsum_off(int t, int64_t k) { return (t * mmq_ldx(k) * 2 + 127) / 128 * 128; }
IL_HD int64_t mmq_x_bytes(int t, int64_t k) { return mmq_xsum_off(t, k) + (k / 4 + 127) / 128 * 128; }

// ---------------------------------------------------------------------------------------------
// Packed fp16 pairs (uint32: element 0 in the low half). Device: half2 intrinsics. Host: exact float math
// rounded to fp16 (through float, which is exact for these products and sums of fp16 values up to one
// rounding of the float result: good enough for the emulator's tolerance).
// ---------------------------------------------------------------------------------------------
IL_HD uint32_t h2_bcast(float v) {
#ifdef __CUDA_ARCH__
  const __half2 h = __float2half2_rn(v);
  return *reinterpret_cast<const uint32_t*>(&h);
#else
  const uint32_t h = f32_to_fp16(v);
  return h | (h << 16);
#endif
}

#ifndef __CUDA_ARCH__
inline float h_lo(uint32_t a) { return fp16_to_f32((uint16_t)(a & 0xffffu)); }
inline float h_hi(uint32_t a) { return fp16_to_f32((uint16_t)(a >> 16)); }
inline uint32_t h_pack(double lo, double hi) {
  return (uint32_t)f32_to_fp16((float)lo) | ((uint32_t)f32_to_fp16((float)hi) << 16);
}
#endif

IL_HD uint32_t h2_sub(uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
  const __half2 r = __hsub2(*reinterpret_cast<const __half2*>(&a), *reinterpret_cast<const __half2*>(&b));
  return *reinterpret_cast<const uint32_t*>(&r);
#else
  return h_pack((double)h_lo(a) - h_lo(b), (double)h_hi(a) - h_hi(b));
#endif
}

IL_HD uint32_t h2_mul(uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
  const __half2 r = __hmul2(*reinterpret_cast<const __half2*>(&a), *reinterpret_cast<const __half2*>(&b));
  return *reinterpret_cast<const uint32_t*>(&r);
#else
  return h_pack((double)h_lo(a) * h_lo(b), (double)h_hi(a) * h_hi(b));
#endif
}

IL_HD uint32_t h2_fma(uint32_t a, uint32_t b, uint32_t c) {
#ifdef __CUDA_ARCH__
  const __half2 r = __hfma2(*reinterpret_cast<const __half2*>(&a), *reinterpret_cast<const __half2*>(&b),
                            *reinterpret_cast<const __half2*>(&c));
  return *reinterpret_cast<const uint32_t*>(&r);
#else
  return h_pack((double)h_lo(a) * h_lo(b) + h_lo(c), (double)h_hi(a) * h_hi(b) + h_hi(c));
#endif
}

// fp16 (1024 + byte 0, 1024 + byte 1) and (1024 + byte 2, 1024 + byte 3) of a word of codes: exact.
IL_HD uint32_t codes01_h2(uint32_t q) { return byte_perm(q, 0x64646464u, 0x5140u); }
IL_HD uint32_t codes23_h2(uint32_t q) { return byte_perm(q, 0x64646464u, 0x5342u); }

// A fragments of the 4 mmas of run j of unit `sub` (one per quarter i), rows g (r0) and g + 8 (r1).
template <GGMLType TY>
IL_HD void mmq_a_run(const typename QT<TY>::Regs& r0, const typename QT<TY>::Regs& r1, int sub, int j,
                     uint32_t (&a)[4][4]) {
  using Q = QT<TY>;
  static_assert(mmq_supported<TY>(), "mmq: quantized types and F16 only");
  if constexpr (Q::IS_FLOAT) {
    uint2 q0[4], q1[4];
    float s, m;
    Q::run(r0, sub, j, q0, s, m);
    Q::run(r1, sub, j, q1, s, m);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      a[i][0] = q0[i].x; a[i][1] = q1[i].x; a[i][2] = q0[i].y; a[i][3] = q1[i].y;
    }
  } else {
    constexpr int OFF = (int)(Q::MAGIC_OFF - kMagic);
    uint32_t q0[4], q1[4];
    float s0, m0, s1, m1;
    Q::run(r0, sub, j, q0, s0, m0);
    Q::run(r1, sub, j, q1, s1, m1);
    // fp16 1024 + OFF: exact (OFF <= 128).
    const uint32_t off2 = (uint32_t)(0x6400u + OFF) * 0x10001u;
    const uint32_t S0 = h2_bcast(s0), S1 = h2_bcast(s1);
    uint32_t M0 = 0, M1 = 0;
    if constexpr (Q::HAS_MIN) {
      M0 = h2_bcast(m0);
      M1 = h2_bcast(m1);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t v0l = h2_sub(codes01_h2(q0[i]), off2), v0h = h2_sub(codes23_h2(q0[i]), off2);
      const uint32_t v1l = h2_sub(codes01_h2(q1[i]), off2), v1h = h2_sub(codes23_h2(q1[i]), off2);
      if constexpr (Q::HAS_MIN) {
        a[i][0] = h2_fma(v0l, S0, M0); a[i][1] = h2_fma(v1l, S1, M1);
        a[i][2] = h2_fma(v0h, S0, M0); a[i][3] = h2_fma(v1h, S1, M1);
      } else {
        a[i][0] = h2_mul(v0l, S0); a[i][1] = h2_mul(v1l, S1);
        a[i][2] = h2_mul(v0h, S0); a[i][3] = h2_mul(v1h, S1);
      }
    }
  }
}

// Shared-memory tile of one chunk: CB ggml blocks of each of the 16 rows. CB: a multiple of 32 / LPB (a
// chunk is a whole number of rounds of 8 warp steps) and of 16 / gcd(SB, 16) (a row's sides in the chunk
// start 16-byte aligned in the split layout), as large as fits kMmqStageTarget. Row strides are padded so
// that the two rows a quarter-warp reads (g, g + 1) start 64 bytes apart modulo 128 (16 for F16, whose
// lanes read 32 bytes each): 16-byte loads of a quarter-warp then hit distinct banks.
// Integer path (T = 1, see below): whether a type has it, and the padding of its tile rows (MmqTile).
template <GGMLType TY>
struct MmqI8 {
  static constexpr bool OK = false;
  static constexpr int E = 32, PAD = 64;
};

constexpr int mmq_gcd(int a, int b) { return b == 0 ? a : mmq_gcd(b, a % b); }
constexpr int mmq_lcm(int a, int b) { return a / mmq_gcd(a, b) * b; }
constexpr int mmq_round(int v, int m) { return (v + m - 1) / m * m; }

// I8: the tile of the integer path's kernel, whose lanes read a row's bytes in another pattern (only its
// row padding differs, MmqI8<TY>::PAD).
template <GGMLType TY, bool I8 = false>
struct MmqTile {
  using Q = QT<TY>;
  static constexpr int ALIGN = mmq_lcm(32 / Q::LPB, Q::SB > 0 ? 16 / mmq_gcd(Q::SB, 16) : 1);
  static constexpr int FIT = kMmqStageTarget / (kMmqRows * (Q::PB + Q::SB)) / ALIGN * ALIGN;
  static constexpr int CB = FIT > ALIGN ? FIT : ALIGN;             // ggml blocks per chunk
  static constexpr int STEPS = CB * Q::LPB / 4;                    // warp steps per chunk
  static constexpr int PS = CB * Q::PB + (Q::IS_FLOAT ? 16 : I8 ? MmqI8<TY>::PAD : 64);  // payload row stride
  static constexpr int SS0 = mmq_round(CB * Q::SB, 16);
  static constexpr int SS = SS0 > 0 && SS0 % 128 == 0 ? SS0 + 64 : SS0;  // side row stride (bytes)
  static constexpr int SIDE = kMmqRows * PS;                       // offset of the sides
  static constexpr int BYTES = mmq_round(SIDE + kMmqRows * SS, 128);
  static_assert(CB * Q::PB % 128 == 0, "payload rows of a tile must be whole 128-byte lines");
  static_assert(STEPS % kMmqMaxWarps == 0, "a chunk is whole rounds of warp steps");
};

// Chunks of a row and blocks in chunk c.
template <GGMLType TY>
IL_HD int64_t mmq_chunks(const QView& w) { return (w.nb + MmqTile<TY>::CB - 1) / MmqTile<TY>::CB; }
template <GGMLType TY>
IL_HD int mmq_chunk_blocks(const QView& w, int64_t c) {
  return (int)imin64(MmqTile<TY>::CB, w.nb - c * MmqTile<TY>::CB);
}

// Bulk copy `part` (0: payloads, 1: sides) of tile row r (global row row0 + r < n) of chunk c: source,
// offset in the tile and bytes (a multiple of 16; 0: nothing to copy). Sides are copied rounded up to 16
// bytes, which stays inside the row's padded side stride (split_side_stride).
template <GGMLType TY, class G = MmqTile<TY>>
IL_HD int mmq_copy(const QView& w, int64_t row0, int r, int64_t c, int part, const uint8_t*& src, int& dst) {
  using Q = QT<TY>;
  const int cnt = mmq_chunk_blocks<TY>(w, c);
  const int64_t row = row0 + r;
  if (part == 0) {
    src = w.pay + (row * w.nb + c * G::CB) * Q::PB;
    dst = r * G::PS;
    return cnt * Q::PB;
  }
  if (Q::SB == 0) return 0;
  src = w.side + row * w.sst + c * G::CB * Q::SB;
  dst = G::SIDE + r * G::SS;
  return mmq_round(cnt * Q::SB, 16);
}

// Warp steps of a chunk of nbc blocks, and the unit of lane `tig` in step sl of the chunk: block bl of
// the chunk and sub-unit sub; false past the chunk's (the row's) end.
template <GGMLType TY>
IL_HD int mmq_chunk_steps(int nbc) { return (nbc * QT<TY>::LPB + 3) / 4; }
template <GGMLType TY>
IL_HD bool mmq_lane_unit(int sl, int tig, int nbc, int& bl, int& sub) {
  const int u = 4 * sl + tig;
  bl = u / QT<TY>::LPB;
  sub = u - bl * QT<TY>::LPB;
  return bl < nbc;
}

// Warp w of W issues the copies of tile rows w, w + W, w + 2 W, ...: lane l copies part l % 2 of tile row
// mmq_copy_row(w, W, l) (nothing when that is >= kMmqRows), and the warp announces their bytes on the tile's
// mbarrier (one arrival per warp).
IL_HD int mmq_copy_row(int warp, int W, int lane) { return warp + W * (lane >> 1); }
// Bytes of warp `warp`'s copies of chunk c.
template <GGMLType TY>
IL_HD int mmq_warp_chunk_bytes(const QView& w, int64_t row0, int64_t c, int warp, int W) {
  const int cnt = mmq_chunk_blocks<TY>(w, c);
  int bytes = 0;
  for (int r = warp; r < kMmqRows && row0 + r < w.n; r += W)
    bytes += cnt * QT<TY>::PB + mmq_round(cnt * QT<TY>::SB, 16);
  return bytes;
}

// Lane loads of unit `sub` of block bl (within the chunk) for tile rows g and g + 8, from the tile.
template <GGMLType TY, class G = MmqTile<TY>>
IL_HD void mmq_tile_load(typename QT<TY>::Regs (&regs)[2], const uint8_t* tile, int g, int bl, int sub) {
  using Q = QT<TY>;
  Q::template load<true>(regs[0], tile + g * G::PS + bl * Q::PB, tile + G::SIDE + g * G::SS + bl * Q::SB, sub);
  Q::template load<true>(regs[1], tile + (g + 8) * G::PS + bl * Q::PB,
                         tile + G::SIDE + (g + 8) * G::SS + bl * Q::SB, sub);
}

// Power-of-two scale for a row of x with largest magnitude amax: x * 2^-e < 2^15 (e >= 0); returns 2^-e.
// Non-finite amax: 1 (inf / NaN pass through).
IL_HD float mmq_x_scale(float amax) {
  if (!(amax <= 3.0e38f)) return 1.f;
  const uint32_t ex = (f2u(amax) >> 23) & 0xffu;  // amax < 2^(ex - 126)
  const int e = (int)ex - 126 - 15;
  return e > 0 ? u2f((uint32_t)(127 - e) << 23) : 1.f;
}

// 4 x elements to fp16 (scaled): two packed pairs.
IL_HD uint2 mmq_x4_h(float v0, float v1, float v2, float v3, float scale) {
#ifdef __CUDA_ARCH__
  const __half2 a = __floats2half2_rn(v0 * scale, v1 * scale), b = __floats2half2_rn(v2 * scale, v3 * scale);
  return make_uint2(*reinterpret_cast<const uint32_t*>(&a), *reinterpret_cast<const uint32_t*>(&b));
#else
  return make_uint2(h_pack(v0 * scale, v1 * scale), h_pack(v2 * scale, v3 * scale));
#endif
}

// Output (row, x row) held by lane `lane`, C element c (see the header comment).
IL_HD int mmq_c_row(int lane, int c) { return (lane >> 2) + 8 * (c >> 1); }
IL_HD int mmq_c_t(int lane, int c) { return 2 * (lane & 3) + (c & 1); }

// ---------------------------------------------------------------------------------------------
// One row of x (T = 1): folded scales. With one row of x, seven of the mma's eight columns would carry
// nothing. Instead, column c collects the products of "class" c of a group of FSTEPS warp steps: a set of
// runs that share one scale s and min m per row. A holds the unscaled codes as fp16 1024 + code (exact, one
// byte_perm per pair, no scale arithmetic per weight); lane (g, tig)'s B is x where the run of its unit is
// of class g and zeros elsewhere, so that after the group
//   C[row][c] = sum over the elements of class c of (1024 + code) x.
// Each lane then folds its two columns (classes 2 tig, 2 tig + 1) for rows g and g + 8:
//   y[row] += s C + (m - s (OFF + 1024)) X_c,    X_c = sum of the staged fp16 x over the class,
// which is sum (s (code - OFF) + m) x. The scales are decoded once per class and row instead of once per
// run and row, and the decoding per weight drops from three instructions per pair to one.
// Numerics: the products are exact and C, X_c are float32 sums of the same fp16 x, so 1024 X_c cancels
// the offset in C up to float32 rounding of magnitudes ~2^10 |x| (about 2^-13 relative to the result at
// worst, inside the fp16 class of this kernel). Used only for finite x (inf - inf would give NaN where the
// product is infinite); other x, and T > 1, take the per-run scaled path above.
//
// MmqFold<TY>: OK (the type has the folded path), FSTEPS (steps per group), cls(s, tig, j): class of run j
// of lane tig's unit in step s of the group; rep(c): a (step, tig, run) of class c; NRUN: runs per class,
// consecutive 16-element groups starting at rep's run.
// Only Q4_K / Q5_K have it: it pays where decoding a run's scale is costly (6-bit packed sub-block scales
// and mins), which it then does once per sub-block and row instead of once per run and row. Measured on
// an H200 (benchmarks/tune_decode.py --fold=-1,0, T = 1, 2026-12-02): Q4_K +0.9 / +2.1 / +3.2 points of
// the copy ceiling at Phi-3 o / Llama-3 o / Llama-3 down. Tried and dropped: Q6_K with each run its own
// class (one step per group; its inner loop 30.1 -> 26.4 instructions per mma) and Q8_0 with each block a
// class (4 classes per two steps; 22.0 -> 18.5) lost 0.4 to 1.3 points at the same shapes, with lean
// type-specific folds; an earlier generic fold for Q6_K / Q8_0 / Q4_0 lost 1.5 to 4.4. Fewer instructions
// per mma do not pay there: the group's mma chain must drain before its fold.
template <GGMLType TY>
struct MmqFold {
  static constexpr bool OK = false;
};
// Q4_K / Q5_K: a group is a whole super-block (two steps) and a class one of its 8 sub-blocks (32
// elements: run j of units 2 c' and 2 c' + 1 is sub-block 2 c' + j).
template <GGMLType TY>
struct MmqFoldSubBlocks {
  static constexpr bool OK = true;
  static constexpr int FSTEPS = 2, NRUN = 2;
  static IL_HD int cls(int s, int tig, int j) { return 4 * s + 2 * (tig >> 1) + j; }
  static IL_HD void rep(int c, int& s, int& tig, int& j) {
    s = c >> 2;
    tig = 2 * ((c >> 1) & 1);
    j = c & 1;
  }
};
template <> struct MmqFold<GGMLType::Q4_K> : MmqFoldSubBlocks<GGMLType::Q4_K> {};
template <> struct MmqFold<GGMLType::Q5_K> : MmqFoldSubBlocks<GGMLType::Q5_K> {};

// A fragments of run j of unit `sub`, unscaled: fp16 1024 + code (exact), rows g (r0) and g + 8 (r1).
template <GGMLType TY>
IL_HD void mmq_a_codes(const typename QT<TY>::Regs& r0, const typename QT<TY>::Regs& r1, int sub, int j,
                       uint32_t (&a)[4][4]) {
  using Q = QT<TY>;
  uint32_t q0[4], q1[4];
  float s, m;  // unused here (the fold decodes them once per class)
  Q::run(r0, sub, j, q0, s, m);
  Q::run(r1, sub, j, q1, s, m);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    a[i][0] = codes01_h2(q0[i]); a[i][1] = codes01_h2(q1[i]);
    a[i][2] = codes23_h2(q0[i]); a[i][3] = codes23_h2(q1[i]);
  }
}

// Element offset (within the chunk) of run j of lane tig's unit in step sl, and whether lane (g, tig)
// feeds x to it (its class is g); false for units past the chunk's nbc blocks.
template <GGMLType TY>
IL_HD bool mmq_fold_b(int sl, int s, int tig, int j, int g, int nbc, int& e) {
  int bl, sub;
  if (!mmq_lane_unit<TY>(sl, tig, nbc, bl, sub)) return false;
  e = bl * QT<TY>::QK + QT<TY>::run_offset(sub, j);
  return MmqFold<TY>::cls(s, tig, j) == g;
}

// Sum of the 4 fp16 values of a staged x item (as mmq_x4_h packs them), in float32.
IL_HD float mmq_x4_sum(uint2 h) {
#ifdef __CUDA_ARCH__
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&h.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&h.y));
  return (a.x + a.y) + (b.x + b.y);
#else
  return (h_lo(h.x) + h_hi(h.x)) + (h_lo(h.y) + h_hi(h.y));
#endif
}

// Lane (g, tig) after group p of a chunk (nbc blocks): folds its C fragment c (the group's class sums;
// element 2 r + h: row g + 8 r, class 2 tig + h) into yacc[r]. xsum: sums of the staged x's 16-element
// groups from the chunk's first element; a class's x sum X is an aligned pair of them (NRUN = 2 groups from
// an even index).
// The lane's two classes are runs 0 and 1 of one unit (rep(2 tig + h) = (tig / 2, 2 (tig % 2), h)), so it
// reads that unit's side (d, dmin and the packed 6-bit scales and mins: Q4_K and Q5_K share the format)
// once per row and decodes only the two sub-blocks' scale and min (the inner loop: 22.6 -> 19.8
// instructions per mma). Per row:
//   y += d (sc_0 (C_0 - OFF1024 X_0) + sc_1 (C_1 - OFF1024 X_1)) - dmin (mn_0 X_0 + mn_1 X_1).
template <GGMLType TY>
IL_HD void mmq_fold(float (&yacc)[2], const float (&c)[4], const uint8_t* tile, const float* xsum, int p,
                    int nbc, int g, int tig) {
  using Q = QT<TY>;
  using F = MmqFold<TY>;
  using G = MmqTile<TY>;
  constexpr float OFF1024 = (Q::MAGIC_OFF - kMagic) + 1024.0f;
  static_assert(F::FSTEPS == 2 && F::NRUN == 2 && Q::SB == 16, "mmq_fold: the sub-block classes of Q4_K / Q5_K");
  int s, t, j, bl, sub;
  F::rep(2 * tig, s, t, j);  // j = 0; class 2 tig + 1 is run 1 of the same unit
  if (!mmq_lane_unit<TY>(p * F::FSTEPS + s, t, nbc, bl, sub)) return;  // classes past the row's end
  float X[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float2 v = *reinterpret_cast<const float2*>(xsum + ((bl * Q::QK + Q::run_offset(sub, h)) >> 4));
    X[h] = v.x + v.y;
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const uint4 sd = ld_ro16<true>(tile + G::SIDE + (g + 8 * r) * G::SS + bl * Q::SB);  // d | dmin << 16, scales
    float ys = 0.f, ym = 0.f;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float sc, mn;
      scale_min_k4(sd.y, sd.z, sd.w, 2 * (sub >> 1) + h, sc, mn);
      ys += sc * (c[2 * r + h] - OFF1024 * X[h]);
      ym += mn * X[h];
    }
    yacc[r] += h2f(sd.x) * ys - h2f(sd.x >> 16) * ym;
  }
}

// ---------------------------------------------------------------------------------------------
// One row of x (T = 1), integer path (Q8_0, Q4_K, Q6_K): mma.m16n8k32 on int8 codes and x as two int8 parts.
//
// x. Each 32-element group of x is quantized to 16-bit integers, v = rint(x / step) with step = max|x| /
// 32512 over the group, and v = 256 hi + lo is split into two int8 parts (hi = (v + 128) >> 8 in
// [-127, 127], lo in [-128, 127]). Each element moves by at most step / 2 (plus the float32 rounding of
// x / step, under 1% of a step): about 2^-16 of the group's largest magnitude, where fp16 rounding moves
// it by up to 2^-11 of itself; a group whose largest magnitude is below 2^-96 is taken as zero. Staged
// (one thread per group, mmq_i8_quant32): hi, lo, the group's step and the sums of its v (mmq_i8_*_off).
// W. A holds the codes as 8-bit integers, no decoding beyond unpacking bits: Q8_0 its int8 values (signed
// A); Q4_K the byte masked to the class's nibble in place (q or 16 q, unsigned A); Q6_K 4 q (unsigned A).
// Classes. A group is 4 classes of E consecutive elements (one scale per row each: Q8_0 a block, Q4_K a
// sub-block of 32, Q6_K a sub-block of 16) and takes E / 8 mmas. In mma i, lane (g, tig)'s A holds bytes
// 8 i .. 8 i + 7 of class tig, rows g and g + 8 (a[0] / a[1]: bytes 8 i .. 8 i + 3 of rows g / g + 8 =
// k 4 tig .. 4 tig + 3; a[2] / a[3]: bytes 8 i + 4 .. 8 i + 7 = k 16 + 4 tig ..), and its B the same 8
// elements of x (part g % 2: column g is class g / 2, hi or lo) where tig == g / 2, zeros elsewhere. So
//   C[row][2 c + h] = sum over class c of code * part h,
// and lane (g, tig) ends the group holding class tig's two sums for rows g and g + 8. Their integer
// combination 256 C0 + C1 (exact: |C| < 2^20) is the class's dot product with v; the lane folds it:
//   y[row] += scale(row, class) * step * (256 C0 + C1)
// in float32, less Q4_K's min term (dmin mn times the class's x sum) and Q6_K's code offset (128 times the
// class's sum of v). Per 128 weights and row: 1 mma, ~1 shared load of codes and the fold, against 8 mmas and
// ~16 decoding instructions per pair of fp16 weights on the fp16 path.
// ---------------------------------------------------------------------------------------------
constexpr float kI8Max = 32512.0f;  // largest |v| (127 * 256): hi = (v + 128) >> 8 stays in [-127, 127]
constexpr float kI8Tiny = 0x1p-96f;  // groups with max |x| below: zero (step and 1 / step stay normal floats)

// Staged x of the integer path (T = 1): offsets in bytes from the start of the x region: hi[K], lo[K]
// (int8), step[K / 32], sum[K / 32] (float32: step * the group's sum of v) and s16[K / 16] (int32: the sum
// of v over each 16 elements, for Q6_K's code offset).
IL_HD int64_t mmq_i8_lo_off(int64_t k) { return k; }
IL_HD int64_t mmq_i8_step_off(int64_t k) { return 2 * k; }
IL_HD int64_t mmq_i8_sum_off(int64_t k) { return 2 * k + k / 8; }
IL_HD int64_t mmq_i8_s16_off(int64_t k) { return 2 * k + k / 4; }
IL_HD int64_t mmq_i8_x_bytes(int64_t k) { return (2 * k + k / 2 + 127) / 128 * 128; }
// Bytes of the x region of a launch: the fp16 staging (T rows) or, for the integer path's kernel, the larger
// of its int8 staging and the fp16 staging of one row (its fallback for non-finite x).
IL_HD int64_t mmq_x_region(bool i8, int t, int64_t k) {
  const int64_t f = mmq_x_bytes(t, k);
  return i8 && mmq_i8_x_bytes(k) > f ? mmq_i8_x_bytes(k) : f;
}

// Quantization of a group with largest magnitude amax: 1 / step (0: the group is zero) and step.
IL_HD float mmq_i8_inv(float amax) { return amax >= kI8Tiny && amax <= 3.0e38f ? kI8Max / amax : 0.f; }
IL_HD float mmq_i8_step(float amax) { return amax >= kI8Tiny && amax <= 3.0e38f ? amax / kI8Max : 0.f; }
// A 32-group x[0..31] (1 / step = inv) as its int8 parts, packed 4 per word (hi[w], lo[w]: elements
// 4 w .. 4 w + 3), and the sum of its v. v = rint(x inv) comes from one fma with 1.5 * 2^23, which leaves
// 2^22 + v in the low 23 bits of the float (|x inv| <= 32512 (1 + 2^-23)^2 < 32512.5, so |v| <= 32512): lo is
// byte 0 of those bits (v mod 256), hi byte 1 of the bits plus 128 ((v + 128) >> 8), and the bits summed
// modulo 2^32 less 16 (1.5 * 2^23 as bits) give the sum of 16 v exactly (|sum| < 2^20).
// s16[h]: the sum of the v of elements 16 h .. 16 h + 15.
IL_HD void mmq_i8_quant32(const float (&x)[32], float inv, uint32_t (&hi)[8], uint32_t (&lo)[8], int (&s16)[2]) {
  constexpr float kMagic15 = 12582912.0f;  // 1.5 * 2^23, bits 0x4B400000
  uint32_t s = 0;
#pragma unroll
  for (int w = 0; w < 8; ++w) {
    if (w == 4) {
      s16[0] = (int)(s - 16u * 0x4B400000u);
      s = 0;
    }
    uint32_t u[4], t[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
#ifdef __CUDA_ARCH__
      u[e] = f2u(__fmaf_rn(x[4 * w + e], inv, kMagic15));
#else
      u[e] = f2u(std::fma(x[4 * w + e], inv, kMagic15));
#endif
      t[e] = u[e] + 128u;
      s += u[e];
    }
    lo[w] = byte_perm(byte_perm(u[0], u[1], 0x0040u), byte_perm(u[2], u[3], 0x0040u), 0x5410u);
    hi[w] = byte_perm(byte_perm(t[0], t[1], 0x0051u), byte_perm(t[2], t[3], 0x0051u), 0x5410u);
  }
  s16[1] = (int)(s - 16u * 0x4B400000u);
}

// The lane's view of the staged x (shared memory).
struct MmqI8X {
  const int8_t* hi;
  const int8_t* lo;
  const float* step;
  const float* sum;
  const int* s16;
};

// Rotation left by n & 31 (one funnel shift on the device).
IL_HD uint32_t rotl32(uint32_t x, int n) {
#ifdef __CUDA_ARCH__
  return __funnelshift_l(x, x, (unsigned)n);
#else
  n &= 31;
  return n ? (x << n) | (x >> (32 - n)) : x;
#endif
}

// The A fragments of 4 mmas from 32 consecutive code bytes at r0 (row g) and r0 + 8 rows (row g + 8), each
// word masked with m (bytes 8 i .. 8 i + 7 feed mma i, see above).
template <class G>
IL_HD void mmq_i8_a32(const uint8_t* r0, uint32_t m, uint32_t (&a)[4][4]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint4 u = ld_ro16<true>(r0 + 16 * h), v = ld_ro16<true>(r0 + 8 * G::PS + 16 * h);
    a[2 * h][0] = u.x & m; a[2 * h][1] = v.x & m; a[2 * h][2] = u.y & m; a[2 * h][3] = v.y & m;
    a[2 * h + 1][0] = u.z & m; a[2 * h + 1][1] = v.z & m; a[2 * h + 1][2] = u.w & m; a[2 * h + 1][3] = v.w & m;
  }
}

// Per type: E, PAD, UA (A unsigned: mma .u8.s8), a_frags<G>(tile, g, ce, a) (the A fragments of the class at
// element ce of the chunk, E / 8 mmas, rows g and g + 8) and fold<G>(yacc, ci, tile, x, qe, ce, g) (ci: the
// class's integer dot products 256 C0 + C1 for rows g and g + 8; qe: its first element in x).

// Q8_0: a class is a block (E = 32); its bytes are the int8 values. Rows padded to 16 bytes modulo 32: the
// quarter-warp's lanes read 32 bytes of 4 consecutive blocks in rows g and g + 1, which then fall into 8
// distinct 16-byte bank groups.
template <>
struct MmqI8<GGMLType::Q8_0> {
  static constexpr bool OK = true, UA = false;
  static constexpr int E = 32, PAD = 16;
  template <class G>
  static IL_HD void a_frags(const uint8_t* tile, int g, int ce, uint32_t (&a)[E / 8][4]) {
    mmq_i8_a32<G>(tile + g * G::PS + ce, 0xFFFFFFFFu, a);  // block ce / 32, 32 bytes per block
  }
  // y[row] += d step ci.
  template <class G>
  static IL_HD void fold(float (&yacc)[2], const int (&ci)[2], const uint8_t* tile, const MmqI8X& x, int64_t qe,
                         int ce, int g) {
    const float st = x.step[qe >> 5];
#pragma unroll
    for (int r = 0; r < 2; ++r)
      yacc[r] += h2f(ld_ro2<true>(tile + G::SIDE + (g + 8 * r) * G::SS + (ce >> 5) * 2)) * (st * (float)ci[r]);
  }
};

// Q4_K: a class is a sub-block of 32 (2 per 32 bytes of qs: low and high nibbles); value d sc q - dmin mn.
// A is the byte masked to the class's nibble, in place: q, or 16 q for the high nibble (unsigned, < 256),
// which the fold scales back.
template <>
struct MmqI8<GGMLType::Q4_K> {
  static constexpr bool OK = true, UA = true;
  static constexpr int E = 32, PAD = 64;
  template <class G>
  static IL_HD void a_frags(const uint8_t* tile, int g, int ce, uint32_t (&a)[E / 8][4]) {
    const int sb = (ce >> 5) & 7;
    mmq_i8_a32<G>(tile + g * G::PS + (ce >> 8) * 128 + 32 * (sb >> 1), 0x0F0F0F0Fu << (4 * (sb & 1)), a);
  }
  // y[row] += d sc step ci / 16^(sb odd) - dmin mn X (X: the class's x sum, step * sum of v).
  template <class G>
  static IL_HD void fold(float (&yacc)[2], const int (&ci)[2], const uint8_t* tile, const MmqI8X& x, int64_t qe,
                         int ce, int g) {
    const int sb = (ce >> 5) & 7;
    const float st = x.step[qe >> 5] * ((sb & 1) ? 0.0625f : 1.f), xs = x.sum[qe >> 5];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint4 sd = ld_ro16<true>(tile + G::SIDE + (g + 8 * r) * G::SS + (ce >> 8) * 16);  // d, dmin, scales
      float sc, mn;
      scale_min_k4(sd.y, sd.z, sd.w, sb, sc, mn);
      yacc[r] += h2f(sd.x) * (sc * (st * (float)ci[r])) - h2f(sd.x >> 16) * (mn * xs);
    }
  }
};

// Q6_K: a class is a sub-block of 16 with its int8 scale. A = 4 q (unsigned, < 256): the ql nibble rotated
// to bits 2..5 and the qh pair to bits 6..7 of each byte (two funnel shifts and two logic ops per 4 codes);
// the fold takes off the code offset: sum (4 q - 128) v = ci - 128 s16.
template <>
struct MmqI8<GGMLType::Q6_K> {
  static constexpr bool OK = true, UA = true;
  static constexpr int E = 16, PAD = 64;
  template <class G>
  static IL_HD void a_frags(const uint8_t* tile, int g, int ce, uint32_t (&a)[E / 8][4]) {
    const int e0 = ce & 255, h = e0 >> 7, e = e0 & 127;
    const int rl = 2 - 4 * (e >> 6), rh = 6 - 2 * (e >> 5);  // rotations: ql nibble -> bits 2..5, qh pair -> 6..7
    const uint8_t* p0 = tile + g * G::PS + (ce >> 8) * QT<GGMLType::Q6_K>::PB;
    uint32_t w[2][4];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint8_t* p = p0 + r * 8 * G::PS;
      const uint4 ql = ld_ro16<true>(p + 64 * h + (e & 63)), qh = ld_ro16<true>(p + 128 + 32 * h + (e & 31));
#pragma unroll
      for (int i = 0; i < 4; ++i)
        w[r][i] = (rotl32(word_of(ql, i), rl) & 0x3C3C3C3Cu) | (rotl32(word_of(qh, i), rh) & 0xC0C0C0C0u);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      a[i][0] = w[0][2 * i]; a[i][1] = w[1][2 * i]; a[i][2] = w[0][2 * i + 1]; a[i][3] = w[1][2 * i + 1];
    }
  }
  // y[row] += d sc / 4 step (ci - 128 s16).
  template <class G>
  static IL_HD void fold(float (&yacc)[2], const int (&ci)[2], const uint8_t* tile, const MmqI8X& x, int64_t qe,
                         int ce, int g) {
    const int bl = ce >> 8;
    const float st = 0.25f * x.step[qe >> 5];
    const int off = 128 * x.s16[qe >> 4];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint8_t* p = tile + (g + 8 * r) * G::PS + bl * QT<GGMLType::Q6_K>::PB;
      const float sc = (float)(int8_t)p[192 + ((ce & 255) >> 4)];
      const float d = h2f(ld_ro2<true>(tile + G::SIDE + (g + 8 * r) * G::SS + bl * 2));
      yacc[r] += d * sc * (st * (float)(ci[r] - off));
    }
  }
};

// Groups of a chunk of nbc blocks, the first element (within the chunk) of lane tig's class in group p,
// and whether that class lies inside the chunk's blocks.
template <GGMLType TY>
IL_HD int mmq_i8_groups(int nbc) { return (nbc * QT<TY>::QK + 4 * MmqI8<TY>::E - 1) / (4 * MmqI8<TY>::E); }
template <GGMLType TY>
IL_HD int mmq_i8_class(int p, int tig) { return (4 * p + tig) * MmqI8<TY>::E; }
template <GGMLType TY>
IL_HD bool mmq_i8_valid(int ce, int nbc) { return ce / QT<TY>::QK < nbc; }
// Where lane (g, tig) reads its B bytes for the class at ce (of the chunk starting at element kb0): its x
// part when it feeds the class (tig == g / 2, inside the chunk), else `zeros` (E zero bytes).
IL_HD const int8_t* mmq_i8_b(const MmqI8X& x, const int8_t* zeros, int64_t kb0, int ce, bool valid, int g, int tig) {
  return valid && tig == (g >> 1) ? ((g & 1) ? x.lo : x.hi) + kb0 + ce : zeros;
}

}  // namespace cuda
}  // namespace inferlab
