#include "kernels/cuda/attention_decode.cuh"

#include <algorithm>

#include "core/cuda_check.h"
#include "core/error.h"
#include "kernels/cuda/attention_common.cuh"

namespace inferlab {
namespace cuda {

namespace {

using namespace attn;

constexpr int kTK = 64;          // cached tokens per shared-memory tile (16 per warp)
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = 16;        // query heads per block = rows of one mma tile
constexpr int kMaxSplits = 256;

__host__ __device__ __forceinline__ int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Query heads per block: the whole GQA group when it fits in one 16-row tile, else the largest
// divisor of the group that does (the group's K/V are then read once per sub-group).
int rows_per_block(int group) {
  if (group <= kRows) return group;
  for (int r = kRows; r > 1; --r)
    if (group % r == 0) return r;
  return 1;
}

// The token range of a sequence and how it is cut into splits. Shared by both kernels so they agree.
//   keys of the query at position len-1: [begin, len);  split s covers [begin + s*chunk, +chunk) ∩ that.
struct SplitPlan {
  int len, begin, chunk, n_valid;
};
__device__ __forceinline__ SplitPlan plan_splits(int raw_len, int max_tokens, int window, int n_splits) {
  SplitPlan sp;
  sp.len = min(max(raw_len, 0), max_tokens);
  sp.begin = window > 0 ? max(0, sp.len - window) : 0;
  const int n = sp.len - sp.begin;
  sp.chunk = n > 0 ? ceil_div(ceil_div(n, n_splits), kTK) * kTK : kTK;
  sp.n_valid = n > 0 ? ceil_div(n, sp.chunk) : 0;
  return sp;
}

template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Copies rows [row0, row0 + kTK) of a [*, D] panel into a padded smem tile; rows >= row_end are
// zero-filled and not read.
template <int D, class T>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int row0, int row_end, int tid) {
  constexpr int LD = D + 8;
  constexpr int CH = D / 8;
  static_assert(kTK * CH % kThreads == 0, "tile chunks must divide evenly among threads");
#pragma unroll
  for (int i = 0; i < kTK * CH / kThreads; ++i) {
    const int c = tid + i * kThreads;
    const int r = c / CH, ch = c % CH;
    const bool ok = row0 + r < row_end;
    const T* g = ok ? src + (int64_t)(row0 + r) * D + ch * 8 : src;
    cp_async_16(smem_u32(dst + r * LD + ch * 8), g, ok);
  }
}

// Grid [n_splits, Hkv * n_hg, B]. Block (split, kv-head group, b): query heads qh0 .. qh0+rows-1 of
// sequence b against the keys of its split; 4 warps each take 16 keys of every 64-key tile and are
// merged at the end. Writes the normalised output (n_splits == 1) or unnormalised partials.
template <class T, int D, int kStages>
__global__ void __launch_bounds__(kThreads) attn_decode_kernel(const AttnDecodeParams p, const int rows) {
  static_assert(kStages >= 2, "need at least double buffering");
  constexpr int LD = D + 8;
  constexpr int TILE = kTK * LD;
  constexpr int KD = D / 16;
  constexpr int DT = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, c = lane & 3;
  const int split = blockIdx.x, b = blockIdx.z;
  const int group = p.Hq / p.Hkv;
  const int n_hg = group / rows;
  const int hk = blockIdx.y / n_hg;
  const int qh0 = hk * group + (blockIdx.y % n_hg) * rows;

  const SplitPlan sp = plan_splits(p.seq_lens[b], p.max_tokens, p.window, p.n_splits);
  if (split >= sp.n_valid) {
    if (split == 0 && p.n_splits == 1) {  // empty sequence: zeros (the combine kernel does this otherwise)
      T* og = static_cast<T*>(p.out) + ((int64_t)b * p.Hq + qh0) * D;
      for (int i = tid; i < rows * D; i += kThreads) og[i] = from_float<T>(0.f);
    }
    return;
  }
  const int t0 = sp.begin + split * sp.chunk;
  const int t1 = min(t0 + sp.chunk, sp.len);
  const int ntiles = ceil_div(t1 - t0, kTK);

  const int64_t panel = ((int64_t)b * p.Hkv + hk) * p.max_tokens * D;
  const T* kg = static_cast<const T*>(p.k_cache) + panel;
  const T* vg = static_cast<const T*>(p.v_cache) + panel;

  // Prologue: start kStages-1 tiles.
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) {
    if (i < ntiles) {
      T* dst = smem + i * 2 * TILE;
      load_tile<D>(dst, kg, t0 + i * kTK, t1, tid);
      load_tile<D>(dst + TILE, vg, t0 + i * kTK, t1, tid);
    }
    cp_async_commit();
  }

  // Q fragments straight from global memory; rows beyond `rows` are zero.
  const T* qg = static_cast<const T*>(p.q) + ((int64_t)b * p.Hq + qh0) * D;
  uint32_t qf[KD][4];
  {
    const bool ra = g < rows, rb = g + 8 < rows;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
      const int col = kk * 16 + 2 * c;
      qf[kk][0] = ra ? *reinterpret_cast<const uint32_t*>(qg + g * D + col) : 0u;
      qf[kk][1] = rb ? *reinterpret_cast<const uint32_t*>(qg + (g + 8) * D + col) : 0u;
      qf[kk][2] = ra ? *reinterpret_cast<const uint32_t*>(qg + g * D + col + 8) : 0u;
      qf[kk][3] = rb ? *reinterpret_cast<const uint32_t*>(qg + (g + 8) * D + col + 8) : 0u;
    }
  }

  float o[DT][4];
#pragma unroll
  for (int dt = 0; dt < DT; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.f, 0.f};
  const float sl2 = p.scale * kLog2e;

  for (int j = 0; j < ntiles; ++j) {
    // Tile j has landed once at most kStages-2 newer groups are pending; the barrier also frees the
    // slot of tile j-1, which the next prefetch reuses.
    cp_async_wait<kStages - 2>();
    __syncthreads();
    {
      const int jn = j + kStages - 1;
      if (jn < ntiles) {
        T* dst = smem + (jn % kStages) * 2 * TILE;
        load_tile<D>(dst, kg, t0 + jn * kTK, t1, tid);
        load_tile<D>(dst + TILE, vg, t0 + jn * kTK, t1, tid);
      }
      cp_async_commit();
    }
    const T* sK = smem + (j % kStages) * 2 * TILE + warp * 16 * LD;  // this warp's 16 keys
    const T* sV = sK + TILE;

    float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
      uint32_t bk[4];
      ldmatrix_x4(bk, smem_u32(sK + ((lane & 7) + (lane >> 4) * 8) * LD + kk * 16 + ((lane >> 3) & 1) * 8));
      mma_16816<T>(s[0], qf[kk], bk[0], bk[1]);
      mma_16816<T>(s[1], qf[kk], bk[2], bk[3]);
    }
    const int key0 = t0 + j * kTK + warp * 16;
    if (key0 + 16 > t1) {
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (key0 + nt * 8 + 2 * c + (e & 1) >= t1) s[nt][e] = -INFINITY;
    }

    online_softmax<2, DT>(s, m, l, o, sl2);

    uint32_t a[4];
    a[0] = pack2<T>(s[0][0], s[0][1]);
    a[1] = pack2<T>(s[0][2], s[0][3]);
    a[2] = pack2<T>(s[1][0], s[1][1]);
    a[3] = pack2<T>(s[1][2], s[1][3]);
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t bv[4];
      ldmatrix_x4_trans(bv, smem_u32(sV + ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + dp * 16 + (lane >> 4) * 8));
      mma_16816<T>(o[2 * dp], a, bv[0], bv[1]);
      mma_16816<T>(o[2 * dp + 1], a, bv[2], bv[3]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // every warp is done with the tiles: reuse shared memory for the merge

  // Merge the 4 warps: sO [4][16][D], sM, sL [4][16].
  float* sO = reinterpret_cast<float*>(smem_raw);
  float* sM = sO + kWarps * 16 * D;
  float* sL = sM + kWarps * 16;
  const float la = quad_sum(l[0]), lb = quad_sum(l[1]);
#pragma unroll
  for (int dt = 0; dt < DT; ++dt) {
    const int col = dt * 8 + 2 * c;
    sO[(warp * 16 + g) * D + col] = o[dt][0];
    sO[(warp * 16 + g) * D + col + 1] = o[dt][1];
    sO[(warp * 16 + g + 8) * D + col] = o[dt][2];
    sO[(warp * 16 + g + 8) * D + col + 1] = o[dt][3];
  }
  if (c == 0) {
    sM[warp * 16 + g] = m[0];
    sM[warp * 16 + g + 8] = m[1];
    sL[warp * 16 + g] = la;
    sL[warp * 16 + g + 8] = lb;
  }
  __syncthreads();

  for (int i = tid; i < rows * D; i += kThreads) {
    const int r = i / D, d = i % D;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sM[w * 16 + r]);
    const float Mref = M == -INFINITY ? 0.f : M;
    float L = 0.f, O = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = fast_exp2(sM[w * 16 + r] - Mref);
      L += f * sL[w * 16 + r];
      O += f * sO[(w * 16 + r) * D + d];
    }
    const int64_t row = (int64_t)b * p.Hq + qh0 + r;
    if (p.n_splits == 1) {
      static_cast<T*>(p.out)[row * D + d] = from_float<T>(L > 0.f ? O / L : 0.f);
    } else {
      float* ws_o = p.ws;
      float* ws_ml = p.ws + (int64_t)p.B * p.Hq * p.n_splits * D;
      ws_o[(row * p.n_splits + split) * D + d] = O;
      if (d == 0) {
        ws_ml[(row * p.n_splits + split) * 2] = M;
        ws_ml[(row * p.n_splits + split) * 2 + 1] = L;
      }
    }
  }
}

// Grid [Hq, B]: out[b, h] = sum_s 2^(m_s - M) O_s / sum_s 2^(m_s - M) l_s over the valid splits.
template <class T>
__global__ void __launch_bounds__(kThreads) attn_decode_combine_kernel(const AttnDecodeParams p) {
  __shared__ float s_m[kMaxSplits], s_l[kMaxSplits], s_w[kMaxSplits];
  const int h = blockIdx.x, b = blockIdx.y, tid = threadIdx.x;
  const int D = p.D;
  const int64_t row = (int64_t)b * p.Hq + h;
  T* og = static_cast<T*>(p.out) + row * D;
  const SplitPlan sp = plan_splits(p.seq_lens[b], p.max_tokens, p.window, p.n_splits);
  if (sp.n_valid == 0) {
    for (int d = tid; d < D; d += kThreads) og[d] = from_float<T>(0.f);
    return;
  }
  const float* ws_o = p.ws + row * p.n_splits * D;
  const float* ws_ml = p.ws + (int64_t)p.B * p.Hq * p.n_splits * D + row * p.n_splits * 2;
  for (int s = tid; s < sp.n_valid; s += kThreads) {
    s_m[s] = ws_ml[2 * s];
    s_l[s] = ws_ml[2 * s + 1];
  }
  __syncthreads();
  float M = -INFINITY;
  for (int s = 0; s < sp.n_valid; ++s) M = fmaxf(M, s_m[s]);
  const float Mref = M == -INFINITY ? 0.f : M;
  for (int s = tid; s < sp.n_valid; s += kThreads) s_w[s] = fast_exp2(s_m[s] - Mref);
  __syncthreads();
  float L = 0.f;
  for (int s = 0; s < sp.n_valid; ++s) L += s_w[s] * s_l[s];
  const float inv = L > 0.f ? 1.f / L : 0.f;
  for (int d = tid; d < D; d += kThreads) {
    float O = 0.f;
    for (int s = 0; s < sp.n_valid; ++s) O += s_w[s] * ws_o[(int64_t)s * D + d];
    og[d] = from_float<T>(O * inv);
  }
}

// K/V stage buffers; after the loop the same memory holds the 4 warps' partials for the merge.
template <int D, int kStages>
constexpr int decode_smem_bytes() {
  return kStages * 2 * kTK * (D + 8) * 2;
}
static_assert(decode_smem_bytes<64, 2>() >= (kWarps * 16 * 64 + 2 * kWarps * 16) * 4, "merge buffer must fit");
static_assert(decode_smem_bytes<128, 2>() >= (kWarps * 16 * 128 + 2 * kWarps * 16) * 4, "merge buffer must fit");

int max_smem_optin() {
  static int n = [] {
    int dev = 0, v = 0;
    IL_CUDA_CHECK(cudaGetDevice(&dev));
    IL_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    return v;
  }();
  return n;
}

template <class T, int D, int kStages>
void launch_stages(const AttnDecodeParams& p, int rows, cudaStream_t stream) {
  constexpr int smem = decode_smem_bytes<D, kStages>();
  static bool configured = [] {
    IL_CUDA_CHECK(cudaFuncSetAttribute(attn_decode_kernel<T, D, kStages>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    return true;
  }();
  (void)configured;
  const int group = p.Hq / p.Hkv;
  const dim3 grid(p.n_splits, p.Hkv * (group / rows), p.B);
  attn_decode_kernel<T, D, kStages><<<grid, kThreads, smem, stream>>>(p, rows);
  IL_CUDA_CHECK_LAUNCH();
}

template <class T, int D>
void launch_typed(const AttnDecodeParams& p, cudaStream_t stream) {
  const int rows = rows_per_block(p.Hq / p.Hkv);
  // Three stages where the GPU allows the shared memory (A100/H100), else two (e.g. sm_86/89 at D=128).
  if (decode_smem_bytes<D, 3>() <= max_smem_optin())
    launch_stages<T, D, 3>(p, rows, stream);
  else
    launch_stages<T, D, 2>(p, rows, stream);
  if (p.n_splits > 1) {
    attn_decode_combine_kernel<T><<<dim3(p.Hq, p.B), kThreads, 0, stream>>>(p);
    IL_CUDA_CHECK_LAUNCH();
  }
}

template <class T>
void launch_dim(const AttnDecodeParams& p, cudaStream_t stream) {
  switch (p.D) {
    case 64: return launch_typed<T, 64>(p, stream);
    case 80: return launch_typed<T, 80>(p, stream);
    case 96: return launch_typed<T, 96>(p, stream);
    case 128: return launch_typed<T, 128>(p, stream);
    default: throw ValueError(str_cat("attention: head_dim must be 64, 80, 96 or 128, got ", p.D));
  }
}

int sm_count() {
  static int n = [] {
    int dev = 0, v = 0;
    IL_CUDA_CHECK(cudaGetDevice(&dev));
    IL_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
    return std::max(v, 1);
  }();
  return n;
}

}  // namespace

int attention_decode_splits(int B, int Hq, int Hkv, int max_tokens) {
  if (B <= 0 || Hkv <= 0 || Hq <= 0 || max_tokens <= 0) return 1;
  const int group = Hq / Hkv;
  const int units = Hkv * (group / rows_per_block(group)) * B;  // blocks per split
  const int target = 4 * sm_count();                             // a few resident blocks per SM
  int n = ceil_div(target, units);
  n = std::min(n, ceil_div(max_tokens, kTK));
  n = std::min(n, kMaxSplits);
  return std::max(n, 1);
}

size_t attention_decode_workspace_bytes(int B, int Hq, int D, int n_splits) {
  if (n_splits <= 1) return 0;
  return (size_t)B * Hq * n_splits * (D + 2) * sizeof(float);
}

void launch_attention_decode(const AttnDecodeParams& p, cudaStream_t stream) {
  if (p.B <= 0) return;
  IL_CHECK_ARG(p.B <= 65535, "attention_decode: batch too large (", p.B, ")");
  IL_CHECK_ARG(p.n_splits >= 1 && p.n_splits <= kMaxSplits, "attention_decode: bad split count ", p.n_splits);
  IL_CHECK_ARG(p.n_splits == 1 || p.ws != nullptr, "attention_decode: missing workspace");
  if (p.dtype == DType::F16) return launch_dim<__half>(p, stream);
  if (p.dtype == DType::BF16) return launch_dim<__nv_bfloat16>(p, stream);
  throw ValueError(str_cat("attention on CUDA needs float16 or bfloat16, got ", dtype_name(p.dtype)));
}

}  // namespace cuda
}  // namespace inferlab
