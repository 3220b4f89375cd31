// Softmax: like the norms, one warp per row for n <= 1024 and one block per row up to n = 16384,
// holding the row in registers (x read once, out written once). Longer or unaligned rows take a
// scalar path: one pass for an online (max, sum) pair, one pass to write.
#include "kernels/cuda/softmax.cuh"

#include "core/cuda_check.h"
#include "kernels/cuda/vec_io.cuh"

namespace inferlab {
namespace cuda {
namespace {

constexpr int kChunks = 4;
constexpr int kMaxThreads = 512;
constexpr int kWarpRowChunks = 128;
constexpr int kWarpRowsPerBlock = 4;

template <class Tx, class To>
__global__ void __launch_bounds__(kMaxThreads) softmax_vec_kernel(SoftmaxParams p, bool warp_mode) {
  __shared__ float scratch[33];
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
  const Tx* x = static_cast<const Tx*>(p.x) + row * p.n;
  float v[kChunks][8];
  float m = -INFINITY;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int j = c * tpr + tid;
    if (j < nchunk) {
      load8(x + 8 * j, v[c]);
#pragma unroll
      for (int k = 0; k < 8; ++k) m = fmaxf(m, v[c][k]);
    }
  }
  m = warp_mode ? warp_max(m) : block_max(m, scratch);
  if (m == -INFINITY) m = 0.f;  // all -inf: exp(-inf - 0) = 0, giving 0/0 = nan like the reference
  float s = 0.f;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int j = c * tpr + tid;
    if (j < nchunk) {
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        v[c][k] = expf(v[c][k] - m);
        s += v[c][k];
      }
    }
  }
  s = warp_mode ? warp_sum(s) : block_sum(s, scratch);
  const float inv = 1.f / s;
  To* out = static_cast<To*>(p.out) + row * p.n;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int j = c * tpr + tid;
    if (j < nchunk) {
#pragma unroll
      for (int k = 0; k < 8; ++k) v[c][k] *= inv;
      store8(out + 8 * j, v[c]);
    }
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
  const bool vec = p.n % 8 == 0 && nchunk <= (int64_t)kChunks * kMaxThreads && aligned16(p.x) && aligned16(p.out);
  IL_DISPATCH_FLOAT(p.x_dtype, Tx, IL_DISPATCH_FLOAT(p.out_dtype, To, {
    if (vec && nchunk <= kWarpRowChunks) {
      const unsigned grid = (unsigned)((p.rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock);
      softmax_vec_kernel<Tx, To><<<grid, 32 * kWarpRowsPerBlock, 0, stream>>>(p, true);
    } else if (vec) {
      int threads = (int)((nchunk + kChunks - 1) / kChunks);
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
