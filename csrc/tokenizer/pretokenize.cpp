// Hand-written pre-tokenizer matchers. Every matcher takes the position i of the next match (the
// regexes below match at every position, so words tile the text) and returns the match end.
#include "tokenizer/pretokenize.h"

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace inferlab {
namespace {

inline bool is_other(uint8_t f) { return !flags_letter(f) && !flags_number(f) && !flags_space(f); }
inline bool is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }

// ASCII case folding plus U+017F LATIN SMALL LETTER LONG S, which Oniguruma's (?i) folds to 's'
// (no other code point folds to one of the letters the contractions use).
inline uint32_t fold_ci(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c == 0x17F) return 's';
  return c;
}

// Contraction length at i ('s 't 're 've 'm 'll 'd), or 0. Case-insensitive when ci.
inline size_t match_contraction(const uint32_t* cp, size_t i, size_t n, bool ci) {
  if (cp[i] != '\'' || i + 1 >= n) return 0;
  uint32_t a = ci ? fold_ci(cp[i + 1]) : cp[i + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 >= n) return 0;
  uint32_t b = ci ? fold_ci(cp[i + 2]) : cp[i + 2];
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// Whitespace run at i (fl[i] is \s): `\s+(?!\S)|\s+`. The first alternative backtracks to leave
// the last whitespace before a non-space; when that leaves nothing, `\s+` takes the single one.
inline size_t match_space_tail(const uint8_t* fl, size_t i, size_t n) {
  size_t j = i + 1;
  while (j < n && flags_space(fl[j])) ++j;
  if (j == n) return j;
  return (j - i >= 2) ? j - 1 : j;
}

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
size_t match_gpt2(const uint32_t* cp, const uint8_t* fl, size_t i, size_t n) {
  if (size_t m = match_contraction(cp, i, n, false)) return i + m;
  size_t k = (cp[i] == ' ' && i + 1 < n) ? i + 1 : i;
  uint8_t f = fl[k];
  if (k > i && flags_space(f)) k = i, f = fl[i];  // " " then whitespace: only the \s branches
  if (flags_letter(f)) {
    size_t j = k + 1;
    while (j < n && flags_letter(fl[j])) ++j;
    return j;
  }
  if (flags_number(f)) {
    size_t j = k + 1;
    while (j < n && flags_number(fl[j])) ++j;
    return j;
  }
  if (!flags_space(f)) {
    size_t j = k + 1;
    while (j < n && is_other(fl[j])) ++j;
    return j;
  }
  return match_space_tail(fl, i, n);
}

// Llama 3 (MaxDigits 3) and Qwen2 (MaxDigits 1):
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,MaxDigits}| ?[^\s\p{L}\p{N}]+[\r\n]*|
// \s*[\r\n]+|\s+(?!\S)|\s+
template <int MaxDigits>
size_t match_llama3(const uint32_t* cp, const uint8_t* fl, size_t i, size_t n) {
  if (size_t m = match_contraction(cp, i, n, true)) return i + m;
  const uint32_t c = cp[i];
  const uint8_t f = fl[i];
  // [^\r\n\p{L}\p{N}]?\p{L}+
  size_t k = i;
  if (!flags_letter(f) && !flags_number(f) && !is_crlf(c) && i + 1 < n && flags_letter(fl[i + 1])) k = i + 1;
  if (flags_letter(fl[k])) {
    size_t j = k + 1;
    while (j < n && flags_letter(fl[j])) ++j;
    return j;
  }
  // \p{N}{1,MaxDigits}
  if (flags_number(f)) {
    size_t j = i + 1;
    while (j < n && j - i < size_t(MaxDigits) && flags_number(fl[j])) ++j;
    return j;
  }
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  k = (c == ' ' && i + 1 < n && is_other(fl[i + 1])) ? i + 1 : i;
  if (is_other(fl[k])) {
    size_t j = k + 1;
    while (j < n && is_other(fl[j])) ++j;
    while (j < n && is_crlf(cp[j])) ++j;
    return j;
  }
  // here cp[i] is whitespace. \s*[\r\n]+ : up to and including the run's last \r or \n
  size_t j = i;
  size_t last_nl = n;
  while (j < n && flags_space(fl[j])) {
    if (is_crlf(cp[j])) last_nl = j;
    ++j;
  }
  if (last_nl != n) return last_nl + 1;
  if (j == n) return j;
  return (j - i >= 2) ? j - 1 : j;
}

using Matcher = size_t (*)(const uint32_t*, const uint8_t*, size_t, size_t);

void run_matcher(Matcher m, const PreTokScratch& s, size_t b, size_t e, std::vector<Span>& out) {
  const uint32_t* cp = s.cp.data();
  const uint8_t* fl = s.fl.data();
  size_t i = b;
  while (i < e) {
    size_t j = m(cp + b, fl + b, i - b, e - b) + b;
    out.emplace_back(s.off[i], s.off[j]);
    i = j;
  }
}

void decode_all(std::string_view text, PreTokScratch& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  s.cp.resize(n);
  s.fl.resize(n);
  s.off.resize(n + 1);
  size_t k = 0;
  for (size_t i = 0; i < n;) {
    uint32_t c;
    size_t len;
    if (p[i] < 0x80) {
      c = p[i];
      len = 1;
    } else {
      len = utf8_decode(p, n, i, &c);
    }
    s.cp[k] = c;
    s.fl[k] = ucp_flags(c);
    s.off[k] = uint32_t(i);
    ++k;
    i += len;
  }
  s.off[k] = uint32_t(n);
  s.cp.resize(k);
  s.fl.resize(k);
  s.off.resize(k + 1);
}

}  // namespace

const char* pretok_name(PreTokKind k) {
  switch (k) {
    case PreTokKind::kNone: return "none";
    case PreTokKind::kGpt2: return "gpt2";
    case PreTokKind::kLlama3: return "llama3";
    case PreTokKind::kQwen2: return "qwen2";
    case PreTokKind::kStarcoder: return "starcoder";
    case PreTokKind::kMetaspaceSplit: return "metaspace-split";
  }
  return "?";
}

PreTokKind pretok_from_gguf_name(const std::string& name, bool* ignore_merges, bool* add_bos) {
  *ignore_merges = false;
  *add_bos = false;
  auto any = [&](std::initializer_list<const char*> names) {
    for (const char* x : names)
      if (name == x) return true;
    return false;
  };
  // llama.cpp's "default" pre-tokenizer differs from GPT-2's regex only in corner cases of
  // punctuation runs; we use the GPT-2 regex, which is what HF tokenizers does for such vocabs.
  if (name.empty() || any({"default", "gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion",
                           "granite-docling", "exaone4", "mellum", "a.x-4.0", "gigachat", "jina-es",
                           "jina-de", "jina-v2-es", "jina-v2-de", "jina-v1-en", "jina-v2-code",
                           "roberta-bpe", "modern-bert"}))
    return PreTokKind::kGpt2;
  if (any({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"})) {
    *ignore_merges = true;
    *add_bos = true;
    return PreTokKind::kLlama3;
  }
  if (any({"dbrx", "smaug-bpe", "glm4", "chatglm-bpe"})) return PreTokKind::kLlama3;
  if (any({"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan", "kormo", "f2llmv2", "grok-2",
           "solar-open"}))
    return PreTokKind::kQwen2;
  if (any({"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"}))
    return PreTokKind::kStarcoder;
  throw NotSupportedError(str_cat(
      "tokenizer.ggml.pre = '", name,
      "' is not supported; supported pre-tokenizers: default/gpt-2 (and its aliases), llama-bpe/llama3, "
      "qwen2, smollm/starcoder"));
}

bool pretok_from_hf_regex(const std::string& p, PreTokKind* kind) {
  static const char* kLlama3Re =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const char* kQwen2Re =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const char* kGpt2Re = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
  if (p == kLlama3Re) { *kind = PreTokKind::kLlama3; return true; }
  if (p == kQwen2Re) { *kind = PreTokKind::kQwen2; return true; }
  if (p == kGpt2Re) { *kind = PreTokKind::kGpt2; return true; }
  return false;
}

void pretokenize(PreTokKind kind, std::string_view text, PreTokScratch& s, std::vector<Span>& out) {
  if (text.empty()) return;
  switch (kind) {
    case PreTokKind::kNone:
      out.emplace_back(0, uint32_t(text.size()));
      return;
    case PreTokKind::kMetaspaceSplit: {
      // split before every U+2581 (E2 96 81), keeping it with the next word
      size_t b = 0;
      for (size_t i = 1; i + 2 < text.size() + 0; ++i) {
        if (uint8_t(text[i]) == 0xE2 && uint8_t(text[i + 1]) == 0x96 && uint8_t(text[i + 2]) == 0x81) {
          out.emplace_back(uint32_t(b), uint32_t(i));
          b = i;
        }
      }
      out.emplace_back(uint32_t(b), uint32_t(text.size()));
      return;
    }
    default:
      break;
  }
  decode_all(text, s);
  const size_t n = s.cp.size();
  switch (kind) {
    case PreTokKind::kGpt2: run_matcher(match_gpt2, s, 0, n, out); break;
    case PreTokKind::kLlama3: run_matcher(match_llama3<3>, s, 0, n, out); break;
    case PreTokKind::kQwen2: run_matcher(match_llama3<1>, s, 0, n, out); break;
    case PreTokKind::kStarcoder: {
      // Digits(individual_digits=true): every \p{N} is a word; the GPT-2 regex runs on the rest,
      // each stretch on its own (so `\s+(?!\S)` sees the stretch end as the text end).
      size_t b = 0;
      for (size_t i = 0; i < n; ++i) {
        if (flags_number(s.fl[i])) {
          if (i > b) run_matcher(match_gpt2, s, b, i, out);
          out.emplace_back(s.off[i], s.off[i + 1]);
          b = i + 1;
        }
      }
      if (b < n) run_matcher(match_gpt2, s, b, n, out);
      break;
    }
    default: break;
  }
}

}  // namespace inferlab
