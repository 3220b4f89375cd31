// Direct tensor-core decode (matmul.cu mmd_kernel): y[N] = W[N, K] . x[K] for one row of x, W in Q4_K,
// Q6_K, Q8_0 or F16. Lane logic per type (Mmd<TY>) and the staging of x.
//
// Why a second tensor-core decode kernel: mmq_kernel (matmul_mma.cuh) streams 20 KB tiles into a
// shared-memory ring and pays, per tile, a block barrier and the issue of 32 bulk copies (~1,000 cycles,
// benchmarks/RESULTS.md); its blocks walk K as one chain of tiles. Here every warp loads its own weight
// bytes from global memory into registers (16-byte streaming loads, Mmd<TY>::DEPTH weight buffers per
// warp, the first ones before the PDL wait) and decodes them in registers: no ring, no barrier between
// the first and the last weight, and a block's K is split over its warps.
//
// Work split. A row tile is 16 rows of W (the mma's M). K is cut into "units" of Mmd<TY>::UK columns; a
// group of warps takes a row tile's units round-robin. A block has one group (two from K = 8192 on, and from
// K = 4096 (Q8_0: 3072) on where the grid walks several row tiles per block: x, staged once per block, then
// serves 32 rows; matmul.cu mmd_tiles), and the grid is at most the blocks that fit on the multiprocessors:
// a block with more row tiles than that walks them, its warps' loads running ahead across tiles (see
// mmd_kernel). Lane (g, t) = (lane / 4, lane % 4) loads bytes of rows g and g + 8 only (its A fragment rows).
//
// Classes (as the folded path of matmul_mma.cuh). With one row of x, B's 8 columns carry "classes": runs of
// weights that share one scale per row. Lane (g, t) gives column g its x values where their class is g and
// zeros elsewhere: its B load reads x or 16 zero halves in shared memory (the address chosen once per
// unit, no masking per mma). For the quantized types a lane's weights belong to classes 2t and 2t + 1 only
// (Q6_K: four classes, in two accumulators), so lane (g, t)'s C fragment (rows g, g + 8; columns 2t, 2t + 1)
// holds exactly its own classes' sums and the lane applies its rows' scales itself. A holds the codes as
// the exact fp16 1024 + s c with s = 1 or 16: a code's bits are masked where they lie (a nibble at bits
// 4..7 gives 16 c) and OR-ed with the exponent, one LOP3 with the masks in registers (MmdLane::k) or one
// PRMT per register, so C = sum (1024 + s c) x over a class; the lane subtracts 1024 (plus s times the type's
// code offset) times the class's sum of x (staged with x) and divides by s, in float32 (s is a power of
// two: exact). F16 needs no classes: every column is the whole dot product.
//
// Virtual k order. Lane t's A registers of row g hold two k-pairs of its own choosing (P0 in a[0], P1 in
// a[2]); its B registers hold x at the same pairs. The mma sums over k, so any pairing works when A and B
// agree within each lane. The pairs that one LOP3 / PRMT gives from a word of 8-bit codes are bytes (0, 2)
// and (1, 3): for the quantized types x is staged with each group of 4 as (x0, x2, x1, x3) (PERM), so one
// 8-byte shared load gives both B registers.
//
// Staged x: fp16, element k at half index mmd_xpos(k) = k + 4 (k / 64) (8 bytes of skew per 128: the four
// distinct addresses of a warp's B load, one per t, fall in different banks for every type's pattern),
// scaled by a power of two when x reaches 2^15 (as mmq_kernel), plus the float32 sums of its 16-element
// groups. x with inf / NaN: the subtraction of the offsets would turn inf into NaN, so the quantized types'
// blocks then take a float32 path (mmd_kernel).
//
// Numerics: A is exact (codes; F16 weights as they are), x is fp16, products are exact and accumulated in
// float32 by the mma; scales and the offset correction are float32. This is at least as precise as the
// mma path of matmul_mma.cuh (whose A carries the scale rounded to fp16).
#pragma once
#include <cstdint>
#include <climits>

#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/matmul_kernels.cuh"

namespace inferlab {
namespace cuda {

constexpr int kMmdRows = 16;      // rows of W per block (mma M)
constexpr int kMmdMaxWarps = 8;   // warps per row tile (fewer when a row has fewer units)
constexpr int kMmdMaxTiles = 2;   // row tiles of kMmdRows per block (mmd_kernel)
constexpr int kMmdMaxSlots = 8;   // super-tiles per block at most (mmd_kernel's grid is sized for it)

// Half index of element k of x in the staged row (k % 4 == 0 for the start of a group of 4).
IL_HD int64_t mmd_xpos(int64_t k) { return k + 4 * (k >> 6); }
IL_HD int mmd_xpos(int k) { return k + 4 * (k >> 6); }  // (32-bit index arithmetic in the kernel's loop)
// Dynamic shared memory of mmd_kernel for K (a multiple of 64): staged x, then its K / 16 float sums.
IL_HD int64_t mmd_smem_bytes(int64_t k) { return 2 * mmd_xpos(k) + 4 * (k / 16); }

// Per type (the specializations below): OK; PERM (x staged with groups of 4 as x0, x2, x1, x3); FLOAT (no
// classes); UK (columns per unit); DEPTH (weight buffers per warp, the default of tune_direct_decode's
// depth); EARLY (the order of mmd_kernel's loads: true, a unit's successor's loads issued once its own bytes
// are in, DEPTH - 1 units ahead; false, a buffer refilled right after it is decoded, DEPTH units ahead; see
// mmd_kernel); Regs (a unit's bytes in registers), lead(Regs) (its first word; EARLY types), Base and
// base() (the lane's addresses of unit 0, computed once and held in registers (mmd_hold): a unit's are these
// plus u times a constant, so the loop does 32-bit offset arithmetic instead of recomputing row * stride in
// 64 bits per unit), load(), compute().
template <GGMLType TY>
struct Mmd {
  static constexpr bool OK = false;
};

#if defined(__CUDACC__)
// Not volatile: a pure function of its operands, so the compiler may schedule it among the decoding.
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// v held in a register: under register pressure ptxas rematerializes cheap values (a constant, row times
// stride) with an instruction at every use, inside the loop; the result of a shuffle it cannot recompute.
// (A shuffle of a constant is folded before ptxas sees it: pass v | MmvArgs::zero for constants.)
__device__ __forceinline__ uint32_t mmd_hold(uint32_t v) { return __shfl_sync(~0u, v, threadIdx.x & 31); }
template <class T>
__device__ __forceinline__ const T* mmd_hold(const T* p) {
  const uint64_t v = reinterpret_cast<uint64_t>(p);
  return reinterpret_cast<const T*>((uint64_t)mmd_hold((uint32_t)v) | ((uint64_t)mmd_hold((uint32_t)(v >> 32)) << 32));
}

// A lane's constants for Mmd<TY>::compute: its (g, t), 16 zero halves in shared memory (B of the lanes
// that feed no class, by address instead of by mask), the mask / fp16-exponent words of the code extraction
// (k[]: constants; ptxas makes (w & m) | e one LOP3 with the mask as its immediate) and float32 exponent
// words held in registers (e[], mmd_hold: with them a 6-bit field becomes a float in one LOP3 and one add).
struct MmdLane {
  int g, t;
  const uint16_t* zeros;
  uint32_t k[5];  // 0x000f000f, 0x00f000f0, 0x64006400, 0x00300030, 0x03000300
  uint32_t e[3];  // 0x4B000000 (2^23), 0x45000000 (2^11), 0x47000000 (2^15)
};

// u2f(b | e) - f(e), b a field within the mantissa of the float with bits e: exact.
__device__ __forceinline__ float mmd_field(uint32_t b, uint32_t e, float fe) { return u2f(b | e) - fe; }

// (a & b) | c in one LOP3.
__device__ __forceinline__ uint32_t lop_and_or(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

// B registers: 4 staged x at half index p (P0, P1 pairs), unmasked.
__device__ __forceinline__ void mmd_b(uint32_t (&b)[2], const uint16_t* p) {
  const uint2 v = *reinterpret_cast<const uint2*>(p);
  b[0] = v.x;
  b[1] = v.y;
}


// Q4_K. Unit: one ggml block (256 columns). Lane t: code bytes qs[16t, 16t + 16) and qs[64 + 16t, +16) of
// rows g, g + 8 (each of the warp's 16-byte loads then reads 64 contiguous bytes of a row: whole sectors),
// and the rows' 16-byte headers (d, dmin, 12 bytes of 6-bit scales and mins). Load L's bytes lie in 32-byte
// chunk c = 2L + t / 2 at offset l = 16 (t % 2) + 4i + e: low nibble column 64c + l (sub-block 2c), high
// nibble 64c + 32 + l (sub-block 2c + 1). Classes: load L's low / high nibbles in accumulator L, columns
// 2t / 2t + 1 (16 columns each: their x sum is one staged 16-element sum). Value d sc q - dmin mn.
template <>
struct Mmd<GGMLType::Q4_K> {
  using Q = QT<GGMLType::Q4_K>;
  static constexpr bool OK = true, PERM = true, FLOAT = false, EARLY = true;
  static constexpr int UK = 256, DEPTH = 2;
  struct Regs { uint4 q[2][2]; uint4 s[2]; };  // [row g, g + 8][load]; headers
  __device__ static uint32_t lead(const Regs& r) { return r.q[0][0].x; }
  struct Base { const uint8_t* p[2]; const uint8_t* s[2]; };  // [row g, g + 8]: payload + 16 t; side
  __device__ static Base base(const QView& v, const int64_t (&row)[2], int t) {
    return {{mmd_hold(Q::payload(v, row[0], 0) + 16 * t), mmd_hold(Q::payload(v, row[1], 0) + 16 * t)},
            {mmd_hold(Q::side(v, row[0], 0)), mmd_hold(Q::side(v, row[1], 0))}};
  }
  // z: 0 (added to every address: see mmd_kernel)
  __device__ static void load(Regs& r, const Base& b, int u, uint32_t z) {
    const uint32_t o = (uint32_t)u * Q::PB + z, os = (uint32_t)u * Q::SB + z;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      r.q[rr][0] = ld_stream16(b.p[rr] + o);
      r.q[rr][1] = ld_stream16(b.p[rr] + o + 64);
      r.s[rr] = ld_ro16(b.s[rr] + os);
    }
  }
  // Low nibbles as 1024 + q, high nibbles masked in place (not shifted) as 1024 + 16 q: one LOP3 per A register
  // (and one shift per word for its bytes 1, 3).
  __device__ static void compute(const Regs& r, const MmdLane& ln, const uint16_t* xs, const float* x16, int u,
                                 float (&y)[2], float (&)[4]) {
    const int g = ln.g, t = ln.t;
    float c[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
    for (int L = 0; L < 2; ++L) {
      const int seg = UK * u + 64 * (2 * L + (t >> 1));  // column of the chunk's first element
      const uint16_t* xb = xs + mmd_xpos(seg) + 16 * (t & 1);
      const uint16_t* xlo = g == 2 * t ? xb : ln.zeros;
      const uint16_t* xhi = g == 2 * t + 1 ? xb + 32 : ln.zeros;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t w0 = word_of(r.q[0][L], i), w1 = word_of(r.q[1][L], i);
        const uint32_t v0 = w0 >> 8, v1 = w1 >> 8;
        uint32_t b[2];
        mmd_b(b, xlo + 4 * i);
        const uint32_t alo[4] = {lop_and_or(w0, ln.k[0], ln.k[2]), lop_and_or(w1, ln.k[0], ln.k[2]),
                                 lop_and_or(v0, ln.k[0], ln.k[2]), lop_and_or(v1, ln.k[0], ln.k[2])};
        mma16816(c[L], alo, b);
        mmd_b(b, xhi + 4 * i);
        const uint32_t ahi[4] = {lop_and_or(w0, ln.k[1], ln.k[2]), lop_and_or(w1, ln.k[1], ln.k[2]),
                                 lop_and_or(v0, ln.k[1], ln.k[2]), lop_and_or(v1, ln.k[1], ln.k[2])};
        mma16816(c[L], ahi, b);
      }
    }
    float X[2][2];  // [load][low, high]: x sums of the lane's 16 columns
#pragma unroll
    for (int L = 0; L < 2; ++L) {
      const int q = (UK * u + 64 * (2 * L + (t >> 1)) + 16 * (t & 1)) / 16;
      X[L][0] = x16[q];
      X[L][1] = x16[q + 2];
    }
    // The lane's classes are sub-blocks j = 4L + 2 (t / 2) + hi: bytes 2 (t / 2) + hi of the 6-bit scale / min
    // words (get_scale_min_k4), both hi at once per word; j >= 4 (L = 1) take their top bits from bytes 0..3.
    const int sh = 16 * (t >> 1);
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const uint4 s = r.s[rr];
      const float2 dd = h2x2f(s.x);  // d, dmin
      const uint32_t A2 = s.y >> sh, B2 = s.z >> sh, C2 = s.w >> sh;
      // [L]: the 6-bit scale / min of the low (bits 0..5) and high (bits 8..13) nibbles' classes
      const uint32_t scp[2] = {A2 & 0x3f3fu, (C2 & 0x0f0fu) | ((A2 >> 2) & 0x3030u)};
      const uint32_t mnp[2] = {B2 & 0x3f3fu, ((C2 >> 4) & 0x0f0fu) | ((B2 >> 2) & 0x3030u)};
      float acc, accm;  // (not 0 + ...: that costs an add, as 0 + -0 is +0)
#pragma unroll
      for (int L = 0; L < 2; ++L) {
        // field -> float without a conversion (mmd_field): bits 0..5 in 2^23 give v; bits 8..13 in 2^11 give
        // v / 16 (the high nibbles' codes enter A times 16), in 2^15 v. For L = 0 the masks of scp / mnp
        // fold into these LOP3s.
        const float sc0 = mmd_field(scp[L] & 0xffu, ln.e[0], 8388608.f);
        const float sc1 = mmd_field(scp[L] & 0xff00u, ln.e[1], 2048.f);
        const float mn0 = mmd_field(mnp[L] & 0xffu, ln.e[0], 8388608.f);
        const float mn1 = mmd_field(mnp[L] & 0xff00u, ln.e[2], 32768.f);
        const float a0 = sc0 * (c[L][2 * rr] - 1024.f * X[L][0]) + sc1 * (c[L][2 * rr + 1] - 1024.f * X[L][1]);
        const float m0 = mn0 * X[L][0] + mn1 * X[L][1];
        acc = L == 0 ? a0 : acc + a0;
        accm = L == 0 ? m0 : accm + m0;
      }
      y[rr] += dd.x * acc - dd.y * accm;
    }
  }
};

// Q6_K. Unit: one ggml block (256 columns). Lane t = (h, lh) = (t / 2, t % 2): of half h, the elements
// 128h + 32j + 16lh + e (j < 4, e < 16): low (j = 0, 1) / high (j = 2, 3) nibbles of ql[64h + 32 (j % 2) +
// 16lh + e], bits 2j, 2j + 1 of qh[32h + 16lh + e]; class j = sub-block 8h + 2j + lh (scale byte lh + 2j of
// scales[8h, 8h + 8)). Classes j = 0, 1 accumulate in c0 (columns 2t, 2t + 1), j = 2, 3 in c1. Value
// d sc (q - 32).
template <>
struct Mmd<GGMLType::Q6_K> {
  using Q = QT<GGMLType::Q6_K>;
  static constexpr bool OK = true, PERM = true, FLOAT = false, EARLY = true;
  static constexpr int UK = 256, DEPTH = 2;
  struct Regs { uint4 lo[2], hi[2], qh[2]; uint2 sc[2]; uint32_t d[2]; };  // per row g, g + 8
  __device__ static uint32_t lead(const Regs& r) { return r.lo[0].x; }
  // [row g, g + 8]: the lane's ql bytes (64 h + 16 lh); side. oh / osc: its qh bytes and the scales of its
  // half, from p.
  struct Base { const uint8_t* p[2]; const uint8_t* s[2]; uint32_t oh, osc; };
  __device__ static Base base(const QView& v, const int64_t (&row)[2], int t) {
    const int h = t >> 1, lh = t & 1, l = 64 * h + 16 * lh;
    return {{mmd_hold(Q::payload(v, row[0], 0) + l), mmd_hold(Q::payload(v, row[1], 0) + l)},
            {mmd_hold(Q::side(v, row[0], 0)), mmd_hold(Q::side(v, row[1], 0))},
            mmd_hold((uint32_t)(128 + 32 * h + 16 * lh - l)), mmd_hold((uint32_t)(192 + 8 * h - l))};
  }
  __device__ static void load(Regs& r, const Base& b, int u, uint32_t z) {
    const uint32_t o = (uint32_t)u * Q::PB + z, os = (uint32_t)u * Q::SB + z;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const uint8_t* p = b.p[rr] + o;
      r.lo[rr] = ld_stream16(p);
      r.hi[rr] = ld_stream16(p + 32);
      r.qh[rr] = ld_stream16(p + b.oh);
      r.sc[rr] = ld_ro8(p + b.osc);
      r.d[rr] = ld_ro2(b.s[rr] + os);
    }
  }
  // Codes in place: classes 0, 1 (low nibbles) as 1024 + q, classes 2, 3 (high nibbles, not shifted) as
  // 1024 + 16 q; the qh bits moved by one shift per (class pair, byte pair); two LOP3 per A register.
  __device__ static void compute(const Regs& r, const MmdLane& ln, const uint16_t* xs, const float* x16, int u,
                                 float (&y)[2], float (&)[4]) {
    const int g = ln.g, t = ln.t;
    float c[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
    const int h = t >> 1, lh = t & 1;
    const int k0 = UK * u + 128 * h + 16 * lh;
    const uint16_t* xb = xs + mmd_xpos(k0 - 16 * lh) + 16 * lh;  // a 64-element segment starts at k0 - 16 lh
    const uint16_t* xj[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) xj[j] = g == 2 * t + (j & 1) ? xb + 32 * j + 4 * (j >> 1) : ln.zeros;
    const uint32_t MLO = ln.k[0], MHI = ln.k[1], E = ln.k[2], H1 = ln.k[3], H16 = ln.k[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint32_t a[4][4];  // [class j][A register]
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        const uint32_t A = word_of(r.lo[rr], i), B = word_of(r.hi[rr], i), H = word_of(r.qh[rr], i);
        const uint32_t A8 = A >> 8, B8 = B >> 8, H4 = H << 4, H2 = H << 2, Hr4 = H >> 4, Hr6 = H >> 6;
        a[0][rr] = lop_and_or(A, MLO, lop_and_or(H4, H1, E));
        a[0][rr + 2] = lop_and_or(A8, MLO, lop_and_or(Hr4, H1, E));
        a[1][rr] = lop_and_or(B, MLO, lop_and_or(H2, H1, E));
        a[1][rr + 2] = lop_and_or(B8, MLO, lop_and_or(Hr6, H1, E));
        a[2][rr] = lop_and_or(A, MHI, lop_and_or(H4, H16, E));
        a[2][rr + 2] = lop_and_or(A8, MHI, lop_and_or(Hr4, H16, E));
        a[3][rr] = lop_and_or(B, MHI, lop_and_or(H2, H16, E));
        a[3][rr + 2] = lop_and_or(B8, MHI, lop_and_or(Hr6, H16, E));
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        uint32_t b[2];
        mmd_b(b, xj[j] + 4 * i);
        mma16816(c[j >> 1], a[j], b);
      }
    }
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const float d = h2f(r.d[rr]);
      float acc;  // (not 0 + ...: that costs an add, as 0 + -0 is +0)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint32_t w = (j >> 1) ? r.sc[rr].y : r.sc[rr].x;  // bytes lh + 2j of scales[8h, 8h + 8)
        const int byte = (lh + 2 * j) & 3;
        const float sc = (float)(int8_t)((w >> (8 * byte)) & 0xffu);
        // classes 2, 3: C = sum (1024 + 16 q) x, so sum (q - 32) x = (C - 1536 X) / 16
        const float v = (j >> 1) ? sc * 0.0625f * (c[1][2 * rr + (j & 1)] - 1536.f * x16[(k0 + 32 * j) / 16])
                                 : sc * (c[0][2 * rr + (j & 1)] - 1056.f * x16[(k0 + 32 * j) / 16]);
        acc = j == 0 ? v : acc + v;
      }
      y[rr] += d * acc;
    }
  }
};

// Q8_0. Unit: 4 ggml blocks (128 columns). Lane t: code bytes [16t, 16t + 16) and [64 + 16t, +16) of the
// unit's 128 (columns 16t + e of block t / 2 and 64 + 16t + e of block 2 + t / 2; 64 contiguous bytes of a
// row per warp load) of rows g, g + 8, and the two blocks' fp16 d. Classes: load L in column 2t + L. Codes to
// fp16 1024 + (q + 128) with byte_perm. Value d q.
template <>
struct Mmd<GGMLType::Q8_0> {
  using Q = QT<GGMLType::Q8_0>;
  static constexpr bool OK = true, PERM = true, FLOAT = false, EARLY = true;
  static constexpr int UK = 128, DEPTH = 4;
  struct Regs { uint4 q[2][2]; uint32_t d[2]; };  // [row][load]; d: [row] = d of block t/2 | d of 2 + t/2 << 16
  __device__ static uint32_t lead(const Regs& r) { return r.q[0][0].x; }
  struct Base { const uint8_t* p[2]; const uint8_t* s[2]; };  // [row g, g + 8]: payload + 16 t; d of block t / 2
  __device__ static Base base(const QView& v, const int64_t (&row)[2], int t) {
    return {{mmd_hold(Q::payload(v, row[0], 0) + 16 * t), mmd_hold(Q::payload(v, row[1], 0) + 16 * t)},
            {mmd_hold(Q::side(v, row[0], t >> 1)), mmd_hold(Q::side(v, row[1], t >> 1))}};
  }
  __device__ static void load(Regs& r, const Base& b, int u, uint32_t z) {
    const uint32_t o = (uint32_t)u * (4 * Q::PB) + z, os = (uint32_t)u * (4 * Q::SB) + z;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const uint8_t* p = b.p[rr] + o;
      r.q[rr][0] = ld_stream16(p);
      r.q[rr][1] = ld_stream16(p + 64);
      const uint8_t* sd = b.s[rr] + os;
      r.d[rr] = ld_ro2(sd) | (ld_ro2(sd + 2 * Q::SB) << 16);
    }
  }
  __device__ static void compute(const Regs& r, const MmdLane& ln, const uint16_t* xs, const float* x16, int u,
                                 float (&y)[2], float (&)[4]) {
    const int g = ln.g, t = ln.t;
    float c[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int L = 0; L < 2; ++L) {
      const uint16_t* xb = xs + mmd_xpos(UK * u + 64 * L) + 16 * t;
      const uint16_t* xl = g == 2 * t + L ? xb : ln.zeros;  // B by address: zeros unless column 2t + L is g
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t w0 = word_of(r.q[0][L], i) ^ 0x80808080u, w1 = word_of(r.q[1][L], i) ^ 0x80808080u;
        uint32_t b[2];
        mmd_b(b, xl + 4 * i);
        const uint32_t a[4] = {byte_perm(w0, 0x64646464u, 0x4240u), byte_perm(w1, 0x64646464u, 0x4240u),
                               byte_perm(w0, 0x64646464u, 0x4341u), byte_perm(w1, 0x64646464u, 0x4341u)};
        mma16816(c, a, b);
      }
    }
    const int q = (UK * u + 16 * t) / 16;
    const float X0 = x16[q], X1 = x16[q + 4];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const float2 d = h2x2f(r.d[rr]);
      y[rr] += d.x * (c[2 * rr] - 1152.f * X0) + d.y * (c[2 * rr + 1] - 1152.f * X1);
    }
  }
};

// F16 (layout 0, [n, k] halves). Unit: 64 columns. Lane t: columns 8t + [0, 8) and 32 + 8t + [0, 8) of rows
// g, g + 8 (64 contiguous bytes of a row per warp load), in natural order; no classes: B is x in every lane
// and C, kept over all units, is the dot product in every column.
template <>
struct Mmd<GGMLType::F16> {
  static constexpr bool OK = true, PERM = false, FLOAT = true, EARLY = false;
  static constexpr int UK = 64, DEPTH = 3;
  struct Regs { uint4 q[2][2]; };  // [row][load]
  struct Base { const uint8_t* p[2]; };  // [row g, g + 8]: column 8 t
  __device__ static Base base(const QView& v, const int64_t (&row)[2], int t) {
    return {{mmd_hold(v.pay + 2 * (row[0] * v.k + 8 * t)), mmd_hold(v.pay + 2 * (row[1] * v.k + 8 * t))}};
  }
  __device__ static void load(Regs& r, const Base& b, int u, uint32_t z) {
    const uint32_t o = (uint32_t)u * (2 * UK) + z;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      r.q[rr][0] = ld_stream16(b.p[rr] + o);
      r.q[rr][1] = ld_stream16(b.p[rr] + o + 64);
    }
  }
  __device__ static void compute(const Regs& r, const MmdLane& ln, const uint16_t* xs, const float*, int u,
                                 float (&)[2], float (&c)[4]) {
    const int t = ln.t;
    const uint16_t* xb = xs + mmd_xpos(UK * u) + 8 * t;
#pragma unroll
    for (int m = 0; m < 4; ++m) {  // load m / 2, words 2 (m % 2), +1: columns 32 (m / 2) + 8t + 4 (m % 2) + [0, 4)
      const uint2 x = *reinterpret_cast<const uint2*>(xb + 32 * (m >> 1) + 4 * (m & 1));
      const uint32_t b[2] = {x.x, x.y};
      const uint32_t a[4] = {word_of(r.q[0][m >> 1], 2 * (m & 1)), word_of(r.q[1][m >> 1], 2 * (m & 1)),
                             word_of(r.q[0][m >> 1], 2 * (m & 1) + 1), word_of(r.q[1][m >> 1], 2 * (m & 1) + 1)};
      mma16816(c, a, b);
    }
  }
};
#endif  // __CUDACC__

}  // namespace cuda
}  // namespace inferlab
