// RMSNorm / LayerNorm (+ fused residual add). One warp per row for d <= 1024, else one block per row;
// the row stays in registers (128 bytes of it per thread) so x is read once. Rows that are not 16-byte
// aligned, not a multiple of 8 long, or longer than 16384 (32768 for f16/bf16 rows) take a scalar path
// that re-reads the row (from L2) instead.
//
// The register path is latency bound (load, block reduction, store run one after the other in each
// block), so it wants many bytes in flight per SM: f16/bf16 rows are held as loaded (Raw8: 4 registers
// per 8 elements instead of 8 floats), 8 chunks per thread, so 64 registers per thread hold as many row
// bytes as for float rows (4 chunks). All loads of a thread are issued first (streaming: the weights stay
// in L1), each block reduction costs one barrier (block_sum1), and the output loop is rolled.
#include "kernels/cuda/norm.cuh"

#include <type_traits>

#include "core/cuda_check.h"
#include "kernels/cuda/vec_io.cuh"

namespace inferlab {
namespace cuda {
namespace {

// 8-element chunks held per thread: 128 bytes of row per thread either way (8 chunks of f16/bf16,
// 4 of float), so 64 registers and 1024 threads per SM keep 128 KB of rows in flight.
template <class Th>
constexpr int kChunks = kIs16Bit<Th> ? 8 : 4;
constexpr int kMaxThreads = 512;     // largest block of the register path
constexpr int kWarpRowChunks = 128;  // rows of <= 128 chunks (d <= 1024) use one warp each
constexpr int kWarpRowsPerBlock = 4;

// LN: p.layer_norm. RES: residual != nullptr; the held row is then the float sum residual + x (written
// back to residual).
template <class Tx, class To, bool LN, bool RES, class Th = std::conditional_t<RES, float, Tx>>
__global__ void __launch_bounds__(kMaxThreads, 2) norm_vec_kernel(NormParams p, bool warp_mode) {
  constexpr int NC = kChunks<Th>;
  __shared__ float scratch[2][32];
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
  Raw8<Th> v[NC];  // chunk c of this thread: row elements [8 j, 8 j + 8), j = c * tpr + tid
  if constexpr (RES) {  // chunk by chunk (as the sum is stored, later loads may not pass it): 12+ bytes
                        // per element move here, which keeps enough in flight without more registers
    float* res = p.residual + row * p.d;
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int j = c * tpr + tid;
      if (j < nchunk) {
        float a[8], r[8];
        load8(x + 8 * j, a);
        load8(res + 8 * j, r);
#pragma unroll
        for (int k = 0; k < 8; ++k) r[k] = r[k] + a[k];
        v[c].set(r);
        store8(res + 8 * j, r);
      }
    }
  } else {
    const Tx* xc = x + 8 * tid;  // chunk c at xc + c * 8 tpr
#pragma unroll
    for (int c = 0; c < NC; ++c, xc += 8 * tpr)
      if (c * tpr + tid < nchunk) v[c].load_once(xc);
  }
  float s = 0.f;
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    const int j = c * tpr + tid;
    if (j < nchunk) {
      float f[8];
      v[c].get(f);
#pragma unroll
      for (int k = 0; k < 8; ++k) s += LN ? f[k] : f[k] * f[k];
    }
  }
  s = warp_mode ? warp_sum(s) : block_sum1(s, scratch[0]);
  const float inv_d = 1.f / (float)p.d;
  float mean = 0.f, rstd;
  if constexpr (LN) {  // two passes over the registers: sum((x - mean)^2) has no cancellation
    mean = s * inv_d;
    float s2 = 0.f;
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int j = c * tpr + tid;
      if (j < nchunk) {
        float f[8];
        v[c].get(f);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const float dv = f[k] - mean;
          s2 += dv * dv;
        }
      }
    }
    s2 = warp_mode ? warp_sum(s2) : block_sum1(s2, scratch[1]);
    rstd = rsqrtf(s2 * inv_d + p.eps);
  } else {
    rstd = rsqrtf(s * inv_d + p.eps);
  }
  // Output, one chunk per iteration of a rolled loop (the held chunks move down one slot each time): the
  // unrolled form got w/b loads hoisted and kept a code copy per chunk and w/b dtype, costing registers.
  To* out = static_cast<To*>(p.out) + row * p.d;
  const bool bias = LN && p.b;
#pragma unroll 1
  for (int j = tid; j < nchunk; j += tpr) {
    float f[8], w[8], b[8], o[8];
    load8_any(p.w, p.w_dtype, 8 * j, w);  // w and b loads both issued before either is used
    if (bias) load8_any(p.b, p.b_dtype, 8 * j, b);
    v[0].get(f);
#pragma unroll
    for (int k = 0; k < 8; ++k) o[k] = (f[k] - mean) * rstd * w[k];
    if (bias) {
#pragma unroll
      for (int k = 0; k < 8; ++k) o[k] += b[k];
    }
    store8(out + 8 * j, o);
#pragma unroll
    for (int c = 0; c + 1 < NC; ++c) v[c] = v[c + 1];
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

template <class Tx, class To, bool RES>
void launch_typed(const NormParams& p, bool aligned, cudaStream_t stream) {
  using Th = std::conditional_t<RES, float, Tx>;
  const int64_t nchunk = p.d / 8;
  if (aligned && nchunk <= (int64_t)kChunks<Th> * kMaxThreads) {
    const bool warp_mode = nchunk <= kWarpRowChunks;
    unsigned grid = (unsigned)p.rows;
    int threads = 32 * kWarpRowsPerBlock;
    if (warp_mode) {
      grid = (unsigned)((p.rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock);
    } else {
      threads = (int)((nchunk + kChunks<Th> - 1) / kChunks<Th>);
      threads = (threads + 31) / 32 * 32;
      if (threads < 64) threads = 64;
    }
    if (p.layer_norm) norm_vec_kernel<Tx, To, true, RES><<<grid, threads, 0, stream>>>(p, warp_mode);
    else norm_vec_kernel<Tx, To, false, RES><<<grid, threads, 0, stream>>>(p, warp_mode);
  } else {
    const int threads = p.d >= 4096 ? 512 : p.d >= 1024 ? 256 : 128;
    norm_generic_kernel<Tx, To><<<(unsigned)p.rows, threads, 0, stream>>>(p);
  }
  IL_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_norm(const NormParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.d == 0) return;
  const bool aligned = p.d % 8 == 0 && aligned16(p.x) && aligned16(p.w) && (!p.b || aligned16(p.b)) &&
                       (!p.residual || aligned16(p.residual)) && aligned16(p.out);
  IL_DISPATCH_FLOAT(p.x_dtype, Tx, IL_DISPATCH_FLOAT(p.out_dtype, To, {
    if (p.residual) launch_typed<Tx, To, true>(p, aligned, stream);
    else launch_typed<Tx, To, false>(p, aligned, stream);
  }));
}

}  // namespace cuda
}  // namespace inferlab
