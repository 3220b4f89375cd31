// Host emulation of the CUDA decode matmul's lane logic and of the device block decoders, so they can be
// checked without a GPU. Compiled by tests/test_matmul.py::test_cuda_lane_logic_emulated with g++ and the
// CUDA headers on the include path, together with csrc/kernels/qweight_layout.cpp, csrc/gguf/dequant.cpp
// and csrc/core/ggml_types.cpp.
//
// For every type it checks:
//   * dequant_unit / dequant_element (split layout) against the CPU dequantize_row;
//   * the decode kernel's per-lane work (mmv_load_step / mmv_compute_step / stage_x_item over the kernel's
//     block / warp / lane / pass structure, lanes summed like the warp reduction) against a float64 dot;
//     also with forced multi-pass staging;
//   * that the 16-byte shared-memory reads of every quarter-warp hit distinct bank groups;
//   * the tensor-core kernel (matmul_mma.cuh): x staging, the lanes' A / B fragments and the C layout, with
//     mma.m16n8k16 emulated from the PTX fragment layout, for T = 1..8 and x with |x| >= 2^15.
// Prints one line per failure and exits 1 if any.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <climits>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/half.h"
#include "gguf/dequant.h"
#include "kernels/int8_activations.h"
#include "kernels/cuda/matmul_kernels.cuh"
#include "kernels/cuda/matmul_mma.cuh"
#include "kernels/qweight_layout.h"

using namespace inferlab;
using namespace inferlab::cuda;

static int g_fail = 0;
#define FAIL(...)                   \
  do {                              \
    std::printf("FAIL: " __VA_ARGS__); \
    std::printf("\n");              \
    ++g_fail;                       \
  } while (0)

struct ScaleField { int off; };
// fp16 scale fields (d, dmin, m) per type, set to small sane values in random blocks.
static std::vector<int> scale_offsets(GGMLType t) {
  switch (t) {
    case GGMLType::Q4_0: case GGMLType::Q5_0: case GGMLType::Q8_0: return {0};
    case GGMLType::Q4_1: case GGMLType::Q5_1: return {0, 2};
    case GGMLType::Q2_K: return {80, 82};
    case GGMLType::Q3_K: return {108};
    case GGMLType::Q4_K: case GGMLType::Q5_K: return {0, 2};
    case GGMLType::Q6_K: return {208};
    default: return {};
  }
}

static std::vector<uint8_t> random_weight(GGMLType t, int64_t n, int64_t k, std::mt19937& g) {
  const int64_t rb = ggml_row_size(t, k);
  std::vector<uint8_t> raw((size_t)(n * rb));
  std::normal_distribution<float> nd(0.f, 1.f);
  if (t == GGMLType::F32) {
    for (int64_t i = 0; i < n * k; ++i) { float v = nd(g); std::memcpy(&raw[4 * i], &v, 4); }
  } else if (t == GGMLType::F16) {
    for (int64_t i = 0; i < n * k; ++i) { uint16_t h = f32_to_fp16(nd(g)); std::memcpy(&raw[2 * i], &h, 2); }
  } else if (t == GGMLType::BF16) {
    for (int64_t i = 0; i < n * k; ++i) { uint16_t h = f32_to_bf16(nd(g)); std::memcpy(&raw[2 * i], &h, 2); }
  } else {
    for (auto& b : raw) b = (uint8_t)(g() & 0xff);
    const int64_t ts = ggml_type_traits((int32_t)t)->type_size;
    std::uniform_real_distribution<float> ud(0.002f, 0.05f);
    for (int64_t b = 0; b < (int64_t)raw.size() / ts; ++b)
      for (int off : scale_offsets(t)) {
        uint16_t h = f32_to_fp16(ud(g) * ((g() & 1) ? 1.f : -1.f));
        std::memcpy(&raw[b * ts + off], &h, 2);
      }
  }
  return raw;
}

// A random weight as the CUDA kernels see it: GGUF bytes, their float dequantization, and the device view
// (float types: the bytes as is; quantized types: converted to the split layout).
struct EmuWeight {
  std::vector<uint8_t> raw, split;
  std::vector<float> ref;  // [n, k], dequantize_row
  QView v;
};
template <GGMLType TY>
static EmuWeight make_emu_weight(int64_t n, int64_t k, std::mt19937& g) {
  EmuWeight e;
  e.raw = random_weight(TY, n, k, g);
  e.ref.resize((size_t)(n * k));
  const int64_t rb = ggml_row_size(TY, k);
  for (int64_t r = 0; r < n; ++r) dequantize_row(TY, e.raw.data() + r * rb, e.ref.data() + r * k, k);
  e.v.n = n;
  e.v.k = k;
  if (QT<TY>::IS_FLOAT) {
    e.v.pay = e.raw.data();
    e.v.nb = k / 16;
  } else {
    e.split.resize((size_t)split_total_bytes(TY, n, k));
    split_from_gguf(TY, n, k, e.raw.data(), e.split.data());
    e.v.pay = e.split.data();
    e.v.side = e.split.data() + split_side_offset(TY, n, k);
    e.v.sst = split_side_stride(TY, k);
    e.v.nb = k / ggml_type_traits((int32_t)TY)->block_size;
  }
  return e;
}

template <GGMLType TY>
static void check_type(std::mt19937& g) {
  using Q = QT<TY>;
  const char* name = ggml_type_traits((int32_t)TY)->name;
  const int64_t bs = ggml_type_traits((int32_t)TY)->block_size;
  const bool is_float = Q::IS_FLOAT;
  struct Shape { int64_t n, k; };
  std::vector<Shape> shapes = {{37, 512}, {16, 2048}, {19, 3072}};
  if (bs == 32) shapes.push_back({21, 896});
  if (is_float) shapes.push_back({5, 80});
  for (Shape sh : shapes) {
    const int64_t n = sh.n, k = sh.k;
    const EmuWeight ew = make_emu_weight<TY>(n, k, g);
    const std::vector<uint8_t>& raw = ew.raw;
    const std::vector<float>& ref = ew.ref;
    const QView v = ew.v;
    if (!is_float) {  // round trip of the layout conversion
      std::vector<uint8_t> back(raw.size());
      gguf_from_split(TY, n, k, ew.split.data(), back.data());
      if (back != raw) FAIL("%s: gguf_from_split(split_from_gguf(raw)) != raw", name);
    }

    // dequant_unit over the whole matrix and dequant_element on a sample.
    for (int64_t r = 0; r < n; ++r)
      for (int64_t b = 0; b < v.nb; ++b)
        for (int sub = 0; sub < Q::LPB; ++sub) {
          float out[Q::RUNS * 16];
          dequant_unit<TY>(v, r, b, sub, out);
          for (int j = 0; j < Q::RUNS; ++j)
            for (int e = 0; e < 16; ++e) {
              const int64_t col = b * Q::QK + Q::run_offset(sub, j) + e;
              const float want = ref[r * k + col], got = out[16 * j + e];
              if (!(got == want)) {
                FAIL("%s dequant_unit n=%lld k=%lld row %lld col %lld: got %g want %g", name, (long long)n, (long long)k,
                     (long long)r, (long long)col, got, want);
                return;
              }
            }
        }
    for (int s = 0; s < 200; ++s) {
      const int64_t r = g() % n, c = g() % k;
      const float got = dequant_element<TY>(v, r, c), want = ref[r * k + c];
      if (!(got == want)) {
        FAIL("%s dequant_element [%lld, %lld]: got %g want %g", name, (long long)r, (long long)c, got, want);
        return;
      }
    }

    // Decode kernel emulation.
    for (int T : {1, 2, 3, 5, 8}) {
      for (int force_passes : {0, 1}) {
        std::vector<float> x((size_t)(T * k));
        std::normal_distribution<float> nd(0.f, 1.f);
        for (auto& xv : x) xv = nd(g);
        MmvArgs a;
        a.w = v;
        a.x = x.data();
        a.x_kind = kXF32;
        a.x_vec = true;
        a.y = nullptr;
        a.y_f16 = false;
        a.bias = nullptr;
        a.t = T;
        mmv_plan<Q>(a);
        constexpr int BPS = 32 / Q::LPB;
        constexpr int64_t STEP_ELEMS = (int64_t)BPS * Q::QK;
        if (force_passes) {
          if (k <= STEP_ELEMS) continue;
          a.kc = (int)STEP_ELEMS;
          a.spc = 1;
        }
        const int64_t nsteps = (v.nb + BPS - 1) / BPS;
        std::vector<float> xs((size_t)(T * a.kc) + 64), xsum((size_t)(T * (a.kc / 16)) + 4);
        std::vector<double> y((size_t)(T * n), 0.0);
        std::vector<bool> written((size_t)(T * n), false);
        const int64_t nblocks = (n + kMmvRowsPerBlock - 1) / kMmvRowsPerBlock;
        for (int64_t blk = 0; blk < nblocks; ++blk) {
          // Per warp, per lane state.
          constexpr int W = kMmvWarps;
          std::vector<std::array<std::array<float, 8>, kMmvRows>> acc((size_t)W * 32);
          for (auto& a1 : acc) for (auto& a2 : a1) a2.fill(0.f);
          int64_t staged = -1;
          for (int64_t s = 0; s < nsteps; ++s) {
            const int64_t c = s / a.spc, c0 = c * a.spc * STEP_ELEMS;
            if (c != staged) {
              const int len = (int)imin64(a.kc, k - c0);
              std::fill(xs.begin(), xs.end(), NAN);
              std::fill(xsum.begin(), xsum.end(), NAN);
              for (int i = 0; i < T * (len / 16); ++i) stage_x_item(a, i, xs.data(), xsum.data(), c0, len);
              staged = c;
            }
            for (int w = 0; w < W; ++w) {
              const int64_t row0 = (blk * W + w) * kMmvRows;
              int64_t rows[kMmvRows];
              for (int r = 0; r < kMmvRows; ++r) rows[r] = imin64(row0 + r, n - 1);
              // Bank groups of this step's shared reads, per quarter-warp.
              for (int qw = 0; qw < 4; ++qw)
                for (int j = 0; j < Q::RUNS; ++j)
                  for (int i = 0; i < 4; ++i) {
                    int used = 0;
                    for (int l = 8 * qw; l < 8 * qw + 8; ++l) {
                      const int64_t b = s * BPS + l / Q::LPB;
                      if (b >= v.nb) continue;
                      const int unit = (mmv_x_offset<Q>(l, s, c0, j, i) / 4) & 7;
                      if (used & (1 << unit)) {
                        FAIL("%s: bank conflict step %lld quarter-warp %d run %d quarter %d", name, (long long)s, qw, j, i);
                        return;
                      }
                      used |= 1 << unit;
                    }
                  }
              for (int l = 0; l < 32; ++l) {
                typename Q::Regs regs[kMmvRows];
                mmv_load_step<TY>(regs, a, rows, s, l);
                float acc_l[kMmvRows][8];
                for (int r = 0; r < kMmvRows; ++r)
                  for (int t = 0; t < 8; ++t) acc_l[r][t] = acc[w * 32 + l][r][t];
                mmv_compute_step<TY, 8>(regs, a, l, s, c0, xs.data(), xsum.data(), T, acc_l);
                for (int r = 0; r < kMmvRows; ++r)
                  for (int t = 0; t < 8; ++t) acc[w * 32 + l][r][t] = acc_l[r][t];
              }
            }
          }
          for (int w = 0; w < W; ++w)
            for (int r = 0; r < kMmvRows; ++r) {
              const int64_t row = (blk * W + w) * kMmvRows + r;
              if (row >= n) continue;
              for (int t = 0; t < T; ++t) {
                double sum = 0;
                for (int l = 0; l < 32; ++l) sum += acc[w * 32 + l][r][t];
                y[t * n + row] = sum;
                written[t * n + row] = true;
              }
            }
        }
        for (int64_t r = 0; r < n; ++r)
          for (int t = 0; t < T; ++t) {
            double want = 0, mag = 0;
            for (int64_t i = 0; i < k; ++i) {
              want += (double)x[t * k + i] * ref[r * k + i];
              mag += std::fabs((double)x[t * k + i] * ref[r * k + i]);
            }
            const double got = y[t * n + r];
            if (!written[t * n + r] || !(std::fabs(got - want) <= 1e-5 * mag + 1e-6)) {
              FAIL("%s mmv n=%lld k=%lld T=%d passes=%d row %lld t %d: got %g want %g (|terms| %g)", name, (long long)n,
                   (long long)k, T, force_passes, (long long)r, t, got, want, mag);
              return;
            }
          }
      }
    }
  }
  std::printf("ok %s\n", name);
}

// The split-K decode kernel (mmvk_kernel): blocks of kMmvkRows rows, W warps taking every W-th warp
// step, lanes summed like the warp reduction and warps like the shared-memory reduction. x is read from
// the [T, K] array directly, in every x dtype.
template <GGMLType TY>
static void check_split_k(std::mt19937& g) {
  using Q = QT<TY>;
  const char* name = ggml_type_traits((int32_t)TY)->name;
  const int64_t bs = ggml_type_traits((int32_t)TY)->block_size;
  struct Shape { int64_t n, k; };
  std::vector<Shape> shapes = {{5, 512}, {3, 3072}, {4, 2304}};
  if (bs == 32) shapes.push_back({3, 96});
  if (Q::IS_FLOAT) shapes.push_back({3, 80});
  for (Shape sh : shapes) {
    const int64_t n = sh.n, k = sh.k;
    const EmuWeight ew = make_emu_weight<TY>(n, k, g);
    const std::vector<float>& ref = ew.ref;
    const QView v = ew.v;
    constexpr int BPS = 32 / Q::LPB;
    const int64_t nsteps = (v.nb + BPS - 1) / BPS;
    const int W = (int)std::max<int64_t>(1, std::min<int64_t>(kMmvkMaxWarps, nsteps));
    for (int T : {1, 2}) {
      for (int xk : {kXF32, kXF16, kXBF16}) {
        std::normal_distribution<float> nd(0.f, 1.f);
        std::vector<float> x((size_t)(T * k));
        std::vector<uint16_t> x16((size_t)(T * k));
        for (size_t i = 0; i < x.size(); ++i) {
          const float f = nd(g);
          if (xk == kXF16) { x16[i] = f32_to_fp16(f); x[i] = fp16_to_f32(x16[i]); }
          else if (xk == kXBF16) { x16[i] = f32_to_bf16(f); x[i] = bf16_to_f32(x16[i]); }
          else x[i] = f;
        }
        MmvArgs a;
        a.w = v;
        a.x = xk == kXF32 ? static_cast<const void*>(x.data()) : static_cast<const void*>(x16.data());
        a.x_kind = xk;
        a.x_vec = true;
        a.t = T;
        for (int64_t row0 = 0; row0 < n; row0 += kMmvkRows) {
          int64_t rows[kMmvkRows];
          for (int r = 0; r < kMmvkRows; ++r) rows[r] = imin64(row0 + r, n - 1);
          double y[kMmvkRows][8] = {};
          for (int w = 0; w < W; ++w)
            for (int l = 0; l < 32; ++l) {
              float acc[kMmvkRows][2] = {};
              for (int64_t s = w; s < nsteps; s += W) {
                typename Q::Regs regs[kMmvkRows];
                mmv_load_step<TY, kMmvkRows>(regs, a, rows, s, l);
                mmvk_compute_step<TY, 2, kMmvkRows>(regs, a, l, s, T, acc);
              }
              for (int r = 0; r < kMmvkRows; ++r)
                for (int t = 0; t < T; ++t) y[r][t] += acc[r][t];
            }
          for (int r = 0; r < kMmvkRows && row0 + r < n; ++r)
            for (int t = 0; t < T; ++t) {
              double want = 0, mag = 0;
              for (int64_t i = 0; i < k; ++i) {
                want += (double)x[t * k + i] * ref[(row0 + r) * k + i];
                mag += std::fabs((double)x[t * k + i] * ref[(row0 + r) * k + i]);
              }
              if (!(std::fabs(y[r][t] - want) <= 1e-5 * mag + 1e-6)) {
                FAIL("%s split-k n=%lld k=%lld T=%d x_kind=%d row %lld t %d: got %g want %g", name, (long long)n,
                     (long long)k, T, xk, (long long)(row0 + r), t, y[r][t], want);
                return;
              }
            }
        }
      }
    }
  }
  std::printf("ok %s split-k\n", name);
}

// mma.m16n8k16 (row.col, f16 inputs, f32 accumulation) from the 32 lanes' fragments, per the PTX layout:
// lane (g, tig) = (l / 4, l % 4) holds A[g][2tig..+1], A[g+8][2tig..+1], A[g][2tig+8..+9], A[g+8][2tig+8..+9],
// B[2tig..+1][g], B[2tig+8..+9][g] and C[g][2tig..+1], C[g+8][2tig..+1].
static void emu_mma(float (&c)[32][4], const uint32_t (&a)[32][4], const uint32_t (&b)[32][2]) {
  double A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l >> 2, t = l & 3;
    for (int h = 0; h < 2; ++h) {
      A[g][2 * t + h] = h ? h_hi(a[l][0]) : h_lo(a[l][0]);
      A[g + 8][2 * t + h] = h ? h_hi(a[l][1]) : h_lo(a[l][1]);
      A[g][2 * t + 8 + h] = h ? h_hi(a[l][2]) : h_lo(a[l][2]);
      A[g + 8][2 * t + 8 + h] = h ? h_hi(a[l][3]) : h_lo(a[l][3]);
      B[2 * t + h][g] = h ? h_hi(b[l][0]) : h_lo(b[l][0]);
      B[2 * t + 8 + h][g] = h ? h_hi(b[l][1]) : h_lo(b[l][1]);
    }
  }
  for (int l = 0; l < 32; ++l)
    for (int cc = 0; cc < 4; ++cc) {
      const int r = mmq_c_row(l, cc), col = mmq_c_t(l, cc);
      double v = c[l][cc];
      for (int kk = 0; kk < 16; ++kk) v += A[r][kk] * B[kk][col];
      c[l][cc] = (float)v;
    }
}

// B of lanes that read no x (as the kernel's zeros / zero-filled fragments).
static const uint16_t kZeros16[16] = {};

// One warp step sl of a chunk (nbc blocks, staged in `tile`) as mmq_step / mmq_group_fold run it: each lane
// (g, tig) loads its unit's rows g, g + 8 (none past the chunk), builds the A fragments of run j with
// a_of(regs, sub, j, fr) (left zero past the chunk) and takes the B fragments of quarter i of run j from
// the 4 halves at b_of(valid, bl, sub, j, g, tig) + 4 i; then the warp's mmas accumulate into c.
template <GGMLType TY, class AOf, class BOf>
static void emu_warp_step(float (&c)[32][4], const uint8_t* tile, int sl, int nbc, AOf a_of, BOf b_of) {
  using Q = QT<TY>;
  uint32_t af[Q::RUNS][4][32][4], bf[Q::RUNS][4][32][2];
  for (int l = 0; l < 32; ++l) {
    const int gg = l >> 2, tig = l & 3;
    typename Q::Regs regs[2];
    int bl, sub;
    const bool valid = mmq_lane_unit<TY>(sl, tig, nbc, bl, sub);
    if (valid) mmq_tile_load<TY>(regs, tile, gg, bl, sub);
    for (int j = 0; j < Q::RUNS; ++j) {
      uint32_t fr[4][4] = {};
      if (valid) a_of(regs, sub, j, fr);
      const uint16_t* xb = b_of(valid, bl, sub, j, gg, tig);
      for (int i = 0; i < 4; ++i) {
        for (int q = 0; q < 4; ++q) af[j][i][l][q] = fr[i][q];
        std::memcpy(bf[j][i][l], xb + 4 * i, 8);
      }
    }
  }
  for (int j = 0; j < Q::RUNS; ++j)
    for (int i = 0; i < 4; ++i) emu_mma(c, af[j][i], bf[j][i]);
}

// The tensor-core decode kernel (mmq_kernel): staging, lane fragments and the C layout over the kernel's
// block / warp / step structure, against a float64 dot, within the fp16 tolerance of the tests (W and x
// rounded to fp16).
template <GGMLType TY>
static void check_mma(std::mt19937& g) {
  using Q = QT<TY>;
  const char* name = ggml_type_traits((int32_t)TY)->name;
  const int64_t bs = ggml_type_traits((int32_t)TY)->block_size;
  struct Shape { int64_t n, k; };
  std::vector<Shape> shapes = {{21, 512}, {16, 3072}, {18, 2816}};
  // mmq_issue: for any warp count, the lanes (warp w, lane l: row mmq_copy_row(w, W, l), part l % 2) issue
  // every (row, part) of a tile exactly once.
  for (int W = 1; W <= kMmqMaxWarps; ++W) {
    int seen[kMmqRows][2] = {};
    for (int w = 0; w < W; ++w)
      for (int l = 0; l < 32; ++l)
        if (mmq_copy_row(w, W, l) < kMmqRows) ++seen[mmq_copy_row(w, W, l)][l & 1];
    for (int r = 0; r < kMmqRows; ++r)
      if (seen[r][0] != 1 || seen[r][1] != 1) {
        FAIL("%s mma: with %d warps, tile row %d is copied %d / %d times", name, W, r, seen[r][0], seen[r][1]);
        return;
      }
  }
  if (bs == 32) shapes.push_back({7, 96});
  if (Q::IS_FLOAT) shapes.push_back({9, 48});
  for (Shape sh : shapes) {
    const int64_t n = sh.n, k = sh.k, ldx = mmq_ldx(k);
    const EmuWeight ew = make_emu_weight<TY>(n, k, g);
    const std::vector<float>& ref = ew.ref;
    using G = MmqTile<TY>;
    const int64_t nsteps = (ew.v.nb * Q::LPB + 3) / 4, nchunks = mmq_chunks<TY>(ew.v);
    const int W = (int)std::max<int64_t>(1, std::min<int64_t>(kMmqMaxWarps, nsteps));  // as launch_mmq
    for (int T : {1, 3, 8}) {
      for (int xk : {kXF32, kXF16}) {
        for (bool big : {false, true}) {
          if (big && xk != kXF32) continue;
          std::normal_distribution<float> nd(0.f, big ? 3.0e5f : 1.f);
          std::vector<float> x((size_t)(T * k));
          std::vector<uint16_t> x16((size_t)(T * k));
          for (size_t i = 0; i < x.size(); ++i) {
            const float f = nd(g);
            if (xk == kXF16) { x16[i] = f32_to_fp16(f); x[i] = fp16_to_f32(x16[i]); }
            else x[i] = f;
          }
          MmvArgs a;
          a.w = ew.v;
          a.x = xk == kXF32 ? static_cast<const void*>(x.data()) : static_cast<const void*>(x16.data());
          a.x_kind = xk;
          a.x_vec = true;
          a.t = T;
          // staging (the kernel's two passes)
          std::vector<uint16_t> xs((size_t)(T * ldx), 0xffffu);  // NaN padding: must never be read
          std::vector<float> xsum((size_t)(k / 16), NAN);          // T = 1: sums of the staged 16-groups
          const bool fold = MmqFold<TY>::OK && T == 1;               // as mmq_kernel (x is finite here)
          float xscale[kMmqMaxT];
          for (int t = 0; t < T; ++t) {
            float m = 0.f;
            for (int64_t i = 0; i < k / 4; ++i) {
              float v[4];
              load_x4(a, t * k + 4 * i, v);
              for (float e : v) m = fmax_nan(m, std::fabs(e));
            }
            xscale[t] = mmq_x_scale(m);
            if (big && !(xscale[t] < 1.f)) FAIL("%s mma: |x| ~ 1e6 not scaled down (scale %g)", name, xscale[t]);
            for (int64_t i = 0; i < k / 4; ++i) {
              float v[4];
              load_x4(a, t * k + 4 * i, v);
              const uint2 h = mmq_x4_h(v[0], v[1], v[2], v[3], xscale[t]);
              std::memcpy(&xs[t * ldx + 4 * i], &h, 8);
            }
            if (T == 1)  // as mmq_stage_x_row: item sums, then the quad's butterfly
              for (int64_t q = 0; q < k / 16; ++q) {
                float s4[4];
                for (int u = 0; u < 4; ++u) {
                  uint2 h;
                  std::memcpy(&h, &xs[16 * q + 4 * u], 8);
                  s4[u] = mmq_x4_sum(h);
                }
                xsum[q] = (s4[0] + s4[1]) + (s4[2] + s4[3]);
              }
          }
          for (int64_t row0 = 0; row0 < n; row0 += kMmqRows) {
            double y[kMmqRows][kMmqMaxT] = {};
            static float c[kMmqMaxWarps][32][4];
            std::memset(c, 0, sizeof(c));
            std::vector<uint8_t> tile((size_t)G::BYTES);
            std::uniform_int_distribution<int> byte(0, 255);
            for (int64_t ch = 0; ch < nchunks; ++ch) {
              // The copy engine's part: garbage first (rows past n keep it; copies must cover the rest).
              for (uint8_t& v : tile) v = (uint8_t)byte(g);
              int64_t copied = 0;
              for (int w = 0; w < W; ++w)  // as mmq_issue
                for (int l = 0; l < 32; ++l) {
                  const int r = mmq_copy_row(w, W, l), part = l & 1;
                  if (r >= kMmqRows || row0 + r >= n) continue;
                  const uint8_t* src = nullptr;
                  int dst = 0;
                  const int bytes = mmq_copy<TY>(ew.v, row0, r, ch, part, src, dst);
                  if (bytes == 0) continue;
                  const uint8_t* base = Q::IS_FLOAT ? ew.raw.data() : ew.split.data();
                  const size_t size = Q::IS_FLOAT ? ew.raw.size() : ew.split.size();
                  if ((src - base) % 16 || dst % 16 || bytes % 16 || src < base || src - base + bytes > (int64_t)size ||
                      dst + bytes > G::BYTES || (part == 1 && src + bytes > ew.v.side + (row0 + r + 1) * ew.v.sst)) {
                    FAIL("%s mma: bad bulk copy (chunk %lld row %d part %d: src +%lld, dst %d, %d bytes)", name,
                         (long long)ch, r, part, (long long)(src - base), dst, bytes);
                    return;
                  }
                  std::memcpy(tile.data() + dst, src, (size_t)bytes);
                  copied += bytes;
                }
              int64_t announced = 0;
              for (int w = 0; w < W; ++w) announced += mmq_warp_chunk_bytes<TY>(ew.v, row0, ch, w, W);
              if (copied != announced) {
                FAIL("%s mma: chunk %lld copies %lld bytes, the warps announce %lld", name, (long long)ch,
                     (long long)copied, (long long)announced);
                return;
              }
              const int nbc = mmq_chunk_blocks<TY>(ew.v, ch), kb0 = (int)(ch * G::CB * Q::QK);
              if (nbc == G::CB && mmq_chunk_steps<TY>(nbc) != G::STEPS) {
                FAIL("%s mma: a full chunk has %d steps, not STEPS = %d", name, mmq_chunk_steps<TY>(nbc), G::STEPS);
                return;
              }
              if constexpr (MmqFold<TY>::OK) if (fold) {  // as mmq_group_fold, group by group
                using F = MmqFold<TY>;
                const uint16_t* zeros = kZeros16;
                const int ngr = (mmq_chunk_steps<TY>(nbc) + F::FSTEPS - 1) / F::FSTEPS;
                if (nbc == G::CB && ngr * F::FSTEPS != G::STEPS) FAIL("%s fold: groups do not tile a chunk", name);
                for (int w = 0; w < W; ++w)
                  for (int p = w; p < ngr; p += W) {
                    static float cf[32][4];
                    std::memset(cf, 0, sizeof(cf));
                    for (int s = 0; s < F::FSTEPS; ++s) {
                      const int sl = p * F::FSTEPS + s;
                      emu_warp_step<TY>(
                          cf, tile.data(), sl, nbc,
                          [](const typename Q::Regs(&r)[2], int sub, int j, uint32_t(&fr)[4][4]) {
                            mmq_a_codes<TY>(r[0], r[1], sub, j, fr);
                          },
                          [&](bool, int, int, int j, int gg, int tig) -> const uint16_t* {
                            int e = 0;
                            return mmq_fold_b<TY>(sl, s, tig, j, gg, nbc, e) ? &xs[kb0 + e] : zeros;
                          });
                    }
                    for (int l = 0; l < 32; ++l) {
                      float yl[2] = {0.f, 0.f};
                      mmq_fold<TY>(yl, cf[l], tile.data(), xsum.data() + kb0 / 16, p, nbc, l >> 2, l & 3);
                      y[l >> 2][0] += yl[0];
                      y[(l >> 2) + 8][0] += yl[1];
                    }
                  }
                continue;
              }
              for (int w = 0; w < W; ++w) {
                for (int sl = w; sl < mmq_chunk_steps<TY>(nbc); sl += W) {
                  emu_warp_step<TY>(
                      c[w], tile.data(), sl, nbc,
                      [](const typename Q::Regs(&r)[2], int sub, int j, uint32_t(&fr)[4][4]) {
                        mmq_a_run<TY>(r[0], r[1], sub, j, fr);
                      },
                      // as mmq_step: x row min(g, T - 1); nothing read (zeros) for units past the row's end
                      [&](bool valid, int bl, int sub, int j, int gg, int) -> const uint16_t* {
                        return valid ? &xs[std::min(gg, T - 1) * ldx + kb0 + bl * Q::QK + Q::run_offset(sub, j)]
                                     : kZeros16;
                      });
                }
              }
            }
            for (int w = 0; w < W; ++w)
              for (int l = 0; l < 32; ++l)
                for (int cc = 0; cc < 4; ++cc)
                  if (mmq_c_t(l, cc) < T) y[mmq_c_row(l, cc)][mmq_c_t(l, cc)] += c[w][l][cc];
            for (int r = 0; r < kMmqRows && row0 + r < n; ++r)
              for (int t = 0; t < T; ++t) {
                double want = 0, mag = 0;
                for (int64_t i = 0; i < k; ++i) {
                  want += (double)x[t * k + i] * ref[(row0 + r) * k + i];
                  mag += std::fabs((double)x[t * k + i] * ref[(row0 + r) * k + i]);
                }
                const double got = y[r][t] / xscale[t];
                if (!(std::fabs(got - want) <= 4.0 * std::ldexp(1.0, -11) * mag + 1e-6)) {
                  FAIL("%s mma n=%lld k=%lld T=%d x_kind=%d big=%d row %lld t %d: got %g want %g (mag %g)", name,
                       (long long)n, (long long)k, T, xk, (int)big, (long long)(row0 + r), t, got, want, mag);
                  return;
                }
              }
          }
        }
      }
    }
  }
  std::printf("ok %s mma\n", name);
}

// mma.m16n8k32 (row.col, s8 inputs, s32 accumulation) from the 32 lanes' fragments, per the PTX layout:
// lane (g, tig) holds A[g][4tig..+3], A[g+8][4tig..+3], A[g][16+4tig..+3], A[g+8][16+4tig..+3] (bytes, low
// first), B[4tig..+3][g], B[16+4tig..+3][g] and C[g][2tig..+1], C[g+8][2tig..+1].
// ua: A unsigned (.u8), else signed (.s8); B is signed.
static void emu_imma(int (&c)[32][4], const uint32_t (&a)[32][4], const uint32_t (&b)[32][2], bool ua) {
  int A[16][32], B[32][8];
  auto byte = [](uint32_t w, int i) { return (int)(int8_t)(uint8_t)(w >> (8 * i)); };
  auto abyte = [ua](uint32_t w, int i) { return ua ? (int)(uint8_t)(w >> (8 * i)) : (int)(int8_t)(uint8_t)(w >> (8 * i)); };
  for (int l = 0; l < 32; ++l) {
    const int g = l >> 2, t = l & 3;
    for (int i = 0; i < 4; ++i) {
      A[g][4 * t + i] = abyte(a[l][0], i);
      A[g + 8][4 * t + i] = abyte(a[l][1], i);
      A[g][16 + 4 * t + i] = abyte(a[l][2], i);
      A[g + 8][16 + 4 * t + i] = abyte(a[l][3], i);
      B[4 * t + i][g] = byte(b[l][0], i);
      B[16 + 4 * t + i][g] = byte(b[l][1], i);
    }
  }
  for (int l = 0; l < 32; ++l)
    for (int cc = 0; cc < 4; ++cc) {
      const int r = mmq_c_row(l, cc), col = mmq_c_t(l, cc);
      int64_t v = c[l][cc];
      for (int kk = 0; kk < 32; ++kk) v += (int64_t)A[r][kk] * B[kk][col];
      if (v > INT32_MAX || v < INT32_MIN) FAIL("imma: int32 overflow");
      c[l][cc] = (int)v;
    }
}

// The 16-byte shared loads of a quarter-warp (lanes 8q .. 8q + 7, byte addresses addr[l]) hit distinct
// 16-byte bank groups, except lanes that read the same address (a broadcast).
static bool quarter_conflict_free(const int64_t (&addr)[32]) {
  for (int q = 0; q < 4; ++q)
    for (int i = 8 * q; i < 8 * q + 8; ++i)
      for (int j = i + 1; j < 8 * q + 8; ++j)
        if (addr[i] != addr[j] && (addr[i] / 16) % 8 == (addr[j] / 16) % 8) return false;
  return true;
}

// The integer path of the tensor-core decode kernel (T = 1, matmul_mma.cuh MmqI8): x staged as int8 parts per
// 32-group (as mmq_stage_x_i8, one group at a time), tiles as the kernel's copies place them (MmqTile<TY, true>),
// the lanes' A / B fragments and folds over its warp / group structure with mma.m16n8k32 emulated, against a
// float64 dot. Bound: the x quantization (step / 2 per element) plus float32 rounding. Also: the shared
// loads of the A fragments are free of bank conflicts, a group with max |x| below 2^-96 stages as zero, and
// huge x (1e30) is exact to the same bound.
template <GGMLType TY>
static void check_mma_i8(std::mt19937& g) {
  using Q = QT<TY>;
  using I = MmqI8<TY>;
  using G = MmqTile<TY, true>;
  constexpr int E = I::E;
  const char* name = ggml_type_traits((int32_t)TY)->name;
  const int64_t bs = ggml_type_traits((int32_t)TY)->block_size;
  struct Shape { int64_t n, k; };
  std::vector<Shape> shapes = {{21, 512}, {16, 3072}, {18, 2816}};
  if (bs == 32) shapes.push_back({7, 96});
  for (Shape sh : shapes) {
    const int64_t n = sh.n, k = sh.k;
    const EmuWeight ew = make_emu_weight<TY>(n, k, g);
    const int64_t nsteps = (ew.v.nb * Q::LPB + 3) / 4, nchunks = mmq_chunks<TY>(ew.v);
    const int W = (int)std::max<int64_t>(1, std::min<int64_t>(kMmqMaxWarps, nsteps));
    for (int kind = 0; kind < 3; ++kind) {  // normal x, x with tiny and zero groups, huge x
      std::normal_distribution<float> nd(0.f, kind == 2 ? 1e30f : 1.f);
      std::vector<float> x((size_t)k);
      for (float& v : x) v = nd(g);
      if (kind == 1) {
        for (int e = 0; e < 32; ++e) x[e] *= 1e-31f;  // group 0: below 2^-96, staged as zero
        for (int e = 32; e < 64 && k > 64; ++e) x[e] = 0.f;
        x[k - 1] *= 1e4f;  // an outlier in the last group
      }
      MmvArgs a;
      a.w = ew.v;
      a.x = x.data();
      a.x_kind = kXF32;
      a.x_vec = true;
      a.t = 1;
      // staging, as mmq_stage_x_i8: one 32-group at a time
      std::vector<int8_t> hi((size_t)k), lo((size_t)k);
      std::vector<float> stp((size_t)(k / 32)), sum((size_t)(k / 32));
      std::vector<int> s16((size_t)(k / 16));
      std::vector<double> xq((size_t)k);  // the value the kernel multiplies: step * (256 hi + lo)
      for (int64_t q = 0; q < k / 32; ++q) {
        float am = 0.f, v[32];
        for (int u = 0; u < 8; ++u) load_x4(a, 32 * q + 4 * u, &v[4 * u]);
        for (float e : v) am = fmax_nan(am, std::fabs(e));
        const float inv = mmq_i8_inv(am);
        uint32_t h[8], l[8];
        int hs[2];
        mmq_i8_quant32(v, inv, h, l, hs);
        std::memcpy(&hi[32 * q], h, 32);
        std::memcpy(&lo[32 * q], l, 32);
        for (int half = 0; half < 2; ++half) {
          int want_s = 0;  // the sum of the v, recomputed from the parts
          for (int e = 16 * half; e < 16 * half + 16; ++e) want_s += 256 * hi[32 * q + e] + lo[32 * q + e];
          if (hs[half] != want_s) FAIL("%s i8: half %d of group %lld sums to %d, its parts to %d", name, half, (long long)q, hs[half], want_s);
          s16[2 * q + half] = hs[half];
        }
        const int is = hs[0] + hs[1];
        for (int e = 0; e < 32; ++e)
          if (hi[32 * q + e] < -127 || hi[32 * q + e] > 127)
            FAIL("%s i8: hi part %d out of [-127, 127]", name, hi[32 * q + e]);
        stp[q] = mmq_i8_step(am);
        sum[q] = stp[q] * (float)is;
        for (int e = 0; e < 32; ++e) {
          const int64_t i = 32 * q + e;
          xq[i] = (double)stp[q] * (256.0 * hi[i] + lo[i]);
          if (!(std::fabs(xq[i] - x[i]) <= 0.505 * stp[q] + (am < kI8Tiny ? am : 0.f))) {
            FAIL("%s i8: x[%lld] = %.9g staged as %.9g (step %g, hi %d lo %d inv %.9g am %.9g)", name, (long long)i, x[i], xq[i], stp[q], hi[i], lo[i], inv, am);
            return;
          }
        }
        if (kind == 1 && q == 0 && stp[q] != 0.f) FAIL("%s i8: a tiny group was not staged as zero", name);
      }
      const MmqI8X xv = {hi.data(), lo.data(), stp.data(), sum.data(), s16.data()};
      static const int8_t zeros[32] = {};
      for (int64_t row0 = 0; row0 < n; row0 += kMmqRows) {
        double y[kMmqRows] = {};
        std::vector<uint8_t> tile((size_t)G::BYTES);
        std::uniform_int_distribution<int> byte(0, 255);
        for (int64_t ch = 0; ch < nchunks; ++ch) {
          for (uint8_t& v : tile) v = (uint8_t)byte(g);
          for (int w = 0; w < W; ++w)
            for (int l = 0; l < 32; ++l) {
              const int r = mmq_copy_row(w, W, l), part = l & 1;
              if (r >= kMmqRows || row0 + r >= n) continue;
              const uint8_t* src = nullptr;
              int dst = 0;
              const int bytes = mmq_copy<TY, G>(ew.v, row0, r, ch, part, src, dst);
              if (bytes == 0) continue;
              if (dst % 16 || dst + bytes > G::BYTES) {
                FAIL("%s i8: bad bulk copy (chunk %lld row %d part %d: dst %d, %d bytes)", name, (long long)ch, r,
                     part, dst, bytes);
                return;
              }
              std::memcpy(tile.data() + dst, src, (size_t)bytes);
            }
          const int nbc = mmq_chunk_blocks<TY>(ew.v, ch);
          const int64_t kb0 = ch * G::CB * Q::QK;
          const int ngr = mmq_i8_groups<TY>(nbc);
          if (nbc == G::CB && ngr * 4 * E != G::CB * Q::QK) FAIL("%s i8: groups do not tile a chunk", name);
          for (int p = 0; p < ngr; ++p) {  // any warp's group: the lanes of one warp
            static int c[32][4];
            std::memset(c, 0, sizeof(c));
            uint32_t af[E / 8][32][4], bf[E / 8][32][2];
            int64_t addr[2][32];
            for (int l = 0; l < 32; ++l) {
              const int gg = l >> 2, tig = l & 3;
              const int ce = mmq_i8_class<TY>(p, tig);
              const bool valid = mmq_i8_valid<TY>(ce, nbc);
              uint32_t fr[E / 8][4];
              I::template a_frags<G>(tile.data(), gg, ce, fr);
              const int8_t* xb = mmq_i8_b(xv, zeros, kb0, ce, valid, gg, tig);
              for (int i = 0; i < E / 8; ++i) {
                for (int q = 0; q < 4; ++q) af[i][l][q] = fr[i][q];
                std::memcpy(bf[i][l], xb + 8 * i, 8);
              }
              // first 16-byte load of row g's codes (Q8_0 / Q4_K: its class bytes; Q6_K: its ql bytes)
              const int64_t base = (int64_t)gg * G::PS;
              if (TY == GGMLType::Q6_K) {
                const int e = ce & 127;
                addr[0][l] = base + (ce >> 8) * Q::PB + 64 * ((ce & 255) >> 7) + (e & 63);
                addr[1][l] = base + (ce >> 8) * Q::PB + 128 + 32 * ((ce & 255) >> 7) + (e & 31);
              } else if (TY == GGMLType::Q4_K) {
                addr[0][l] = base + (ce >> 8) * 128 + 32 * (((ce >> 5) & 7) >> 1);
                addr[1][l] = addr[0][l] + 16;
              } else {
                addr[0][l] = base + ce;
                addr[1][l] = base + ce + 16;
              }
            }
            if (!quarter_conflict_free(addr[0]) || !quarter_conflict_free(addr[1]))
              FAIL("%s i8: shared loads of the A fragments conflict (row stride %d)", name, G::PS);
            for (int i = 0; i < E / 8; ++i) emu_imma(c, af[i], bf[i], I::UA);
            for (int l = 0; l < 32; ++l) {
              const int gg = l >> 2, tig = l & 3;
              const int ce = mmq_i8_class<TY>(p, tig);
              if (!mmq_i8_valid<TY>(ce, nbc)) continue;
              float yl[2] = {0.f, 0.f};
              const int ci[2] = {256 * c[l][0] + c[l][1], 256 * c[l][2] + c[l][3]};
              I::template fold<G>(yl, ci, tile.data(), xv, kb0 + ce, ce, gg);
              y[gg] += yl[0];
              y[gg + 8] += yl[1];
            }
          }
        }
        for (int r = 0; r < kMmqRows && row0 + r < n; ++r) {
          double want = 0, wantq = 0, mag = 0;
          for (int64_t i = 0; i < k; ++i) {
            const double w = ew.ref[(row0 + r) * k + i];
            want += (double)x[i] * w;
            wantq += xq[i] * w;
            mag += std::fabs(xq[i] * w);
          }
          double qb = 0;  // the quantization bound: sum of step / 2 * |w|
          for (int64_t i = 0; i < k; ++i) qb += 0.505 * stp[i / 32] * std::fabs(ew.ref[(row0 + r) * k + i]);
          if (kind == 1) qb += 1e-27 * k;
          // against the staged x: float32 rounding of the folds only
          if (!(std::fabs(y[r] - wantq) <= 1e-5 * mag + 1e-30)) {
            FAIL("%s i8 n=%lld k=%lld kind %d row %lld: got %g, want %g with the staged x (mag %g)", name,
                 (long long)n, (long long)k, kind, (long long)(row0 + r), y[r], wantq, mag);
            return;
          }
          if (!(std::fabs(y[r] - want) <= qb + 1e-5 * mag + 1e-30)) {
            FAIL("%s i8 n=%lld k=%lld kind %d row %lld: got %g, want %g (bound %g)", name, (long long)n,
                 (long long)k, kind, (long long)(row0 + r), y[r], want, qb);
            return;
          }
        }
      }
    }
  }
  std::printf("ok %s mma i8\n", name);
}

// The int8-activation split-K kernel (mmvk_kernel<..., I8 = true>): against a float64 dot with the exact x,
// within the quantization bound sum over runs of (max|x_run| / 254) * sum |w_run| (+ float32 rounding);
// and against the CPU twin's fake-quantized x (quantize_x_int8_runs), which it must match to float32
// rounding. NaN in x must give NaN.
template <GGMLType TY>
static void check_split_k_int8(std::mt19937& g) {
  using Q = QT<TY>;
  const char* name = ggml_type_traits((int32_t)TY)->name;
  const int64_t bs = ggml_type_traits((int32_t)TY)->block_size;
  constexpr int R = kMmvkRowsI8;
  struct Shape { int64_t n, k; };
  std::vector<Shape> shapes = {{5, 512}, {9, 3072}, {4, 2304}};
  if (bs == 32) shapes.push_back({3, 96});
  for (Shape sh : shapes) {
    const int64_t n = sh.n, k = sh.k;
    const EmuWeight ew = make_emu_weight<TY>(n, k, g);
    const std::vector<float>& ref = ew.ref;
    const QView v = ew.v;
    constexpr int BPS = 32 / Q::LPB;
    const int64_t nsteps = (v.nb + BPS - 1) / BPS;
    const int W = (int)std::max<int64_t>(1, std::min<int64_t>(kMmvkMaxWarps, nsteps));
    for (int T : {1, 2, 3, 8}) {
      for (int case_ : {0, 1, 2}) {  // 0: N(0,1); 1: runs of very different scale, zero runs; 2: a NaN
        std::normal_distribution<float> nd(0.f, 1.f);
        std::vector<float> x((size_t)(T * k));
        for (size_t i = 0; i < x.size(); ++i) {
          x[i] = nd(g);
          if (case_ == 1) {
            const size_t run = i / 16;
            x[i] *= run % 3 == 0 ? 0.f : run % 3 == 1 ? 1e-3f : 50.f;
          }
        }
        const int64_t nan_at = case_ == 2 ? (int64_t)(g() % x.size()) : -1;
        if (nan_at >= 0) x[nan_at] = NAN;
        std::vector<float> xq = x;
        cpu::quantize_x_int8_runs(xq.data(), T, k);
        MmvArgs a;
        a.w = v;
        a.x = x.data();
        a.x_kind = kXF32;
        a.x_vec = true;
        a.t = T;
        for (int64_t row0 = 0; row0 < n; row0 += R) {
          int64_t rows[R];
          for (int r = 0; r < R; ++r) rows[r] = imin64(row0 + r, n - 1);
          double y[R][8] = {};
          for (int w = 0; w < W; ++w)
            for (int l = 0; l < 32; ++l) {
              float acc[R][8] = {};
              for (int64_t s = w; s < nsteps; s += W) {
                typename Q::Regs regs[R];
                mmv_load_step<TY, R>(regs, a, rows, s, l);
                mmvk_compute_step_i8<TY, 8, R>(regs, a, l, s, T, acc);
              }
              for (int r = 0; r < R; ++r)
                for (int t = 0; t < T; ++t) y[r][t] += acc[r][t];
            }
          for (int r = 0; r < R && row0 + r < n; ++r)
            for (int t = 0; t < T; ++t) {
              const int64_t row = row0 + r;
              double want = 0, wantq = 0, mag = 0, bound = 0;
              bool has_nan = false;
              for (int64_t i = 0; i < k; ++i) {
                const double wi = ref[row * k + i], xi = x[t * k + i];
                has_nan |= std::isnan(xi);
                if (std::isnan(xi)) continue;
                want += xi * wi;
                wantq += (double)xq[t * k + i] * wi;
                mag += std::fabs(xi * wi);
              }
              for (int64_t r16 = 0; r16 < k / 16; ++r16) {
                double amax = 0, wsum = 0;
                for (int e = 0; e < 16; ++e) {
                  const double xi = x[t * k + 16 * r16 + e];
                  if (!std::isnan(xi)) amax = std::max(amax, std::fabs(xi));
                  wsum += std::fabs(ref[row * k + 16 * r16 + e]);
                }
                bound += amax / 254.0 * (1 + 1e-5) * wsum;
              }
              const double got = y[r][t];
              if (has_nan) {
                if (!std::isnan(got)) FAIL("%s int8 n=%lld k=%lld T=%d: NaN in x gave %g", name, (long long)n, (long long)k, T, got);
                continue;
              }
              const double ftol = 1e-5 * (mag + bound) + 1e-6;
              if (!(std::fabs(got - want) <= bound + ftol) || !(std::fabs(got - wantq) <= 1e-4 * (mag + bound) + 1e-5)) {
                FAIL("%s int8 n=%lld k=%lld T=%d case %d row %lld t %d: got %.9g want %.9g (bound %.3g) cpu-twin %.9g",
                     name, (long long)n, (long long)k, T, case_, (long long)row, t, got, want, bound, wantq);
                return;
              }
            }
        }
      }
    }
  }
  std::printf("ok %s split-k int8\n", name);
}

int main() {
  std::mt19937 g(12345);
  check_type<GGMLType::F32>(g);
  check_type<GGMLType::F16>(g);
  check_type<GGMLType::BF16>(g);
  check_type<GGMLType::Q4_0>(g);
  check_type<GGMLType::Q4_1>(g);
  check_type<GGMLType::Q5_0>(g);
  check_type<GGMLType::Q5_1>(g);
  check_type<GGMLType::Q8_0>(g);
  check_type<GGMLType::Q2_K>(g);
  check_type<GGMLType::Q3_K>(g);
  check_type<GGMLType::Q4_K>(g);
  check_type<GGMLType::Q5_K>(g);
  check_type<GGMLType::Q6_K>(g);
  check_split_k<GGMLType::F32>(g);
  check_split_k<GGMLType::F16>(g);
  check_split_k<GGMLType::BF16>(g);
  check_split_k<GGMLType::Q4_0>(g);
  check_split_k<GGMLType::Q4_1>(g);
  check_split_k<GGMLType::Q5_0>(g);
  check_split_k<GGMLType::Q5_1>(g);
  check_split_k<GGMLType::Q8_0>(g);
  check_split_k<GGMLType::Q2_K>(g);
  check_split_k<GGMLType::Q3_K>(g);
  check_split_k<GGMLType::Q4_K>(g);
  check_split_k<GGMLType::Q5_K>(g);
  check_split_k<GGMLType::Q6_K>(g);
  check_split_k_int8<GGMLType::Q4_0>(g);
  check_split_k_int8<GGMLType::Q4_1>(g);
  check_split_k_int8<GGMLType::Q5_0>(g);
  check_split_k_int8<GGMLType::Q5_1>(g);
  check_split_k_int8<GGMLType::Q8_0>(g);
  check_split_k_int8<GGMLType::Q2_K>(g);
  check_split_k_int8<GGMLType::Q3_K>(g);
  check_split_k_int8<GGMLType::Q4_K>(g);
  check_split_k_int8<GGMLType::Q5_K>(g);
  check_split_k_int8<GGMLType::Q6_K>(g);
  check_mma<GGMLType::F16>(g);
  check_mma<GGMLType::Q4_0>(g);
  check_mma<GGMLType::Q4_1>(g);
  check_mma<GGMLType::Q5_0>(g);
  check_mma<GGMLType::Q5_1>(g);
  check_mma<GGMLType::Q8_0>(g);
  check_mma<GGMLType::Q2_K>(g);
  check_mma<GGMLType::Q3_K>(g);
  check_mma<GGMLType::Q4_K>(g);
  check_mma<GGMLType::Q5_K>(g);
  check_mma<GGMLType::Q6_K>(g);
  check_mma_i8<GGMLType::Q8_0>(g);
  check_mma_i8<GGMLType::Q4_K>(g);
  check_mma_i8<GGMLType::Q6_K>(g);
  if (g_fail) {
    std::printf("%d failures\n", g_fail);
    return 1;
  }
  std::printf("all ok\n");
  return 0;
}
