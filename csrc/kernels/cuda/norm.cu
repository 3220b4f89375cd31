// RMSNorm / LayerNorm (+ fused residual add). One warp per row for d <= 1024, else one block per row;
// the row stays in registers (4 chunks of 8 elements per thread) so x is read once. Rows that are
// not 16-byte aligned, not a multiple of 8 long, or longer than 16384 take a scalar path that
// re-reads the row (from L2) instead.
#include "kernels/cuda/norm.cuh"

#include "core/cuda_check.h"
#include "kernels/cuda/vec_io.cuh"

namespace inferlab {
namespace cuda {
namespace {

constexpr int kChunks = 4;           // 8-element chunks held per thread
constexpr int kMaxThreads = 512;     // largest block of the register path
constexpr int kWarpRowChunks = 128;  // rows of <= 128 chunks (d <= 1024) use one warp each
constexpr int kWarpRowsPerBlock = 4;

template <class Tx, class To>
__global__ void __launch_bounds__(kMaxThreads) norm_vec_kernel(NormParams p, bool warp_mode) {
  __shared__ float scratch[33];
  int64_t row;
  int tid, tpr;
  if (warp_mode) {
    row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    tid = threadIdx.x & 31;
    tpr = 32;
    if (row >= p.rows) return;  // whole warp leaves; warp mode has no block-wide barrier
  } else {
    row = blockIdx.x;
    tid = threadIdx.x;
    tpr = blockDim.x;
  }
  const int nchunk = (int)(p.d / 8);
  const Tx* x = static_cast<const Tx*>(p.x) + row * p.d;
  float* res = p.residual ? p.residual + row * p.d : nullptr;
  float v[kChunks][8];
  float s = 0.f;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int j = c * tpr + tid;
    if (j < nchunk) {
      load8(x + 8 * j, v[c]);
      if (res) {
        float r[8];
        load8(res + 8 * j, r);
#pragma unroll
        for (int k = 0; k < 8; ++k) v[c][k] = r[k] + v[c][k];
        store8(res + 8 * j, v[c]);
      }
#pragma unroll
      for (int k = 0; k < 8; ++k) s += p.layer_norm ? v[c][k] : v[c][k] * v[c][k];
    }
  }
  s = warp_mode ? warp_sum(s) : block_sum(s, scratch);
  const float inv_d = 1.f / (float)p.d;
  float mean = 0.f, rstd;
  if (p.layer_norm) {
    mean = s * inv_d;
    float s2 = 0.f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * tpr + tid;
      if (j < nchunk) {
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const float dv = v[c][k] - mean;
          s2 += dv * dv;
        }
      }
    }
    s2 = warp_mode ? warp_sum(s2) : block_sum(s2, scratch);
    rstd = rsqrtf(s2 * inv_d + p.eps);
  } else {
    rstd = rsqrtf(s * inv_d + p.eps);
  }
  To* out = static_cast<To*>(p.out) + row * p.d;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int j = c * tpr + tid;
    if (j < nchunk) {
      float w[8], o[8];
      load8_any(p.w, p.w_dtype, 8 * j, w);
#pragma unroll
      for (int k = 0; k < 8; ++k) o[k] = (v[c][k] - mean) * rstd * w[k];
      if (p.b) {
        float b[8];
        load8_any(p.b, p.b_dtype, 8 * j, b);
#pragma unroll
        for (int k = 0; k < 8; ++k) o[k] += b[k];
      }
      store8(out + 8 * j, o);
    }
  }
}

// Scalar fallback: one block per row, three passes over the row (the later ones hit L2).
// Each element is read and written by the same thread in every pass, so out may be x or residual.
template <class Tx, class To>
__global__ void norm_generic_kernel(NormParams p) {
  __shared__ float scratch[33];
  const int64_t row = blockIdx.x;
  const Tx* x = static_cast<const Tx*>(p.x) + row * p.d;
  float* res = p.residual ? p.residual + row * p.d : nullptr;
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < p.d; i += blockDim.x) {
    float v = to_f32(x[i]);
    if (res) {
      v = res[i] + v;
      res[i] = v;
    }
    s += p.layer_norm ? v : v * v;
  }
  s = block_sum(s, scratch);
  const float inv_d = 1.f / (float)p.d;
  float mean = 0.f, rstd;
  if (p.layer_norm) {
    mean = s * inv_d;
    float s2 = 0.f;
    for (int64_t i = threadIdx.x; i < p.d; i += blockDim.x) {
      const float dv = (res ? res[i] : to_f32(x[i])) - mean;
      s2 += dv * dv;
    }
    s2 = block_sum(s2, scratch);
    rstd = rsqrtf(s2 * inv_d + p.eps);
  } else {
    rstd = rsqrtf(s * inv_d + p.eps);
  }
  To* out = static_cast<To*>(p.out) + row * p.d;
  for (int64_t i = threadIdx.x; i < p.d; i += blockDim.x) {
    const float v = res ? res[i] : to_f32(x[i]);
    float o = (v - mean) * rstd * load_any(p.w, p.w_dtype, i);
    if (p.b) o += load_any(p.b, p.b_dtype, i);
    out[i] = from_f32<To>(o);
  }
}

}  // namespace

void launch_norm(const NormParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.d == 0) return;
  const int64_t nchunk = p.d / 8;
  const bool vec = p.d % 8 == 0 && nchunk <= (int64_t)kChunks * kMaxThreads && aligned16(p.x) &&
                   aligned16(p.w) && (!p.b || aligned16(p.b)) && (!p.residual || aligned16(p.residual)) &&
                   aligned16(p.out);
  IL_DISPATCH_FLOAT(p.x_dtype, Tx, IL_DISPATCH_FLOAT(p.out_dtype, To, {
    if (vec && nchunk <= kWarpRowChunks) {
      const unsigned grid = (unsigned)((p.rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock);
      norm_vec_kernel<Tx, To><<<grid, 32 * kWarpRowsPerBlock, 0, stream>>>(p, true);
    } else if (vec) {
      int threads = (int)((nchunk + kChunks - 1) / kChunks);
      threads = (threads + 31) / 32 * 32;
      if (threads < 64) threads = 64;
      norm_vec_kernel<Tx, To><<<(unsigned)p.rows, threads, 0, stream>>>(p, false);
    } else {
      const int threads = p.d >= 4096 ? 512 : p.d >= 1024 ? 256 : 128;
      norm_generic_kernel<Tx, To><<<(unsigned)p.rows, threads, 0, stream>>>(p);
    }
    IL_CUDA_CHECK_LAUNCH();
  }));
}

}  // namespace cuda
}  // namespace inferlab
