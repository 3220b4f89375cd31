// Embedding gather. Float tables: each thread converts 8 elements (16-byte loads). GGUF tables: a block
// per row stages the row's bytes in shared memory and dequantizes 32-element groups from there with
// kernels/dequant_group.h (shared with a host check); see embedding_q_kernel.
#include "kernels/cuda/embedding.cuh"

#include <type_traits>

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

// ---- GGUF-layout tables (layout 0) --------------------------------------------------------------
// One block per output row, in chunks of kQGroups 32-element groups (a whole number of GGUF blocks,
// since K-quant blocks hold 8 groups): (1) the chunk's bytes are copied to shared memory with 16-byte
// cp.async (unaligned head and tail bytes one by one; shared memory keeps the global address mod 16, so
// any row_bytes and table offset work), (2) thread i dequantizes group i from shared memory with
// qgroup::dequant_group into a float tile, (3) the tile is stored with consecutive threads writing
// consecutive 16-byte pieces of the output row. The old kernel (one thread per group, byte loads of
// the unaligned blocks straight from global memory) issued ~1 load instruction per output element.
constexpr int kQThreads = 128;
constexpr int kQGroups = kQThreads;  // groups per chunk: one per thread
static_assert(kQGroups % 8 == 0, "a chunk must hold whole K-quant blocks (8 groups each)");

// Shared memory: the float tile [kQGroups groups][8 float4], then the raw chunk bytes.
// The tile's float4 column q of group i sits at column q ^ (i & 7): the 8 threads of a phase of a
// 16-byte shared access then hit distinct banks both when thread i writes its group and when
// consecutive threads read consecutive float4s.
constexpr int kTileBytes = kQGroups * 32 * 4;

__device__ __forceinline__ int tile_slot(int f) {  // f: float4 index within the chunk's elements
  const int i = f >> 3;
  return i * 8 + ((f & 7) ^ (i & 7));
}

__device__ __forceinline__ void copy16_async(void* smem, const void* gmem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(__cvta_generic_to_global(gmem))
               : "memory");
#else
  *static_cast<uint4*>(smem) = __ldg(static_cast<const uint4*>(gmem));
#endif
}
__device__ __forceinline__ void copy_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;" ::: "memory");
#endif
}

// Copies n bytes from src to dst + (src mod 16), dst 16-byte aligned; returns the shifted start.
// Every thread of the block calls it; the caller waits (copy_async_wait) and syncs before reading.
__device__ __forceinline__ const uint8_t* copy_bytes_to_shared(uint8_t* dst, const uint8_t* src, int n) {
  const int lead = (int)(reinterpret_cast<uintptr_t>(src) & 15);
  int head = (16 - lead) & 15;  // bytes before the first 16-byte boundary
  if (head > n) head = n;
  const int mid = (n - head) >> 4, tail = n - head - 16 * mid;
  uint8_t* d = dst + lead;
  for (int i = threadIdx.x; i < mid; i += blockDim.x) copy16_async(d + head + 16 * i, src + head + 16 * i);
  if ((int)threadIdx.x < head) d[threadIdx.x] = __ldg(src + threadIdx.x);
  if ((int)threadIdx.x < tail) d[head + 16 * mid + threadIdx.x] = __ldg(src + head + 16 * mid + threadIdx.x);
  return d;
}

template <class To>
__global__ void __launch_bounds__(kQThreads, 10) embedding_q_kernel(EmbeddingParams p, bool vec_out) {
  extern __shared__ uint4 smem_q[];
  float4* tile = reinterpret_cast<float4*>(smem_q);
  uint8_t* raw = reinterpret_cast<uint8_t*>(smem_q) + kTileBytes;
  const uint8_t* table = static_cast<const uint8_t*>(p.table);
  const int gpb = qgroup::block_elems(p.ggml_type) / 32, bb = qgroup::block_bytes(p.ggml_type);
  const int64_t groups = p.D / 32;
  const int tid = threadIdx.x;
  for (int64_t t = blockIdx.x; t < p.T; t += gridDim.x) {
    const int64_t id = p.ids[t];
    const bool ok = id >= 0 && id < p.V;  // uniform over the block
    To* out_row = static_cast<To*>(p.out) + t * p.D;
    for (int64_t g0 = 0; g0 < groups; g0 += kQGroups) {
      const int ng = (int)(groups - g0 < kQGroups ? groups - g0 : kQGroups);
      To* o = out_row + 32 * g0;
      if (!ok) {  // zero row
        for (int e = tid; e < 32 * ng; e += kQThreads) o[e] = from_f32<To>(0.f);
        continue;
      }
      // (1) raw bytes of groups [g0, g0 + ng): whole blocks [g0 / gpb, (g0 + ng) / gpb)
      const uint8_t* src = table + id * p.row_bytes + g0 / gpb * bb;
      const uint8_t* chunk = copy_bytes_to_shared(raw, src, ng / gpb * bb);
      copy_async_wait();
      __syncthreads();  // raw complete; also: the previous chunk's tile reads are done
      // (2) dequantize group tid into the tile
      if (tid < ng) {
        float y[32];
        qgroup::dequant_group(p.ggml_type, chunk, tid, y);
#pragma unroll
        for (int q = 0; q < 8; ++q)
          tile[tile_slot(8 * tid + q)] = make_float4(y[4 * q], y[4 * q + 1], y[4 * q + 2], y[4 * q + 3]);
      }
      __syncthreads();  // tile complete; also: raw reads are done before the next chunk's copy
      // (3) coalesced stores of the tile
      if constexpr (std::is_same_v<To, float>) {
        if (vec_out) {
          for (int f = tid; f < 8 * ng; f += kQThreads) reinterpret_cast<float4*>(o)[f] = tile[tile_slot(f)];
          continue;
        }
      } else {
        if (vec_out) {  // 8 elements (two float4 of the tile) per 16-byte store
          for (int h = tid; h < 4 * ng; h += kQThreads) {
            const float4 a = tile[tile_slot(2 * h)], b = tile[tile_slot(2 * h + 1)];
            const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
            store8(o + 8 * h, v);
          }
          continue;
        }
      }
      const float* tf = reinterpret_cast<const float*>(tile);
      for (int e = tid; e < 32 * ng; e += kQThreads) o[e] = from_f32<To>(tf[4 * tile_slot(e >> 2) + (e & 3)]);
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
    v.sst = split_side_stride(type, p.D);
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
    // raw bytes of a chunk: its kQGroups / (groups per block) whole blocks (at most 16 KB, F32), + 16 for the
    // shift by the source address mod 16
    const int groups_per_block = qgroup::block_elems(p.ggml_type) / 32;
    const int raw_bytes = kQGroups / groups_per_block * qgroup::block_bytes(p.ggml_type) + 16;
    const size_t smem = (size_t)kTileBytes + (size_t)(raw_bytes + 15) / 16 * 16;
    IL_DISPATCH_FLOAT(p.out_dtype, To, {
      embedding_q_kernel<To><<<grid_size(p.T, 1, 1 << 20), kQThreads, smem, stream>>>(p, vec_out);
      IL_CUDA_CHECK_LAUNCH();
    });
  }
}

}  // namespace cuda
}  // namespace inferlab
