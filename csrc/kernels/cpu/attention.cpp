#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/half.h"
#include "kernels/cpu/threads.h"

namespace inferlab {
namespace cpu {

namespace {

constexpr int kQBlock = 64;  // query rows per work item
constexpr size_t kKeepFloats = 1 << 18;  // per-thread key / value scratch kept between items (1 MB each)

const float* fp16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = fp16_to_f32((uint16_t)i);
    return t;
  }();
  return table.data();
}

// dst[0..n) = float(src[0..n)), src of dtype dt.
void load_row(float* dst, const void* src, DType dt, int n) {
  switch (dt) {
    case DType::F32:
      std::memcpy(dst, src, (size_t)n * sizeof(float));
      break;
    case DType::F16: {
      const float* tab = fp16_table();
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int i = 0; i < n; ++i) dst[i] = tab[s[i]];
      break;
    }
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      break;
    }
    default:
      break;
  }
}

void store_row(void* dst, const float* src, DType dt, int n) {
  switch (dt) {
    case DType::F32:
      std::memcpy(dst, src, (size_t)n * sizeof(float));
      break;
    case DType::F16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int i = 0; i < n; ++i) d[i] = f32_to_fp16(src[i]);
      break;
    }
    case DType::BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      break;
    }
    default:
      break;
  }
}

inline const char* elem_ptr(const void* base, DType dt, int64_t index) {
  return static_cast<const char*>(base) + index * (int64_t)dtype_size(dt);
}

// Dot product with 8 independent partial sums (lets the compiler vectorize without fast-math).
inline float dot_f32(const float* a, const float* b, int n) {
  float part[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int u = 0; u < 8; ++u) part[u] += a[i + u] * b[i + u];
  float s = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

struct Item {
  int seq, hk, r0, r1;
};

void run_item(const AttnParams& p, const AttnSeq& s, const Item& it, std::vector<float>& kf, std::vector<float>& vf,
              std::vector<float>& scores, std::vector<float>& qrow, std::vector<float>& acc) {
  const int D = p.D, G = p.Hq / p.Hkv;
  // Keys any row of this item can see: [lo, hi).
  const int lo = p.window > 0 ? std::max(0, s.q_pos0 + it.r0 - p.window + 1) : 0;
  const int hi = p.causal ? std::min(s.kv_len, s.q_pos0 + it.r1) : s.kv_len;
  const int nk = std::max(0, hi - lo);
  kf.resize((size_t)nk * D);
  vf.resize((size_t)nk * D);
  for (int j = 0; j < nk; ++j) {
    const int64_t off = (int64_t)it.hk * p.kv_head_stride + (int64_t)(lo + j) * p.kv_row_stride;
    load_row(&kf[(size_t)j * D], elem_ptr(s.k, p.kv_dtype, off), p.kv_dtype, D);
    load_row(&vf[(size_t)j * D], elem_ptr(s.v, p.kv_dtype, off), p.kv_dtype, D);
  }
  scores.resize(std::max(nk, 1));
  qrow.resize(D);
  acc.resize(D);
  for (int hq = it.hk * G; hq < (it.hk + 1) * G; ++hq) {
    for (int r = it.r0; r < it.r1; ++r) {
      const int qp = s.q_pos0 + r;
      const int klo = p.window > 0 ? std::max(lo, qp - p.window + 1) : lo;
      const int khi = p.causal ? std::min(hi, qp + 1) : hi;
      std::fill(acc.begin(), acc.end(), 0.f);
      if (klo < khi) {
        load_row(qrow.data(), elem_ptr(s.q, p.q_dtype, (int64_t)r * p.q_row_stride + (int64_t)hq * D), p.q_dtype, D);
        for (int d = 0; d < D; ++d) qrow[d] *= p.scale;
        float mx = -INFINITY;
        for (int j = klo; j < khi; ++j) {
          const float* kr = &kf[(size_t)(j - lo) * D];
          const float dot = dot_f32(qrow.data(), kr, D);
          scores[j - lo] = dot;
          mx = std::max(mx, dot);
        }
        float sum = 0.f;
        for (int j = klo; j < khi; ++j) {
          const float e = std::exp(scores[j - lo] - mx);
          sum += e;
          const float* vr = &vf[(size_t)(j - lo) * D];
          for (int d = 0; d < D; ++d) acc[d] += e * vr[d];
        }
        const float inv = 1.f / sum;
        for (int d = 0; d < D; ++d) acc[d] *= inv;
      }
      store_row(const_cast<char*>(elem_ptr(s.out, p.out_dtype, (int64_t)r * p.o_row_stride + (int64_t)hq * D)),
                acc.data(), p.out_dtype, D);
    }
  }
}

}  // namespace

void attention(const AttnParams& p, const std::vector<AttnSeq>& seqs) {
  std::vector<Item> items;
  double work = 0;
  for (int si = 0; si < (int)seqs.size(); ++si) {
    const AttnSeq& s = seqs[si];
    for (int hk = 0; hk < p.Hkv; ++hk)
      for (int r0 = 0; r0 < s.T; r0 += kQBlock) items.push_back({si, hk, r0, std::min(s.T, r0 + kQBlock)});
    work += (double)s.T * std::max(s.kv_len, 1) * p.Hq * p.D;
  }
  auto item = [&](int64_t i) {
    thread_local std::vector<float> kf, vf, scores, qrow, acc;
    run_item(p, seqs[items[i].seq], items[i], kf, vf, scores, qrow, acc);
    // The pool's threads live as long as the process: a long context's copies of K and V are not kept past
    // the item (at most kKeepFloats each stay, for the next call's items).
    if (kf.capacity() > kKeepFloats) {
      std::vector<float>().swap(kf);
      std::vector<float>().swap(vf);
      std::vector<float>().swap(scores);
    }
  };
  if (work < 2e5) {  // little work: the pool's hand-off would dominate
    for (int64_t i = 0; i < (int64_t)items.size(); ++i) item(i);
  } else {
    parallel_for_each((int64_t)items.size(), item);
  }
}

void kv_cache_store(const KVStoreParams& p) {
  std::vector<float> row(p.D);
  for (int t = 0; t < p.T; ++t) {
    for (int h = 0; h < p.Hkv; ++h) {
      const int64_t src = ((int64_t)t * p.Hkv + h) * p.D;
      const int64_t dst = (((int64_t)p.seq_slots[t] * p.Hkv + h) * p.max_tokens + p.positions[t]) * p.D;
      load_row(row.data(), elem_ptr(p.k, p.in_dtype, src), p.in_dtype, p.D);
      store_row(const_cast<char*>(elem_ptr(p.k_cache, p.cache_dtype, dst)), row.data(), p.cache_dtype, p.D);
      load_row(row.data(), elem_ptr(p.v, p.in_dtype, src), p.in_dtype, p.D);
      store_row(const_cast<char*>(elem_ptr(p.v_cache, p.cache_dtype, dst)), row.data(), p.cache_dtype, p.D);
    }
  }
}

}  // namespace cpu
}  // namespace inferlab
