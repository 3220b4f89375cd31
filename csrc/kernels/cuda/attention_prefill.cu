#include "kernels/cuda/attention_prefill.cuh"

#include "core/cuda_check.h"
#include "core/error.h"
#include "kernels/cuda/attention_common.cuh"

namespace inferlab {
namespace cuda {

namespace {

using namespace attn;

constexpr int kBr = 64;        // query rows per block (16 per warp)
constexpr int kBc = 64;        // keys per K/V tile
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;

// Shared memory: [K0][V0][K1][V1], each a [kBc][D + 8] tile (the 8-element pad makes the row stride an
// odd number of 16-byte chunks, so the 8 row addresses of every ldmatrix hit distinct banks). The Q tile
// ([kBr][D + 8], kBr == kBc) is staged in K1 before the main loop reuses it.
template <int D>
constexpr int prefill_smem_bytes() {
  return 4 * kBc * (D + 8) * 2;
}

// Copies rows [row0, row0 + kBc) of a [*, D] matrix with row stride `stride` into a padded smem tile;
// rows >= n_rows are zero-filled and not read.
template <int D, class T>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int64_t stride, int row0, int n_rows, int tid) {
  constexpr int LD = D + 8;
  constexpr int CH = D / 8;  // 16-byte chunks per row
  static_assert(kBc * CH % kThreads == 0, "tile chunks must divide evenly among threads");
#pragma unroll
  for (int i = 0; i < kBc * CH / kThreads; ++i) {
    const int c = tid + i * kThreads;
    const int r = c / CH, ch = c % CH;
    const bool ok = row0 + r < n_rows;
    const T* g = ok ? src + (int64_t)(row0 + r) * stride + ch * 8 : src;
    cp_async_16(smem_u32(dst + r * LD + ch * 8), g, ok);
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads, 2) attn_prefill_kernel(const AttnPrefillParams p) {
  constexpr int LD = D + 8;
  constexpr int TILE = kBc * LD;
  constexpr int KD = D / 16;  // k-steps over the head dim
  constexpr int DT = D / 8;   // 8-wide output column tiles
  constexpr int NT = kBc / 8; // 8-wide score column tiles
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, c = lane & 3;
  const int h = blockIdx.x;                        // query head
  const int n_qt = (p.T + kBr - 1) / kBr;
  const int qt = n_qt - 1 - (int)blockIdx.y;       // longest (causal) tiles are scheduled first
  const int hk = h / (p.Hq / p.Hkv);
  const int row0 = qt * kBr;                       // first query row of this block
  const int qpos_lo = p.q_pos0 + row0;
  const int qpos_hi = p.q_pos0 + min(row0 + kBr, p.T) - 1;

  // Keys any query of this block can see: [k_begin, k_end).
  const int k_end = p.causal ? min(p.kv_len, qpos_hi + 1) : p.kv_len;
  const int k_begin = p.window > 0 ? max(0, qpos_lo - p.window + 1) : 0;
  const int kt_begin = k_begin / kBc;
  const int kt_end = k_end > k_begin ? (k_end + kBc - 1) / kBc : kt_begin;

  const T* qg = static_cast<const T*>(p.q) + (int64_t)h * D;
  const T* kg = static_cast<const T*>(p.k) + (int64_t)hk * p.kv_head_stride;
  const T* vg = static_cast<const T*>(p.v) + (int64_t)hk * p.kv_head_stride;

  // Prologue: Q tile -> K1 slot, first K/V tile -> slot 0, one cp.async group.
  T* sQ = smem + 2 * TILE;
  load_tile<D>(sQ, qg, p.q_row_stride, row0, p.T, tid);
  if (kt_begin < kt_end) {
    load_tile<D>(smem, kg, p.kv_row_stride, kt_begin * kBc, p.kv_len, tid);
    load_tile<D>(smem + TILE, vg, p.kv_row_stride, kt_begin * kBc, p.kv_len, tid);
  }
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  // Q fragments of this warp's 16 rows stay in registers for the whole loop.
  uint32_t qf[KD][4];
#pragma unroll
  for (int kk = 0; kk < KD; ++kk)
    ldmatrix_x4(qf[kk], smem_u32(sQ + (warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8));

  float o[DT][4];
#pragma unroll
  for (int dt = 0; dt < DT; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.f, 0.f};
  const float sl2 = p.scale * kLog2e;
  const int qp_a = qpos_lo + warp * 16 + g;  // positions of this thread's two rows
  const int qp_b = qp_a + 8;

  for (int kt = kt_begin; kt < kt_end; ++kt) {
    const int buf = (kt - kt_begin) & 1;
    // Tile kt has landed (the only outstanding group); the barrier also guarantees every warp is done
    // with the slot the next prefetch overwrites (tile kt-1, or the Q staging area on the first pass).
    cp_async_wait<0>();
    __syncthreads();
    if (kt + 1 < kt_end) {
      T* nxt = smem + (buf ^ 1) * 2 * TILE;
      load_tile<D>(nxt, kg, p.kv_row_stride, (kt + 1) * kBc, p.kv_len, tid);
      load_tile<D>(nxt + TILE, vg, p.kv_row_stride, (kt + 1) * kBc, p.kv_len, tid);
    }
    cp_async_commit();

    const T* sK = smem + buf * 2 * TILE;
    const T* sV = sK + TILE;

    // S = Q K^T for 16 rows x 64 keys per warp.
    float s[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t b[4];  // b0, b1 of key tile 2np, then of key tile 2np+1
        ldmatrix_x4(b, smem_u32(sK + (np * 16 + (lane & 7) + (lane >> 4) * 8) * LD + kk * 16 +
                                ((lane >> 3) & 1) * 8));
        mma_16816<T>(s[2 * np], qf[kk], b[0], b[1]);
        mma_16816<T>(s[2 * np + 1], qf[kk], b[2], b[3]);
      }
    }

    // Masks, only on tiles that straddle a boundary (warp-uniform branch).
    const int key0 = kt * kBc;
    const bool need_mask = key0 + kBc > p.kv_len || (p.causal && key0 + kBc - 1 > qpos_lo) ||
                           (p.window > 0 && key0 <= qpos_hi - p.window);
    if (need_mask) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int kp = key0 + nt * 8 + 2 * c + (e & 1);
          const int qp = e < 2 ? qp_a : qp_b;
          const bool hidden = kp >= p.kv_len || (p.causal && kp > qp) || (p.window > 0 && kp <= qp - p.window);
          if (hidden) s[nt][e] = -INFINITY;
        }
      }
    }

    online_softmax<NT, DT>(s, m, l, o, sl2);

    // O += P V: P (16 x 64 keys) from registers, V via ldmatrix.trans.
#pragma unroll
    for (int ks = 0; ks < kBc / 16; ++ks) {
      uint32_t a[4];
      a[0] = pack2<T>(s[2 * ks][0], s[2 * ks][1]);
      a[1] = pack2<T>(s[2 * ks][2], s[2 * ks][3]);
      a[2] = pack2<T>(s[2 * ks + 1][0], s[2 * ks + 1][1]);
      a[3] = pack2<T>(s[2 * ks + 1][2], s[2 * ks + 1][3]);
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b[4];  // b0, b1 of value columns dp*16..+7, then of dp*16+8..+15
        ldmatrix_x4_trans(b, smem_u32(sV + (ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + dp * 16 +
                                      (lane >> 4) * 8));
        mma_16816<T>(o[2 * dp], a, b[0], b[1]);
        mma_16816<T>(o[2 * dp + 1], a, b[2], b[3]);
      }
    }
  }
  cp_async_wait<0>();

  // Epilogue: out = O / l for the rows that exist.
  T* og = static_cast<T*>(p.out) + (int64_t)h * D;
  const int ra = row0 + warp * 16 + g, rb = ra + 8;
  const float la = quad_sum(l[0]), lb = quad_sum(l[1]);
  const float ia = la > 0.f ? 1.f / la : 0.f, ib = lb > 0.f ? 1.f / lb : 0.f;
#pragma unroll
  for (int dt = 0; dt < DT; ++dt) {
    const int col = dt * 8 + 2 * c;
    if (ra < p.T)
      *reinterpret_cast<uint32_t*>(og + (int64_t)ra * p.o_row_stride + col) = pack2<T>(o[dt][0] * ia, o[dt][1] * ia);
    if (rb < p.T)
      *reinterpret_cast<uint32_t*>(og + (int64_t)rb * p.o_row_stride + col) = pack2<T>(o[dt][2] * ib, o[dt][3] * ib);
  }
}

template <class T, int D>
void launch_typed(const AttnPrefillParams& p, cudaStream_t stream) {
  constexpr int smem = prefill_smem_bytes<D>();
  static bool configured = [] {
    IL_CUDA_CHECK(cudaFuncSetAttribute(attn_prefill_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    return true;
  }();
  (void)configured;
  const dim3 grid(p.Hq, (p.T + kBr - 1) / kBr);
  attn_prefill_kernel<T, D><<<grid, kThreads, smem, stream>>>(p);
  IL_CUDA_CHECK_LAUNCH();
}

template <class T>
void launch_dim(const AttnPrefillParams& p, cudaStream_t stream) {
  switch (p.D) {
    case 64: return launch_typed<T, 64>(p, stream);
    case 80: return launch_typed<T, 80>(p, stream);
    case 96: return launch_typed<T, 96>(p, stream);
    case 128: return launch_typed<T, 128>(p, stream);
    default: throw ValueError(str_cat("attention: head_dim must be 64, 80, 96 or 128, got ", p.D));
  }
}

}  // namespace

void launch_attention_prefill(const AttnPrefillParams& p, cudaStream_t stream) {
  if (p.T <= 0 || p.Hq <= 0) return;
  IL_CHECK_ARG((p.T + kBr - 1) / kBr <= 65535, "attention: too many query rows (", p.T, ")");
  if (p.dtype == DType::F16) return launch_dim<__half>(p, stream);
  if (p.dtype == DType::BF16) return launch_dim<__nv_bfloat16>(p, stream);
  throw ValueError(str_cat("attention on CUDA needs float16 or bfloat16, got ", dtype_name(p.dtype)));
}

}  // namespace cuda
}  // namespace inferlab
