#include "kernels/cuda/kv_cache_store.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/cuda_check.h"
#include "core/error.h"

namespace inferlab {
namespace cuda {

namespace {

template <class T> __device__ __forceinline__ float to_f32(T x);
template <> __device__ __forceinline__ float to_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f32<__half>(__half x) { return __half2float(x); }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Grid [ceil(Hkv*D / 256), min(T, 65535)]: one thread per (kv-head, dim) element of a token's K and V
// row, striding over tokens.
template <class Tin, class Tc>
__global__ void kv_store_kernel(const KVStoreParams p) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;  // index within the token's [Hkv, D] row
  if (i >= p.Hkv * p.D) return;
  const int h = i / p.D, d = i % p.D;
  for (int t = blockIdx.y; t < p.T; t += gridDim.y) {
    const int slot = p.seq_slots[t], pos = p.positions[t];
    if (slot < 0 || slot >= p.n_seqs || pos < 0 || pos >= p.max_tokens) continue;
    const int64_t src = (int64_t)t * p.Hkv * p.D + i;
    const int64_t dst = (((int64_t)slot * p.Hkv + h) * p.max_tokens + pos) * p.D + d;
    static_cast<Tc*>(p.k_cache)[dst] = from_f32<Tc>(to_f32(static_cast<const Tin*>(p.k)[src]));
    static_cast<Tc*>(p.v_cache)[dst] = from_f32<Tc>(to_f32(static_cast<const Tin*>(p.v)[src]));
  }
}

template <class Tin, class Tc>
void launch2(const KVStoreParams& p, cudaStream_t stream) {
  const int per_token = p.Hkv * p.D;
  const dim3 grid((per_token + 255) / 256, p.T < 65535 ? p.T : 65535);
  kv_store_kernel<Tin, Tc><<<grid, 256, 0, stream>>>(p);
  IL_CUDA_CHECK_LAUNCH();
}

template <class Tin>
void launch1(const KVStoreParams& p, cudaStream_t stream) {
  switch (p.cache_dtype) {
    case DType::F32: return launch2<Tin, float>(p, stream);
    case DType::F16: return launch2<Tin, __half>(p, stream);
    case DType::BF16: return launch2<Tin, __nv_bfloat16>(p, stream);
    default: throw ValueError(str_cat("kv_cache_store: unsupported cache dtype ", dtype_name(p.cache_dtype)));
  }
}

}  // namespace

void launch_kv_cache_store(const KVStoreParams& p, cudaStream_t stream) {
  if (p.T <= 0 || p.Hkv <= 0 || p.D <= 0) return;
  switch (p.in_dtype) {
    case DType::F32: return launch1<float>(p, stream);
    case DType::F16: return launch1<__half>(p, stream);
    case DType::BF16: return launch1<__nv_bfloat16>(p, stream);
    default: throw ValueError(str_cat("kv_cache_store: unsupported k/v dtype ", dtype_name(p.in_dtype)));
  }
}

}  // namespace cuda
}  // namespace inferlab
