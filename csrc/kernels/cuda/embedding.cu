// Embedding gather. Float tables: each thread converts 8 elements (16-byte loads). GGUF tables: each
// thread dequantizes one 32-element group with kernels/dequant_group.h (shared with a host check).
#include "kernels/cuda/embedding.cuh"

#include "core/cuda_check.h"
#include "kernels/cuda/vec_io.cuh"
#include "kernels/dequant_group.h"

namespace inferlab {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <class Tt, class To>
__global__ void embedding_kernel(EmbeddingParams p, bool vec) {
  const int64_t per_row = vec ? p.D / 8 : p.D;
  const int64_t total = p.T * per_row;
  const Tt* table = static_cast<const Tt*>(p.table);
  To* out = static_cast<To*>(p.out);
  for (int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; u < total; u += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = u / per_row, j = u % per_row;
    const int64_t id = p.ids[t];
    const bool ok = id >= 0 && id < p.V;
    if (vec) {
      float v[8];
      if (ok) {
        load8_ro(table + id * p.D + 8 * j, v);
      } else {
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = 0.f;
      }
      store8(out + t * p.D + 8 * j, v);
    } else {
      out[t * p.D + j] = from_f32<To>(ok ? to_f32(table[id * p.D + j]) : 0.f);
    }
  }
}

template <class To>
__global__ void embedding_q_kernel(EmbeddingParams p, bool vec_out) {
  const int64_t groups = p.D / 32, total = p.T * groups;
  const uint8_t* table = static_cast<const uint8_t*>(p.table);
  To* out = static_cast<To*>(p.out);
  for (int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; u < total; u += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = u / groups, g = u % groups;
    const int64_t id = p.ids[t];
    float y[32];
    if (id >= 0 && id < p.V) {
      qgroup::dequant_group(p.ggml_type, table + id * p.row_bytes, g, y);
    } else {
#pragma unroll
      for (int k = 0; k < 32; ++k) y[k] = 0.f;
    }
    To* o = out + t * p.D + 32 * g;
    if (vec_out) {
#pragma unroll
      for (int c = 0; c < 4; ++c) store8(o + 8 * c, *reinterpret_cast<const float(*)[8]>(y + 8 * c));
    } else {
#pragma unroll
      for (int k = 0; k < 32; ++k) o[k] = from_f32<To>(y[k]);
    }
  }
}

}  // namespace

void launch_embedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.T == 0 || p.D == 0) return;
  if (p.ggml_type < 0) {
    const bool vec = p.D % 8 == 0 && aligned16(p.table) && aligned16(p.out);
    const int64_t work = p.T * (vec ? p.D / 8 : p.D);
    IL_DISPATCH_FLOAT(p.table_dtype, Tt, IL_DISPATCH_FLOAT(p.out_dtype, To, {
      embedding_kernel<Tt, To><<<grid_size(work, kThreads, 1 << 20), kThreads, 0, stream>>>(p, vec);
      IL_CUDA_CHECK_LAUNCH();
    }));
  } else {
    const bool vec_out = aligned16(p.out);  // D is a multiple of 32
    const int64_t work = p.T * (p.D / 32);
    IL_DISPATCH_FLOAT(p.out_dtype, To, {
      embedding_q_kernel<To><<<grid_size(work, kThreads, 1 << 20), kThreads, 0, stream>>>(p, vec_out);
      IL_CUDA_CHECK_LAUNCH();
    });
  }
}

}  // namespace cuda
}  // namespace inferlab
