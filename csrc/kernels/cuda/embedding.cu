// Embedding gather. Float tables: each thread converts 8 elements (16-byte loads). GGUF tables: each
// thread dequantizes one 32-element group with kernels/dequant_group.h (shared with a host check).
#include "kernels/cuda/embedding.cuh"

#include "core/cuda_check.h"
#include "kernels/cuda/vec_io.cuh"
#include "kernels/dequant_group.h"

// The matmul's split layout (layout 1) of quantized CUDA weights is decoded with its own device code.
#if __has_include("kernels/cuda/dequant.cuh")
#include "kernels/cuda/dequant.cuh"
#define IL_EMBEDDING_SPLIT 1
#else
#define IL_EMBEDDING_SPLIT 0
#endif

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

#if IL_EMBEDDING_SPLIT
// Split layout: each thread decodes one unit (RUNS runs of 16 elements) of one block with dequant_unit.
template <GGMLType T, class To>
__global__ void embedding_split_kernel(EmbeddingParams p, QView v) {
  using Q = QT<T>;
  const int64_t upr = v.nb * Q::LPB, total = p.T * upr;
  To* out = static_cast<To*>(p.out);
  for (int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; u < total; u += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = u / upr, r = u % upr, blk = r / Q::LPB;
    const int sub = (int)(r % Q::LPB);
    const int64_t id = p.ids[t];
    float y[16 * Q::RUNS];
    if (id >= 0 && id < p.V) {
      dequant_unit<T>(v, id, blk, sub, y);
    } else {
#pragma unroll
      for (int k = 0; k < 16 * Q::RUNS; ++k) y[k] = 0.f;
    }
    To* o = out + t * p.D + blk * Q::QK;
#pragma unroll
    for (int j = 0; j < Q::RUNS; ++j) {
      const int off = Q::run_offset(sub, j);
#pragma unroll
      for (int e = 0; e < 16; ++e) o[off + e] = from_f32<To>(y[16 * j + e]);
    }
  }
}
#endif

}  // namespace

bool embedding_supports_split_layout() { return IL_EMBEDDING_SPLIT != 0; }

void launch_embedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.T == 0 || p.D == 0) return;
  if (p.ggml_type < 0) {
    const bool vec = p.D % 8 == 0 && aligned16(p.table) && aligned16(p.out);
    const int64_t work = p.T * (vec ? p.D / 8 : p.D);
    IL_DISPATCH_FLOAT(p.table_dtype, Tt, IL_DISPATCH_FLOAT(p.out_dtype, To, {
      embedding_kernel<Tt, To><<<grid_size(work, kThreads, 1 << 20), kThreads, 0, stream>>>(p, vec);
      IL_CUDA_CHECK_LAUNCH();
    }));
  } else if (p.layout == 1) {
#if IL_EMBEDDING_SPLIT
    const GGMLType type = (GGMLType)p.ggml_type;
    QView v;
    v.n = p.V;
    v.k = p.D;
    v.pay = static_cast<const uint8_t*>(p.table);
    v.nb = p.D / ggml_type_traits(p.ggml_type)->block_size;
    v.side = v.pay + split_side_offset(type, p.V, p.D);
    dispatch_qtype(type, [&](auto tag) {
      constexpr GGMLType T = decltype(tag)::value;
      if constexpr (!QT<T>::IS_FLOAT) {
        const int64_t work = p.T * v.nb * QT<T>::LPB;
        IL_DISPATCH_FLOAT(p.out_dtype, To, {
          embedding_split_kernel<T, To><<<grid_size(work, kThreads, 1 << 20), kThreads, 0, stream>>>(p, v);
          IL_CUDA_CHECK_LAUNCH();
        });
      } else {
        throw ValueError("internal: float tables have no split layout");
      }
    });
#else
    throw NotSupportedError("embedding_q: this build cannot read the split layout (layout 1)");
#endif
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
