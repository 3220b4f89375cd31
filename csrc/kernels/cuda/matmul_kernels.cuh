// Building blocks of the fused decode matmul kernel (matmul.cu), written as IL_HD functions so that the
// lane logic also compiles as host C++ and can be checked without a GPU (tests/cuda_emu/mmv_emu.cpp).
//
// Kernel shape: blocks of W <= kMmvWarps warps; warp w of block b owns rows kMmvRows * (W * b + w) + [0, kMmvRows).
// x (converted to float32) is staged in shared memory in passes of `kc` elements, together with the sums
// of its 16-element runs (used by types with a min / offset term). A warp step covers BPS = 32 / LPB
// consecutive ggml blocks: lane l decodes unit (l % LPB) of block (step * BPS + l / LPB) for each of its
// rows and accumulates float32 dot products against x.
//
// Shared-memory bank conflicts: a lane reads its 16-element x run as four 16-byte quarters, in the order
// rotated by rot = (lane >> 1) & 3. In every unit layout of dequant.cuh, even and odd lanes of a
// quarter-warp read runs whose 16-element index has different parity, and the four even (odd) lanes have
// distinct rot, so the 8 lanes of a quarter-warp hit 8 distinct 16-byte bank groups. (LPB == 1 types with
// two runs per unit visit them in opposite order on odd lanes to get that parity split.)
#pragma once
#include <cstdint>

#include "kernels/cuda/dequant.cuh"

namespace inferlab {
namespace cuda {

constexpr int kMmvWarps = 8;   // warps per block (at most; fewer for small n, see matmul.cu mmv_warps)
constexpr int kMmvRows = 2;    // output rows per warp
constexpr int kMmvThreads = kMmvWarps * 32;
constexpr int kMmvRowsPerBlock = kMmvWarps * kMmvRows;
constexpr int kMmvSmemBudget = 64 * 1024;  // bytes of staged x per pass (soft: a pass holds >= one step)
constexpr int kMmvSmemMax = 100 * 1024;    // opt-in dynamic shared memory limit of the decode kernels

enum XKind : int { kXF32 = 0, kXF16 = 1, kXBF16 = 2 };

struct MmvArgs {
  QView w;                // [n, k]
  const void* x;          // [t, k]
  int x_kind;             // XKind
  bool x_vec;             // x is 16-byte aligned: vector loads when staging
  void* y;                // [t, n]
  bool y_f16;             // y is fp16 (else float32)
  const float* bias;      // [n] or nullptr
  int t;                  // rows of x (<= the kernel's TMAX)
  int kc;                 // elements of x per pass = row stride of the shared x buffer (multiple of 16)
  int64_t spc;            // warp steps per pass
  int stages = 1;         // tensor-core kernel: tiles in its shared-memory ring
  bool fold = false;      // tensor-core kernel: folded scales when t == 1 and x is finite (matmul_mma.cuh)
  int cluster = 1;        // tensor-core kernel: blocks per cluster sharing the staging of x
  uint32_t zero = 0;      // always 0, unknown to the compiler (mmd_kernel: a load that must wait for another)
  int mmd_tiles = 1;      // direct decode kernel: row tiles per block (mmd_kernel)
};

IL_HD int64_t imin64(int64_t a, int64_t b) { return a < b ? a : b; }

// Host: pass size and steps per pass for a kernel of type traits Q and t rows of x.
template <class Q>
inline void mmv_plan(MmvArgs& a) {
  constexpr int BPS = 32 / Q::LPB;
  constexpr int64_t STEP_ELEMS = (int64_t)BPS * Q::QK;
  const int64_t K = a.w.k;
  const int64_t nsteps = (a.w.nb + BPS - 1) / BPS;
  // Shared floats per x element and row: the value plus 1/16 of a run sum.
  const int64_t fit = (int64_t)kMmvSmemBudget * 16 / (4 * 17 * (int64_t)a.t);
  if (K <= fit) {
    a.kc = (int)K;
    a.spc = nsteps > 0 ? nsteps : 1;
  } else {
    const int64_t kc = fit / STEP_ELEMS * STEP_ELEMS;
    a.kc = (int)(kc > STEP_ELEMS ? kc : STEP_ELEMS);
    a.spc = a.kc / STEP_ELEMS;
  }
}
inline size_t mmv_smem_bytes(const MmvArgs& a) { return (size_t)a.t * a.kc * 4 + (size_t)a.t * (a.kc / 16) * 4; }

// 16 consecutive elements of x starting at element `off` (a multiple of 16), as float.
IL_HD void load_x16(const MmvArgs& a, int64_t off, float v[16]) {
  if (a.x_kind == kXF32) {
    const uint8_t* p = static_cast<const uint8_t*>(a.x) + off * 4;
    uint32_t u[16];
    if (a.x_vec) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint4 q = ld_ro16(p + 16 * i);
        u[4 * i] = q.x; u[4 * i + 1] = q.y; u[4 * i + 2] = q.z; u[4 * i + 3] = q.w;
      }
    } else {
#pragma unroll
      for (int i = 0; i < 16; ++i) u[i] = ld_ro4(p + 4 * i);
    }
#pragma unroll
    for (int i = 0; i < 16; ++i) v[i] = u2f(u[i]);
  } else {
    const uint8_t* p = static_cast<const uint8_t*>(a.x) + off * 2;
    uint32_t u[8];
    if (a.x_vec) {
      const uint4 u0 = ld_ro16(p), u1 = ld_ro16(p + 16);
      u[0] = u0.x; u[1] = u0.y; u[2] = u0.z; u[3] = u0.w; u[4] = u1.x; u[5] = u1.y; u[6] = u1.z; u[7] = u1.w;
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) u[i] = ld_ro2(p + 4 * i) | (ld_ro2(p + 4 * i + 2) << 16);
    }
    if (a.x_kind == kXF16) {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float2 f = h2x2f(u[i]);
        v[2 * i] = f.x;
        v[2 * i + 1] = f.y;
      }
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        v[2 * i] = u2f(u[i] << 16);
        v[2 * i + 1] = u2f(u[i] & 0xffff0000u);
      }
    }
  }
}

// 4 consecutive elements of x starting at element `off` (a multiple of 4), as float.
IL_HD void load_x4(const MmvArgs& a, int64_t off, float v[4]) {
  if (a.x_kind == kXF32) {
    const uint8_t* p = static_cast<const uint8_t*>(a.x) + off * 4;
    if (a.x_vec) {
      const uint4 q = ld_ro16(p);
      v[0] = u2f(q.x); v[1] = u2f(q.y); v[2] = u2f(q.z); v[3] = u2f(q.w);
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) v[i] = u2f(ld_ro4(p + 4 * i));
    }
    return;
  }
  const uint8_t* p = static_cast<const uint8_t*>(a.x) + off * 2;
  uint32_t u0, u1;
  if (a.x_vec) {
    const uint2 q = ld_ro8(p);
    u0 = q.x; u1 = q.y;
  } else {
    u0 = ld_ro2(p) | (ld_ro2(p + 2) << 16);
    u1 = ld_ro2(p + 4) | (ld_ro2(p + 6) << 16);
  }
  if (a.x_kind == kXF16) {
    const float2 f0 = h2x2f(u0), f1 = h2x2f(u1);
    v[0] = f0.x; v[1] = f0.y; v[2] = f1.x; v[3] = f1.y;
  } else {
    v[0] = u2f(u0 << 16); v[1] = u2f(u0 & 0xffff0000u); v[2] = u2f(u1 << 16); v[3] = u2f(u1 & 0xffff0000u);
  }
}

// Staging work item i of a pass over x[:, c0 : c0 + len): i in [0, t * len / 16). Writes the 16 values
// to xs [t][kc] and their sum to xsum [t][kc / 16].
IL_HD void stage_x_item(const MmvArgs& a, int i, float* xs, float* xsum, int64_t c0, int len) {
  const int runs = len / 16;
  const int t = i / runs;
  const int e = (i - t * runs) * 16;
  float v[16];
  load_x16(a, (int64_t)t * a.w.k + c0 + e, v);
  float4* dst = reinterpret_cast<float4*>(xs + t * a.kc + e);
  float s = 0.f;
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    dst[q] = make_float4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
    s += (v[4 * q] + v[4 * q + 1]) + (v[4 * q + 2] + v[4 * q + 3]);
  }
  xsum[t * (a.kc / 16) + e / 16] = s;
}

// v'[i] = v[(i + rot) & 3] for a runtime rot (keeps the array in registers).
template <class Q>
IL_HD void rotate4(Q v[4], int rot) {
  if (rot & 1) {
    const Q t = v[0];
    v[0] = v[1]; v[1] = v[2]; v[2] = v[3]; v[3] = t;
  }
  if (rot & 2) {
    Q t = v[0]; v[0] = v[2]; v[2] = t;
    t = v[1]; v[1] = v[3]; v[3] = t;
  }
}

// Rotation of a lane's quarter order (see the header comment).
IL_HD int mmv_rot(int lane) { return (lane >> 1) & 3; }
// Which run of its unit a lane processes at position j.
template <class Q>
IL_HD int mmv_run_of(int lane, int j) { return (Q::LPB == 1 && Q::RUNS == 2) ? (j ^ (lane & 1)) : j; }
// Element offset (within the staged pass, row t = 0) of the x quarter a lane reads at run position j,
// quarter position i of warp step `step`.
template <class Q>
IL_HD int mmv_x_offset(int lane, int64_t step, int64_t c0, int j, int i) {
  constexpr int BPS = 32 / Q::LPB;
  const int64_t b = step * BPS + lane / Q::LPB;
  return (int)(b * Q::QK - c0) + Q::run_offset(lane % Q::LPB, mmv_run_of<Q>(lane, j)) + 4 * ((i + mmv_rot(lane)) & 3);
}

// Issues the loads of warp step `step` for this lane's R rows (nothing for lanes past the row end).
template <GGMLType TY, int R>
IL_HD void mmv_load_step(typename QT<TY>::Regs (&regs)[R], const MmvArgs& a, const int64_t (&rows)[R], int64_t step,
                         int lane) {
  using Q = QT<TY>;
  constexpr int BPS = 32 / Q::LPB;
  const int64_t b = step * BPS + lane / Q::LPB;
  if (b < a.w.nb) {
#pragma unroll
    for (int r = 0; r < R; ++r) Q::load(regs[r], Q::payload(a.w, rows[r], b), Q::side(a.w, rows[r], b), lane % Q::LPB);
  }
}

// Accumulates this lane's share of warp step `step` into acc[r][t]. xs / xsum hold the pass starting at
// element c0 (the pass containing the step). T is the number of x rows (<= TMAX).
template <GGMLType TY, int TMAX>
IL_HD void mmv_compute_step(const typename QT<TY>::Regs (&cur)[kMmvRows], const MmvArgs& a, int lane, int64_t step,
                            int64_t c0, const float* xs, const float* xsum, int T, float (&acc)[kMmvRows][TMAX]) {
  using Q = QT<TY>;
  using Quarter = typename Q::Quarter;
  constexpr int BPS = 32 / Q::LPB;
  const int64_t b = step * BPS + lane / Q::LPB;
  if (b >= a.w.nb) return;
  const int sub = lane % Q::LPB;
  const int rot = mmv_rot(lane);
  const int KC = a.kc;
  const int cb = (int)(b * Q::QK - c0);  // block start within the staged pass
  typename Q::Regs rg[kMmvRows];
#pragma unroll
  for (int r = 0; r < kMmvRows; ++r) {
    rg[r] = cur[r];
    if constexpr (Q::ROT_REGS) Q::rotate_regs(rg[r], rot);  // once per unit
  }
#pragma unroll
  for (int j = 0; j < Q::RUNS; ++j) {
    const int jj = mmv_run_of<Q>(lane, j);
    const int e = cb + Q::run_offset(sub, jj);
    Quarter q[kMmvRows][4];
    float sc[kMmvRows], mn[kMmvRows];
#pragma unroll
    for (int r = 0; r < kMmvRows; ++r) {
      Q::run(rg[r], sub, jj, q[r], sc[r], mn[r]);
      if constexpr (!Q::ROT_REGS) rotate4(q[r], rot);  // once per run
    }
    float dot[kMmvRows][TMAX];
#pragma unroll
    for (int r = 0; r < kMmvRows; ++r)
#pragma unroll
      for (int t = 0; t < TMAX; ++t) dot[r][t] = 0.f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int ii = (i + rot) & 3;
      float4 wv[kMmvRows];
#pragma unroll
      for (int r = 0; r < kMmvRows; ++r) wv[r] = Q::cvt(q[r][i]);
#pragma unroll
      for (int t = 0; t < TMAX; ++t) {
        if (TMAX > 1 && t >= T) break;
        const float4 xv = *reinterpret_cast<const float4*>(xs + t * KC + e + 4 * ii);
#pragma unroll
        for (int r = 0; r < kMmvRows; ++r) {
          float d = dot[r][t];
          d = fmaf(xv.x, wv[r].x, d);
          d = fmaf(xv.y, wv[r].y, d);
          d = fmaf(xv.z, wv[r].z, d);
          d = fmaf(xv.w, wv[r].w, d);
          dot[r][t] = d;
        }
      }
    }
#pragma unroll
    for (int t = 0; t < TMAX; ++t) {
      if (TMAX > 1 && t >= T) break;
      const float xsm = Q::HAS_MIN ? xsum[t * (KC / 16) + e / 16] : 0.f;
#pragma unroll
      for (int r = 0; r < kMmvRows; ++r) {
        if (Q::IS_FLOAT) {
          acc[r][t] += dot[r][t];
        } else {
          acc[r][t] = fmaf(sc[r], dot[r][t], acc[r][t]);
          if (Q::HAS_MIN) acc[r][t] = fmaf(mn[r], xsm, acc[r][t]);
        }
      }
    }
  }
}


// ============================================================================================
// Split-K decode kernel (matmul.cu mmvk_kernel), used for small T (see matmul.cu use_split_k).
//
// Block of W <= kMmvkMaxWarps warps owns kMmvkRows consecutive rows; warp w takes warp steps w, w + W,
// w + 2 W, ... of those rows (a warp step is the same BPS-block slice as above), so every row is spread
// over W warps and the grid has n / kMmvkRows blocks: enough warps in flight to cover HBM latency even
// for 3072-row matrices. x is read straight from global memory (it is small and shared by every block,
// so it stays in L1 / L2) instead of being staged in shared memory: no staging pass, no barrier before
// the first multiply. Each warp keeps kMmvkBufs - 1 steps of W loads in flight while it multiplies one.
// The partial sums of the W warps meet in shared memory at the end.
// ============================================================================================
constexpr int kMmvkRows = 2;       // rows per block
constexpr int kMmvkMaxWarps = 4;   // warps per block (fewer when a row has fewer warp steps)
constexpr int kMmvkBufs = 3;       // register buffers per warp: steps in flight + the one being multiplied

// Accumulates this lane's share of warp step `step` into acc[r][t], reading x [T, K] from global memory.
template <GGMLType TY, int TMAX, int R>
IL_HD void mmvk_compute_step(const typename QT<TY>::Regs (&cur)[R], const MmvArgs& a, int lane, int64_t step, int T,
                             float (&acc)[R][TMAX]) {
  using Q = QT<TY>;
  using Quarter = typename Q::Quarter;
  constexpr int BPS = 32 / Q::LPB;
  const int64_t b = step * BPS + lane / Q::LPB;
  if (b >= a.w.nb) return;
  const int sub = lane % Q::LPB;
  const int64_t K = a.w.k;
#pragma unroll
  for (int j = 0; j < Q::RUNS; ++j) {
    const int64_t e = b * Q::QK + Q::run_offset(sub, j);
    // x first: its loads overlap the decoding below.
    float xv[TMAX][16];
#pragma unroll
    for (int t = 0; t < TMAX; ++t) {
      if (TMAX > 1 && t >= T) break;
      load_x16(a, t * K + e, xv[t]);
    }
    float4 wv[R][4];
    float sc[R], mn[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      Quarter q[4];
      Q::run(cur[r], sub, j, q, sc[r], mn[r]);
#pragma unroll
      for (int i = 0; i < 4; ++i) wv[r][i] = Q::cvt(q[i]);
    }
#pragma unroll
    for (int t = 0; t < TMAX; ++t) {
      if (TMAX > 1 && t >= T) break;
      float xsm = 0.f;
      if constexpr (Q::HAS_MIN) {
#pragma unroll
        for (int i = 0; i < 4; ++i) xsm += (xv[t][4 * i] + xv[t][4 * i + 1]) + (xv[t][4 * i + 2] + xv[t][4 * i + 3]);
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float d0 = 0.f, d1 = 0.f;  // two chains for ILP
#pragma unroll
        for (int i = 0; i < 4; i += 2) {
          d0 = fmaf(xv[t][4 * i], wv[r][i].x, d0);
          d0 = fmaf(xv[t][4 * i + 1], wv[r][i].y, d0);
          d0 = fmaf(xv[t][4 * i + 2], wv[r][i].z, d0);
          d0 = fmaf(xv[t][4 * i + 3], wv[r][i].w, d0);
          d1 = fmaf(xv[t][4 * i + 4], wv[r][i + 1].x, d1);
          d1 = fmaf(xv[t][4 * i + 5], wv[r][i + 1].y, d1);
          d1 = fmaf(xv[t][4 * i + 6], wv[r][i + 1].z, d1);
          d1 = fmaf(xv[t][4 * i + 7], wv[r][i + 1].w, d1);
        }
        const float dot = d0 + d1;
        if (Q::IS_FLOAT) {
          acc[r][t] += dot;
        } else {
          acc[r][t] = fmaf(sc[r], dot, acc[r][t]);
          if (Q::HAS_MIN) acc[r][t] = fmaf(mn[r], xsm, acc[r][t]);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// int8 activations (opt-in, MatmulParams::x_int8; quantized weights only). Like llama.cpp's int8 paths,
// but x is quantized per 16-element run, inside the kernel, by the lane that uses the run:
//   d = max|x_i| / 127,   q_i = round(x_i / d) in [-127, 127]      (|x_i - d q_i| <= d / 2)
// and a run of W contributes  s * d * sum_i (c_i - OFF) q_i  +  m * d * sum_i q_i, with the integer sums
// done exactly by dp4a (unsigned weight codes c times signed q). NaN in a run makes d NaN, so NaN
// propagates as in the float32 path. Rows per block and buffers per warp differ from the float32 kernel:
// the quantization of an x run is shared by the block's rows, so more rows make it cheaper.
// ---------------------------------------------------------------------------------------------
constexpr int kMmvkRowsI8 = 4;
constexpr int kMmvkBufsI8 = 2;

// max with NaN propagation (PTX max.NaN; fmaxf would drop a NaN).
IL_HD float fmax_nan(float a, float b) {
#ifdef __CUDA_ARCH__
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return (a != a || b != b) ? NAN : (a > b ? a : b);
#endif
}
// sum_i a.byte_i (unsigned) * b.byte_i (signed) + c.
IL_HD int dp4a_us(uint32_t a, uint32_t b, int c) {
#ifdef __CUDA_ARCH__
  int r;
  asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
#else
  for (int i = 0; i < 4; ++i) c += (int)((a >> (8 * i)) & 0xffu) * (int)(int8_t)((b >> (8 * i)) & 0xffu);
  return c;
#endif
}
// Small int (|v| < 2^22) to float without a conversion instruction.
IL_HD float small_i2f(int v) { return u2f(0x4B400000u + (uint32_t)v) - 12582912.0f; }

// Quantizes one 16-element run: q (4 words of 4 signed bytes), d, and sum_i q_i.
IL_HD void quantize_run16(const float v[16], uint32_t q[4], float& d, int& qsum) {
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < 16; ++i) amax = fmax_nan(amax, v[i] < 0.f ? -v[i] : v[i]);
  const float inv = amax > 0.f ? 127.0f / amax : 0.f;  // NaN amax: inv 0, d NaN
  d = amax * (1.0f / 127.0f);
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    uint32_t b[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      // round to nearest: the low bits of 1.5 * 2^23 + v / d hold the integer (two's complement byte)
      b[e] = f2u(fmaf(v[4 * w + e], inv, 12582912.0f));
    }
    q[w] = byte_perm(byte_perm(b[0], b[1], 0x0040u), byte_perm(b[2], b[3], 0x0040u), 0x5410u);
  }
  int sacc = 0;
#pragma unroll
  for (int w = 0; w < 4; ++w) sacc = dp4a_us(0x01010101u, q[w], sacc);
  qsum = sacc;
}

// Int8-activation version of mmvk_compute_step (quantized types only).
template <GGMLType TY, int TMAX, int R>
IL_HD void mmvk_compute_step_i8(const typename QT<TY>::Regs (&cur)[R], const MmvArgs& a, int lane, int64_t step,
                                int T, float (&acc)[R][TMAX]) {
  using Q = QT<TY>;
  static_assert(!Q::IS_FLOAT, "int8 activations are for quantized weights");
  constexpr int BPS = 32 / Q::LPB;
  constexpr int OFF = (int)(Q::MAGIC_OFF - kMagic);
  const int64_t b = step * BPS + lane / Q::LPB;
  if (b >= a.w.nb) return;
  const int sub = lane % Q::LPB;
  const int64_t K = a.w.k;
#pragma unroll
  for (int j = 0; j < Q::RUNS; ++j) {
    const int64_t e = b * Q::QK + Q::run_offset(sub, j);
    uint32_t xq[TMAX][4];
    float xd[TMAX], xdsum[TMAX];
    int xoff[TMAX];
#pragma unroll
    for (int t = 0; t < TMAX; ++t) {
      if (TMAX > 1 && t >= T) break;
      float xv[16];
      load_x16(a, t * K + e, xv);
      int qs;
      quantize_run16(xv, xq[t], xd[t], qs);
      xdsum[t] = xd[t] * small_i2f(qs);  // d * sum q  (min term)
      xoff[t] = OFF * qs;                 // OFF * sum q (code offset)
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      uint32_t q[4];
      float sc, mn;
      Q::run(cur[r], sub, j, q, sc, mn);
#pragma unroll
      for (int t = 0; t < TMAX; ++t) {
        if (TMAX > 1 && t >= T) break;
        int di = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) di = dp4a_us(q[i], xq[t][i], di);
        acc[r][t] = fmaf(sc, xd[t] * small_i2f(di - xoff[t]), acc[r][t]);
        if (Q::HAS_MIN) acc[r][t] = fmaf(mn, xdsum[t], acc[r][t]);
      }
    }
  }
}

}  // namespace cuda
}  // namespace inferlab
