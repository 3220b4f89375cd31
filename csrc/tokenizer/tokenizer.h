// Tokenizers: byte-level BPE (GPT-2 style) and SentencePiece-style BPE (Llama/Phi-3/TinyLlama),
// built from a plain TokenizerSpec that both GGUF metadata and tokenizer.json fill in.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/pretokenize.h"

namespace inferlab {

class GGUFFile;

// GGUF token types (tokenizer.ggml.token_type).
enum TokenType : int32_t {
  kTokUndefined = 0, kTokNormal = 1, kTokUnknown = 2, kTokControl = 3, kTokUserDefined = 4,
  kTokUnused = 5, kTokByte = 6,
};

enum class BpeAlgo : int {
  kMerges = 0,      // ranked merges (HF BPE, llama.cpp BPE): lowest rank first, then leftmost
  kSpmScores = 1,   // llama.cpp SPM: merge the adjacent pair whose concatenation is the
                    // highest-scoring token, then leftmost; unmatched characters -> <0xNN>
};

enum class SpacePrefix : int {
  kNone = 0,
  kAlways = 1,          // every text segment gets one (llama.cpp SPM, HF Prepend normalizer)
  kMetaspaceAlways = 2, // HF Metaspace prepend_scheme=always: unless it already starts with one
  kMetaspaceFirst = 3,  // HF Metaspace prepend_scheme=first: only the segment at text start
};

// A token the text is scanned for before the model sees it (added/special tokens).
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = true;     // only matched with parse_special; skipped by decode(skip_special)
  bool lstrip = false;     // absorbs whitespace on its left
  bool rstrip = false;     // absorbs whitespace on its right
  bool single_word = false;
  bool normalized = false; // matched against normalized text (HF); we match raw text either way
};

// Everything a tokenizer needs. Vectors indexed by token id have vocab_size entries.
struct TokenizerSpec {
  std::vector<std::string> tokens;    // piece text as stored (byte-level chars, or with U+2581)
  std::vector<float> scores;          // empty, or one per token (kSpmScores)
  std::vector<int32_t> token_types;   // empty (all normal), or one TokenType per token
  std::vector<std::string> merges;    // "left right" (kMerges)
  BpeAlgo algo = BpeAlgo::kMerges;
  bool byte_level = true;             // pieces are GPT-2 byte-level encoded
  bool byte_fallback = false;         // unknown characters -> <0xNN> tokens
  bool ignore_merges = false;         // a word that is a token is emitted whole (Llama 3)
  bool fuse_unk = false;
  PreTokKind pretok = PreTokKind::kGpt2;
  bool nfc = false;                   // NFC normalizer (Qwen2)
  bool escape_spaces = false;         // ' ' -> U+2581 (SentencePiece)
  SpacePrefix space_prefix = SpacePrefix::kNone;
  bool bytelevel_prefix_space = false;  // HF ByteLevel add_prefix_space
  bool decode_strip_space = false;    // decode drops one leading space (SPM, HF Strip/Metaspace)
  std::vector<AddedToken> added;      // scanned for in the text (control/user-defined tokens)
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  std::vector<int32_t> prefix_ids;    // add_special: prepended (e.g. BOS)
  std::vector<int32_t> suffix_ids;    // add_special: appended (e.g. EOS)
  std::vector<int32_t> eog_ids;       // end-of-generation tokens
  bool add_bos = false, add_eos = false;  // as the metadata says (informational; see prefix/suffix)
  std::string chat_template;
  std::string name;                   // for messages
};

// Replaces every maximal invalid UTF-8 subsequence with U+FFFD (as Python's errors="replace").
std::string utf8_sanitize(std::string_view s);

// End-of-generation ids: tokens whose text marks an end of turn/text (llama.cpp's list: <|im_end|>,
// <|endoftext|>, <|end|>, <|eot_id|>, ...) plus the valid ids in `extra`; sorted, unique.
std::vector<int32_t> find_eog_ids(const std::vector<std::string>& tokens, const std::vector<int32_t>& extra);

// Builds the spec from GGUF `tokenizer.ggml.*` metadata. Throws GGUFError on malformed metadata.
TokenizerSpec spec_from_gguf(const GGUFFile& f);

// Open-addressing hash map uint64 -> uint64 (merge table).
class U64Map {
 public:
  void reserve(size_t n);
  void put(uint64_t k, uint64_t v);
  bool get(uint64_t k, uint64_t* v) const {
    if (keys_.empty()) return false;
    size_t h = hash(k) & mask_;
    while (true) {
      uint64_t kk = keys_[h];
      if (kk == k) { *v = vals_[h]; return true; }
      if (kk == kEmpty) return false;
      h = (h + 1) & mask_;
    }
  }
 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static size_t hash(uint64_t k) { k ^= k >> 33; k *= 0xff51afd7ed558ccdULL; k ^= k >> 33; return size_t(k); }
  std::vector<uint64_t> keys_, vals_;
  size_t mask_ = 0, size_ = 0;
};

class Tokenizer;

// Incremental detokenizer: push() returns only complete UTF-8 text; flush() the rest (invalid
// bytes become U+FFFD). The concatenation equals Tokenizer::decode of the same ids.
class StreamDecoder {
 public:
  StreamDecoder(std::shared_ptr<const Tokenizer> tok, bool skip_special);
  std::string push(int32_t id);
  std::string flush();
 private:
  std::string take(bool final);
  std::shared_ptr<const Tokenizer> tok_;
  bool skip_special_;
  bool started_ = false;  // emitted any byte yet (for the leading-space rule)
  std::string pending_;
};

class Tokenizer {
 public:
  explicit Tokenizer(TokenizerSpec spec);

  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
  // Raw bytes of the ids, before UTF-8 validation (decode = replace invalid bytes with U+FFFD).
  std::string decode_bytes(const std::vector<int32_t>& ids, bool skip_special) const;
  // Bytes that token `id` contributes to decoded text ("" for skipped special tokens).
  const std::string& token_bytes(int32_t id, bool skip_special) const;

  size_t vocab_size() const { return spec_.tokens.size(); }
  const TokenizerSpec& spec() const { return spec_; }
  const std::string& id_to_piece(int32_t id) const;
  int32_t piece_to_id(std::string_view piece) const;  // -1 when absent
  int32_t token_type(int32_t id) const;
  bool is_special(int32_t id) const;  // skipped by decode(skip_special=True)
  void check_id(int32_t id, const char* what) const;

 private:
  struct Fragment { bool is_token; int32_t id; uint32_t b, e; };
  struct TrieNode { int32_t token = -1; int32_t added_index = -1; std::vector<std::pair<uint8_t, int32_t>> kids; };
  struct Scratch;

  void build_trie(std::vector<TrieNode>& trie, bool include_special);
  void split_added(std::string_view text, bool parse_special, std::vector<Fragment>& out) const;
  void encode_segment(std::string_view seg, bool first_segment, Scratch& s, std::vector<int32_t>& out) const;
  void encode_word(std::string_view word, Scratch& s, std::vector<int32_t>& out) const;
  void bpe_merges(std::string_view word, Scratch& s, std::vector<int32_t>& out) const;
  void bpe_spm(std::string_view text, Scratch& s, std::vector<int32_t>& out) const;
  void push_byte_fallback(uint8_t byte, std::vector<int32_t>& out) const;

  TokenizerSpec spec_;
  std::unordered_map<std::string_view, int32_t> piece_to_id_;   // all tokens
  std::unordered_map<std::string_view, int32_t> spm_pieces_;    // kSpmScores: mergeable pieces
  std::unordered_map<std::string, int32_t> raw_to_id_;          // byte-level: decoded bytes -> id
  std::unordered_map<uint32_t, int32_t> char_to_id_;            // non-byte-level: one char -> id
  U64Map merges_;                                               // (left<<32|right) -> (rank<<32|id)
  int32_t byte_to_id_[256];                                     // byte-level char or <0xNN>, -1
  std::vector<std::string> piece_bytes_;                        // decoded bytes of each token
  std::vector<uint8_t> special_;                                // 1: skipped by skip_special
  std::vector<TrieNode> trie_all_, trie_plain_;                 // added tokens: all / non-special
  bool meta_split_ = false;  // SPM text may be split before runs of U+2581 (see encode_segment)

  // word cache (byte-level BPE): word bytes -> span of cache_ids_
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::pair<uint32_t, uint32_t>> cache_;
  mutable std::vector<int32_t> cache_ids_;
};

}  // namespace inferlab
