// CUDA matmul on GGUF weights. See matmul.cuh for the strategy, dequant.cuh for block decoding.
#include "kernels/cuda/matmul.cuh"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cooperative_groups.h>

#include <algorithm>
#include <climits>

#include "core/cuda_check.h"
#include "core/device.h"
#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/matmul_kernels.cuh"
#include "kernels/cuda/matmul_mma.cuh"
#include "kernels/cuda/matmul_mmd.cuh"
#include "kernels/qweight_layout.h"

namespace inferlab {
namespace cuda {

namespace {

// ============================================================================================
// Programmatic dependent launch (Hopper+). The decode kernels are launched with programmatic stream
// serialization (see launch_decode): the next kernel may start while this one runs, so its blocks issue
// their weight loads (weights never change between kernels) before pdl_wait(), which returns once every
// earlier kernel has finished and its writes are visible. Nothing that an earlier kernel writes (x) is read,
// and nothing (y) is written, before pdl_wait(); every block calls it. pdl_trigger() lets the next kernel
// be scheduled as soon as this grid's blocks are all resident.
// ============================================================================================
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The decode kernels' epilogue: y[t, row] = v + bias[row], stored as fp16 or float32 (a.y_f16).
__device__ __forceinline__ void store_y(const MmvArgs& a, int64_t t, int64_t row, float v) {
  if (a.bias) v += __ldg(a.bias + row);
  if (a.y_f16)
    static_cast<__half*>(a.y)[t * a.w.n + row] = __float2half_rn(v);
  else
    static_cast<float*>(a.y)[t * a.w.n + row] = v;
}

// ============================================================================================
// Decode: fused dequantize + multiply, T <= 8 (building blocks in matmul_kernels.cuh)
// ============================================================================================

// Grid: ceil(n / (2 * warps)) blocks of 32 * warps threads (warps <= kMmvWarps, see mmv_warps);
// dynamic shared memory mmv_smem_bytes(a).
template <GGMLType TY, int TMAX>
__global__ void __launch_bounds__(kMmvThreads) mmv_kernel(const MmvArgs a) {
  using Q = QT<TY>;
  constexpr int BPS = 32 / Q::LPB;
  constexpr int64_t STEP_ELEMS = (int64_t)BPS * Q::QK;

  extern __shared__ float4 mmv_smem[];
  float* xs = reinterpret_cast<float*>(mmv_smem);
  const int T = TMAX == 1 ? 1 : a.t;
  float* xsum = xs + T * a.kc;

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t N = a.w.n, K = a.w.k;
  const int64_t row0 = ((int64_t)blockIdx.x * (blockDim.x >> 5) + warp) * kMmvRows;
  int64_t rows[kMmvRows];
#pragma unroll
  for (int r = 0; r < kMmvRows; ++r) rows[r] = imin64(row0 + r, N - 1);  // loads clamp; stores check

  float acc[kMmvRows][TMAX];
#pragma unroll
  for (int r = 0; r < kMmvRows; ++r)
#pragma unroll
    for (int t = 0; t < TMAX; ++t) acc[r][t] = 0.f;

  const int64_t nsteps = (a.w.nb + BPS - 1) / BPS;
  typename Q::Regs cur[kMmvRows];
  mmv_load_step<TY>(cur, a, rows, 0, lane);  // in flight while x is staged
  pdl_trigger();
  pdl_wait();
  int64_t staged = -1;
  for (int64_t s = 0; s < nsteps; ++s) {
    typename Q::Regs nxt[kMmvRows];
    if (s + 1 < nsteps) mmv_load_step<TY>(nxt, a, rows, s + 1, lane);  // prefetch
    const int64_t c = s / a.spc;  // pass of this step (uniform over the block)
    const int64_t c0 = c * a.spc * STEP_ELEMS;
    if (c != staged) {
      if (staged >= 0) __syncthreads();  // everyone is done with the previous pass
      const int len = (int)imin64(a.kc, K - c0);
      const int items = T * (len / 16);
      for (int i = threadIdx.x; i < items; i += blockDim.x) stage_x_item(a, i, xs, xsum, c0, len);
      __syncthreads();
      staged = c;
    }
    mmv_compute_step<TY, TMAX>(cur, a, lane, s, c0, xs, xsum, T, acc);
#pragma unroll
    for (int r = 0; r < kMmvRows; ++r) cur[r] = nxt[r];
  }

  // Reduce over the warp; lane (r * TMAX + t) % 32 writes y[t, row0 + r].
#pragma unroll
  for (int r = 0; r < kMmvRows; ++r) {
#pragma unroll
    for (int t = 0; t < TMAX; ++t) {
      float v = acc[r][t];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      const int64_t row = row0 + r;
      if (lane == ((r * TMAX + t) & 31) && t < T && row < N) {
        store_y(a, t, row, v);
      }
    }
  }
}

// Split-K decode (see matmul_kernels.cuh). Grid: ceil(n / kMmvkRows) blocks of 32 * W threads, W <=
// kMmvkMaxWarps; no dynamic shared memory.
// I8: int8 activations (mmvk_compute_step_i8), with its own rows per block and buffer count.
template <GGMLType TY, int TMAX, bool I8>
__global__ void __launch_bounds__(kMmvkMaxWarps * 32) mmvk_kernel(const MmvArgs a) {
  using Q = QT<TY>;
  constexpr int R = I8 ? kMmvkRowsI8 : kMmvkRows, NB = I8 ? kMmvkBufsI8 : kMmvkBufs;
  constexpr int BPS = 32 / Q::LPB;
  __shared__ float red[kMmvkMaxWarps][R][TMAX];

  const int T = TMAX == 1 ? 1 : a.t;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int W = blockDim.x >> 5;
  const int64_t N = a.w.n;
  const int64_t row0 = (int64_t)blockIdx.x * R;
  int64_t rows[R];
#pragma unroll
  for (int r = 0; r < R; ++r) rows[r] = imin64(row0 + r, N - 1);  // loads clamp; stores check

  float acc[R][TMAX];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < TMAX; ++t) acc[r][t] = 0.f;

  const int64_t nsteps = (a.w.nb + BPS - 1) / BPS;
  typename Q::Regs buf[NB][R];
#pragma unroll
  for (int d = 0; d < NB - 1; ++d) {
    const int64_t s = warp + (int64_t)d * W;
    if (s < nsteps) mmv_load_step<TY, R>(buf[d], a, rows, s, lane);
  }
  pdl_trigger();
  pdl_wait();
  for (int64_t s0 = warp; s0 < nsteps; s0 += (int64_t)NB * W) {
#pragma unroll
    for (int d = 0; d < NB; ++d) {
      const int64_t s = s0 + (int64_t)d * W;
      if (s >= nsteps) break;  // uniform over the warp
      const int64_t sn = s + (int64_t)(NB - 1) * W;
      if (sn < nsteps) mmv_load_step<TY, R>(buf[(d + NB - 1) % NB], a, rows, sn, lane);
      if constexpr (I8)
        mmvk_compute_step_i8<TY, TMAX, R>(buf[d], a, lane, s, T, acc);
      else
        mmvk_compute_step<TY, TMAX, R>(buf[d], a, lane, s, T, acc);
    }
  }

  // Reduce over the warp, then over the W warps.
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < TMAX; ++t) {
      float v = acc[r][t];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) red[warp][r][t] = v;
    }
  __syncthreads();
  if (threadIdx.x < R * TMAX) {
    const int r = threadIdx.x / TMAX, t = threadIdx.x % TMAX;
    const int64_t row = row0 + r;
    if (t < T && row < N) {
      float v = 0.f;
      for (int w = 0; w < W; ++w) v += red[w][r][t];
      store_y(a, t, row, v);
    }
  }
}

// ============================================================================================
// Tensor-core decode (lane logic in matmul_mma.cuh)
// ============================================================================================
// (mma16816: matmul_mmd.cuh)

// mma.m16n8k32 on 8-bit A (UA: unsigned, else signed) and signed B with int32 accumulation (the integer
// path); c: in and out.
template <bool UA>
__device__ __forceinline__ void mma16832_i8(int (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (UA)
    asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  else
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// mbarrier and bulk-copy primitives (sm_90; the kernel is only launched on compute capability >= 9).
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count) : "memory");
#endif
}
// Makes initialized barriers visible to the copy engine (async proxy).
__device__ __forceinline__ void mbar_init_fence() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
#endif
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n"
      "}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
#endif
}
// Copy engine: bytes (multiple of 16, 16-byte aligned ends) from global src to shared dst, completing on bar.
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem_addr(dst)),
      "l"(src), "r"(bytes), "r"(smem_addr(bar))
      : "memory");
#endif
}

// Warp `warp` of W (all lanes): starts its copies of chunk c into `tile` (see mmq_warp_chunk_bytes) and
// arrives on `bar` (initialized for W arrivals) announcing their bytes.
template <GGMLType TY, class G = MmqTile<TY>>
__device__ __forceinline__ void mmq_issue(const QView& w, int64_t row0, int64_t c, uint8_t* tile, uint64_t* bar,
                                          int warp, int W, int lane) {
  if (lane == 0) mbar_arrive_expect_tx(bar, (uint32_t)mmq_warp_chunk_bytes<TY>(w, row0, c, warp, W));
  __syncwarp();
  const int r = mmq_copy_row(warp, W, lane);
  if (r < kMmqRows && row0 + r < w.n) {
    const uint8_t* src;
    int dst;
    const int bytes = mmq_copy<TY, G>(w, row0, r, c, lane & 1, src, dst);
    if (bytes > 0) bulk_copy(tile + dst, src, (uint32_t)bytes, bar);
  }
}

// A fragments of run j of a lane's unit (rows g, g + 8 in regs): scaled per run (mmq_a_run) or, for the
// folded path, the unscaled codes (mmq_a_codes); zeros where the unit is past the chunk (!valid).
template <GGMLType TY, bool CODES>
__device__ __forceinline__ void mmq_lane_a(const typename QT<TY>::Regs (&regs)[2], bool valid, int sub, int j,
                                           uint32_t (&af)[4][4]) {
  if (valid) {
    if constexpr (CODES) mmq_a_codes<TY>(regs[0], regs[1], sub, j, af);
    else mmq_a_run<TY>(regs[0], regs[1], sub, j, af);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) af[i][0] = af[i][1] = af[i][2] = af[i][3] = 0u;
  }
}

// The lane's unit in warp step sl of a chunk of nbc blocks (block bl, sub-unit sub) and its registers for
// rows g and g + 8 of the tile. CHECK (the row's last chunk, maybe partial): false for a unit past the
// chunk's blocks, whose registers are then not loaded.
template <GGMLType TY, bool CHECK, class G = MmqTile<TY>>
__device__ __forceinline__ bool mmq_lane_load(typename QT<TY>::Regs (&regs)[2], const uint8_t* tile, int sl, int nbc,
                                              int g, int tig, int& bl, int& sub) {
  const bool valid = mmq_lane_unit<TY>(sl, tig, nbc, bl, sub) || !CHECK;
  if (valid) mmq_tile_load<TY, G>(regs, tile, g, bl, sub);
  return valid;
}

// One warp step (sl: step within the chunk, kb0: first element of the chunk) of the tensor-core kernel.
// CHECK: the chunk is the row's last and may be partial (units past its nbc blocks contribute zero, and
// read no x). xg: row min(g, T - 1) of the staged x: for g >= T the B fragment feeds only output columns
// that are never stored (column g of the mma's C), so any finite or not data there is harmless.
template <GGMLType TY, bool CHECK, class G = MmqTile<TY>>
__device__ __forceinline__ void mmq_step(float (&acc)[2][4], const uint8_t* tile, const uint16_t* xg, int kb0,
                                         int nbc, int sl, int g, int tig) {
  using Q = QT<TY>;
  int bl, sub;
  typename Q::Regs regs[2];
  const bool valid = mmq_lane_load<TY, CHECK, G>(regs, tile, sl, nbc, g, tig, bl, sub);
#pragma unroll
  for (int j = 0; j < Q::RUNS; ++j) {
    uint32_t af[4][4];
    mmq_lane_a<TY, false>(regs, valid, sub, j, af);
    const int e = kb0 + bl * Q::QK + Q::run_offset(sub, j);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint2 v = make_uint2(0u, 0u);
      if (valid) v = *reinterpret_cast<const uint2*>(xg + e + 4 * i);
      const uint32_t bf[2] = {v.x, v.y};
      mma16816(acc[i & 1], af[i], bf);
    }
  }
}

// One group (p: its index within the chunk) of the folded path (T = 1, see matmul_mma.cuh): the mmas of
// its FSTEPS steps into fresh class sums, then the lane's fold into yacc. xs: the staged x row; xsc: its
// 16-element sums from the chunk's first element. CHECK: partial chunk (units past nbc blocks: A = 0, B =
// zeros, classes not folded).
template <GGMLType TY, bool CHECK>
__device__ __forceinline__ void mmq_group_fold(float (&yacc)[2], const uint8_t* tile, const uint16_t* xs,
                                               const float* xsc, const uint16_t* zeros, int kb0, int nbc,
                                               int p, int g, int tig) {
  using Q = QT<TY>;
  using F = MmqFold<TY>;
  float cacc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
  for (int s = 0; s < F::FSTEPS; ++s) {
    const int sl = p * F::FSTEPS + s;
    int bl, sub;
    typename Q::Regs regs[2];
    const bool valid = mmq_lane_load<TY, CHECK>(regs, tile, sl, nbc, g, tig, bl, sub);
#pragma unroll
    for (int j = 0; j < Q::RUNS; ++j) {
      uint32_t af[4][4];
      mmq_lane_a<TY, true>(regs, valid, sub, j, af);
      int e = 0;
      const bool mine = mmq_fold_b<TY>(sl, s, tig, j, g, nbc, e);
      const uint16_t* xb = mine ? xs + kb0 + e : zeros;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint2 v = *reinterpret_cast<const uint2*>(xb + 4 * i);
        const uint32_t bf[2] = {v.x, v.y};
        mma16816(cacc[i & 1], af[i], bf);
      }
    }
  }
  float cs[4];
#pragma unroll
  for (int c = 0; c < 4; ++c) cs[c] = cacc[0][c] + cacc[1][c];
  mmq_fold<TY>(yacc, cs, tile, xsc, p, nbc, g, tig);
}

// One group (p: its index within the chunk) of the integer path (T = 1, see matmul_mma.cuh): E / 8 mmas of
// int8 codes times the int8 parts of x into fresh int32 class sums, then the lane folds class tig's sums for
// rows g and g + 8 into yacc. CHECK: partial chunk (classes past nbc blocks: B = zeros, not folded; their A
// bytes, whatever the tile holds there, meet only zeros).
template <GGMLType TY, bool CHECK, class G>
__device__ __forceinline__ void mmq_i8_group(float (&yacc)[2], const uint8_t* tile, const MmqI8X& xv,
                                             const int8_t* zeros, int64_t kb0, int nbc, int p, int g, int tig) {
  using I = MmqI8<TY>;
  constexpr int E = I::E, NM = E / 8;
  const int ce = mmq_i8_class<TY>(p, tig);
  const bool valid = !CHECK || mmq_i8_valid<TY>(ce, nbc);
  uint32_t a[NM][4];
  I::template a_frags<G>(tile, g, ce, a);
  const int8_t* xb = mmq_i8_b(xv, zeros, kb0, ce, valid, g, tig);
  uint32_t b[E / 4];
#pragma unroll
  for (int v = 0; v < E / 16; ++v) {
    const uint4 u = *reinterpret_cast<const uint4*>(xb + 16 * v);
    b[4 * v] = u.x; b[4 * v + 1] = u.y; b[4 * v + 2] = u.z; b[4 * v + 3] = u.w;
  }
  int c[4] = {0, 0, 0, 0};
#pragma unroll
  for (int i = 0; i < NM; ++i) {
    const uint32_t bf[2] = {b[2 * i], b[2 * i + 1]};
    mma16832_i8<I::UA>(c, a[i], bf);
  }
  if (!valid) return;
  const int ci[2] = {256 * c[0] + c[1], 256 * c[2] + c[3]};
  I::template fold<G>(yacc, ci, tile, xv, kb0 + ce, ce, g);
}

// Cluster primitives (sm_90, cooperative_groups). mmq_store_all stores v at p (this block's shared memory)
// in the shared memory of every block of the cluster (CL blocks; 1: this block only).
__device__ __forceinline__ int mmq_cluster_rank() { return (int)cooperative_groups::this_cluster().block_rank(); }
template <class V>
__device__ __forceinline__ void mmq_store_all(V* p, V v, int CL) {
  if (CL == 1) {
    *p = v;
    return;
  }
  cooperative_groups::cluster_group cl = cooperative_groups::this_cluster();
  for (int r = 0; r < CL; ++r) *cl.map_shared_rank(p, (unsigned)r) = v;
}
// Barrier of all threads of the cluster (its shared-memory stores before it are visible after it); of the
// block when CL == 1.
__device__ __forceinline__ void mmq_cluster_sync(int CL) {
  if (CL > 1) cooperative_groups::this_cluster().sync();
  else __syncthreads();
}

// The block stages its share of row t of x (items [i0, i1) of 4 elements) as fp16, times `scale`, into
// xrow of every block of its cluster (CL blocks: each reads 1 / CL of x from memory); returns this thread's
// largest |x| seen. xsum (T = 1 only, else null): also the float32 sums of the staged 16-element groups
// (the four items of a group belong to the four lanes of a quad, which run the loop equally often: i0 and
// i1 are multiples of 4).
// Each thread loads kMmqStageBatch items before it converts and stores any: x comes from L2 while the
// ring's copies fill the memory system, so a loop of load, convert, store (one round trip per item; the
// stores to the cluster's shared memory are generic stores, which the compiler does not move loads across)
// paid K / 4 / 256 / CL round trips of a loaded L2 before the first tile could be used. Measured on H200s
// (tune_decode.py, T = 1, two runs on two machines against the last ones before it, points of the copy
// ceiling): Llama-3 down Q6_K 42 -> 49 / 57, Q8_0 47 -> 57 / 67, F16 77 -> 86 / 88; Phi-3 o Q8_0 30 -> 34 /
// 38, F16 50 -> 58 / 59; Q4_K (bound by its decoding) +0.5 to +4.
constexpr int kMmqStageBatch = 8;
__device__ __forceinline__ float mmq_stage_x_row(const MmvArgs& a, uint16_t* xrow, float* xsum, int t,
                                                 float scale, int64_t i0, int64_t i1, int CL) {
  const int64_t K = a.w.k;
  const unsigned quad = 0xfu << (threadIdx.x & 28);
  const int64_t step = blockDim.x;
  float m = 0.f;
  for (int64_t ib = i0 + threadIdx.x; ib < i1; ib += kMmqStageBatch * step) {
    float v[kMmqStageBatch][4];
#pragma unroll
    for (int u = 0; u < kMmqStageBatch; ++u)
      if (ib + u * step < i1) load_x4(a, t * K + 4 * (ib + u * step), v[u]);
#pragma unroll
    for (int u = 0; u < kMmqStageBatch; ++u) {
      const int64_t i = ib + u * step;
      if (i >= i1) break;  // uniform over a quad (see above)
#pragma unroll
      for (int e = 0; e < 4; ++e) m = fmax_nan(m, fabsf(v[u][e]));
      const uint2 h = mmq_x4_h(v[u][0], v[u][1], v[u][2], v[u][3], scale);
      mmq_store_all(reinterpret_cast<uint2*>(xrow + 4 * i), h, CL);
      if (xsum) {
        float sum = mmq_x4_sum(h);
        sum += __shfl_xor_sync(quad, sum, 1);
        sum += __shfl_xor_sync(quad, sum, 2);
        if ((i & 3) == 0) mmq_store_all(xsum + (i >> 2), sum, CL);
      }
    }
  }
  return m;
}

// The block stages its share of x (T = 1; 32-groups [q0, q1)) for the integer path (matmul_mma.cuh) into
// every block of its cluster: one thread per group (its 8 loads in flight, no shuffles). Returns this
// thread's largest |x| (NaN if it saw one).
__device__ __forceinline__ float mmq_stage_x_i8(const MmvArgs& a, int8_t* hi, int8_t* lo, float* stp, float* sum,
                                                int* s16, int64_t q0, int64_t q1, int CL) {
  float m = 0.f;
  for (int64_t q = q0 + threadIdx.x; q < q1; q += blockDim.x) {
    float v[32];
#pragma unroll
    for (int u = 0; u < 8; ++u) load_x4(a, 32 * q + 4 * u, &v[4 * u]);
    float am = 0.f;
#pragma unroll
    for (int e = 0; e < 32; ++e) am = fmax_nan(am, fabsf(v[e]));
    m = fmax_nan(m, am);
    uint32_t h[8], l[8];
    int vs[2];
    mmq_i8_quant32(v, mmq_i8_inv(am), h, l, vs);
#pragma unroll
    for (int w = 0; w < 2; ++w) {
      mmq_store_all(reinterpret_cast<uint4*>(hi + 32 * q) + w, make_uint4(h[4 * w], h[4 * w + 1], h[4 * w + 2], h[4 * w + 3]), CL);
      mmq_store_all(reinterpret_cast<uint4*>(lo + 32 * q) + w, make_uint4(l[4 * w], l[4 * w + 1], l[4 * w + 2], l[4 * w + 3]), CL);
    }
    const float st = mmq_i8_step(am);
    mmq_store_all(stp + q, st, CL);
    mmq_store_all(sum + q, st * (float)(vs[0] + vs[1]), CL);
    mmq_store_all(reinterpret_cast<int2*>(s16) + q, make_int2(vs[0], vs[1]), CL);
  }
  return m;
}

// Diagnostic build only (-DINFERLAB_MMQ_TRACE): thread 0 of blocks 0 and gridDim.x / 2 prints the SM cycle
// counts at which mmq_kernel reaches its phases (start, copies issued, PDL wait over, x staged, each of the
// first chunks' tile ready and its refill issued, end).
// MMQ_TRACE_AFTER(i, v): the same, once v (always 0) is known: a branch on it keeps the clock read after it.
#ifdef INFERLAB_MMQ_TRACE
#define MMQ_TRACE(i) \
  do { if (threadIdx.x == 0 && (i) < 48) trace_[(i)] = clock64(); } while (0)
#define MMQ_TRACE_AFTER(i, v) \
  do { if (threadIdx.x == 0 && (v) == 0 && (i) < 48) trace_[(i)] = clock64(); } while (0)
#else
#define MMQ_TRACE(i) do { } while (0)
#define MMQ_TRACE_AFTER(i, v) do { } while (0)
#endif

// Grid: ceil(n / kMmqRows) blocks of 32 * W threads (W <= kMmqMaxWarps); dynamic shared memory
// mmq_smem_bytes<TY, I8>(t, k, stages): x (mmq_x_region), then the ring of `a.stages` tiles, then one
// mbarrier per tile. a.t <= kMmqMaxT. Compute capability >= 9 only (bulk copies).
// I8: the integer path's kernel (MmqI8<TY>::OK, a.t == 1): x staged as int8 parts; when x holds inf or
// NaN it is staged again as fp16 and the per-run fp16 path runs instead (the integer path cannot carry them).
template <GGMLType TY, bool I8>
// (Launch bounds: at least 2 blocks per SM, i.e. at most 128 registers. Without the minimum, ptxas gave
// the Q4_K kernel 80 registers and 44 bytes of spills, 4 to 5 points of the copy ceiling slower. Three
// blocks per SM (at most 80 registers: no spills except for Q4_K / Q5_K, and a ring of at most 70 KB less
// the staged x) measured on an H200, 2026-12-02, against two: -3 to -5.5 points for Q6_K / Q8_0 / F16 at
// Phi-3 o and for F16 at Llama-3 o, -0.6 to +1.7 for the rest at Llama-3 o.)
__global__ void __launch_bounds__(kMmqMaxWarps * 32, 2) mmq_kernel(const MmvArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using Q = QT<TY>;
  using G = MmqTile<TY, I8>;
  extern __shared__ float4 mmq_smem[];
  __shared__ float red[kMmqMaxWarps][32][4];
  __shared__ float amax_s[kMmqMaxWarps][kMmqMaxT];
  __shared__ float xscale[kMmqMaxT];
  __shared__ float amax_cl[kMmqMaxCluster][kMmqMaxT];  // row maxima of x over each cluster block's share
  __shared__ int mode_s;                      // 0: per run; 1: folded scales; 2: integer (T = 1, finite x)
  __shared__ __align__(16) uint16_t zeros[16];  // B of lanes that feed no class (folded and integer paths)

#ifdef INFERLAB_MMQ_TRACE
  long long trace_[48] = {};
#endif
  MMQ_TRACE(0);
  const int T = a.t, S = a.stages;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int W = blockDim.x >> 5;
  const int g = lane >> 2, tig = lane & 3;
  const int64_t N = a.w.n, K = a.w.k, ldx = mmq_ldx(K);
  const int64_t row0 = (int64_t)blockIdx.x * kMmqRows;
  const int64_t nchunks = mmq_chunks<TY>(a.w);
  using F = MmqFold<TY>;
  uint8_t* xbase = reinterpret_cast<uint8_t*>(mmq_smem);
  uint16_t* xs = reinterpret_cast<uint16_t*>(mmq_smem);
  float* xsum = !I8 && F::OK && T == 1 ? reinterpret_cast<float*>(xbase + mmq_xsum_off(T, K)) : nullptr;
  // integer path's staged x (I8 only; the same bytes as xs)
  int8_t* xhi = reinterpret_cast<int8_t*>(xbase);
  int8_t* xlo = reinterpret_cast<int8_t*>(xbase + mmq_i8_lo_off(K));
  float* xstep = reinterpret_cast<float*>(xbase + mmq_i8_step_off(K));
  float* xisum = reinterpret_cast<float*>(xbase + mmq_i8_sum_off(K));
  int* xs16 = reinterpret_cast<int*>(xbase + mmq_i8_s16_off(K));
  uint8_t* ring = xbase + mmq_x_region(I8, T, K);
  uint64_t* bars = reinterpret_cast<uint64_t*>(ring + (size_t)S * G::BYTES);

  // Weights first (they do not depend on earlier kernels): fill the ring.
  if (threadIdx.x == 0) {
    for (int i = 0; i < S; ++i) mbar_init(bars + i, (uint32_t)W);
    mbar_init_fence();
  }
  if (threadIdx.x < 16) zeros[threadIdx.x] = 0;
  __syncthreads();
  for (int i = 0; i < S && i < nchunks; ++i)
    mmq_issue<TY, G>(a.w, row0, i, ring + (size_t)i * G::BYTES, bars + i, warp, W, lane);
  MMQ_TRACE(1);
  pdl_trigger();
  pdl_wait();
  MMQ_TRACE(2);

  // Stage x as fp16 in one pass, measuring each row's largest magnitude on the way; a row that reaches 2^15
  // (rare) is staged again, scaled by a power of two. In a cluster of CL blocks (consecutive row blocks),
  // each block stages 1 / CL of x into the shared memory of all of them, and the row maxima are combined
  // over the cluster: x is read from memory (L2) once per cluster instead of once per block.
  // The integer path's kernel stages int8 parts instead (one row; each block's share is whole 32-groups).
  const int CL = a.cluster, rank = CL > 1 ? mmq_cluster_rank() : 0;
  const int64_t share = K / 4 / CL, i0 = rank * share, i1 = i0 + share;  // items of 4 elements
  for (int t = 0; t < T; ++t) {
    float m = I8 ? mmq_stage_x_i8(a, xhi, xlo, xstep, xisum, xs16, i0 / 8, i1 / 8, CL)
                 : mmq_stage_x_row(a, xs + t * ldx, xsum, t, 1.f, i0, i1, CL);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) m = fmax_nan(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (lane == 0) amax_s[warp][t] = m;
  }
  __syncthreads();
  if (threadIdx.x < T) {
    float m = 0.f;
    for (int w = 0; w < W; ++w) m = fmax_nan(m, amax_s[w][threadIdx.x]);
    mmq_store_all(&amax_cl[rank][threadIdx.x], m, CL);
  }
  mmq_cluster_sync(CL);  // also: the cluster's x is staged
  if (threadIdx.x < T) {
    float m = 0.f;
    for (int r = 0; r < CL; ++r) m = fmax_nan(m, amax_cl[r][threadIdx.x]);
    const bool finite = m <= 3.0e38f;
    xscale[threadIdx.x] = I8 ? 1.f : mmq_x_scale(m);  // the integer path scales each 32-group itself
    if (threadIdx.x == 0) mode_s = I8 ? (finite ? 2 : 0) : a.fold && xsum != nullptr && finite ? 1 : 0;
  }
  __syncthreads();
  MMQ_TRACE(3);
  const int mode = mode_s;  // uniform over the cluster
  bool restaged = false;
  for (int t = 0; t < T; ++t) {
    const float sc = xscale[t];  // uniform over the cluster
    if (sc == 1.f && !(I8 && mode == 0)) continue;
    restaged = true;
    mmq_stage_x_row(a, xs + t * ldx, xsum, t, sc, i0, i1, CL);
  }
  if (restaged) mmq_cluster_sync(CL);

  float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
  float yacc[2] = {0.f, 0.f};  // folded and integer paths: rows g, g + 8 (this lane's classes)
  const bool fold = mode != 0;
  const MmqI8X xv = {xhi, xlo, xstep, xisum, xs16};
  const uint16_t* xg = xs + (g < T ? g : T - 1) * ldx;
  for (int64_t c = 0; c < nchunks; ++c) {
    const int slot = (int)(c % S);
    uint8_t* tile = ring + (size_t)slot * G::BYTES;
    const int nbc = mmq_chunk_blocks<TY>(a.w, c), kb0 = (int)(c * G::CB * Q::QK);
    mbar_wait(bars + slot, (uint32_t)((c / S) & 1));
    MMQ_TRACE(4 + 2 * c);
    bool folded = false;
    if constexpr (I8) {
      if (mode == 2) {
        constexpr int GPC = G::CB * Q::QK / (4 * MmqI8<TY>::E);  // groups of a full chunk
        const int8_t* z = reinterpret_cast<const int8_t*>(zeros);
        if (nbc == G::CB && W == kMmqMaxWarps) {  // the default: a warp's groups known at compile time
          static_assert(GPC % kMmqMaxWarps == 0, "a full chunk is whole rounds of groups");
#pragma unroll
          for (int j = 0; j < GPC / kMmqMaxWarps; ++j)
            mmq_i8_group<TY, false, G>(yacc, tile, xv, z, kb0, nbc, warp + kMmqMaxWarps * j, g, tig);
        } else if (nbc == G::CB) {
#pragma unroll 2
          for (int p = warp; p < GPC; p += W) mmq_i8_group<TY, false, G>(yacc, tile, xv, z, kb0, nbc, p, g, tig);
        } else {
          const int ngr = mmq_i8_groups<TY>(nbc);
          for (int p = warp; p < ngr; p += W) mmq_i8_group<TY, true, G>(yacc, tile, xv, z, kb0, nbc, p, g, tig);
        }
        folded = true;
      }
    }
    if constexpr (F::OK && !I8) {
      if (fold) {
        constexpr int FS = F::FSTEPS;
        const float* xsc = xsum + kb0 / 16;
        if (nbc == G::CB) {
          for (int p = warp; p < G::STEPS / FS; p += W)
            mmq_group_fold<TY, false>(yacc, tile, xs, xsc, zeros, kb0, nbc, p, g, tig);
        } else {
          const int ngr = (mmq_chunk_steps<TY>(nbc) + FS - 1) / FS;
          for (int p = warp; p < ngr; p += W)
            mmq_group_fold<TY, true>(yacc, tile, xs, xsc, zeros, kb0, nbc, p, g, tig);
        }
        folded = true;
      }
    }
    if (!folded) {
      if (nbc == G::CB) {
#pragma unroll 2
        for (int sl = warp; sl < G::STEPS; sl += W) mmq_step<TY, false, G>(acc, tile, xg, kb0, nbc, sl, g, tig);
      } else {
        const int nst = mmq_chunk_steps<TY>(nbc);
        for (int sl = warp; sl < nst; sl += W) mmq_step<TY, true, G>(acc, tile, xg, kb0, nbc, sl, g, tig);
      }
    }
    // Every warp is done with this tile: refill it with the chunk S further on.
    __syncthreads();
    if (c + S < nchunks) mmq_issue<TY, G>(a.w, row0, c + S, tile, bars + slot, warp, W, lane);
    MMQ_TRACE(5 + 2 * c);
  }
  MMQ_TRACE(47);

  if (fold) {  // the quad's classes: row totals, as C elements 0 (row g) and 2 (row g + 8) of column 0
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      yacc[r] += __shfl_xor_sync(0xffffffffu, yacc[r], 1);
      yacc[r] += __shfl_xor_sync(0xffffffffu, yacc[r], 2);
    }
    acc[0][0] = yacc[0];
    acc[0][2] = yacc[1];
  }
  // Sum the two chains, then the W warps; thread (lane, c) of the first 4 warps finishes output c of lane.
#pragma unroll
  for (int c = 0; c < 4; ++c) red[warp][lane][c] = acc[0][c] + acc[1][c];
  __syncthreads();
  for (int o = threadIdx.x; o < 128; o += blockDim.x) {
    const int l = o & 31, c = o >> 5;
    const int t = mmq_c_t(l, c);
    const int64_t row = row0 + mmq_c_row(l, c);
    if (t < T && row < N) {
      float v = 0.f;
      for (int w = 0; w < W; ++w) v += red[w][l][c];
      v /= xscale[t];
      store_y(a, t, row, v);
    }
  }
#ifdef INFERLAB_MMQ_TRACE
  if (threadIdx.x == 0 && (blockIdx.x == 0 || blockIdx.x == gridDim.x / 2)) {
    printf("TRACE blk %d nchunks %d S %d: issued %lld pdl %lld staged %lld end %lld\n", (int)blockIdx.x, (int)nchunks, S,
           trace_[1] - trace_[0], trace_[2] - trace_[0], trace_[3] - trace_[0], trace_[47] - trace_[0]);
    for (int c = 0; c < nchunks && c < 21; ++c)
      printf("TRACE blk %d chunk %d ready %lld done %lld\n", (int)blockIdx.x, c, trace_[4 + 2 * c] - trace_[0],
             trace_[5 + 2 * c] - trace_[0]);
  }
#endif
#elif defined(__CUDA_ARCH__)
  __trap();  // never launched below compute capability 9 (see mmq_available)
#endif
}

// ============================================================================================
// Direct tensor-core decode, one row of x (lane logic in matmul_mmd.cuh)
// ============================================================================================
// One 16-element group q of x (v: its values) staged as fp16 times `scale` (see mmd_stage_x); m: the largest
// |x| so far.
template <bool PERM>
__device__ __forceinline__ void mmd_stage_group(const float (&v)[16], int q, uint16_t* xs, float* x16, float scale,
                                                float& m) {
  float s = 0.f;
#pragma unroll
  for (int u = 0; u < 4; ++u) {
#pragma unroll
    for (int e = 0; e < 4; ++e) m = fmax_nan(m, fabsf(v[4 * u + e]));
    uint2 h = mmq_x4_h(v[4 * u], v[4 * u + 1], v[4 * u + 2], v[4 * u + 3], scale);
    s += mmq_x4_sum(h);
    if (PERM) h = make_uint2(__byte_perm(h.x, h.y, 0x5410u), __byte_perm(h.x, h.y, 0x7632u));
    *reinterpret_cast<uint2*>(xs + mmd_xpos(16 * q + 4 * u)) = h;
  }
  x16[q] = s;
}

// Stages x (all K columns, K % 64 == 0) as fp16 times `scale` at mmd_xpos (PERM: groups of 4 as x0, x2,
// x1, x3), and the float32 sums of its staged 16-element groups into x16. One thread per 16-element group.
// Float32 x in 16-byte loads (the usual case): a thread's loads for R groups (R blockDim.x groups of the
// row) go out before it converts any, so K up to 16 R blockDim.x columns costs one round trip to L2, not
// one per blockDim.x groups (16 R registers: the warp's weight units are held in registers meanwhile).
// Measured before this (one group per round trip): staging x twice cost +2.5 us a call at K = 14336 (four
// rounds), +0.7 us at K = 4096 (one). Returns this thread's largest |x| (NaN if it saw one).
template <bool PERM, int R>
__device__ __forceinline__ float mmd_stage_x(const MmvArgs& a, uint16_t* xs, float* x16, float scale) {
  const int ng = (int)(a.w.k / 16), nt = blockDim.x;
  float m = 0.f;
  if (a.x_kind == kXF32 && a.x_vec) {
    const uint8_t* xp = static_cast<const uint8_t*>(a.x);
    for (int q0 = threadIdx.x; q0 < ng; q0 += R * nt) {
      uint4 w[R][4];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int q = q0 + r * nt;
#pragma unroll
        for (int u = 0; u < 4; ++u) w[r][u] = q < ng ? ld_ro16(xp + 64 * (int64_t)q + 16 * u) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int q = q0 + r * nt;
        if (q >= ng) break;
        float v[16];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          v[4 * u] = u2f(w[r][u].x); v[4 * u + 1] = u2f(w[r][u].y);
          v[4 * u + 2] = u2f(w[r][u].z); v[4 * u + 3] = u2f(w[r][u].w);
        }
        mmd_stage_group<PERM>(v, q, xs, x16, scale, m);
      }
    }
    return m;
  }
  for (int q = threadIdx.x; q < ng; q += nt) {
    float v[16];
#pragma unroll
    for (int u = 0; u < 4; ++u) load_x4(a, 16 * (int64_t)q + 4 * u, &v[4 * u]);
    mmd_stage_group<PERM>(v, q, xs, x16, scale, m);
  }
  return m;
}

// x with inf / NaN, quantized types: the block's nrows rows from row0 in float32 from dequant_unit (the offset
// correction of the class sums would turn inf into NaN). Warp w takes rows w, w + W, ...; its lanes take units.
template <GGMLType TY>
__device__ void mmd_nonfinite_rows(const MmvArgs& a, int64_t row0, int nrows) {
  using Q = QT<TY>;
  const int lane = threadIdx.x & 31, W = blockDim.x >> 5;
  for (int r = threadIdx.x >> 5; r < nrows; r += W) {
    const int64_t row = row0 + r;
    if (row >= a.w.n) break;
    float s = 0.f;
    for (int64_t i = lane; i < a.w.nb * Q::LPB; i += 32) {
      const int64_t blk = i / Q::LPB;
      const int sub = (int)(i % Q::LPB);
      float wv[16 * Q::RUNS];
      dequant_unit<TY>(a.w, row, blk, sub, wv);
#pragma unroll
      for (int j = 0; j < Q::RUNS; ++j) {
        const int64_t off = blk * Q::QK + Q::run_offset(sub, j);
#pragma unroll
        for (int e = 0; e < 16; e += 4) {
          float xv[4];
          load_x4(a, off + e, xv);
#pragma unroll
          for (int c = 0; c < 4; ++c) s = fmaf(wv[16 * j + e + c], xv[c], s);
        }
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) store_y(a, 0, row, s);
  }
}

// A warp's sums for its row tile into red_w[16] (its slot of the block's reductions): rows g and g + 8 over
// the quad's classes (quantized types: y), or column 0 of C (FLOAT: every column is the dot product).
template <bool FLOAT>
__device__ __forceinline__ void mmd_tile_sums(float (&y)[2], const float (&c)[4], int g, int t, float* red_w) {
  if (FLOAT) {
    y[0] = t == 0 ? c[0] : 0.f;
    y[1] = t == 0 ? c[2] : 0.f;
  }
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    y[rr] += __shfl_xor_sync(0xffffffffu, y[rr], 1);
    y[rr] += __shfl_xor_sync(0xffffffffu, y[rr], 2);
  }
  if (t == 0) {
    red_w[g] = y[0];
    red_w[g + 8] = y[1];
  }
}

// Row tiles and groups. A row tile is kMmdRows rows; the W warps of a group take its units round-robin. A
// block has a.mmd_tiles groups (<= kMmdMaxTiles), which share one staging of x: "super-tile" st covers rows
// [st G 16, (st + 1) G 16) (G = a.mmd_tiles), group h of it row tile st G + h. Grid: gridDim.x blocks of
// 32 W G threads; block b takes super-tiles b, b + gridDim.x, ... (at most kMmdMaxSlots: the host sizes the
// grid: more than one when it is capped at the blocks that fit on the multiprocessors, mmd_persist). MULTI
// (the kernel for such grids): a warp walks its units of all its row tiles as one sequence, so that the loads
// of its next tile's first units go out while the last ones of the current tile are decoded, and x is staged
// once per block, not once per tile; else (one super-tile per block) the same without the tile bookkeeping,
// which costs 2 to 4 points there (H200, 2026-12-03). Dynamic shared memory mmd_smem_bytes(k). a.t == 1,
// k % Mmd<TY>::UK == 0. DEPTH: weight buffers per warp (registers); while element s of the sequence is
// decoded, elements s + 1 .. s + DEPTH - 1 are in flight (Mmd<TY>::EARLY), or up to s + DEPTH once s's
// buffer is refilled (else).
template <GGMLType TY, int DEPTH, bool MULTI>
__global__ void __launch_bounds__(kMmdMaxWarps * kMmdMaxTiles * 32, 1) mmd_kernel(const MmvArgs a) {
  using M = Mmd<TY>;
  extern __shared__ float4 mmd_smem[];
  // [super-tile of the block][warp][row] (one slot without MULTI: less shared memory, more L1)
  __shared__ float red[MULTI ? kMmdMaxSlots : 1][kMmdMaxWarps * kMmdMaxTiles][kMmdRows];
  __shared__ float amax_s[kMmdMaxWarps * kMmdMaxTiles];
  __shared__ float xscale_s;
  __shared__ __align__(16) uint16_t zeros[16];
  const int G = a.mmd_tiles;
  const int lane = threadIdx.x & 31, W = (blockDim.x >> 5) / G;
  const int h = (threadIdx.x >> 5) / W, warp = (threadIdx.x >> 5) - h * W;  // group; warp within it
  const int g = lane >> 2, t = lane & 3;
  const int64_t N = a.w.n, K = a.w.k;
  const int nu = (int)(K / M::UK);  // units per row (the loop's arithmetic is 32-bit)
  const int64_t nst = (N + kMmdRows * G - 1) / (kMmdRows * G);                 // super-tiles
  const int nt = MULTI ? (int)((nst - blockIdx.x + gridDim.x - 1) / gridDim.x) : 1;  // this block's (<= kMmdMaxSlots)
  const int J = (nu - warp + W - 1) / W;                                        // the warp's units per row tile
  const int S = nt * J;                                                          // the warp's sequence
  // The first row of the block's i-th super-tile.
  auto st_row0 = [&](int i) { return ((int64_t)blockIdx.x + (int64_t)i * gridDim.x) * (kMmdRows * G); };
  // The lane's weight addresses for its row tile of the block's i-th super-tile.
  auto base_of = [&](int i) {
    const int64_t row0 = st_row0(i) + kMmdRows * h;
    const int64_t rows[2] = {imin64(row0 + g, N - 1), imin64(row0 + g + 8, N - 1)};  // loads clamp; stores check
    return M::base(a.w, rows, t);
  };
  uint16_t* xs = reinterpret_cast<uint16_t*>(mmd_smem);
  float* x16 = reinterpret_cast<float*>(xs + mmd_xpos(K));
#ifdef INFERLAB_MMQ_TRACE
  long long trace_[48] = {};
#endif
  MMQ_TRACE(0);

  // The load cursor: the sequence's next element to load is unit lu of super-tile li (addresses lb).
  int li = 0, lu = warp;
  typename M::Base lb = base_of(0);
  auto advance = [&]() {
    lu += W;
    if (lu >= nu) {
      lu = warp;
      if (++li < nt) lb = base_of(li);
    }
  };
  // Weights first (they do not depend on earlier kernels): the sequence's first PRE elements.
  constexpr int PRE = DEPTH - (M::EARLY ? 1 : 0);
  typename M::Regs buf[DEPTH];
#pragma unroll
  for (int d = 0; d < PRE; ++d) {
    if constexpr (MULTI) {
      if (li < nt) {
        M::load(buf[d], lb, lu, 0u);
        advance();
      }
    } else {
      const int u = warp + d * W;
      if (u < nu) M::load(buf[d], lb, u, 0u);
    }
  }
  MMQ_TRACE(1);
  pdl_trigger();
  pdl_wait();
  MMQ_TRACE(2);

  if (threadIdx.x < 16) zeros[threadIdx.x] = 0;  // visible after the barriers below
  const MmdLane ln = {g, t, zeros, {0x000f000fu, 0x00f000f0u, 0x64006400u, 0x00300030u, 0x03000300u},
                      {mmd_hold(0x4B000000u | a.zero), mmd_hold(0x45000000u | a.zero), mmd_hold(0x47000000u | a.zero)}};
  // x as fp16; staged again, scaled by a power of two, when it reaches 2^15 (rare).
  // Groups of x per thread in flight (mmd_stage_x): 4 where the weight registers loaded so far leave room
  // (else ptxas issues the later groups' loads only after converting the first ones), 2 otherwise.
  constexpr int XR = sizeof(typename M::Regs) * PRE <= 128 ? 4 : 2;
  float m = mmd_stage_x<M::PERM, XR>(a, xs, x16, 1.f);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmax_nan(m, __shfl_xor_sync(0xffffffffu, m, o));
  if (lane == 0) amax_s[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    float mx = 0.f;
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) mx = fmax_nan(mx, amax_s[w]);
    // quantized types, x with inf / NaN: -1 (the float32 path below)
    xscale_s = !M::FLOAT && !(mx <= 3.0e38f) ? -1.f : mmq_x_scale(mx);
  }
  __syncthreads();
  const float xscale = xscale_s;
  if (xscale < 0.f) {
    if constexpr (!M::FLOAT) {
      for (int i = 0; i < nt; ++i) mmd_nonfinite_rows<TY>(a, st_row0(i), kMmdRows * G);
    }
    return;
  }
  if (xscale != 1.f) {
    mmd_stage_x<M::PERM, XR>(a, xs, x16, xscale);
    __syncthreads();
  }
  MMQ_TRACE(3);

  if constexpr (MULTI) {
    float y[2] = {0.f, 0.f};           // quantized: rows g, g + 8 over this lane's classes
    float c[4] = {0.f, 0.f, 0.f, 0.f};  // F16: the C fragment over a row tile's units
    int ci = 0, cu = warp;              // the element being decoded: unit cu of super-tile ci
    for (int s0 = 0; s0 < S; s0 += DEPTH) {
#pragma unroll
      for (int d = 0; d < DEPTH; ++d) {
        if (s0 + d >= S) break;  // uniform over the warp
        // MMQ_TRACE(4 + 2 s) / (5 + 2 s): thread 0's s-th element ready / done
        if constexpr (M::EARLY) {
          // The loads of element s + DEPTH - 1 (into the buffer that element s - 1 left) go out once element
          // s's bytes are here: ptxas gives all of the loop's global loads one scoreboard, and the first use of
          // a unit's registers waits for every load in flight on it. Loads issued just before that use (as
          // below: a buffer refilled right after it is decoded) make the next unit wait for bytes just asked
          // for; issued after it (their addresses depend on element s's first word, times a.zero), they have a
          // unit of decoding to arrive. z enters the condition too, so that the wait comes before the branch
          // (else the path without loads waits inside the decoding, and the one with loads waits there again,
          // for them).
          const uint32_t z = M::lead(buf[d]) & a.zero;
          MMQ_TRACE_AFTER(4 + 2 * (s0 + d), z);  // (its bytes are in)
          if (li + (int)z < nt) {
            M::load(buf[(d + DEPTH - 1) % DEPTH], lb, lu, z);
            advance();
          }
          M::compute(buf[d], ln, xs, x16, cu, y, c);
        } else {
          MMQ_TRACE(4 + 2 * (s0 + d));
          M::compute(buf[d], ln, xs, x16, cu, y, c);
          if (li < nt) {
            M::load(buf[d], lb, lu, 0u);
            advance();
          }
        }
        MMQ_TRACE(5 + 2 * (s0 + d));
        cu += W;
        if (cu >= nu) {  // the row tile's last unit: its sums into red[ci]
          mmd_tile_sums<M::FLOAT>(y, c, g, t, red[ci][threadIdx.x >> 5]);
          y[0] = y[1] = 0.f;
          c[0] = c[1] = c[2] = c[3] = 0.f;
          cu = warp;
          ++ci;
        }
      }
    }
  } else {
    float y[2] = {0.f, 0.f};           // quantized: rows g, g + 8 over this lane's classes
    float c[4] = {0.f, 0.f, 0.f, 0.f};  // F16: the C fragment over all units
    for (int u0 = warp; u0 < nu; u0 += DEPTH * W) {
#pragma unroll
      for (int d = 0; d < DEPTH; ++d) {
        const int u = u0 + d * W;
        if (u >= nu) break;  // uniform over the warp
        // MMQ_TRACE(4 + 2 j) / (5 + 2 j): thread 0's warp's j-th unit ready / done
        if constexpr (M::EARLY) {  // (as in the MULTI loop above)
          const uint32_t z = M::lead(buf[d]) & a.zero;
          MMQ_TRACE_AFTER(4 + 2 * ((u - warp) / W), z);  // (its bytes are in)
          const int un = u + (DEPTH - 1) * W + (int)z;
          if (un < nu) M::load(buf[(d + DEPTH - 1) % DEPTH], lb, un, z);
          M::compute(buf[d], ln, xs, x16, u, y, c);
        } else {
          MMQ_TRACE(4 + 2 * ((u - warp) / W));
          M::compute(buf[d], ln, xs, x16, u, y, c);
          const int un = u + DEPTH * W;
          if (un < nu) M::load(buf[d], lb, un, 0u);
        }
        MMQ_TRACE(5 + 2 * ((u - warp) / W));
      }
    }
    mmd_tile_sums<M::FLOAT>(y, c, g, t, red[0][threadIdx.x >> 5]);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < nt * kMmdRows * G; e += blockDim.x) {
    const int i = e / (kMmdRows * G), q = e - i * (kMmdRows * G), hq = q / kMmdRows, r = q - hq * kMmdRows;
    const int64_t row = st_row0(i) + q;
    if (row < N) {
      float v = 0.f;
      for (int w = 0; w < W; ++w) v += red[i][hq * W + w][r];
      store_y(a, 0, row, v / xscale);
    }
  }
  MMQ_TRACE(47);
#ifdef INFERLAB_MMQ_TRACE
  if (threadIdx.x == 0 && (blockIdx.x == 0 || blockIdx.x == gridDim.x / 2)) {  // same format as mmq_kernel
    const int nj = (int)((nu + W - 1) / W);  // units of warp 0
    printf("TRACE blk %d nchunks %d S %d: issued %lld pdl %lld staged %lld end %lld\n", (int)blockIdx.x, nj, DEPTH,
           trace_[1] - trace_[0], trace_[2] - trace_[0], trace_[3] - trace_[0], trace_[47] - trace_[0]);
    for (int j = 0; j < nj && j < 21; ++j)
      printf("TRACE blk %d chunk %d ready %lld done %lld\n", (int)blockIdx.x, j, trace_[4 + 2 * j] - trace_[0],
             trace_[5 + 2 * j] - trace_[0]);
  }
#endif
}

int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    IL_CUDA_CHECK(cudaGetDevice(&dev));
    IL_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
    return v > 0 ? v : 1;
  }();
  return n;
}

// Programmatic dependent launch: on by default on compute capability >= 9 (set_pdl_enabled).
bool g_pdl = true;
// Tensor-core decode kernel: bytes of its tile ring per block (0: auto, see launch_mmq) and warps per block
// (tune_mma_decode). Measured on an H200 (benchmarks/tune_decode.py, 2026-12-02): 64 KiB against 32 KiB:
// +8 points of the copy ceiling for Q4_K / Q8_0 / F16 at Llama-3 down, +7 / +14 for Q8_0 / F16 at
// Phi-3 o; auto (up to 106 KiB less the staged x) against 64 KiB: -6 for Q8_0 at Llama-3 o, +5 for F16 at
// Phi-3 o, the rest within 1.
int g_mmq_ring = kMmqRingDefault;
int g_mmq_warps = kMmqMaxWarps;
// One row of x (T = 1): -1 per type (folded scales where the type has them: Q4_K, Q5_K; else per run), 0 the
// per-run fp16 path, 1 folded scales (Q4_K, Q5_K), 2 the integer path (Q8_0, Q4_K, Q6_K; matmul_mma.cuh);
// a choice the type lacks falls back to the per-run path.
// The integer path is not the default: measured on an H200 (tune_decode.py --fold=-1,0,1 / --fold=2,
// 2026-12-02, points of the copy ceiling, integer against the default), Llama-3 down Q4_K +0.1, Q8_0 -0.5,
// Q6_K -6.4; Llama-3 o -2.5 / -4.2 / -6.3; Phi-3 o -1.3 / -3.5 / -5.2, although its inner loop takes 3x
// (Q8_0) / 1.3x (Q4_K) fewer instructions per weight. A traced build (INFERLAB_MMQ_TRACE) shows why: a
// chunk costs ~1,000 cycles of barrier and refill issue whatever the decoding, and the staging of x
// (2-3 us at K = 14336, more for int8 parts) precedes the first tile: the chain of chunks, not the
// decoding, sets the time (benchmarks/RESULTS.md).
int g_mmq_fold = -1;
// Blocks per cluster that share the staging of x (see mmq_kernel; 1: none; 0: auto, kMmqClusterMinK). Every
// block needs all of x (K fp32 values): at K = 14336 the 256 blocks of a 4096-row weight read 14.7 MB of x
// from L2, 45% of a Q4_K weight's bytes, before their first tile. Measured on an H200 (tune_decode.py
// --cluster 1,2,4,8, T = 1, points of the copy ceiling): at Llama-3 down (K = 14336) clusters of 2 gain
// +2.5 to +5.5 for Q4_K / Q5_K / Q4_0 / Q6_K / Q8_0 / F16 (F16: 75.9 -> 81.4); at K = 4096 and 3072 they are
// within +-1.8 of none; clusters of 4 or 8 lose 10 to 30 at K = 14336 and 1 to 4 elsewhere (not
// investigated; co-scheduling 4 blocks of ~94 KB shared memory each is the likely cost). Since x is staged
// with a batch of loads in flight per thread (mmq_stage_x_row), clusters of 2 gain only +0.2 to +0.6 at
// Llama-3 down and lose 0.5 to 3.3 at K = 3072 / 4096 (H200, 2026-12-02, later run); the auto rule stays.
int g_mmq_cluster = 0;
constexpr int64_t kMmqClusterMinK = 8192;  // auto: clusters of 2 from this K on, else none

// Compute capability >= 9: programmatic dependent launch and the copy engine's bulk copies.
bool device_has_pdl() {
  static const bool v = [] {
    int dev = 0, major = 0;
    IL_CUDA_CHECK(cudaGetDevice(&dev));
    IL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    return major >= 9;
  }();
  return v;
}
constexpr int kMmqSmemLimit = 200 * 1024;  // opt-in dynamic shared memory of mmq_kernel (x + ring + barriers)
// The tensor-core decode kernel needs bulk copies (compute capability >= 9) and a multiprocessor with room
// for its shared memory (Hopper data-center parts: 227 KB per block; not, e.g., GPUs with 99 KB).
bool mmq_available() {
  static const bool v = [] {
    if (!device_has_pdl()) return false;
    int dev = 0, optin = 0;
    IL_CUDA_CHECK(cudaGetDevice(&dev));
    IL_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    return optin >= kMmqSmemLimit + 8 * 1024;  // + the kernel's static shared memory
  }();
  return v;
}

// Launches kern(args...) with programmatic stream serialization when enabled (the kernel calls pdl_wait()
// before touching what earlier kernels write) and `cluster` blocks per cluster.
template <class Kern, class... Args>
void launch_pdl(Kern kern, unsigned grid, int threads, size_t smem, cudaStream_t stream, int cluster, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3((unsigned)threads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (g_pdl && device_has_pdl()) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = (unsigned)cluster;
    attr[n].val.clusterDim.y = 1;
    attr[n++].val.clusterDim.z = 1;
  }
  cfg.attrs = n ? attr : nullptr;
  cfg.numAttrs = n;
  IL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kern, args...));
  IL_CUDA_CHECK_LAUNCH();
}

// Launches a decode kernel (all of them call pdl_wait() before touching x or y).
template <class Kern>
void launch_decode(Kern kern, int64_t grid, int threads, size_t smem, cudaStream_t stream, const MmvArgs& a,
                   int cluster = 1) {
  IL_CHECK_ARG(grid >= 1 && grid <= INT_MAX, "matmul: too many rows (", a.w.n, ")");
  launch_pdl(kern, (unsigned)grid, threads, smem, stream, cluster, a);
}

// Warps per block: 8 (x staged once per 16 rows) when that still gives every SM two blocks, else fewer,
// so small matrices spread over all SMs.
int mmv_warps(int64_t n) {
  const int64_t sms = sm_count();
  for (int w = kMmvWarps; w > 2; w /= 2)
    if ((n + w * kMmvRows - 1) / (w * kMmvRows) >= 2 * sms) return w;
  return 2;
}

template <GGMLType TY, int TMAX>
void launch_mmv(MmvArgs a, cudaStream_t stream) {
  mmv_plan<QT<TY>>(a);
  const size_t smem = mmv_smem_bytes(a);
  if (smem > (size_t)kMmvSmemMax)
    throw RuntimeError(str_cat("matmul: decode kernel needs ", smem, " bytes of shared memory (limit ", kMmvSmemMax, ")"));
  static const bool configured = [] {
    IL_CUDA_CHECK(cudaFuncSetAttribute(mmv_kernel<TY, TMAX>, cudaFuncAttributeMaxDynamicSharedMemorySize, kMmvSmemMax));
    return true;
  }();
  (void)configured;
  const int warps = mmv_warps(a.w.n);
  const int64_t grid = (a.w.n + warps * kMmvRows - 1) / (warps * kMmvRows);
  launch_decode(mmv_kernel<TY, TMAX>, grid, warps * 32, smem, stream, a);
}

template <GGMLType TY, int TMAX, bool I8>
void launch_mmvk(const MmvArgs& a, cudaStream_t stream) {
  constexpr int BPS = 32 / QT<TY>::LPB;
  constexpr int R = I8 ? kMmvkRowsI8 : kMmvkRows;
  const int64_t nsteps = (a.w.nb + BPS - 1) / BPS;
  const int warps = (int)std::max<int64_t>(1, std::min<int64_t>(kMmvkMaxWarps, nsteps));
  const int64_t grid = (a.w.n + R - 1) / R;
  launch_decode(mmvk_kernel<TY, TMAX, I8>, grid, warps * 32, 0, stream, a);
}

// Rows of x per launch of the tensor-core kernel (its staged x must fit kMmqSmemMax); 0: does not fit.
int64_t mmq_rows_per_launch(int64_t k) {
  return std::min<int64_t>(kMmqMaxT, (int64_t)kMmqSmemMax / (mmq_ldx(k) * 2));
}

// Dynamic shared memory of the tensor-core kernel: staged x, the tile ring, one mbarrier per tile.
template <GGMLType TY, bool I8>
size_t mmq_smem_bytes(int t, int64_t k, int stages) {
  return (size_t)mmq_x_region(I8, t, k) + (size_t)stages * (MmqTile<TY, I8>::BYTES + 8);
}
// Dynamic shared memory per block that still fits two blocks on a multiprocessor (227 KB each on Hopper,
// less the static 4.4 KB and the 1 KB the driver reserves per block).
constexpr int kMmqBlockSmem = 106 * 1024;

// One launch of mmq_kernel<TY, I8> (c.t rows of x).
template <GGMLType TY, bool I8>
void launch_mmq_kernel(const MmvArgs& c, int64_t grid, int warps, int cl, cudaStream_t stream) {
  static const bool configured = [] {
    IL_CUDA_CHECK(cudaFuncSetAttribute(mmq_kernel<TY, I8>, cudaFuncAttributeMaxDynamicSharedMemorySize, kMmqSmemLimit));
    return true;
  }();
  (void)configured;
  const size_t smem = mmq_smem_bytes<TY, I8>(c.t, c.w.k, c.stages);
  if (smem > (size_t)kMmqSmemLimit)
    throw RuntimeError(str_cat("matmul: tensor-core decode kernel needs ", smem, " bytes of shared memory"));
  launch_decode(mmq_kernel<TY, I8>, grid, warps * 32, smem, stream, c, cl);
}

// Direct tensor-core decode (mmd_kernel) for one row of x: 1 (default) where it applies (Q4_K, Q6_K, Q8_0, F16;
// k % Mmd<TY>::UK == 0), 0 never (tune_direct_decode). Measured on an H200 (benchmarks/tune_decode.py,
// 2026-12-03; % of the copy ceiling; Phi-3 o / Llama-3 o / Llama-3 down): Q4_K 30.7 / 38.8 / 58.9, Q6_K
// 35.8 / 45.3 / 67.4, Q8_0 53.2 / 62.3 / 82.1, F16 69.3 / 79.5 / 92.5; the ring kernel (mmq_kernel) in the
// same runs: Q4_K ~20 / 28 / 39, Q6_K ~30 / 38 / 56.7, Q8_0 ~38 / 47 / 66, F16 ~58 / 69 / 86. Warps per block:
// g_mmd_warps (4 instead of 8: -7 to -17 points: the grid has one block per 16 rows, so warps per block set
// warps per multiprocessor). Later (same day, one run, the same % against the kernel before): the EARLY load
// order (Mmd<TY>::EARLY) at depth 2 for Q4_K 28.8 / 41.7 / 60.5 (30.6 / 38.6 / 58.4 at the old order, depth
// 3) and Q6_K 37.4 / 51.3 / 70.6 (35.6 / 45.1 / 66.5), at depth 4 for Q8_0 53.5 / 66.1 / 78.7 (52.9 / 61.9 /
// 81.1); F16 stays in the old order (69.1 / 75.2 / 89.1 early, depth 4, against 68.6 / 78.2 / 90.3).
int g_mmd = 1;
int g_mmd_warps = kMmdMaxWarps;
int g_mmd_depth = 0;  // weight buffers per warp: 2, 3, 4; 0: Mmd<TY>::DEPTH
int g_mmd_tiles = 0;     // row tiles per block: 1, 2; 0: auto (mmd_tiles)
int g_mmd_persist = -1;  // blocks per multiprocessor at most: 1..4; 0: one block per super-tile; -1: auto
constexpr int kMmdSmemLimit = 100 * 1024;  // opt-in dynamic shared memory of mmd_kernel (x and its sums)

// Row tiles per block of mmd_kernel (auto) for k columns: 2 (x staged once per 32 rows: half the L2 reads of
// x, one block of 16 warps per multiprocessor) from K = kMmdTiles2MinK on, else 1. Measured on an H200
// (tune_decode.py --dtiles 1,2, 2026-12-03; % of the copy ceiling, 1 -> 2 tiles): Llama-3 down (K = 14336)
// Q4_K 63.2 -> 67.9, Q6_K 72.7 -> 76.6, Q8_0 80.8 -> 85.4, F16 92.2 -> 95.4; at K = 3072 / 4096 (Phi-3 o,
// Llama-3 o) 2 tiles lose 0.5 to 3.3 (a block of 16 warps frees its multiprocessor for the next call only
// when all of them are done). From K = 4096 on, also where one row tile per block of 8 warps would be more
// than one wave (blocks then walk several; H200, 2026-12-03, same sweep: Llama-3 gate/up (14336 x 4096, 896
// row tiles) Q4_K 65.9 -> 68.6, Q6_K 76.4 -> 80.4, Q8_0 88.6 -> 91.3, F16 93.1 -> 93.6; at K = 3072 (Phi-3
// qkv, gate_up) 2 tiles lose 0.1 to 3.4 for the quantized types).
// Q8_0 from K = 3072 on (below 4096: with 3 weight buffers per warp, mmd_depth) too: Phi-3 qkv (9216 x 3072)
// 74.3 -> 76.4 (two runs in one session: 74.1 / 74.3 -> 76.5 / 76.4), Phi-3 gate_up 87.3 -> 87.9; the other
// types lose there (above).
constexpr int64_t kMmdTiles2MinK = 8192, kMmdTiles2MultiMinK = 4096, kMmdQ8MultiMinK = 3072;
int sm_count();
bool mmd_multi(int64_t n) { return (n + kMmdRows - 1) / kMmdRows > 2 * (int64_t)sm_count(); }
int mmd_tiles(GGMLType type, int64_t n, int64_t k) {
  const int64_t multi_min_k = type == GGMLType::Q8_0 ? kMmdQ8MultiMinK : kMmdTiles2MultiMinK;
  return k >= kMmdTiles2MinK || (mmd_multi(n) && k >= multi_min_k) ? 2 : 1;
}
// Weight buffers per warp (auto): Mmd<TY>::DEPTH, but 3 for Q8_0 with two row tiles per block below K = 4096
// (measured with mmd_tiles above: Phi-3 qkv 74.6 at depth 4, 76.4 at 3; Llama-3 gate/up (K = 4096) 90.0 at
// depth 4, 88.9 at 3).
template <GGMLType TY>
int mmd_depth(int64_t n, int64_t k) {
  if (TY == GGMLType::Q8_0 && mmd_multi(n) && k >= kMmdQ8MultiMinK && k < kMmdTiles2MultiMinK) return 3;
  return Mmd<TY>::DEPTH;
}
// Blocks per multiprocessor at most (auto) for `tiles` row tiles per block: as many as fit (2 of 8 warps at
// up to 128 registers, 1 of 16), so that the grid is one wave and a block with more super-tiles than one
// walks them (mmd_kernel's MULTI). Measured on an H200 (tune_decode.py --dpersist 0,1,2, 2026-12-03; % of
// the copy ceiling, one block per row tile -> at most 1 / 2 per multiprocessor): Llama-3 gate/up (896 row
// tiles) Q4_K 40.9 -> 61.0 / 65.7, Q6_K 49.8 -> 72.3 / 75.5, Q8_0 58.8 -> 71.3 / 87.7, F16 82.3 -> 86.8 /
// 91.6; Phi-3 qkv (576) Q8_0 47.3 -> 60.0 / 74.8, F16 67.5 -> 76.6 / 82.2. At Phi-3 o and Llama-3 o (192,
// 256 row tiles), 1 per multiprocessor (a block on 2 row tiles, half the multiprocessor left to the next
// call's early loads) lost 0 to 7 points.
int mmd_persist(int tiles) { return tiles >= 2 ? 1 : 2; }

template <GGMLType TY>
bool mmd_applies(const MmvArgs& a) {
  if constexpr (Mmd<TY>::OK)
    return g_mmd == 1 && a.t == 1 && a.w.k % Mmd<TY>::UK == 0 &&
           mmd_smem_bytes(a.w.k) <= kMmdSmemLimit;
  else
    return false;
}

template <GGMLType TY>
void launch_mmd(MmvArgs a, cudaStream_t stream) {
  if constexpr (Mmd<TY>::OK) {
    const int64_t nu = a.w.k / Mmd<TY>::UK;
    const int warps = (int)std::max<int64_t>(1, std::min<int64_t>(g_mmd_warps, nu));
    a.mmd_tiles = g_mmd_tiles > 0 ? g_mmd_tiles : mmd_tiles(TY, a.w.n, a.w.k);
    const int64_t nst = (a.w.n + kMmdRows * a.mmd_tiles - 1) / (kMmdRows * a.mmd_tiles);  // super-tiles
    const int persist = g_mmd_persist >= 0 ? g_mmd_persist : mmd_persist(a.mmd_tiles);
    int64_t grid = persist > 0 ? std::min<int64_t>(nst, (int64_t)persist * sm_count()) : nst;
    grid = std::max<int64_t>(grid, (nst + kMmdMaxSlots - 1) / kMmdMaxSlots);  // at most kMmdMaxSlots per block
    const bool multi = grid < nst;
    const int depth = g_mmd_depth > 0 ? g_mmd_depth : mmd_depth<TY>(a.w.n, a.w.k);
    static const bool configured = [] {
      for (auto kern : {mmd_kernel<TY, 2, false>, mmd_kernel<TY, 3, false>, mmd_kernel<TY, 4, false>,
                        mmd_kernel<TY, 2, true>, mmd_kernel<TY, 3, true>, mmd_kernel<TY, 4, true>})
        IL_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, kMmdSmemLimit));
      return true;
    }();
    (void)configured;
    auto go = [&](auto kern) {
      launch_decode(kern, grid, warps * a.mmd_tiles * 32, (size_t)mmd_smem_bytes(a.w.k), stream, a);
    };
    if (depth == 2)
      multi ? go(mmd_kernel<TY, 2, true>) : go(mmd_kernel<TY, 2, false>);
    else if (depth == 3)
      multi ? go(mmd_kernel<TY, 3, true>) : go(mmd_kernel<TY, 3, false>);
    else
      multi ? go(mmd_kernel<TY, 4, true>) : go(mmd_kernel<TY, 4, false>);
  }
}

template <GGMLType TY>
void launch_mmq(MmvArgs a, cudaStream_t stream) {
  if (mmd_applies<TY>(a)) {
    launch_mmd<TY>(a, stream);
    return;
  }
  using G = MmqTile<TY>;
  const int64_t nsteps = (a.w.nb * QT<TY>::LPB + 3) / 4, nchunks = mmq_chunks<TY>(a.w);
  const int warps = (int)std::max<int64_t>(1, std::min<int64_t>(g_mmq_warps, nsteps));
  const int64_t grid = (a.w.n + kMmqRows - 1) / kMmqRows;
  // The integer path (T = 1): when asked (tune_mma_decode(fold = 2)) and the type has it.
  constexpr bool kI8 = MmqI8<TY>::OK;
  const bool i8 = kI8 && a.t == 1 && g_mmq_fold == 2;
  // Tiles in flight: as many as the ring holds, at least two (one filling while one is used), at most
  // the row's chunks. Auto ring (tune_mma_decode(0)): what leaves room for two blocks per multiprocessor
  // next to the staged x (more bytes in flight per block, without halving the warps that decode them), at
  // least kMmqRingDefault. (The integer path's tiles differ from G only in row padding: never larger.)
  const int64_t tc = mmq_rows_per_launch(a.w.k);
  IL_CHECK_ARG(tc >= 1, "matmul: k=", a.w.k, " is too large for the tensor-core decode kernel");
  const int64_t xb = mmq_x_region(i8, (int)std::min<int64_t>(a.t, tc), a.w.k);
  const int64_t ring = g_mmq_ring > 0 ? g_mmq_ring : std::max<int64_t>(kMmqRingDefault, kMmqBlockSmem - xb);
  a.stages = (int)std::max<int64_t>(std::min<int64_t>(2, nchunks), std::min<int64_t>(ring / G::BYTES, nchunks));
  a.fold = MmqFold<TY>::OK && (g_mmq_fold == 1 || g_mmq_fold == -1);
  // Cluster: as configured, halved until it divides the 16-element groups of x (32-element groups for the
  // integer path: each block's share is whole groups) and is at most the row blocks; the grid is padded to
  // whole clusters (the extra blocks stage x and issue no copies).
  const int64_t groups = a.w.k / (i8 ? 32 : 16);
  int cl = g_mmq_cluster > 0 ? g_mmq_cluster : a.w.k >= kMmqClusterMinK ? 2 : 1;
  while (cl > 1 && (groups % cl != 0 || cl > grid)) cl /= 2;
  a.cluster = cl;
  const int64_t grid_c = (grid + cl - 1) / cl * cl;
  const size_t xrow = (size_t)a.w.k * (a.x_kind == kXF32 ? 4 : 2), yrow = (size_t)a.w.n * (a.y_f16 ? 2 : 4);
  const int T = a.t;
  for (int t0 = 0; t0 < T; t0 += (int)tc) {
    MmvArgs c = a;
    c.t = (int)std::min<int64_t>(tc, T - t0);
    c.x = static_cast<const char*>(a.x) + t0 * xrow;
    c.y = static_cast<char*>(a.y) + t0 * yrow;
    if constexpr (kI8) {
      if (i8) {
        launch_mmq_kernel<TY, true>(c, grid_c, warps, cl, stream);
        continue;
      }
    }
    launch_mmq_kernel<TY, false>(c, grid_c, warps, cl, stream);
  }
}

int x_kind_of(DType d) { return d == DType::F32 ? kXF32 : d == DType::F16 ? kXF16 : kXBF16; }

// Which fused kernel: split-K for small T (its x reads come from L1 and grow with T), the staged kernel
// (x in shared memory, reused by 16 rows) above. Chosen by benchmarks/_bench_matmul.py on an H200.
// Measured (H200, Q4_K / Q6_K / Q8_0 / F16, K = 3072 / 4096 / 14336): split-K is 1.4-2x faster at
// K = 14336 for T <= 2, and 0-25% slower at K <= 4096 (each warp then gets a single step).
bool use_split_k(int64_t k, int64_t t) { return t <= kSplitKMaxT && k >= kSplitKMinK; }

bool mmq_type(GGMLType t) { return !is_float_type(t) || t == GGMLType::F16; }

void decode(const MatmulParams& p, cudaStream_t stream) {
  MmvArgs a;
  a.w = make_qview(*p.w);
  a.x = p.x;
  a.x_kind = x_kind_of(p.x_dtype);
  a.x_vec = reinterpret_cast<uintptr_t>(p.x) % 16 == 0;
  a.y = p.y;
  a.y_f16 = p.y_dtype == DType::F16;
  a.bias = p.bias;
  a.t = (int)p.t;
  a.kc = 0;
  a.spc = 1;
  // int8 activations: asked for, quantized weights only (float weights keep the float32 kernels).
  const bool int8_x = p.x_int8 && !is_float_type(p.w->type);
  const bool split_k = p.path == MatmulPath::FusedSplitK ||
                       (p.path != MatmulPath::FusedStaged && use_split_k(p.w->k, p.t));
  const bool mma_fits = mmq_type(p.w->type) && mmq_rows_per_launch(p.w->k) >= 1;
  const bool mma = !int8_x && (p.path == MatmulPath::FusedMma ||
                               ((p.path == MatmulPath::Auto || p.path == MatmulPath::Fused) && mma_fits &&
                                mmq_available()));
  if (p.path == MatmulPath::FusedMma && !mmq_available())
    throw NotSupportedError("matmul: the tensor-core decode kernel needs compute capability >= 9.0 and 208 KB of "
                            "shared memory per block");
  if (p.path == MatmulPath::FusedMma)
    IL_CHECK_ARG(mma_fits, "matmul: the tensor-core decode kernel takes quantized or F16 weights with k <= ",
                 kMmqSmemMax / 2 - kMmqPad, ", got ", ggml_type_traits((int32_t)p.w->type)->name, " with k=", p.w->k);
  dispatch_qtype(p.w->type, [&](auto tag) {
    constexpr GGMLType TY = decltype(tag)::value;
    if constexpr (mmq_supported<TY>()) {
      if (mma) {
        launch_mmq<TY>(a, stream);
        return;
      }
    }
    if (int8_x) {
      if constexpr (!QT<TY>::IS_FLOAT) {
        if (p.t == 1)
          launch_mmvk<TY, 1, true>(a, stream);
        else if (p.t == 2)
          launch_mmvk<TY, 2, true>(a, stream);
        else if (p.t <= 4)
          launch_mmvk<TY, 4, true>(a, stream);
        else
          launch_mmvk<TY, 8, true>(a, stream);
      }
    } else if (split_k) {
      IL_CHECK_ARG(p.t <= kSplitKMaxT, "matmul: the split-K decode kernel takes at most ", kSplitKMaxT, " rows of x");
      if (p.t == 1)
        launch_mmvk<TY, 1, false>(a, stream);
      else
        launch_mmvk<TY, 2, false>(a, stream);
    } else if (p.t == 1)
      launch_mmv<TY, 1>(a, stream);
    else if (p.t == 2)
      launch_mmv<TY, 2>(a, stream);
    else if (p.t <= 4)
      launch_mmv<TY, 4>(a, stream);
    else
      launch_mmv<TY, 8>(a, stream);
  });
}

// ============================================================================================
// Dequantize to fp16
// ============================================================================================
// Rows [row0, row0 + rows) of W to fp16: out [rows, k].
template <GGMLType TY>
__global__ void __launch_bounds__(256) dequant_f16_kernel(const QView v, int64_t row0, int64_t rows,
                                                          __half* __restrict__ out) {
  using Q = QT<TY>;
  const int64_t units = rows * v.nb * Q::LPB;
  for (int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; u < units; u += (int64_t)gridDim.x * blockDim.x) {
    const int sub = (int)(u % Q::LPB);
    const int64_t gb = u / Q::LPB;
    const int64_t r = gb / v.nb, blk = gb % v.nb;
    float f[Q::RUNS * 16];
    dequant_unit<TY>(v, row0 + r, blk, sub, f);
#pragma unroll
    for (int j = 0; j < Q::RUNS; ++j) {
      __half* o = out + r * v.k + blk * Q::QK + Q::run_offset(sub, j);
      uint32_t h[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const __half2 hh = __floats2half2_rn(f[16 * j + 2 * i], f[16 * j + 2 * i + 1]);
        h[i] = *reinterpret_cast<const uint32_t*>(&hh);
      }
      reinterpret_cast<uint4*>(o)[0] = make_uint4(h[0], h[1], h[2], h[3]);
      reinterpret_cast<uint4*>(o)[1] = make_uint4(h[4], h[5], h[6], h[7]);
    }
  }
}

unsigned grid_for(int64_t items, int threads) {
  const int64_t g = (items + threads - 1) / threads;
  return (unsigned)std::max<int64_t>(1, std::min<int64_t>(g, 132 * 32));
}

// ============================================================================================
// Prefill helpers: activation conversion, epilogue
// ============================================================================================
__device__ __forceinline__ float load_any(const void* p, int kind, int64_t i) {
  if (kind == kXF32) return static_cast<const float*>(p)[i];
  const unsigned short u = static_cast<const unsigned short*>(p)[i];
  if (kind == kXF16) return __half2float(__ushort_as_half(u));
  return __uint_as_float((uint32_t)u << 16);
}

// *amax_bits = max |x| as float bits (zeroed before the launch).
__global__ void absmax_kernel(const void* x, int kind, int64_t count, unsigned int* amax_bits) {
  float m = 0.f;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) {
    const float v = fabsf(load_any(x, kind, i));
    m = (v > m || v != v) ? v : m;  // NaN wins (its bits are larger than inf's)
  }
  unsigned int b = __float_as_uint(m);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) b = max(b, __shfl_xor_sync(0xffffffffu, b, o));
  if ((threadIdx.x & 31) == 0) atomicMax(amax_bits, b);
}

// out = fp16(x * 2^-e), e = max(0, exponent(amax) - 15) so |x| * 2^-e < 2^15; scal[1] = 2^e, scal[2] = 0.
__global__ void to_f16_scaled_kernel(const void* x, int kind, int64_t count, const unsigned int* amax_bits,
                                     __half* out, float* scal) {
  const float amax = __uint_as_float(*amax_bits);
  int e = 0;
  if (amax <= 3.0e38f) {  // finite
    int ex = 0;
    frexpf(amax, &ex);    // amax < 2^ex
    e = max(0, ex - 15);
  }
  const float scale = ldexpf(1.f, -e);
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    scal[1] = ldexpf(1.f, e);
    scal[2] = 0.f;
  }
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = __float2half_rn(load_any(x, kind, i) * scale);
}

__global__ void to_bf16_kernel(const void* x, int kind, int64_t count, __nv_bfloat16* out) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = __float2bfloat16_rn(load_any(x, kind, i));
}

__global__ void to_f32_kernel(const void* x, int kind, int64_t count, float* out) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = load_any(x, kind, i);
}

// y[t, n] = (src ? src[t, n] : y[t, n]) + bias[n]; src float32, y float32 or fp16.
__global__ void epilogue_kernel(const float* src, void* y, bool y_f16, const float* bias, int64_t T, int64_t N) {
  const int64_t count = T * N;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) {
    float v = src ? src[i] : (y_f16 ? __half2float(static_cast<const __half*>(y)[i]) : static_cast<const float*>(y)[i]);
    if (bias) v += bias[i % N];
    if (y_f16)
      static_cast<__half*>(y)[i] = __float2half_rn(v);
    else
      static_cast<float*>(y)[i] = v;
  }
}

// ============================================================================================
// Prefill: cuBLAS
// ============================================================================================
#define IL_CUBLAS_CHECK(expr)                                                                            \
  do {                                                                                                   \
    cublasStatus_t il_st_ = (expr);                                                                      \
    if (il_st_ != CUBLAS_STATUS_SUCCESS)                                                                 \
      throw ::inferlab::RuntimeError(::inferlab::str_cat("cuBLAS error ", (int)il_st_, " (",             \
                                                         cublasGetStatusString(il_st_), ") in ", #expr)); \
  } while (0)

constexpr size_t kCublasWorkspace = 32u << 20;

struct Scratch {
  void* p = nullptr;
  size_t cap = 0;
  // Grow-only. Freeing waits for queued work that may still use the old buffer.
  void* get(size_t bytes) {
    if (bytes > cap) {
      if (p) {
        IL_CUDA_CHECK(cudaDeviceSynchronize());
        device_free(p);
        p = nullptr;
        cap = 0;
      }
      const size_t rounded = (bytes + (2u << 20) - 1) / (2u << 20) * (2u << 20);
      p = device_malloc(rounded);
      cap = rounded;
    }
    return p;
  }
};

// Per host thread: cuBLAS handle, its workspace and the prefill scratch buffers.
struct Context {
  cublasHandle_t handle = nullptr;
  void* workspace = nullptr;
  float* scal = nullptr;  // device: [0] amax bits, [1] alpha, [2] beta
  Scratch w16, xconv, yf32;
  Context() {
    IL_CUBLAS_CHECK(cublasCreate(&handle));
    workspace = device_malloc(kCublasWorkspace);
    IL_CUBLAS_CHECK(cublasSetWorkspace(handle, workspace, kCublasWorkspace));
    scal = static_cast<float*>(device_malloc(4 * sizeof(float)));
  }
  ~Context() {
    if (handle) cublasDestroy(handle);
    device_free(workspace);
    device_free(scal);
    device_free(w16.p);
    device_free(xconv.p);
    device_free(yf32.p);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
};

Context& context() {
  thread_local Context ctx;
  return ctx;
}

void dequant_rows_f16(const QWeight& w, int64_t row0, int64_t rows, void* out, cudaStream_t stream) {
  const QView v = make_qview(w);
  dispatch_qtype(w.type, [&](auto tag) {
    constexpr GGMLType TY = decltype(tag)::value;
    const int64_t units = rows * v.nb * QT<TY>::LPB;
    dequant_f16_kernel<TY><<<grid_for(units, 256), 256, 0, stream>>>(v, row0, rows, static_cast<__half*>(out));
    IL_CUDA_CHECK_LAUNCH();
  });
}

constexpr size_t kDequantTileBytes = 64u << 20;  // fp16 scratch per tile of W rows in prefill

void prefill(const MatmulParams& p, cudaStream_t stream) {
  const QWeight& w = *p.w;
  const int64_t T = p.t, N = w.n, K = w.k;
  IL_CHECK_ARG(T <= INT_MAX && N <= INT_MAX && K <= INT_MAX, "matmul: dimensions too large for cuBLAS");
  Context& ctx = context();
  IL_CUBLAS_CHECK(cublasSetStream(ctx.handle, stream));
  const int kind = x_kind_of(p.x_dtype);
  const int64_t xcount = T * K;
  const unsigned g = grid_for(xcount, 256);

  // A = W: [N, K] row-major == column-major [K, N] with lda = K, used transposed.
  // Quantized W is dequantized to fp16 in tiles of `tile` rows (bounded scratch), one GEMM per tile.
  const void* A = w.data.data();
  cudaDataType_t ab_type;
  const bool quantized = !is_float_type(w.type);
  int64_t tile = N;
  void* wbuf = nullptr;
  if (w.type == GGMLType::F16) {
    ab_type = CUDA_R_16F;
  } else if (w.type == GGMLType::BF16) {
    ab_type = CUDA_R_16BF;
  } else if (w.type == GGMLType::F32) {
    ab_type = CUDA_R_32F;
  } else {
    tile = std::min<int64_t>(N, std::max<int64_t>(256, (int64_t)(kDequantTileBytes / (size_t)(K * 2)) / 64 * 64));
    wbuf = ctx.w16.get((size_t)tile * K * 2);
    ab_type = CUDA_R_16F;
  }

  // B = x: [T, K] row-major == column-major [K, T] with ldb = K.
  const void* B = p.x;
  bool device_alpha = false;
  if (ab_type == CUDA_R_16F && p.x_dtype != DType::F16) {
    __half* xb = static_cast<__half*>(ctx.xconv.get((size_t)xcount * 2));
    IL_CUDA_CHECK(cudaMemsetAsync(ctx.scal, 0, sizeof(unsigned int), stream));
    absmax_kernel<<<g, 256, 0, stream>>>(p.x, kind, xcount, reinterpret_cast<unsigned int*>(ctx.scal));
    IL_CUDA_CHECK_LAUNCH();
    to_f16_scaled_kernel<<<g, 256, 0, stream>>>(p.x, kind, xcount, reinterpret_cast<const unsigned int*>(ctx.scal),
                                                xb, ctx.scal);
    IL_CUDA_CHECK_LAUNCH();
    B = xb;
    device_alpha = true;
  } else if (ab_type == CUDA_R_16BF && p.x_dtype != DType::BF16) {
    __nv_bfloat16* xb = static_cast<__nv_bfloat16*>(ctx.xconv.get((size_t)xcount * 2));
    to_bf16_kernel<<<g, 256, 0, stream>>>(p.x, kind, xcount, xb);
    IL_CUDA_CHECK_LAUNCH();
    B = xb;
  } else if (ab_type == CUDA_R_32F && p.x_dtype != DType::F32) {
    float* xb = static_cast<float*>(ctx.xconv.get((size_t)xcount * 4));
    to_f32_kernel<<<g, 256, 0, stream>>>(p.x, kind, xcount, xb);
    IL_CUDA_CHECK_LAUNCH();
    B = xb;
  }

  // C = y: [T, N] row-major == column-major [N, T] with ldc = N. fp16 C only with fp16 A/B.
  void* C = p.y;
  cudaDataType_t c_type = p.y_dtype == DType::F16 ? CUDA_R_16F : CUDA_R_32F;
  bool staged_c = false;
  if (p.y_dtype == DType::F16 && (ab_type != CUDA_R_16F || p.bias)) {  // f32 staging avoids double rounding
    C = ctx.yf32.get((size_t)T * N * 4);
    c_type = CUDA_R_32F;
    staged_c = true;
  }

  static const float one = 1.f, zero = 0.f;
  IL_CUBLAS_CHECK(cublasSetPointerMode(ctx.handle, device_alpha ? CUBLAS_POINTER_MODE_DEVICE : CUBLAS_POINTER_MODE_HOST));
  const float* alpha = device_alpha ? ctx.scal + 1 : &one;
  const float* beta = device_alpha ? ctx.scal + 2 : &zero;
  const size_t c_size = c_type == CUDA_R_16F ? 2 : 4;
  for (int64_t n0 = 0; n0 < N; n0 += tile) {
    const int64_t nt = std::min(tile, N - n0);
    if (quantized) {
      dequant_rows_f16(w, n0, nt, wbuf, stream);
      A = wbuf;
    }
    // Rows [n0, n0 + nt) of W give columns [n0, n0 + nt) of y: column-major C offset by n0, ldc = N.
    IL_CUBLAS_CHECK(cublasGemmEx(ctx.handle, CUBLAS_OP_T, CUBLAS_OP_N, (int)nt, (int)T, (int)K, alpha, A, ab_type,
                                 (int)K, B, ab_type, (int)K, beta, static_cast<char*>(C) + n0 * c_size, c_type, (int)N,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  IL_CUBLAS_CHECK(cublasSetPointerMode(ctx.handle, CUBLAS_POINTER_MODE_HOST));

  if (staged_c || p.bias) {
    epilogue_kernel<<<grid_for(T * N, 256), 256, 0, stream>>>(staged_c ? static_cast<const float*>(C) : nullptr, p.y,
                                                             p.y_dtype == DType::F16, p.bias, T, N);
    IL_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void dequantize_to_f16(const QWeight& w, void* out, cudaStream_t stream) {
  const bool is_float = is_float_type(w.type);
  IL_CHECK_ARG(!is_float || w.k % 16 == 0, "dequantize_to_f16: float weights need k % 16 == 0, got k=", w.k);
  dequant_rows_f16(w, 0, w.n, out, stream);
}

namespace {

// Captures enqueue(i) for i < iters into a graph on a private stream and times its replays.
template <class F>
double time_graph_ms(int iters, F&& enqueue) {
  IL_CHECK_ARG(iters >= 1, "iters must be >= 1");
  cudaStream_t s = nullptr;
  IL_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  double ms_per_call = 0;
  try {
    StreamGuard guard(s);
    IL_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    try {
      for (int i = 0; i < iters; ++i) enqueue(i, s);
    } catch (...) {
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(s, &g);
      if (g) cudaGraphDestroy(g);
      throw;
    }
    IL_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
    IL_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    IL_CUDA_CHECK(cudaGraphLaunch(exec, s));  // warm-up replay
    IL_CUDA_CHECK(cudaEventCreate(&e0));
    IL_CUDA_CHECK(cudaEventCreate(&e1));
    const int reps = 3;
    IL_CUDA_CHECK(cudaEventRecord(e0, s));
    for (int r = 0; r < reps; ++r) IL_CUDA_CHECK(cudaGraphLaunch(exec, s));
    IL_CUDA_CHECK(cudaEventRecord(e1, s));
    IL_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    IL_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    ms_per_call = (double)ms / (reps * iters);
  } catch (...) {
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    cudaStreamSynchronize(s);
    cudaStreamDestroy(s);
    throw;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  IL_CUDA_CHECK(cudaStreamSynchronize(s));
  IL_CUDA_CHECK(cudaStreamDestroy(s));
  return ms_per_call;
}

}  // namespace

void tune_mma_decode(int ring_kib, int warps, int fold, int cluster) {
  IL_CHECK_ARG(cluster == 0 || cluster == 1 || cluster == 2 || cluster == 4 || cluster == 8,
               "cluster must be 0 (auto), 1, 2, 4 or 8, got ", cluster);
  IL_CHECK_ARG(ring_kib >= 0 && ring_kib <= 96, "ring_kib must be in [0, 96] (0: auto), got ", ring_kib);
  IL_CHECK_ARG(warps >= 1 && warps <= kMmqMaxWarps, "warps must be in [1, ", kMmqMaxWarps, "], got ", warps);
  IL_CHECK_ARG(fold >= -1 && fold <= 2, "fold must be -1 (per type), 0, 1 or 2, got ", fold);
  g_mmq_ring = ring_kib * 1024;
  g_mmq_warps = warps;
  g_mmq_fold = fold;
  g_mmq_cluster = cluster;
}

void tune_direct_decode(int mode, int warps, int depth, int tiles, int persist) {
  IL_CHECK_ARG(mode == 0 || mode == 1, "mode must be 0 (off) or 1 (on), got ", mode);
  IL_CHECK_ARG(warps >= 1 && warps <= kMmdMaxWarps, "warps must be in [1, ", kMmdMaxWarps, "], got ", warps);
  IL_CHECK_ARG(depth == 0 || (depth >= 2 && depth <= 4), "depth must be 0 (per type), 2, 3 or 4, got ", depth);
  IL_CHECK_ARG(tiles >= 0 && tiles <= kMmdMaxTiles, "tiles must be in [0, ", kMmdMaxTiles, "] (0: auto), got ", tiles);
  IL_CHECK_ARG(persist >= -1 && persist <= 4, "persist must be in [-1, 4] (-1: auto, 0: off), got ", persist);
  g_mmd = mode;
  g_mmd_warps = warps;
  g_mmd_depth = depth;
  g_mmd_tiles = tiles;
  g_mmd_persist = persist;
}

bool set_pdl_enabled(bool on) {
  const bool old = g_pdl;
  g_pdl = on;
  return old;
}

double bench_matmul_ms(const MatmulParams* calls, int ncalls, int iters) {
  IL_CHECK_ARG(ncalls >= 1, "bench_matmul_ms: no calls");
  // Warm-up outside the capture: sets kernel attributes, creates the cuBLAS handle, grows scratch buffers.
  for (int i = 0; i < ncalls; ++i) matmul(calls[i], current_stream());
  IL_CUDA_CHECK(cudaStreamSynchronize(current_stream()));
  return time_graph_ms(iters, [&](int i, cudaStream_t s) { matmul(calls[i % ncalls], s); });
}

double bench_copy_ms(void* const* dsts, const void* const* srcs, int ncopies, size_t nbytes, int iters) {
  IL_CHECK_ARG(ncopies >= 1, "bench_copy_ms: no buffers");
  return time_graph_ms(iters, [&](int i, cudaStream_t s) {
    IL_CUDA_CHECK(cudaMemcpyAsync(dsts[i % ncopies], srcs[i % ncopies], nbytes, cudaMemcpyDeviceToDevice, s));
  });
}

// The read probes of bench_read_ms. Each folds what it reads into one word per block, written to out[block]
// after the PDL wait; its reads, like the decode kernels' weight loads, go out before the wait (they do not
// depend on the previous call), so a probe's time is what a decode kernel streaming the same bytes could
// reach by that way of reading.
// Modes 0 / 1: 16-byte loads into registers, grid-stride, in batches of U loads per thread in flight.
// Mode 0 (U = 4, two blocks of 256 threads per multiprocessor: 32 KB in flight) reads the last words past
// the whole batches one load at a time; mode 1 (U = 8, four blocks: 128 KB in flight) reads them as one
// more batch with the loads past the end predicated off, so a small buffer takes one round trip.
__device__ __forceinline__ uint32_t xor4(const uint4& v) { return v.x ^ v.y ^ v.z ^ v.w; }
template <int U, bool PRED>
__global__ void __launch_bounds__(256) read_probe_kernel(const uint4* __restrict__ src, int64_t n16, uint32_t* out) {
  pdl_trigger();
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  uint32_t acc = 0;
  for (; i + (U - 1) * stride < n16; i += U * stride) {
    uint4 v[U];
#pragma unroll
    for (int j = 0; j < U; ++j) v[j] = __ldg(src + i + j * stride);
#pragma unroll
    for (int j = 0; j < U; ++j) acc ^= xor4(v[j]);
  }
  if constexpr (PRED) {
    if (i < n16) {
      uint4 v[U];
#pragma unroll
      for (int j = 0; j < U; ++j) v[j] = i + j * stride < n16 ? __ldg(src + i + j * stride) : make_uint4(0, 0, 0, 0);
#pragma unroll
      for (int j = 0; j < U; ++j) acc ^= xor4(v[j]);
    }
  } else {
    for (; i < n16; i += stride) acc ^= xor4(__ldg(src + i));
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
  pdl_wait();
  if ((threadIdx.x & 31) == 0) atomicXor(out + blockIdx.x, acc);
}

// Mode 2: the copy engine. Block b (one warp) streams its contiguous share of src (whole 16-byte words) into a
// shared-memory ring of kReadSlots chunks of kReadChunk bytes (cp.async.bulk, one mbarrier per slot), every
// slot in flight: 96 KB per block, two blocks per multiprocessor.
constexpr int kReadChunk = 16384, kReadSlots = 6;
__global__ void __launch_bounds__(32) read_probe_bulk_kernel(const uint8_t* __restrict__ src, int64_t n16,
                                                              uint32_t* out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) uint8_t read_ring[];
  __shared__ __align__(8) uint64_t bars[kReadSlots];
  const int64_t per = (n16 + gridDim.x - 1) / gridDim.x;  // 16-byte words per block
  const int64_t b0 = 16 * imin64(n16, (int64_t)blockIdx.x * per), b1 = 16 * imin64(n16, ((int64_t)blockIdx.x + 1) * per);
  const int64_t nch = (b1 - b0 + kReadChunk - 1) / kReadChunk;
  const bool leader = threadIdx.x == 0;
  auto issue = [&](int64_t c) {  // (leader)
    const int slot = (int)(c % kReadSlots);
    const uint32_t bytes = (uint32_t)imin64(kReadChunk, b1 - b0 - c * kReadChunk);
    mbar_arrive_expect_tx(bars + slot, bytes);
    bulk_copy(read_ring + (size_t)slot * kReadChunk, src + b0 + c * kReadChunk, bytes, bars + slot);
  };
  if (leader) {
    for (int i = 0; i < kReadSlots; ++i) mbar_init(bars + i, 1);
    mbar_init_fence();
    for (int64_t c = 0; c < nch && c < kReadSlots; ++c) issue(c);
  }
  __syncwarp();
  pdl_trigger();
  uint32_t acc = 0;
  for (int64_t c = 0; c < nch; ++c) {
    const int slot = (int)(c % kReadSlots);
    mbar_wait(bars + slot, (uint32_t)((c / kReadSlots) & 1));
    acc ^= reinterpret_cast<const uint32_t*>(read_ring + (size_t)slot * kReadChunk)[threadIdx.x];
    // The slot's reads (generic proxy) before the copy engine's next write into it (async proxy).
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncwarp();
    if (leader && c + kReadSlots < nch) issue(c + kReadSlots);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
  pdl_wait();
  if (leader) atomicXor(out + blockIdx.x, acc);
#elif defined(__CUDA_ARCH__)
  __trap();  // never launched below compute capability 9 (bench_read_ms checks)
#endif
}

// Mode 3: the direct decode kernel's pattern (Q4_K's payload, matmul_mmd.cuh) instead of a linear sweep: the
// buffer as rows of rb bytes (a multiple of 128); a block (8 warps, two per multiprocessor) reads row tiles of
// 16 rows b, b + gridDim.x, ...; its warps take a tile's 128-byte column chunks round-robin, two in flight;
// lane (g, t) reads the 16 bytes at 16 t and 64 + 16 t of a chunk in rows g and g + 8.
__global__ void __launch_bounds__(256) read_probe_rows_kernel(const uint8_t* __restrict__ src, int64_t ntiles,
                                                              int64_t rb, uint32_t* out) {
  pdl_trigger();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t nch = rb / 128;
  uint32_t acc = 0;
  for (int64_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
    const uint8_t* p0 = src + (tile * 16 + g) * rb + 16 * t;
    const uint8_t* p1 = p0 + 8 * rb;
    for (int64_t c = warp; c < nch; c += 16) {  // chunks c and c + 8
      const bool two = c + 8 < nch;
      uint4 v[8];
      v[0] = ld_stream16(p0 + 128 * c);
      v[1] = ld_stream16(p0 + 128 * c + 64);
      v[2] = ld_stream16(p1 + 128 * c);
      v[3] = ld_stream16(p1 + 128 * c + 64);
      v[4] = two ? ld_stream16(p0 + 128 * (c + 8)) : make_uint4(0, 0, 0, 0);
      v[5] = two ? ld_stream16(p0 + 128 * (c + 8) + 64) : make_uint4(0, 0, 0, 0);
      v[6] = two ? ld_stream16(p1 + 128 * (c + 8)) : make_uint4(0, 0, 0, 0);
      v[7] = two ? ld_stream16(p1 + 128 * (c + 8) + 64) : make_uint4(0, 0, 0, 0);
#pragma unroll
      for (int j = 0; j < 8; ++j) acc ^= xor4(v[j]);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
  pdl_wait();
  if (lane == 0) atomicXor(out + blockIdx.x, acc);
}

double bench_read_ms(const void* const* srcs, int nsrcs, size_t nbytes, int iters, int mode, int64_t rows) {
  IL_CHECK_ARG(nsrcs >= 1, "bench_read_ms: no buffers");
  IL_CHECK_ARG(nbytes >= 16 && nbytes % 16 == 0, "bench_read_ms: nbytes must be a positive multiple of 16, got ",
               nbytes);
  IL_CHECK_ARG(mode >= 0 && mode <= 3, "bench_read_ms: mode must be 0, 1, 2 or 3, got ", mode);
  IL_CHECK_ARG(mode != 3 || (rows >= 16 && rows % 16 == 0 && nbytes % rows == 0 && (nbytes / rows) % 128 == 0),
               "bench_read_ms: mode 3 needs rows, a multiple of 16 dividing nbytes into rows of a multiple of 128 "
               "bytes, got rows=", rows, " for ", nbytes, " bytes");
  IL_CHECK_ARG(mode != 2 || mmq_available(), "bench_read_ms: mode 2 (the copy engine) needs compute capability >= 9");
  for (int i = 0; i < nsrcs; ++i)
    IL_CHECK_ARG(reinterpret_cast<uintptr_t>(srcs[i]) % 16 == 0, "bench_read_ms: buffers must be 16-byte aligned");
  constexpr size_t ring = (size_t)kReadChunk * kReadSlots;
  if (mode == 2) {
    static const bool configured = [] {
      IL_CUDA_CHECK(cudaFuncSetAttribute(read_probe_bulk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)ring));
      return true;
    }();
    (void)configured;
  }
  const int grid = mode == 3 ? (int)std::min<int64_t>(rows / 16, 2 * (int64_t)sm_count()) : (mode == 1 ? 4 : 2) * sm_count();
  const Tensor folds = Tensor::empty({grid}, DType::I32, Device::CUDA);  // a word per block
  uint32_t* out = folds.data_as<uint32_t>();
  IL_CUDA_CHECK(cudaMemset(out, 0, folds.nbytes()));
  const int64_t n16 = (int64_t)(nbytes / 16);
  return time_graph_ms(iters, [&](int i, cudaStream_t s) {
    const void* src = srcs[i % nsrcs];
    if (mode == 0)
      launch_pdl(read_probe_kernel<4, false>, (unsigned)grid, 256, 0, s, 1, static_cast<const uint4*>(src), n16, out);
    else if (mode == 1)
      launch_pdl(read_probe_kernel<8, true>, (unsigned)grid, 256, 0, s, 1, static_cast<const uint4*>(src), n16, out);
    else if (mode == 2)
      launch_pdl(read_probe_bulk_kernel, (unsigned)grid, 32, ring, s, 1, static_cast<const uint8_t*>(src), n16, out);
    else
      launch_pdl(read_probe_rows_kernel, (unsigned)grid, 256, 0, s, 1, static_cast<const uint8_t*>(src), rows / 16,
                 (int64_t)(nbytes / rows), out);
  });
}

void matmul(const MatmulParams& p, cudaStream_t stream) {
  const QWeight& w = *p.w;
  const bool is_float = is_float_type(w.type);
  // The fused kernel reads float weights in 16-element pieces with 16-byte loads.
  const bool fused_ok = !is_float || (w.k % 16 == 0 && reinterpret_cast<uintptr_t>(w.data.data()) % 16 == 0);
  bool fused;
  switch (p.path) {
    case MatmulPath::Fused:
    case MatmulPath::FusedStaged:
    case MatmulPath::FusedSplitK:
    case MatmulPath::FusedMma:
      IL_CHECK_ARG(fused_ok, "matmul: the fused kernel needs float weights with k % 16 == 0, 16-byte aligned");
      fused = true;
      break;
    case MatmulPath::Cublas: fused = false; break;
    default: fused = fused_ok && p.t <= (is_float ? kDecodeMaxT : kChunkedDecodeMaxT); break;
  }
  if (!fused) {
    prefill(p, stream);
    return;
  }
  const size_t xrow = (size_t)w.k * dtype_size(p.x_dtype), yrow = (size_t)w.n * dtype_size(p.y_dtype);
  for (int64_t t0 = 0; t0 < p.t; t0 += kDecodeMaxT) {
    MatmulParams c = p;
    c.t = std::min<int64_t>(kDecodeMaxT, p.t - t0);
    c.x = static_cast<const char*>(p.x) + t0 * xrow;
    c.y = static_cast<char*>(p.y) + t0 * yrow;
    decode(c, stream);
  }
}

}  // namespace cuda
}  // namespace inferlab
