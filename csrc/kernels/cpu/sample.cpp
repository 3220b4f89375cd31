// CPU sampling: the same filtering and integer masses as the CUDA kernel (kernels/sample_math.h),
// computed with nth_element / sort instead of radix selects, so both devices pick the same token.
// This file is compiled with -ffp-contract=off (CMakeLists.txt) so the shared float code is not fused.
#include <algorithm>
#include <functional>
#include <vector>

#include "kernels/cpu/basic.h"
#include "kernels/cpu/parallel_rows.h"
#include "kernels/sample_math.h"

namespace inferlab {
namespace cpu {

using namespace inferlab::sampling;

namespace {

int32_t sample_row(const float* l, int64_t V, const int32_t* prev, int64_t P, const ops::SamplingParams& p,
                   uint32_t row, std::vector<float>& z, std::vector<uint32_t>& key, std::vector<uint8_t>& pen) {
  const bool use_pen = prev != nullptr && P > 0 && p.repetition_penalty != 1.f;
  if (use_pen) {
    std::fill(pen.begin(), pen.end(), 0);
    for (int64_t j = 0; j < P; ++j)
      if (prev[j] >= 0 && prev[j] < V) pen[(size_t)prev[j]] = 1;
  }
  const float temp = p.temperature > 0.f ? p.temperature : 0.f;
  int64_t best = 0;
  for (int64_t i = 0; i < V; ++i) {
    z[i] = adjusted_logit(l[i], use_pen && pen[i], p.repetition_penalty, temp);
    key[i] = float_key(z[i]);
    if (key[i] > key[best]) best = i;
  }
  if (temp <= 0.f) return (int32_t)best;
  const float zmax = z[best];

  uint32_t kth = 0;
  if (p.top_k > 0 && p.top_k < V) {
    std::vector<uint32_t> k2(key.begin(), key.begin() + V);
    std::nth_element(k2.begin(), k2.begin() + (p.top_k - 1), k2.end(), std::greater<uint32_t>());
    kth = k2[(size_t)(p.top_k - 1)];
  }

  uint32_t tau = 0;
  if (p.top_p < 1.f) {
    // candidates: top-k survivors with non-zero mass (zero-mass tokens cannot be drawn)
    std::vector<std::pair<uint32_t, uint64_t>> cand;
    uint64_t total = 0;
    for (int64_t i = 0; i < V; ++i) {
      if (key[i] < kth) continue;
      const uint64_t m = mass_of_weight(weight(z[i], zmax));
      total += m;
      if (m) cand.emplace_back(key[i], m);
    }
    const uint64_t thr = top_p_threshold(p.top_p, total);
    std::sort(cand.begin(), cand.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    uint64_t above = 0;  // mass of keys strictly greater than the current group
    for (size_t g = 0; g < cand.size();) {
      if (above >= thr) break;
      tau = cand[g].first;
      size_t h = g;
      uint64_t gm = 0;
      for (; h < cand.size() && cand[h].first == cand[g].first; ++h) gm += cand[h].second;
      above += gm;
      g = h;
    }
  }

  const uint32_t lo = std::max(kth, tau);
  auto kept_mass = [&](int64_t i) -> uint64_t {
    if (key[i] < lo) return 0;
    const float e = weight(z[i], zmax);
    if (p.min_p > 0.f && !(e >= p.min_p)) return 0;
    return mass_of_weight(e);
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
    std::vector<float> z((size_t)V);
    std::vector<uint32_t> key((size_t)V);
    std::vector<uint8_t> pen((size_t)V);
    for (int64_t b = b0; b < b1; ++b)
      out[b] = sample_row(lp + b * V, V, pp ? pp + b * P : nullptr, P, p, (uint32_t)b, z, key, pen);
  });
}

}  // namespace cpu
}  // namespace inferlab
