// Elementwise kernels: each thread handles 8 consecutive output elements with 16-byte accesses
// (grid-stride), with a scalar path for unaligned data and for the tail.
#include "kernels/cuda/elementwise.cuh"

#include "core/cuda_check.h"
#include "kernels/cuda/vec_io.cuh"

namespace inferlab {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// sigmoid(t) without overflow: exp(t) / (1 + exp(t)) ~= exp(t) to float precision for t < -80.
__device__ __forceinline__ float sigmoid(float t) { return t >= -80.f ? 1.f / (1.f + expf(-t)) : expf(t); }
__device__ __forceinline__ float silu(float x) { return x * sigmoid(x); }
// 0.5 x (1 + tanh(y)) == x * sigmoid(2 y): no cancellation of 1 + tanh(y) for x < 0.
__device__ __forceinline__ float gelu_tanh(float x) {
  const float k0 = 0.7978845608028654f;  // sqrt(2/pi)
  return x * sigmoid(2.f * k0 * (x + 0.044715f * x * x * x));
}
// The same for 16-bit outputs, in ~7 instructions instead of ~40 (the accurate expf and IEEE division
// made the f16/bf16 kernel instruction bound): x / (1 + 2^(-2 y log2 e)) with the approximate
// ex2/rcp units (relative error ~2^-22 each, far below the 2^-8 / 2^-11 rounding of a bf16 / f16 result).
// Overflow is harmless: for y -> -inf, 2^(...) = inf, rcp(inf) = 0 and x * 0 = -0; for y -> +inf,
// 2^(...) = 0 and the result is x. Infinite or NaN x give what gelu_tanh gives (-inf -> nan).
__device__ __forceinline__ float gelu_tanh_fast(float x) {
  const float c1 = -2.f * 0.7978845608028654f * 1.4426950408889634f;  // -2 sqrt(2/pi) log2(e)
  const float c3 = c1 * 0.044715f;
  const float t = x * fmaf(c3, x * x, c1);  // -2 y log2(e)
  return x * rcp_approx(1.f + ex2_approx(t));
}

// To: the output type (the 16-bit outputs may use approximate transcendentals, see gelu_tanh_fast).
template <EwOp OP, class To>
__device__ __forceinline__ float apply(float a, float b) {
  if constexpr (OP == EwOp::Add || OP == EwOp::AddBias) return a + b;
  else if constexpr (OP == EwOp::Swiglu || OP == EwOp::SwigluFused) return silu(a) * b;
  else if constexpr (OP == EwOp::Gelu) return kIs16Bit<To> ? gelu_tanh_fast(a) : gelu_tanh(a);
  else return a;  // Convert
}

template <EwOp OP>
constexpr bool kUnary = OP == EwOp::Gelu || OP == EwOp::Convert;

template <EwOp OP, class Ta, class Tb, class To>
__global__ void __launch_bounds__(kThreads) ew_kernel(EwParams p, bool vec) {
  const int64_t cols = p.cols, n = p.rows * cols;
  const Ta* a = static_cast<const Ta*>(p.a);
  const Tb* b = static_cast<const Tb*>(p.b);
  To* out = static_cast<To*>(p.out);
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  int64_t first_scalar = 0;
  if (vec) {
    const int64_t nchunk = n / 8;
    first_scalar = 8 * nchunk;
    for (int64_t u = tid; u < nchunk; u += stride) {
      const int64_t e = 8 * u;
      float va[8], vb[8], o[8];
      if constexpr (OP == EwOp::SwigluFused) {
        const int64_t r = e / cols, c = e % cols;
        load8(a + r * 2 * cols + c, va);
        load8(a + r * 2 * cols + cols + c, vb);
      } else {
        load8(a + e, va);
        if constexpr (OP == EwOp::AddBias) load8_ro(b + e % cols, vb);
        else if constexpr (!kUnary<OP>) load8(b + e, vb);
        else {
#pragma unroll
          for (int k = 0; k < 8; ++k) vb[k] = 0.f;
        }
      }
#pragma unroll
      for (int k = 0; k < 8; ++k) o[k] = apply<OP, To>(va[k], vb[k]);
      store8(out + e, o);
    }
  }
  for (int64_t e = first_scalar + tid; e < n; e += stride) {
    float va, vb = 0.f;
    if constexpr (OP == EwOp::SwigluFused) {
      const int64_t r = e / cols, c = e % cols;
      va = to_f32(a[r * 2 * cols + c]);
      vb = to_f32(a[r * 2 * cols + cols + c]);
    } else {
      va = to_f32(a[e]);
      if constexpr (OP == EwOp::AddBias) vb = to_f32(b[e % cols]);
      else if constexpr (!kUnary<OP>) vb = to_f32(b[e]);
    }
    out[e] = from_f32<To>(apply<OP, To>(va, vb));
  }
}

template <EwOp OP, class Ta, class Tb, class To>
void launch_typed(const EwParams& p, bool vec, cudaStream_t stream) {
  const int64_t n = p.rows * p.cols;
  const int64_t work = vec ? (n + 7) / 8 : n;
  ew_kernel<OP, Ta, Tb, To><<<grid_size(work, kThreads, 1 << 20), kThreads, 0, stream>>>(p, vec);
  IL_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_elementwise(const EwParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return;
  const bool rowwise = p.op == EwOp::AddBias || p.op == EwOp::SwigluFused;
  const bool vec = aligned16(p.a) && aligned16(p.out) && (p.b == nullptr || aligned16(p.b)) &&
                   (!rowwise || p.cols % 8 == 0);
  switch (p.op) {
    case EwOp::Add:
      IL_DISPATCH_FLOAT(p.a_dtype, Ta, IL_DISPATCH_FLOAT(p.b_dtype, Tb, IL_DISPATCH_FLOAT(p.out_dtype, To, {
        launch_typed<EwOp::Add, Ta, Tb, To>(p, vec, stream);
      })));
      break;
    case EwOp::AddBias:
      IL_DISPATCH_FLOAT(p.a_dtype, Ta, IL_DISPATCH_FLOAT(p.b_dtype, Tb, {
        launch_typed<EwOp::AddBias, Ta, Tb, Ta>(p, vec, stream);
      }));
      break;
    case EwOp::Swiglu:
      IL_DISPATCH_FLOAT(p.a_dtype, Ta, IL_DISPATCH_FLOAT(p.out_dtype, To, {
        launch_typed<EwOp::Swiglu, Ta, Ta, To>(p, vec, stream);
      }));
      break;
    case EwOp::SwigluFused:
      IL_DISPATCH_FLOAT(p.a_dtype, Ta, IL_DISPATCH_FLOAT(p.out_dtype, To, {
        launch_typed<EwOp::SwigluFused, Ta, Ta, To>(p, vec, stream);
      }));
      break;
    case EwOp::Gelu:
      IL_DISPATCH_FLOAT(p.a_dtype, Ta, IL_DISPATCH_FLOAT(p.out_dtype, To, {
        launch_typed<EwOp::Gelu, Ta, Ta, To>(p, vec, stream);
      }));
      break;
    case EwOp::Convert:
      IL_DISPATCH_FLOAT(p.a_dtype, Ta, IL_DISPATCH_FLOAT(p.out_dtype, To, {
        launch_typed<EwOp::Convert, Ta, Ta, To>(p, vec, stream);
      }));
      break;
  }
}

}  // namespace cuda
}  // namespace inferlab
