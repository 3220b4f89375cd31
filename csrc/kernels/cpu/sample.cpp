// CPU sampling: the same filtering and integer masses as the CUDA kernel (kernels/sample_math.h),
// computed with nth_element / sort instead of radix selects, so both devices pick the same token.
// This file is compiled with -ffp-contract=off (CMakeLists.txt) so the shared float code is not fused.
#include <algorithm>
#include <functional>
#include <vector>

#include "kernels/cpu/basic.h"
#include "kernels/cpu/threads.h"
#include "kernels/sample_math.h"

namespace inferlab {
namespace cpu {

using namespace inferlab::sampling;

namespace {

struct RowScratch {
  std::vector<float> z, e;
  std::vector<uint32_t> key, tmp;
  std::vector<uint8_t> pen;
  std::vector<std::pair<uint32_t, uint64_t>> cand;
};

// Smallest key tau whose strictly-higher mass is below thr (cand: (key, mass > 0) of the top-k survivors).
// Sorts only as much of the candidates as the nucleus needs.
uint32_t top_p_key(std::vector<std::pair<uint32_t, uint64_t>>& cand, uint64_t thr) {
  auto desc = [](const auto& a, const auto& b) { return a.first > b.first; };
  size_t m = std::min<size_t>(cand.size(), 512);
  for (;;) {
    // cand[0, m) now holds the m largest keys in order; the rest are <= cand[m - 1]
    std::partial_sort(cand.begin(), cand.begin() + m, cand.end(), desc);
    uint64_t above = 0;  // mass of keys strictly greater than the current group
    uint32_t tau = 0;
    bool need_more = false;
    for (size_t g = 0; g < m;) {
      if (above >= thr) return tau;
      tau = cand[g].first;
      size_t h = g;
      for (; h < m && cand[h].first == tau; ++h) above += cand[h].second;
      if (h == m && m < cand.size()) {  // the group may continue in the unsorted rest
        need_more = true;
        break;
      }
      g = h;
    }
    if (!need_more) return tau;  // all candidates walked: every group is kept
    m = 8 * m >= cand.size() ? cand.size() : 4 * m;  // large nuclei: one full sort
  }
}

int32_t sample_row(const float* l, int64_t V, const int32_t* prev, int64_t P, const ops::SamplingParams& p,
                   uint32_t row, RowScratch& w) {
  const bool use_pen = prev != nullptr && P > 0 && p.repetition_penalty != 1.f;
  if (use_pen) {
    std::fill(w.pen.begin(), w.pen.end(), 0);
    for (int64_t j = 0; j < P; ++j)
      if (prev[j] >= 0 && prev[j] < V) w.pen[(size_t)prev[j]] = 1;
  }
  const float temp = p.temperature > 0.f ? p.temperature : 0.f;
  int64_t best = 0;
  for (int64_t i = 0; i < V; ++i) {
    w.z[i] = adjusted_logit(l[i], use_pen && w.pen[i], p.repetition_penalty, temp);
    w.key[i] = float_key(w.z[i]);
    if (w.key[i] > w.key[best]) best = i;
  }
  if (temp <= 0.f) return (int32_t)best;
  const float zmax = w.z[best];

  uint32_t kth = 0;
  if (p.top_k > 0 && p.top_k < V) {
    w.tmp.assign(w.key.begin(), w.key.begin() + V);
    std::nth_element(w.tmp.begin(), w.tmp.begin() + (p.top_k - 1), w.tmp.end(), std::greater<uint32_t>());
    kth = w.tmp[(size_t)(p.top_k - 1)];
  }
  for (int64_t i = 0; i < V; ++i) w.e[i] = w.key[i] >= kth ? weight(w.z[i], zmax) : 0.f;

  uint32_t tau = 0;
  if (p.top_p < 1.f) {
    // candidates: top-k survivors with non-zero mass (zero-mass tokens cannot be drawn)
    w.cand.clear();
    uint64_t total = 0;
    for (int64_t i = 0; i < V; ++i) {
      const uint64_t m = mass_of_weight(w.e[i]);
      total += m;
      if (m) w.cand.emplace_back(w.key[i], m);
    }
    tau = top_p_key(w.cand, top_p_threshold(p.top_p, total));
  }

  const uint32_t lo = std::max(kth, tau);
  auto kept_mass = [&](int64_t i) -> uint64_t {
    if (w.key[i] < lo) return 0;
    if (p.min_p > 0.f && !(w.e[i] >= p.min_p)) return 0;
    return mass_of_weight(w.e[i]);
  };
  uint64_t total = 0;
  for (int64_t i = 0; i < V; ++i) total += kept_mass(i);
  if (total == 0) return (int32_t)best;  // only when every logit is nan
  const uint64_t target = scale_bits(random_bits(p.seed, p.offset, row), total);
  uint64_t cum = 0;
  for (int64_t i = 0; i < V; ++i) {
    cum += kept_mass(i);
    if (cum > target) return (int32_t)i;
  }
  return (int32_t)best;  // unreachable: cum reaches total > target
}

}  // namespace

void sample(const Tensor& logits, const ops::SamplingParams& p, const Tensor& prev_tokens, Tensor& tokens) {
  const int64_t B = logits.size(0), V = logits.size(1);
  const int64_t P = prev_tokens.defined() ? prev_tokens.size(1) : 0;
  const float* lp = logits.data_as<float>();
  const int32_t* pp = prev_tokens.defined() ? prev_tokens.data_as<int32_t>() : nullptr;
  int32_t* out = tokens.data_as<int32_t>();
  parallel_rows(B, 8 * V, [&](int64_t b0, int64_t b1) {
    RowScratch w;
    w.z.resize((size_t)V);
    w.e.resize((size_t)V);
    w.key.resize((size_t)V);
    w.pen.resize((size_t)V);
    for (int64_t b = b0; b < b1; ++b) out[b] = sample_row(lp + b * V, V, pp ? pp + b * P : nullptr, P, p, (uint32_t)b, w);
  });
}

}  // namespace cpu
}  // namespace inferlab
