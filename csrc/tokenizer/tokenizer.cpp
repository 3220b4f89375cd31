// Tokenizer: vocabulary tables, added-token scanning, normalization, BPE, decoding.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <queue>
#include <set>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace inferlab {

// ---------------------------------------------------------------------------------------------
// helpers

namespace {

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the rest to U+0100...
uint32_t byte_char(uint8_t b) {
  static uint32_t table[256];
  static bool init = [] {
    int n = 0;
    for (int c = 0; c < 256; ++c) {
      bool keep = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
      table[c] = keep ? uint32_t(c) : uint32_t(256 + n++);
    }
    return true;
  }();
  (void)init;
  return table[b];
}

// Inverse of byte_char, or -1.
int char_byte(uint32_t cp) {
  if (cp < 0x100) {
    bool keep = (cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF);
    return keep ? int(cp) : -1;
  }
  if (cp < 0x100 + 68) {
    for (int b = 0; b < 256; ++b)
      if (byte_char(uint8_t(b)) == cp) return b;
  }
  return -1;
}

bool is_byte_token(const std::string& t, uint8_t* b) {
  if (t.size() != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>') return false;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  int hi = hex(t[3]), lo = hex(t[4]);
  if (hi < 0 || lo < 0) return false;
  *b = uint8_t(hi * 16 + lo);
  return true;
}

const char kMeta[] = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

inline bool ascii_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (true) {
    size_t j = s.find(from, i);
    if (j == std::string_view::npos) break;
    out.append(s.data() + i, j - i);
    out.append(to);
    i = j + from.size();
  }
  out.append(s.data() + i, s.size() - i);
  return out;
}

}  // namespace

// Replaces every maximal invalid UTF-8 subsequence with U+FFFD (as Python's errors="replace").
std::string utf8_sanitize(std::string_view sv) {
  const auto* s = reinterpret_cast<const unsigned char*>(sv.data());
  const size_t n = sv.size();
  std::string out;
  out.reserve(n);
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) { out.push_back(char(c)); ++i; continue; }
    size_t need = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    size_t k = 1;
    if (need) {
      while (k < need && i + k < n) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (k == 1) {
          if (c == 0xE0) lo = 0xA0;
          else if (c == 0xED) hi = 0x9F;
          else if (c == 0xF0) lo = 0x90;
          else if (c == 0xF4) hi = 0x8F;
        }
        if (s[i + k] < lo || s[i + k] > hi) break;
        ++k;
      }
      if (k == need) { out.append(sv.data() + i, need); i += need; continue; }
    }
    out.append("\xEF\xBF\xBD");
    i += k;
  }
  return out;
}

std::vector<int32_t> find_eog_ids(const std::vector<std::string>& tokens, const std::vector<int32_t>& extra) {
  static const std::set<std::string> kEogText = {
      "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
      "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
      "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
  };
  std::set<int32_t> eog;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (kEogText.count(tokens[i])) eog.insert(int32_t(i));
  for (int32_t id : extra)
    if (id >= 0 && size_t(id) < tokens.size()) eog.insert(id);
  return std::vector<int32_t>(eog.begin(), eog.end());
}

// ---------------------------------------------------------------------------------------------
// U64Map

void U64Map::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  keys_.assign(cap, kEmpty);
  vals_.assign(cap, 0);
  mask_ = cap - 1;
  size_ = 0;
}

void U64Map::put(uint64_t k, uint64_t v) {
  if (keys_.empty() || (size_ + 1) * 2 > keys_.size()) {
    std::vector<uint64_t> ok = std::move(keys_), ov = std::move(vals_);
    reserve(std::max<size_t>(16, (size_ + 1) * 2));
    for (size_t i = 0; i < ok.size(); ++i)
      if (ok[i] != kEmpty) put(ok[i], ov[i]);
  }
  size_t h = hash(k) & mask_;
  while (keys_[h] != kEmpty && keys_[h] != k) h = (h + 1) & mask_;
  if (keys_[h] == kEmpty) ++size_;
  keys_[h] = k;
  vals_[h] = v;
}

// ---------------------------------------------------------------------------------------------
// construction

struct Tokenizer::Scratch {
  std::string norm, buf;
  PreTokScratch pre;
  std::vector<Span> words;
  std::vector<Fragment> frags;
  std::vector<int32_t> ids, tmp;
  std::vector<uint32_t> ranks;
  bool use_cache = false;
};

Tokenizer::Tokenizer(TokenizerSpec spec) : spec_(std::move(spec)) {
  const size_t n = spec_.tokens.size();
  const std::string& nm = spec_.name;
  IL_CHECK_ARG(n > 0, nm, ": the vocabulary is empty");
  IL_CHECK_ARG(n < (size_t(1) << 31), nm, ": vocabulary too large");
  IL_CHECK_ARG(spec_.scores.empty() || spec_.scores.size() == n, nm, ": scores has ", spec_.scores.size(),
               " entries but the vocabulary has ", n, " tokens");
  IL_CHECK_ARG(spec_.token_types.empty() || spec_.token_types.size() == n, nm, ": token_types has ",
               spec_.token_types.size(), " entries but the vocabulary has ", n, " tokens");
  if (spec_.token_types.empty()) spec_.token_types.assign(n, kTokNormal);
  for (size_t i = 0; i < n; ++i) {
    int32_t t = spec_.token_types[i];
    IL_CHECK_ARG(t >= 0 && t <= 6, nm, ": token ", i, " has invalid token type ", t);
  }
  auto check_opt = [&](int32_t id, const char* what) {
    IL_CHECK_ARG(id >= -1 && id < int64_t(n), nm, ": ", what, " = ", id, " is outside the vocabulary (size ", n, ")");
  };
  check_opt(spec_.bos_id, "bos_id");
  check_opt(spec_.eos_id, "eos_id");
  check_opt(spec_.unk_id, "unk_id");
  check_opt(spec_.pad_id, "pad_id");
  for (int32_t id : spec_.prefix_ids) check_id(id, "prefix token");
  for (int32_t id : spec_.suffix_ids) check_id(id, "suffix token");
  for (int32_t id : spec_.eog_ids) check_id(id, "end-of-generation token");
  if (spec_.algo == BpeAlgo::kSpmScores)
    IL_CHECK_ARG(spec_.scores.size() == n, nm, ": SentencePiece BPE needs one score per token");

  piece_to_id_.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) piece_to_id_.emplace(spec_.tokens[i], int32_t(i));

  // byte tokens
  std::fill(byte_to_id_, byte_to_id_ + 256, -1);
  int n_missing_bytes = 0;
  if (spec_.byte_level) {
    for (int b = 0; b < 256; ++b) {
      std::string ch;
      utf8_append(ch, byte_char(uint8_t(b)));
      auto it = piece_to_id_.find(ch);
      // Some vocabularies lack a few control bytes (SmolLM2: 0x04...); as HF tokenizers, such
      // bytes are dropped from the text (no unknown token: HF byte-level models have none).
      if (it != piece_to_id_.end()) byte_to_id_[b] = it->second;
      else ++n_missing_bytes;
    }
    IL_CHECK_ARG(n_missing_bytes < 128, nm, ": not a byte-level vocabulary (", n_missing_bytes,
                 " of the 256 byte tokens are missing)");
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint8_t b;
      if (is_byte_token(spec_.tokens[i], &b) && byte_to_id_[b] < 0) byte_to_id_[b] = int32_t(i);
    }
  }

  // decoded bytes of every token
  piece_bytes_.resize(n);
  special_.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = spec_.tokens[i];
    int32_t type = spec_.token_types[i];
    if (type == kTokControl || type == kTokUnknown) special_[i] = 1;
    std::string& pb = piece_bytes_[i];
    if (spec_.byte_level) {
      // HF ByteLevel decoder: map every char back to its byte; a token with any other char is
      // kept as its UTF-8 text.
      const auto* p = reinterpret_cast<const unsigned char*>(t.data());
      bool ok = true;
      for (size_t k = 0; k < t.size();) {
        uint32_t cp;
        k += utf8_decode(p, t.size(), k, &cp);
        int b = char_byte(cp);
        if (b < 0) { ok = false; break; }
        pb.push_back(char(b));
      }
      if (!ok) pb = t;
      if (ok) raw_to_id_.emplace(pb, int32_t(i));
    } else {
      uint8_t b;
      if (is_byte_token(t, &b) && (type == kTokByte || spec_.byte_fallback)) {
        pb.assign(1, char(b));
      } else {
        pb = replace_all(t, kMeta, " ");
      }
    }
  }
  for (const AddedToken& a : spec_.added) {
    check_id(a.id, "added token");
    IL_CHECK_ARG(!a.content.empty(), nm, ": added token ", a.id, " has empty content");
    if (a.special) special_[a.id] = 1;
  }

  // merges
  if (spec_.algo == BpeAlgo::kMerges) {
    merges_.reserve(spec_.merges.size() + 16);
    std::string joined;
    for (size_t r = 0; r < spec_.merges.size(); ++r) {
      const std::string& m = spec_.merges[r];
      size_t sp = m.find(' ', 1);
      IL_CHECK_ARG(sp != std::string::npos && sp + 1 < m.size(), nm, ": merge ", r, " '", m,
                   "' is not of the form 'left right'");
      std::string_view a(m.data(), sp), b(m.data() + sp + 1, m.size() - sp - 1);
      auto ia = piece_to_id_.find(a), ib = piece_to_id_.find(b);
      joined.assign(a).append(b);
      auto ij = piece_to_id_.find(joined);
      IL_CHECK_ARG(ia != piece_to_id_.end() && ib != piece_to_id_.end() && ij != piece_to_id_.end(), nm, ": merge ", r,
                   " '", m, "' names a token that is not in the vocabulary");
      uint64_t key = (uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second), old;
      if (!merges_.get(key, &old)) merges_.put(key, (uint64_t(r) << 32) | uint32_t(ij->second));
    }
    if (!spec_.byte_level) {
      for (size_t i = 0; i < n; ++i) {
        const std::string& t = spec_.tokens[i];
        uint32_t cp;
        if (!t.empty() && utf8_decode(reinterpret_cast<const unsigned char*>(t.data()), t.size(), 0, &cp) == t.size())
          char_to_id_.emplace(cp, int32_t(i));
      }
    }
  } else {
    spm_pieces_.reserve(n * 2);
    for (size_t i = 0; i < n; ++i) {
      int32_t type = spec_.token_types[i];
      if (type == kTokControl || type == kTokUnknown || type == kTokByte || type == kTokUnused) continue;
      spm_pieces_.emplace(spec_.tokens[i], int32_t(i));
    }
  }

  // May text be split before each run of U+2581? Only if no token has one after another char.
  meta_split_ = spec_.escape_spaces;
  for (size_t i = 0; i < n && meta_split_; ++i) {
    const std::string& t = spec_.tokens[i];
    for (size_t p = t.find(kMeta, 1); p != std::string::npos; p = t.find(kMeta, p + 1)) {
      if (p < 3 || t.compare(p - 3, 3, kMeta) != 0) { meta_split_ = false; break; }
    }
  }

  build_trie(trie_all_, true);
  build_trie(trie_plain_, false);
}

void Tokenizer::build_trie(std::vector<TrieNode>& trie, bool include_special) {
  trie.assign(1, TrieNode{});
  for (size_t ai = 0; ai < spec_.added.size(); ++ai) {
    const AddedToken& a = spec_.added[ai];
    if (a.special && !include_special) continue;
    int32_t node = 0;
    for (unsigned char c : a.content) {
      int32_t next = -1;
      for (auto& kv : trie[node].kids)
        if (kv.first == c) { next = kv.second; break; }
      if (next < 0) {
        next = int32_t(trie.size());
        trie[node].kids.emplace_back(c, next);
        trie.emplace_back();
      }
      node = next;
    }
    if (trie[node].token < 0) {  // first definition wins
      trie[node].token = a.id;
      trie[node].added_index = int32_t(ai);
    }
  }
}

void Tokenizer::check_id(int32_t id, const char* what) const {
  IL_CHECK_ARG(id >= 0 && size_t(id) < spec_.tokens.size(), what, " id ", id, " is outside the vocabulary (size ",
               spec_.tokens.size(), ")");
}

const std::string& Tokenizer::id_to_piece(int32_t id) const {
  check_id(id, "token");
  return spec_.tokens[id];
}

int32_t Tokenizer::piece_to_id(std::string_view piece) const {
  auto it = piece_to_id_.find(piece);
  return it == piece_to_id_.end() ? -1 : it->second;
}

int32_t Tokenizer::token_type(int32_t id) const {
  check_id(id, "token");
  return spec_.token_types[id];
}

bool Tokenizer::is_special(int32_t id) const {
  check_id(id, "token");
  return special_[id] != 0;
}

// ---------------------------------------------------------------------------------------------
// encoding

void Tokenizer::split_added(std::string_view text, bool parse_special, std::vector<Fragment>& out) const {
  const std::vector<TrieNode>& trie = parse_special ? trie_all_ : trie_plain_;
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  if (trie[0].kids.empty()) {
    out.push_back({false, -1, 0, uint32_t(n)});
    return;
  }
  bool first[256] = {};
  for (auto& kv : trie[0].kids) first[kv.first] = true;
  size_t seg = 0;  // start of the pending text fragment
  size_t i = 0;
  while (i < n) {
    if (!first[s[i]]) { ++i; continue; }
    // longest match from i
    int32_t node = 0, best_node = -1;
    size_t best_end = 0;
    for (size_t j = i; j < n; ++j) {
      int32_t next = -1;
      for (auto& kv : trie[node].kids)
        if (kv.first == s[j]) { next = kv.second; break; }
      if (next < 0) break;
      node = next;
      if (trie[node].token >= 0) { best_node = node; best_end = j + 1; }
    }
    if (best_node < 0) { ++i; continue; }
    const AddedToken& a = spec_.added[trie[best_node].added_index];
    if (a.single_word) {
      auto word_char = [&](size_t pos, bool before) {
        size_t p = pos;
        if (before) {
          if (p == 0) return false;
          --p;
          while (p > 0 && (s[p] & 0xC0) == 0x80) --p;
        } else if (p >= n) {
          return false;
        }
        uint32_t cp;
        utf8_decode(s, n, p, &cp);
        uint8_t f = ucp_flags(cp);
        return cp == '_' || flags_letter(f) || flags_number(f);
      };
      if (word_char(i, true) || word_char(best_end, false)) { ++i; continue; }
    }
    size_t b = i, e = best_end;
    if (a.lstrip)
      while (b > seg && ascii_space(s[b - 1])) --b;
    if (a.rstrip)
      while (e < n && ascii_space(s[e])) ++e;
    if (b > seg) out.push_back({false, -1, uint32_t(seg), uint32_t(b)});
    out.push_back({true, a.id, uint32_t(b), uint32_t(e)});
    seg = i = e;
  }
  if (seg < n) out.push_back({false, -1, uint32_t(seg), uint32_t(n)});
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  IL_CHECK_ARG(text.size() < (size_t(1) << 32) - 16, "text is too long (", text.size(), " bytes; the limit is 4 GiB)");
  Scratch s;
  std::unique_lock<std::mutex> lock(cache_mu_, std::try_to_lock);
  s.use_cache = lock.owns_lock();
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  if (add_special) out.insert(out.end(), spec_.prefix_ids.begin(), spec_.prefix_ids.end());
  split_added(text, parse_special, s.frags);
  for (const Fragment& f : s.frags) {
    if (f.is_token) {
      out.push_back(f.id);
    } else {
      encode_segment(text.substr(f.b, f.e - f.b), f.b == 0, s, out);
    }
  }
  if (add_special) out.insert(out.end(), spec_.suffix_ids.begin(), spec_.suffix_ids.end());
  return out;
}

void Tokenizer::encode_segment(std::string_view seg, bool first_segment, Scratch& s, std::vector<int32_t>& out) const {
  if (seg.empty()) return;
  std::string_view t = seg;
  if (spec_.nfc && nfc_normalize(t, s.norm)) t = s.norm;
  bool prefix = false;
  switch (spec_.space_prefix) {
    case SpacePrefix::kNone: break;
    case SpacePrefix::kAlways: prefix = true; break;
    case SpacePrefix::kMetaspaceAlways: prefix = !(t[0] == ' ' || t.substr(0, 3) == kMeta); break;
    case SpacePrefix::kMetaspaceFirst: prefix = first_segment && !(t[0] == ' ' || t.substr(0, 3) == kMeta); break;
  }
  if (spec_.bytelevel_prefix_space && t[0] != ' ') prefix = true;
  if (prefix || spec_.escape_spaces) {
    s.buf.clear();
    s.buf.reserve(t.size() + 8);
    if (prefix) s.buf.append(spec_.escape_spaces ? kMeta : " ");
    if (spec_.escape_spaces) {
      for (char c : t) {
        if (c == ' ') s.buf.append(kMeta, 3);
        else s.buf.push_back(c);
      }
    } else {
      s.buf.append(t);
    }
    t = s.buf;
  }
  s.words.clear();
  if (spec_.pretok == PreTokKind::kNone && meta_split_) {
    // No token holds a U+2581 right after another character, so no merge crosses the start of a
    // run of U+2581: splitting there gives the same ids, and short words the cache can keep.
    const size_t n = t.size();
    size_t b = 0;
    for (size_t i = 3; i + 2 < n; ++i) {
      if (uint8_t(t[i]) == 0xE2 && uint8_t(t[i + 1]) == 0x96 && uint8_t(t[i + 2]) == 0x81 &&
          !(uint8_t(t[i - 3]) == 0xE2 && uint8_t(t[i - 2]) == 0x96 && uint8_t(t[i - 1]) == 0x81)) {
        s.words.emplace_back(uint32_t(b), uint32_t(i));
        b = i;
        i += 2;
      }
    }
    s.words.emplace_back(uint32_t(b), uint32_t(n));
  } else {
    pretokenize(spec_.pretok, t, s.pre, s.words);
  }
  for (const Span& w : s.words) encode_word(t.substr(w.first, w.second - w.first), s, out);
}

void Tokenizer::encode_word(std::string_view word, Scratch& s, std::vector<int32_t>& out) const {
  constexpr size_t kCacheMaxWord = 96;
  const bool cacheable = s.use_cache && word.size() <= kCacheMaxWord;
  if (cacheable) {
    auto it = cache_.find(std::string(word));
    if (it != cache_.end()) {
      out.insert(out.end(), cache_ids_.begin() + it->second.first,
                 cache_ids_.begin() + it->second.first + it->second.second);
      return;
    }
  }
  const size_t before = out.size();
  bool done = false;
  if (spec_.ignore_merges) {
    if (spec_.byte_level) {
      auto it = raw_to_id_.find(std::string(word));
      if (it != raw_to_id_.end()) { out.push_back(it->second); done = true; }
    } else {
      auto it = piece_to_id_.find(word);
      if (it != piece_to_id_.end()) { out.push_back(it->second); done = true; }
    }
  }
  if (!done) {
    if (spec_.algo == BpeAlgo::kSpmScores) bpe_spm(word, s, out);
    else bpe_merges(word, s, out);
  }
  if (cacheable) {
    if (cache_.size() >= (1u << 18) || cache_ids_.size() >= (1u << 24)) {
      cache_.clear();
      cache_ids_.clear();
    }
    cache_.emplace(std::string(word), std::make_pair(uint32_t(cache_ids_.size()), uint32_t(out.size() - before)));
    cache_ids_.insert(cache_ids_.end(), out.begin() + before, out.end());
  }
}

void Tokenizer::push_byte_fallback(uint8_t byte, std::vector<int32_t>& out) const {
  if (byte_to_id_[byte] >= 0) { out.push_back(byte_to_id_[byte]); return; }
  auto it = piece_to_id_.find(std::string_view(reinterpret_cast<const char*>(&byte), 1));
  if (it != piece_to_id_.end()) { out.push_back(it->second); return; }
  if (spec_.unk_id >= 0) { out.push_back(spec_.unk_id); return; }
  throw ValueError(str_cat(spec_.name, ": cannot encode byte 0x", std::hex, int(byte),
                           ": no <0xNN> token, no single-byte token and no unknown token"));
}

void Tokenizer::bpe_merges(std::string_view word, Scratch& s, std::vector<int32_t>& out) const {
  std::vector<int32_t>& ids = s.ids;
  ids.clear();
  const auto* p = reinterpret_cast<const unsigned char*>(word.data());
  const size_t n = word.size();
  if (spec_.byte_level) {
    ids.resize(n);
    size_t k = 0;
    for (size_t i = 0; i < n; ++i) {
      int32_t id = byte_to_id_[p[i]];
      if (id >= 0) ids[k++] = id;  // bytes without a token are dropped, as HF does
    }
    ids.resize(k);
  } else {
    // characters -> tokens; unknown ones -> byte fallback or <unk> (fused when fuse_unk)
    for (size_t i = 0; i < n;) {
      uint32_t cp;
      size_t len = utf8_decode(p, n, i, &cp);
      int32_t id = -1;
      if (len > 1 || p[i] < 0x80) {
        auto it = char_to_id_.find(cp);
        if (it != char_to_id_.end()) id = it->second;
      }
      if (id >= 0) {
        ids.push_back(id);
      } else {
        bool all_bytes = spec_.byte_fallback;
        for (size_t k = 0; k < len && all_bytes; ++k) all_bytes = byte_to_id_[p[i + k]] >= 0;
        if (all_bytes) {
          for (size_t k = 0; k < len; ++k) ids.push_back(byte_to_id_[p[i + k]]);
        } else if (spec_.unk_id >= 0) {
          if (!(spec_.fuse_unk && !ids.empty() && ids.back() == spec_.unk_id)) ids.push_back(spec_.unk_id);
        } else {
          throw ValueError(str_cat(spec_.name, ": cannot encode U+", std::hex, cp,
                                   ": not in the vocabulary, and no byte fallback or unknown token"));
        }
      }
      i += len;
    }
  }
  const size_t m = ids.size();
  auto lookup = [&](int32_t a, int32_t b, uint64_t* v) {
    return merges_.get((uint64_t(uint32_t(a)) << 32) | uint32_t(b), v);
  };
  constexpr uint32_t kNone = ~uint32_t(0);
  if (m <= 48) {
    // small words: rank of every adjacent pair in an array; merge the lowest (leftmost on ties)
    std::vector<uint32_t>& ranks = s.ranks;
    std::vector<int32_t>& merged = s.tmp;
    ranks.resize(m);
    merged.resize(m);
    size_t len = m;
    auto set_pair = [&](size_t i) {
      uint64_t v;
      if (i + 1 < len && lookup(ids[i], ids[i + 1], &v)) {
        ranks[i] = uint32_t(v >> 32);
        merged[i] = int32_t(uint32_t(v));
      } else {
        ranks[i] = kNone;
      }
    };
    for (size_t i = 0; i < len; ++i) set_pair(i);
    while (len > 1) {
      size_t best = 0;
      uint32_t br = kNone;
      for (size_t i = 0; i + 1 < len; ++i)
        if (ranks[i] < br) { br = ranks[i]; best = i; }
      if (br == kNone) break;
      ids[best] = merged[best];
      for (size_t i = best + 1; i + 1 < len; ++i) {
        ids[i] = ids[i + 1];
        ranks[i] = ranks[i + 1];
        merged[i] = merged[i + 1];
      }
      --len;
      if (best > 0) set_pair(best - 1);
      set_pair(best);
    }
    out.insert(out.end(), ids.begin(), ids.begin() + len);
    return;
  }
  // long words: linked list + priority queue, O(m log m)
  struct Cand {
    uint32_t rank, pos;
    int32_t left, right, merged;
    bool operator<(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<int32_t> prev(m), next(m);
  for (size_t i = 0; i < m; ++i) {
    prev[i] = int32_t(i) - 1;
    next[i] = (i + 1 < m) ? int32_t(i + 1) : -1;
  }
  std::vector<Cand> heap_store;
  heap_store.reserve(m);
  std::priority_queue<Cand> heap(std::less<Cand>(), std::move(heap_store));
  auto try_push = [&](int32_t l) {
    if (l < 0) return;
    int32_t r = next[l];
    if (r < 0) return;
    uint64_t v;
    if (lookup(ids[l], ids[r], &v))
      heap.push(Cand{uint32_t(v >> 32), uint32_t(l), ids[l], ids[r], int32_t(uint32_t(v))});
  };
  for (size_t i = 0; i + 1 < m; ++i) try_push(int32_t(i));
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    int32_t l = int32_t(c.pos);
    if (ids[l] != c.left) continue;
    int32_t r = next[l];
    if (r < 0 || ids[r] != c.right) continue;
    ids[l] = c.merged;
    ids[r] = -1;
    next[l] = next[r];
    if (next[r] >= 0) prev[next[r]] = l;
    try_push(prev[l]);
    try_push(l);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(ids[i]);
}

void Tokenizer::bpe_spm(std::string_view text, Scratch& s, std::vector<int32_t>& out) const {
  // llama.cpp's SPM tokenizer: symbols are UTF-8 characters; repeatedly merge the adjacent pair
  // whose concatenation is the best-scoring token (leftmost on ties); characters that end up in
  // no token are written as <0xNN> byte tokens.
  struct Sym { uint32_t start, len; int32_t prev, next; };
  struct Bigram {
    float score;
    int32_t left, right;
    uint32_t size;
    bool operator<(const Bigram& o) const { return score != o.score ? score < o.score : left > o.left; }
  };
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  std::vector<Sym> sym;
  sym.reserve(n);
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t len = utf8_decode(p, n, i, &cp);
    int32_t idx = int32_t(sym.size());
    sym.push_back(Sym{uint32_t(i), uint32_t(len), idx - 1, (i + len < n) ? idx + 1 : -1});
    i += len;
  }
  if (sym.empty()) return;
  std::priority_queue<Bigram> heap;
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    std::string_view t = text.substr(sym[l].start, sym[l].len + sym[r].len);
    auto it = spm_pieces_.find(t);
    if (it == spm_pieces_.end()) return;
    heap.push(Bigram{spec_.scores[it->second], l, r, uint32_t(t.size())});
  };
  for (size_t i = 1; i < sym.size(); ++i) try_add(int32_t(i - 1), int32_t(i));
  while (!heap.empty()) {
    Bigram b = heap.top();
    heap.pop();
    Sym& L = sym[b.left];
    Sym& R = sym[b.right];
    if (L.len == 0 || R.len == 0 || L.len + R.len != b.size) continue;
    L.len += R.len;
    R.len = 0;
    L.next = R.next;
    if (R.next >= 0) sym[R.next].prev = b.left;
    try_add(L.prev, b.left);
    try_add(b.left, L.next);
  }
  (void)s;
  for (int32_t i = 0; i >= 0; i = sym[i].next) {
    std::string_view t = text.substr(sym[i].start, sym[i].len);
    auto it = spm_pieces_.find(t);
    if (it != spm_pieces_.end()) {
      out.push_back(it->second);
    } else {
      for (unsigned char c : t) push_byte_fallback(c, out);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// decoding

const std::string& Tokenizer::token_bytes(int32_t id, bool skip_special) const {
  static const std::string empty;
  if (skip_special && special_[id]) return empty;
  return piece_bytes_[id];
}

std::string Tokenizer::decode_bytes(const std::vector<int32_t>& ids, bool skip_special) const {
  for (size_t i = 0; i < ids.size(); ++i)
    IL_CHECK_ARG(ids[i] >= 0 && size_t(ids[i]) < spec_.tokens.size(), "ids[", i, "] = ", ids[i],
                 " is outside the vocabulary (size ", spec_.tokens.size(), ")");
  std::string out;
  for (int32_t id : ids) out += token_bytes(id, skip_special);
  if (spec_.decode_strip_space && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

StreamDecoder::StreamDecoder(std::shared_ptr<const Tokenizer> tok, bool skip_special)
    : tok_(std::move(tok)), skip_special_(skip_special) {}

std::string StreamDecoder::take(bool final) {
  if (!started_ && !pending_.empty()) {
    started_ = true;  // decode() drops at most one leading space, of the whole text
    if (tok_->spec().decode_strip_space && pending_[0] == ' ') pending_.erase(0, 1);
  }
  size_t cut = final ? pending_.size() : utf8_complete_prefix(pending_);
  std::string out = utf8_sanitize(std::string_view(pending_).substr(0, cut));
  pending_.erase(0, cut);
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  tok_->check_id(id, "token");
  pending_ += tok_->token_bytes(id, skip_special_);
  return take(false);
}

std::string StreamDecoder::flush() { return take(true); }

}  // namespace inferlab
