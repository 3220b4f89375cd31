// Pre-tokenizers: hand-written matchers, one per pre-tokenizer regex, over code points and
// category flags. Linear time, no recursion, no std::regex. Each matcher reproduces the regex's
// leftmost-first alternation and backtracking exactly (the regex is quoted above each matcher).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace inferlab {

enum class PreTokKind : int {
  kNone = 0,       // the whole segment is one word (SentencePiece-style BPE)
  kGpt2 = 1,       // GPT-2 byte-level regex (HF ByteLevel use_regex=true)
  kLlama3 = 2,     // Llama 3: case-insensitive contractions, \p{N}{1,3}
  kQwen2 = 3,      // Qwen2: as Llama 3 with single digits
  kStarcoder = 4,  // Digits(individual) then the GPT-2 regex (starcoder, smollm, ...)
  kMetaspaceSplit = 5,  // split before every U+2581 (HF Metaspace split=true)
};

const char* pretok_name(PreTokKind k);

// Pre-tokenizer named by GGUF `tokenizer.ggml.pre` (llama.cpp's names). Sets *ignore_merges and
// *add_bos to the llama.cpp defaults for that name. Throws NotSupportedError for unknown names.
PreTokKind pretok_from_gguf_name(const std::string& name, bool* ignore_merges, bool* add_bos);

// Pre-tokenizer for a Hugging Face Split regex (exact pattern text), or false when unknown.
bool pretok_from_hf_regex(const std::string& pattern, PreTokKind* kind);

using Span = std::pair<uint32_t, uint32_t>;  // [begin, end) byte offsets

// Reusable buffers for one encode call.
struct PreTokScratch {
  std::vector<uint32_t> cp;   // code points
  std::vector<uint8_t> fl;    // flags (unicode.h)
  std::vector<uint32_t> off;  // byte offset of each code point, plus the end
};

// Appends the words of `text` (byte spans, relative to text.data()) to `out`.
void pretokenize(PreTokKind kind, std::string_view text, PreTokScratch& scratch, std::vector<Span>& out);

}  // namespace inferlab
