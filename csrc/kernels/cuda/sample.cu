// Sampling: one block of 1024 threads per row, sort-free. Each pass re-reads the row's logits (L2)
// and recomputes z/key/mass with kernels/sample_math.h:
//   1. argmax by key (lowest index on ties): the greedy token and zmax
//   2. top-k: radix select (4 x 8-bit digits, counts) of the k-th largest key
//   3. top-p: total top-k mass S, then radix select (masses per digit) of the smallest key tau whose
//      strictly-higher mass is < top_p * S
//   4. kept = key >= max(kth, tau) and e >= min_p; S_kept = sum of kept masses
//   5. inverse CDF in index order: first i with cumulative kept mass > floor(u * S_kept)
// All masses are integers, so the result does not depend on summation order and equals the CPU twin's.
#include "kernels/cuda/sample.cuh"

#include "core/cuda_check.h"
#include "kernels/sample_math.h"

namespace inferlab {
namespace cuda {
namespace {

using namespace inferlab::sampling;
using u64 = unsigned long long;

constexpr int kThreads = 1024;
constexpr int kItems = 8;  // contiguous items per thread in the inverse-CDF scan

__device__ __forceinline__ u64 warp_sum_u64(u64 v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ u64 warp_max_u64(u64 v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const u64 w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}
__device__ u64 block_sum_u64(u64 v, u64* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum_u64(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    u64 s = lane < nw ? scratch[lane] : 0ull;
    s = warp_sum_u64(s);
    if (lane == 0) scratch[32] = s;
  }
  __syncthreads();
  return scratch[32];
}
__device__ u64 block_max_u64(u64 v, u64* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max_u64(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    u64 s = lane < nw ? scratch[lane] : 0ull;
    s = warp_max_u64(s);
    if (lane == 0) scratch[32] = s;
  }
  __syncthreads();
  return scratch[32];
}
// Exclusive prefix sum of v in thread order; *total receives the block total.
__device__ u64 block_exclusive_scan_u64(u64 v, u64* scratch, u64* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  u64 incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const u64 n = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += n;
  }
  __syncthreads();
  if (lane == 31) scratch[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    u64 s = lane < nw ? scratch[lane] : 0ull;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const u64 n = __shfl_up_sync(0xffffffffu, s, o);
      if (lane >= o) s += n;
    }
    scratch[lane] = s;  // inclusive prefix of warp totals
  }
  __syncthreads();
  *total = scratch[nw - 1];
  const u64 before = warp > 0 ? scratch[warp - 1] : 0ull;
  return before + incl - v;
}

__global__ void __launch_bounds__(kThreads) sample_kernel(SampleParams p) {
  extern __shared__ uint32_t pen_bits[];  // [ceil(V / 32)] when the penalty is on
  __shared__ u64 hmass[256];
  __shared__ int hcnt[256];
  __shared__ u64 scratch[33];
  __shared__ uint32_t s_prefix;
  __shared__ int s_krem;
  __shared__ u64 s_acc;
  __shared__ int64_t s_token;

  const int64_t row = blockIdx.x, V = p.V;
  const int tid = threadIdx.x, nt = blockDim.x;
  const float* l = p.logits + row * V;
  const bool pen = p.prev != nullptr && p.P > 0 && p.repetition_penalty != 1.f;
  if (pen) {
    const int64_t words = (V + 31) / 32;
    for (int64_t w = tid; w < words; w += nt) pen_bits[w] = 0u;
    __syncthreads();
    const int32_t* prev = p.prev + row * p.P;
    for (int64_t j = tid; j < p.P; j += nt) {
      const int32_t t = prev[j];
      if (t >= 0 && t < V) atomicOr(&pen_bits[t >> 5], 1u << (t & 31));
    }
    __syncthreads();
  }
  const float temp = p.temperature > 0.f ? p.temperature : 0.f;
  auto z_at = [&](int64_t i) -> float {
    const bool pi = pen && ((pen_bits[i >> 5] >> (i & 31)) & 1u);
    return adjusted_logit(l[i], pi, p.repetition_penalty, temp);
  };

  // 1. argmax: max over (key << 32 | ~index)
  u64 best = 0;
  for (int64_t i = tid; i < V; i += nt) {
    const u64 packed = ((u64)float_key(z_at(i)) << 32) | (u64)(0xFFFFFFFFu - (uint32_t)i);
    best = packed > best ? packed : best;
  }
  best = block_max_u64(best, scratch);
  const int64_t best_i = (int64_t)(0xFFFFFFFFu - (uint32_t)(best & 0xFFFFFFFFull));
  if (temp <= 0.f) {
    if (tid == 0) p.tokens[row] = (int32_t)best_i;
    return;
  }
  const float zmax = z_at(best_i);

  // 2. top-k: k-th largest key
  uint32_t kth = 0;
  if (p.top_k > 0 && p.top_k < V) {
    uint32_t prefix = 0, mask = 0;
    int krem = p.top_k;
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int j = tid; j < 256; j += nt) hcnt[j] = 0;
      __syncthreads();
      for (int64_t i = tid; i < V; i += nt) {
        const uint32_t key = float_key(z_at(i));
        if ((key & mask) == prefix) atomicAdd(&hcnt[(key >> shift) & 255u], 1);
      }
      __syncthreads();
      if (tid == 0) {
        int cum = 0, sel = 0;
        for (int b = 255; b >= 0; --b) {
          if (cum + hcnt[b] >= krem) {
            sel = b;
            break;
          }
          cum += hcnt[b];
        }
        s_krem = krem - cum;
        s_prefix = prefix | ((uint32_t)sel << shift);
      }
      __syncthreads();
      krem = s_krem;
      prefix = s_prefix;
      mask |= 255u << shift;
    }
    kth = prefix;
  }

  // 3. top-p: smallest key tau with (mass of keys > tau) < threshold
  uint32_t tau = 0;
  if (p.top_p < 1.f) {
    u64 s = 0;
    for (int64_t i = tid; i < V; i += nt) {
      const float z = z_at(i);
      if (float_key(z) >= kth) s += mass_of_weight(weight(z, zmax));
    }
    s = block_sum_u64(s, scratch);
    const u64 thr = top_p_threshold(p.top_p, s);
    uint32_t prefix = 0, mask = 0;
    u64 above = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int j = tid; j < 256; j += nt) {
        hmass[j] = 0;
        hcnt[j] = 0;
      }
      __syncthreads();
      for (int64_t i = tid; i < V; i += nt) {
        const float z = z_at(i);
        const uint32_t key = float_key(z);
        if (key >= kth && (key & mask) == prefix) {
          const uint32_t b = (key >> shift) & 255u;
          atomicAdd(&hcnt[b], 1);
          const u64 m = mass_of_weight(weight(z, zmax));
          if (m) atomicAdd(&hmass[b], m);
        }
      }
      __syncthreads();
      if (tid == 0) {
        int sel = -1, last = 0;
        u64 a = above;
        for (int b = 255; b >= 0; --b) {
          if (hcnt[b] == 0) continue;
          last = b;
          if (a + hmass[b] >= thr) {
            sel = b;
            break;
          }
          a += hmass[b];
        }
        if (sel < 0) {  // the whole range stays below the threshold: keep down to its lowest key
          sel = last;
          a -= hmass[last];
        }
        s_acc = a;
        s_prefix = prefix | ((uint32_t)sel << shift);
      }
      __syncthreads();
      above = s_acc;
      prefix = s_prefix;
      mask |= 255u << shift;
    }
    tau = prefix;
  }

  // 4. kept mass
  const uint32_t lo = kth > tau ? kth : tau;
  const float min_p = p.min_p;
  auto kept_mass = [&](int64_t i) -> u64 {
    const float z = z_at(i);
    if (float_key(z) < lo) return 0ull;
    const float e = weight(z, zmax);
    if (min_p > 0.f && !(e >= min_p)) return 0ull;
    return mass_of_weight(e);
  };
  u64 total = 0;
  for (int64_t i = tid; i < V; i += nt) total += kept_mass(i);
  total = block_sum_u64(total, scratch);
  if (total == 0) {  // only when every logit is nan
    if (tid == 0) p.tokens[row] = (int32_t)best_i;
    return;
  }

  // 5. inverse CDF
  const u64 target = scale_bits(random_bits(p.seed, p.offset, (uint32_t)row), total);
  if (tid == 0) s_token = -1;
  u64 carry = 0;
  for (int64_t tile = 0; tile < V; tile += (int64_t)nt * kItems) {
    const int64_t base = tile + (int64_t)tid * kItems;
    u64 m[kItems];
    u64 mine = 0;
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      m[k] = base + k < V ? kept_mass(base + k) : 0ull;
      mine += m[k];
    }
    u64 tile_total;
    const u64 before = carry + block_exclusive_scan_u64(mine, scratch, &tile_total);
    if (before <= target && target < before + mine) {
      u64 cum = before;
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        cum += m[k];
        if (cum > target) {
          s_token = base + k;
          break;
        }
      }
    }
    carry += tile_total;
    __syncthreads();
    if (s_token >= 0) break;
  }
  if (tid == 0) p.tokens[row] = (int32_t)(s_token >= 0 ? s_token : best_i);
}

}  // namespace

void launch_sample(const SampleParams& p, cudaStream_t stream) {
  if (p.B == 0) return;
  const bool pen = p.prev != nullptr && p.P > 0 && p.repetition_penalty != 1.f;
  const size_t smem = pen ? sizeof(uint32_t) * (size_t)((p.V + 31) / 32) : 0;
  if (smem > 48 * 1024)
    IL_CUDA_CHECK(cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  sample_kernel<<<(unsigned)p.B, kThreads, smem, stream>>>(p);
  IL_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace inferlab
