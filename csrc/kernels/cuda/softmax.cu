// Softmax: like the norms, one warp per row for n <= 1024 and one block per row up to n = 16384 (32768 for
// f16/bf16 input), holding the row in registers (x read once, out written once). Longer or unaligned rows
// take a scalar path: one pass for an online (max, sum) pair, one pass to write.
//
// The register path is latency bound like the norms (see norm.cu): each thread holds 128 bytes of the row
// as loaded (8 chunks of f16/bf16 kept raw, 4 of float), all loads issued first, one barrier per block
// reduction. A 16-bit row is not expanded to floats: its exps are recomputed for the output (the same
// values as in the sum). 16-bit outputs use the ex2 unit directly (relative error ~2^-22).
#include "kernels/cuda/softmax.cuh"

#include "core/cuda_check.h"
#include "kernels/cuda/vec_io.cuh"

namespace inferlab {
namespace cuda {
namespace {

template <class Tx>
constexpr int kChunks = kIs16Bit<Tx> ? 8 : 4;  // 8-element chunks held per thread
constexpr int kMaxThreads = 512;
constexpr int kWarpRowChunks = 128;
constexpr int kWarpRowsPerBlock = 4;

// exp(t) for t <= 0 (t = x - max), by output type.
template <class To>
__device__ __forceinline__ float exp_le0(float t) {
  if constexpr (kIs16Bit<To>) return ex2_approx(t * 1.4426950408889634f);  // exp(-inf) = 0 either way
  else return expf(t);
}

template <class Tx, class To>
__global__ void __launch_bounds__(kMaxThreads, 2) softmax_vec_kernel(SoftmaxParams p, bool warp_mode) {
  constexpr int NC = kChunks<Tx>;
  constexpr bool kRecompute = kIs16Bit<Tx>;  // else the exps overwrite the held (float) row
  __shared__ float scratch[2][32];
  int64_t row;
  int tid, tpr;
  if (warp_mode) {
    row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    tid = threadIdx.x & 31;
    tpr = 32;
    if (row >= p.rows) return;
  } else {
    row = blockIdx.x;
    tid = threadIdx.x;
    tpr = blockDim.x;
  }
  const int nchunk = (int)(p.n / 8);
  Raw8<Tx> v[NC];  // chunk c of this thread: row elements [8 j, 8 j + 8), j = c * tpr + tid
  {
    const Tx* xc = static_cast<const Tx*>(p.x) + row * p.n + 8 * tid;  // chunk c at xc + c * 8 tpr
#pragma unroll
    for (int c = 0; c < NC; ++c, xc += 8 * tpr)
      if (c * tpr + tid < nchunk) v[c].load_once(xc);
  }
  float m = -INFINITY;
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    if (c * tpr + tid < nchunk) {
      float f[8];
      v[c].get(f);
#pragma unroll
      for (int k = 0; k < 8; ++k) m = fmaxf(m, f[k]);
    }
  }
  m = warp_mode ? warp_max(m) : block_max1(m, scratch[0]);
  if (m == -INFINITY) m = 0.f;  // all -inf: exp(-inf - 0) = 0, giving 0/0 = nan like the reference
  float s = 0.f;
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    if (c * tpr + tid < nchunk) {
      float f[8];
      v[c].get(f);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        f[k] = exp_le0<To>(f[k] - m);
        s += f[k];
      }
      if constexpr (!kRecompute) v[c].set(f);
    }
  }
  s = warp_mode ? warp_sum(s) : block_sum1(s, scratch[1]);
  const float inv = 1.f / s;
  // Output: a rolled loop over the chunks (they move down one slot per iteration), as in norm.cu.
  To* out = static_cast<To*>(p.out) + row * p.n;
#pragma unroll 1
  for (int j = tid; j < nchunk; j += tpr) {
    float f[8];
    v[0].get(f);
#pragma unroll
    for (int k = 0; k < 8; ++k) f[k] = (kRecompute ? exp_le0<To>(f[k] - m) : f[k]) * inv;
    store8(out + 8 * j, f);
#pragma unroll
    for (int c = 0; c + 1 < NC; ++c) v[c] = v[c + 1];
  }
}

__device__ __forceinline__ void online_merge(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  if (mn == -INFINITY) return;  // both empty
  s = s * expf(m - mn) + s2 * expf(m2 - mn);
  m = mn;
}

template <class Tx, class To>
__global__ void softmax_generic_kernel(SoftmaxParams p) {
  __shared__ float sm[32], ss[32];
  const int64_t row = blockIdx.x;
  const Tx* x = static_cast<const Tx*>(p.x) + row * p.n;
  float m = -INFINITY, s = 0.f;
  for (int64_t i = threadIdx.x; i < p.n; i += blockDim.x) {
    const float v = to_f32(x[i]);
    if (v == -INFINITY) continue;  // contributes nothing (and -inf - -inf would be nan)
    if (v > m) {
      s = s * expf(m - v) + 1.f;
      m = v;
    } else {
      s += expf(v - m);
    }
  }
  // warp, then block combination of (max, sum) pairs
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    online_merge(m, s, m2, s2);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (lane == 0) {
    sm[warp] = m;
    ss[warp] = s;
  }
  __syncthreads();
  m = lane < nwarps ? sm[lane] : -INFINITY;
  s = lane < nwarps ? ss[lane] : 0.f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    online_merge(m, s, m2, s2);
  }
  if (m == -INFINITY) m = 0.f;
  const float inv = 1.f / s;
  To* out = static_cast<To*>(p.out) + row * p.n;
  for (int64_t i = threadIdx.x; i < p.n; i += blockDim.x) out[i] = from_f32<To>(expf(to_f32(x[i]) - m) * inv);
}

}  // namespace

void launch_softmax(const SoftmaxParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.n == 0) return;
  const int64_t nchunk = p.n / 8;
  const bool aligned = p.n % 8 == 0 && aligned16(p.x) && aligned16(p.out);
  IL_DISPATCH_FLOAT(p.x_dtype, Tx, IL_DISPATCH_FLOAT(p.out_dtype, To, {
    if (aligned && nchunk <= kWarpRowChunks) {
      const unsigned grid = (unsigned)((p.rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock);
      softmax_vec_kernel<Tx, To><<<grid, 32 * kWarpRowsPerBlock, 0, stream>>>(p, true);
    } else if (aligned && nchunk <= (int64_t)kChunks<Tx> * kMaxThreads) {
      int threads = (int)((nchunk + kChunks<Tx> - 1) / kChunks<Tx>);
      threads = (threads + 31) / 32 * 32;
      if (threads < 64) threads = 64;
      softmax_vec_kernel<Tx, To><<<(unsigned)p.rows, threads, 0, stream>>>(p, false);
    } else {
      softmax_generic_kernel<Tx, To><<<(unsigned)p.rows, p.n >= 8192 ? 1024 : 256, 0, stream>>>(p);
    }
    IL_CUDA_CHECK_LAUNCH();
  }));
}

}  // namespace cuda
}  // namespace inferlab
