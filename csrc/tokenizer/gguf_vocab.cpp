// TokenizerSpec from GGUF `tokenizer.ggml.*` metadata, with llama.cpp's defaults and conventions.
#include <algorithm>
#include <cctype>
#include <unordered_map>

#include "core/error.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace inferlab {
namespace {

const char* kTokens = "tokenizer.ggml.tokens";

std::vector<float> get_scores(const GGUFFile& f, const std::string& key) {
  const GGUFValue& v = f.get(key);
  if (v.type == GGUFValueType::ARRAY && v.array_type == GGUFValueType::FLOAT32) return f.get_f32_array(key);
  if (v.type == GGUFValueType::ARRAY && (v.array_type == GGUFValueType::INT32)) {
    std::vector<int32_t> i = f.get_i32_array(key);
    return std::vector<float>(i.begin(), i.end());
  }
  return f.get_f32_array(key);  // throws GGUFError naming the key and its type
}

}  // namespace

TokenizerSpec spec_from_gguf(const GGUFFile& f) {
  TokenizerSpec s;
  s.name = f.path().empty() ? std::string("GGUF tokenizer") : f.path();
  const std::string model = f.get_str("tokenizer.ggml.model");
  const std::string pre = f.get_str("tokenizer.ggml.pre", "");
  s.tokens = f.get_str_array(kTokens);
  const size_t n = s.tokens.size();
  if (n == 0) throw GGUFError(str_cat(kTokens, " is empty"));
  if (n >= (size_t(1) << 31)) throw GGUFError(str_cat(kTokens, " has too many entries (", n, ")"));
  {
    std::unordered_map<std::string_view, size_t> seen;
    seen.reserve(n * 2);
    for (size_t i = 0; i < n; ++i) {
      auto r = seen.emplace(s.tokens[i], i);
      if (!r.second)
        throw GGUFError(str_cat(kTokens, ": duplicate token '", s.tokens[i], "' at ids ", r.first->second, " and ", i));
    }
  }
  if (f.has("tokenizer.ggml.token_type")) {
    s.token_types = f.get_i32_array("tokenizer.ggml.token_type");
    if (s.token_types.size() != n)
      throw GGUFError(str_cat("tokenizer.ggml.token_type has ", s.token_types.size(), " entries but ", kTokens, " has ", n));
    for (size_t i = 0; i < n; ++i)
      if (s.token_types[i] < 0 || s.token_types[i] > 6)
        throw GGUFError(str_cat("tokenizer.ggml.token_type[", i, "] = ", s.token_types[i], " is not a token type (0..6)"));
  } else {
    s.token_types.assign(n, kTokNormal);
  }
  if (f.has("tokenizer.ggml.scores")) {
    s.scores = get_scores(f, "tokenizer.ggml.scores");
    if (s.scores.size() != n)
      throw GGUFError(str_cat("tokenizer.ggml.scores has ", s.scores.size(), " entries but ", kTokens, " has ", n));
  }

  bool add_space_prefix = false;
  if (model == "llama") {
    // SentencePiece BPE as llama.cpp: merges by score, byte fallback, dummy prefix, ' ' -> U+2581
    if (s.scores.empty()) throw GGUFError("tokenizer.ggml.model is 'llama' but tokenizer.ggml.scores is missing");
    s.algo = BpeAlgo::kSpmScores;
    s.byte_level = false;
    s.byte_fallback = true;
    s.pretok = PreTokKind::kNone;
    s.escape_spaces = true;
    add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true);
    s.add_bos = true;
    s.add_eos = false;
    if (n > 1) s.bos_id = 1;
    if (n > 2) s.eos_id = 2;
    s.unk_id = 0;
  } else if (model == "gpt2") {
    s.algo = BpeAlgo::kMerges;
    s.byte_level = true;
    s.merges = f.get_str_array("tokenizer.ggml.merges");
    bool ignore_merges = false, add_bos = false;
    s.pretok = pretok_from_gguf_name(pre, &ignore_merges, &add_bos);
    s.ignore_merges = ignore_merges;
    s.add_bos = add_bos;
    // Qwen2's tokenizer.json normalizes to NFC before splitting (llama.cpp does not)
    s.nfc = (pre == "qwen2" || pre == "deepseek-r1-qwen");
  } else {
    throw NotSupportedError(str_cat("tokenizer.ggml.model = '", model,
                                    "' is not supported (supported: 'gpt2' byte-level BPE, 'llama' SentencePiece BPE)"));
  }
  s.space_prefix = add_space_prefix ? SpacePrefix::kAlways : SpacePrefix::kNone;
  s.decode_strip_space = add_space_prefix;

  auto opt_id = [&](const char* key, int32_t dflt) -> int32_t {
    if (!f.has(key)) return dflt;
    int64_t v = f.get_int(key);
    if (v < 0 || v >= int64_t(n)) throw GGUFError(str_cat(key, " = ", v, " is outside the vocabulary (size ", n, ")"));
    return int32_t(v);
  };
  s.bos_id = opt_id("tokenizer.ggml.bos_token_id", s.bos_id);
  s.eos_id = opt_id("tokenizer.ggml.eos_token_id", s.eos_id);
  s.unk_id = opt_id("tokenizer.ggml.unknown_token_id", s.unk_id);
  s.pad_id = opt_id("tokenizer.ggml.padding_token_id", -1);
  const int32_t eot = opt_id("tokenizer.ggml.eot_token_id", -1);
  const int32_t eom = opt_id("tokenizer.ggml.eom_token_id", -1);
  int32_t fim_pad = opt_id("tokenizer.ggml.fim_pad_token_id", -1);
  int32_t fim_rep = opt_id("tokenizer.ggml.fim_rep_token_id", -1);
  int32_t fim_sep = opt_id("tokenizer.ggml.fim_sep_token_id", -1);
  s.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", s.add_bos);
  s.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", s.add_eos);
  if (s.add_bos && s.bos_id < 0) throw GGUFError("tokenizer.ggml.add_bos_token is true but there is no BOS token id");
  if (s.add_eos && s.eos_id < 0) throw GGUFError("tokenizer.ggml.add_eos_token is true but there is no EOS token id");
  if (s.add_bos) s.prefix_ids.push_back(s.bos_id);
  if (s.add_eos) s.suffix_ids.push_back(s.eos_id);
  s.chat_template = f.get_str("tokenizer.chat_template", "");

  // end-of-generation tokens: by text, as llama.cpp does, plus the ids the metadata names
  for (size_t i = 0; i < n && (fim_pad < 0 || fim_rep < 0 || fim_sep < 0); ++i) {
    const std::string& t = s.tokens[i];
    if (fim_pad < 0 && (t == "<|fim_pad|>" || t == "<fim-pad>" || t == "<fim_pad>")) fim_pad = int32_t(i);
    if (fim_rep < 0 && (t == "<|fim_repo|>" || t == "<|repo_name|>" || t == "<fim-repo>" || t == "<reponame>"))
      fim_rep = int32_t(i);
    if (fim_sep < 0 && t == "<|file_sep|>") fim_sep = int32_t(i);
  }
  s.eog_ids = find_eog_ids(s.tokens, {s.eos_id, eot, eom, fim_pad, fim_rep, fim_sep});

  // tokens scanned for in the text: control and unknown (with parse_special), user-defined (always)
  std::string lname = f.get_str("general.name", "");
  std::transform(lname.begin(), lname.end(), lname.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  const bool phi3 = lname.find("phi-3") != std::string::npos || lname.find("phi3") != std::string::npos;
  for (size_t i = 0; i < n; ++i) {
    int32_t type = s.token_types[i];
    const std::string& t = s.tokens[i];
    if (type != kTokControl && type != kTokUnknown && type != kTokUserDefined) continue;
    if (t.empty()) continue;
    AddedToken a;
    a.id = int32_t(i);
    a.content = t;
    a.special = type != kTokUserDefined;
    if (phi3) a.rstrip = !(t == "<unk>" || t == "<s>" || t == "<|endoftext|>");  // llama.cpp's Phi-3 attributes
    s.added.push_back(std::move(a));
  }
  return s;
}

}  // namespace inferlab
