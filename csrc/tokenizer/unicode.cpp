// UTF-8 boundaries, combining classes and NFC over the generated tables.
#include "tokenizer/unicode.h"

#include <algorithm>
#include <vector>

namespace inferlab {
namespace {

constexpr uint32_t SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
constexpr uint32_t LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

// Full canonical decomposition of cp appended to out (Hangul algorithmically).
void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= SBase && cp < SBase + SCount) {
    uint32_t s = cp - SBase;
    out.push_back(LBase + s / NCount);
    out.push_back(VBase + (s % NCount) / TCount);
    if (s % TCount) out.push_back(TBase + s % TCount);
    return;
  }
  using namespace unicode_data;
  size_t lo = 0, hi = kNumDecomp;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (kDecompIndex[mid][0] < cp) lo = mid + 1; else hi = mid;
  }
  if (lo < kNumDecomp && kDecompIndex[lo][0] == cp) {
    const uint32_t* p = kDecompPool + kDecompIndex[lo][1];
    out.insert(out.end(), p, p + kDecompIndex[lo][2]);
  } else {
    out.push_back(cp);
  }
}

// Primary composite of (a, b), or 0 when none.
uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= LBase && a < LBase + LCount && b >= VBase && b < VBase + VCount)
    return SBase + ((a - LBase) * VCount + (b - VBase)) * TCount;
  if (a >= SBase && a < SBase + SCount && (a - SBase) % TCount == 0 && b > TBase && b < TBase + TCount)
    return a + (b - TBase);
  using namespace unicode_data;
  uint64_t key = (uint64_t(a) << 21) | b;
  size_t lo = 0, hi = kNumComp;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (kComp[mid][0] < key) lo = mid + 1; else hi = mid;
  }
  return (lo < kNumComp && kComp[lo][0] == key) ? uint32_t(kComp[lo][1]) : 0;
}

// Normalizes one segment (bounded by NFC-safe characters) and appends it as UTF-8.
void nfc_segment(const unsigned char* s, size_t n, std::vector<uint32_t>& buf, std::vector<uint8_t>& cls,
                 std::string& out) {
  buf.clear();
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    i += utf8_decode(s, n, i, &cp);
    decompose(cp, buf);
  }
  cls.resize(buf.size());
  for (size_t i = 0; i < buf.size(); ++i) cls[i] = unicode_ccc(buf[i]);
  // canonical ordering: stable sort of each run of non-starters by ccc (O(n log n) even for
  // hostile runs of alternating marks)
  for (size_t i = 0; i < buf.size();) {
    if (cls[i] == 0) { ++i; continue; }
    size_t j = i + 1;
    bool sorted = true;
    while (j < buf.size() && cls[j] != 0) {
      if (cls[j] < cls[j - 1]) sorted = false;
      ++j;
    }
    if (!sorted) {
      std::vector<std::pair<uint8_t, uint32_t>> run;
      run.reserve(j - i);
      for (size_t k = i; k < j; ++k) run.emplace_back(cls[k], buf[k]);
      std::stable_sort(run.begin(), run.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      for (size_t k = i; k < j; ++k) { cls[k] = run[k - i].first; buf[k] = run[k - i].second; }
    }
    i = j;
  }
  // canonical composition, in place
  size_t w = 0;
  long starter = -1;
  int last_ccc = 0;
  for (size_t i = 0; i < buf.size(); ++i) {
    uint32_t c = buf[i];
    int k = cls[i];
    if (starter >= 0) {
      bool adjacent = (long(w) - 1 == starter);
      if (adjacent || (last_ccc != 0 && last_ccc < k)) {
        uint32_t comp = compose(buf[starter], c);
        if (comp) {
          buf[starter] = comp;
          continue;
        }
      }
    }
    if (k == 0) {
      starter = long(w);
      last_ccc = 0;
    } else {
      last_ccc = k;
    }
    buf[w] = c;
    cls[w] = uint8_t(k);
    ++w;
  }
  for (size_t i = 0; i < w; ++i) utf8_append(out, buf[i]);
}

}  // namespace

uint8_t unicode_ccc(uint32_t cp) {
  using namespace unicode_data;
  size_t lo = 0, hi = kNumCcc;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (kCcc[mid][0] < cp) lo = mid + 1; else hi = mid;
  }
  return (lo < kNumCcc && kCcc[lo][0] == cp) ? uint8_t(kCcc[lo][1]) : 0;
}

size_t utf8_complete_prefix(std::string_view sv) {
  const auto* s = reinterpret_cast<const unsigned char*>(sv.data());
  size_t n = sv.size();
  for (size_t k = 1; k <= 3 && k <= n; ++k) {
    size_t p = n - k;
    unsigned char c = s[p];
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    size_t need = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    if (need <= k) return n;  // complete, ASCII, or an invalid lead: nothing to wait for
    for (size_t q = p + 1; q < n; ++q) {
      unsigned char lo = 0x80, hi = 0xBF;
      if (q == p + 1) {
        if (c == 0xE0) lo = 0xA0;
        else if (c == 0xED) hi = 0x9F;
        else if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F;
      }
      if (s[q] < lo || s[q] > hi) return n;  // already invalid: decodes the same whatever follows
    }
    return p;
  }
  return n;
}

bool nfc_normalize(std::string_view in, std::string& out) {
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  const size_t n = in.size();
  // quick check: find the first NFC-unsafe code point
  size_t i = 0, last_safe = 0;
  for (; i < n;) {
    if (s[i] < 0x80) { last_safe = i; ++i; continue; }
    uint32_t cp;
    size_t len = utf8_decode(s, n, i, &cp);
    if (ucp_flags(cp) & kFlagNfcUnsafe) break;
    last_safe = i;
    i += len;
  }
  if (i >= n) return false;
  out.clear();
  out.reserve(n + n / 8);
  std::vector<uint32_t> buf;
  std::vector<uint8_t> cls;
  size_t copied = 0;  // bytes of `in` already emitted
  size_t seg = last_safe;
  while (true) {
    // [seg, i) starts at a safe character (or the text start) and s[i] is unsafe: extend to the
    // next safe character, the next normalization boundary.
    out.append(in.data() + copied, seg - copied);
    size_t j = i;
    while (j < n) {
      uint32_t cp;
      size_t len = utf8_decode(s, n, j, &cp);
      if (j > i && !(ucp_flags(cp) & kFlagNfcUnsafe)) break;
      j += len;
    }
    nfc_segment(s + seg, j - seg, buf, cls, out);
    copied = j;
    if (j >= n) break;
    // find the next unsafe code point after j, tracking the last safe one
    size_t k = j;
    size_t ls = j;
    for (; k < n;) {
      if (s[k] < 0x80) { ls = k; ++k; continue; }
      uint32_t cp;
      size_t len = utf8_decode(s, n, k, &cp);
      if (ucp_flags(cp) & kFlagNfcUnsafe) break;
      ls = k;
      k += len;
    }
    if (k >= n) {
      out.append(in.data() + copied, n - copied);
      break;
    }
    seg = ls;
    i = k;
  }
  return true;
}

}  // namespace inferlab
