// RoPE: one block per token. The block computes the token's cos/sin table into shared memory -- the angle
// pos * theta^(-2i/n_rot) in double (it reaches ~1e5 rad at long positions, where float32 would lose
// ~1e-2 rad), reduced mod 2 pi in double, then sincosf -- and rotates every head with 16-byte accesses
// where the layout allows.
#include "kernels/cuda/rope.cuh"

#include <algorithm>
#include <cmath>

#include "core/cuda_check.h"
#include "kernels/cuda/vec_io.cuh"

namespace inferlab {
namespace cuda {
namespace {

// Inverse frequencies theta^(-2i/n_rot), computed once on the host (in double) and passed by value.
constexpr int kMaxTableHalf = 256;
struct RopeFreqs {
  double inv_freq[kMaxTableHalf];
  int n = 0;  // entries filled (== n_rot / 2), or 0: compute them in the kernel
};

template <class Tx, class To>
__global__ void rope_kernel(RopeParams p, RopeFreqs f, bool vec, bool inplace) {
  extern __shared__ float cs[];  // cos [half], then sin [half]
  const int64_t t = blockIdx.x;
  const int half = p.n_rot / 2;
  const double pos = (double)p.positions[t];
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const double inv_freq = f.n ? f.inv_freq[i] : pow((double)p.theta, -2.0 * (double)i / (double)p.n_rot);
    // angle in double, reduced to [-pi, pi] (two-part 2 pi), then float sincos of the small remainder
    const double a = pos * inv_freq;
    const double k = rint(a * 0.15915494309189535);
    double r = fma(-k, 6.283185307179586, a);
    r = fma(-k, 2.4492935982947064e-16, r);
    float s, c;
    sincosf((float)r, &s, &c);
    cs[i] = c;
    cs[half + i] = s;
  }
  __syncthreads();
  const int64_t D = p.D, H = p.H;
  const Tx* x = static_cast<const Tx*>(p.x) + t * H * D;
  To* out = static_cast<To*>(p.out) + t * H * D;
  if (vec && p.style == 0) {
    // chunks of 8 = 4 adjacent pairs
    const int64_t cph = D / 8, total = H * cph;
    for (int64_t u = threadIdx.x; u < total; u += blockDim.x) {
      const int64_t h = u / cph, j = u % cph, off = h * D + 8 * j;
      if (8 * j < p.n_rot) {
        float v[8], o[8];
        load8(x + off, v);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const int i = (int)(4 * j) + k;
          const float c = cs[i], s = cs[half + i];
          o[2 * k] = v[2 * k] * c - v[2 * k + 1] * s;
          o[2 * k + 1] = v[2 * k] * s + v[2 * k + 1] * c;
        }
        store8(out + off, o);
      } else if (!inplace) {
        float v[8];
        load8(x + off, v);
        store8(out + off, v);
      }
    }
  } else if (vec) {
    // neox: chunk j pairs elements [8j, 8j+8) with [half+8j, half+8j+8); then copy chunks
    const int64_t rc = half / 8, cc = (D - p.n_rot) / 8, uph = rc + cc, total = H * uph;
    for (int64_t u = threadIdx.x; u < total; u += blockDim.x) {
      const int64_t h = u / uph, j = u % uph;
      if (j < rc) {
        const int64_t off = h * D + 8 * j;
        float a[8], b[8], oa[8], ob[8];
        load8(x + off, a);
        load8(x + off + half, b);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const int i = (int)(8 * j) + k;
          const float c = cs[i], s = cs[half + i];
          oa[k] = a[k] * c - b[k] * s;
          ob[k] = a[k] * s + b[k] * c;
        }
        store8(out + off, oa);
        store8(out + off + half, ob);
      } else if (!inplace) {
        const int64_t off = h * D + p.n_rot + 8 * (j - rc);
        float v[8];
        load8(x + off, v);
        store8(out + off, v);
      }
    }
  } else {
    // scalar: units [0, half) are pairs, [half, half + D - n_rot) are copied elements
    const int64_t uph = half + (D - p.n_rot), total = H * uph;
    for (int64_t u = threadIdx.x; u < total; u += blockDim.x) {
      const int64_t h = u / uph, j = u % uph;
      if (j < half) {
        const int64_t ia = h * D + (p.style == 0 ? 2 * j : j);
        const int64_t ib = h * D + (p.style == 0 ? 2 * j + 1 : j + half);
        const float a = to_f32(x[ia]), b = to_f32(x[ib]);
        const float c = cs[j], s = cs[half + j];
        out[ia] = from_f32<To>(a * c - b * s);
        out[ib] = from_f32<To>(a * s + b * c);
      } else if (!inplace) {
        const int64_t i = h * D + p.n_rot + (j - half);
        out[i] = from_f32<To>(to_f32(x[i]));
      }
    }
  }
}

}  // namespace

void launch_rope(const RopeParams& p, cudaStream_t stream) {
  if (p.T == 0 || p.H == 0 || p.D == 0) return;
  const int half = p.n_rot / 2;
  const bool vec = p.D % 8 == 0 && aligned16(p.x) && aligned16(p.out) &&
                   (p.style == 0 ? p.n_rot % 8 == 0 : half % 8 == 0);
  const bool inplace = p.out == p.x && p.out_dtype == p.x_dtype;
  const int64_t units = p.H * (vec ? p.D / 8 : p.D);
  int threads = (int)std::min<int64_t>(256, (units + 31) / 32 * 32);
  if (threads < 32) threads = 32;
  const size_t smem = sizeof(float) * 2 * (size_t)(half > 0 ? half : 1);
  RopeFreqs f;
  if (half <= kMaxTableHalf) {
    for (int i = 0; i < half; ++i) f.inv_freq[i] = std::pow((double)p.theta, -2.0 * (double)i / (double)p.n_rot);
    f.n = half;
  }
  IL_DISPATCH_FLOAT(p.x_dtype, Tx, IL_DISPATCH_FLOAT(p.out_dtype, To, {
    rope_kernel<Tx, To><<<(unsigned)p.T, threads, smem, stream>>>(p, f, vec, inplace);
    IL_CUDA_CHECK_LAUNCH();
  }));
}

}  // namespace cuda
}  // namespace inferlab
