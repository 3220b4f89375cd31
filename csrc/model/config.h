// Model configuration: hyperparameters read from GGUF metadata plus the per-architecture quirks.
//
// The quirks are DATA: one ArchQuirks row per supported architecture (config.cpp, kArchTable).
// The forward pass (model.cpp) and the weight loader (weights.cpp) branch only on these flags,
// never on the architecture name.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "kernels/ops.h"

namespace inferlab {

enum class NormKind : int32_t {
  RMS = 0,    // x / sqrt(mean(x^2) + eps) * w
  Layer = 1,  // (x - mean) / sqrt(var + eps) * w + b
};

enum class MlpKind : int32_t {
  SwiGLU = 0,  // down(silu(gate(x)) * up(x)); gate and up may be one fused [2F] weight
  GELU = 1,    // down(gelu(up(x) + b_up)) + b_down  (tanh approximation)
};

// Which file layout a projection uses. The loader accepts the other layout too when the
// canonical one is absent (some converters write Phi-3 with separate q/k/v).
enum class QKVLayout : int32_t {
  Separate = 0,  // attn_q, attn_k, attn_v
  Fused = 1,     // attn_qkv [(Hq + 2 Hkv) * hd, D]; rows are [q | k | v]
};

// One row of the architecture table.
struct ArchQuirks {
  const char* name;          // general.architecture
  QKVLayout qkv_layout;      // canonical q/k/v layout in the file
  bool qkv_bias;             // q/k/v projections carry biases (qwen2; gpt2 via linear_bias)
  bool linear_bias;          // EVERY linear layer carries a bias: qkv, attn_output, ffn_up, ffn_down (gpt2)
  bool fused_gate_up;        // ffn_up holds [gate | up] as [2F, D] and there is no ffn_gate (phi3)
  bool tied_embeddings;      // the lm head may be absent from the file; then token_embd is used (llama/qwen2/gpt2)
  bool learned_positions;    // position_embd [n_ctx_train, D] is added to the token embeddings (gpt2)
  NormKind norm;             // RMSNorm (llama/qwen2/phi3) or LayerNorm with bias (gpt2)
  MlpKind mlp;               // SwiGLU (llama/qwen2/phi3) or GELU (gpt2)
  bool rope;                 // rotary position embedding at all (false for gpt2)
  ops::RopeStyle rope_style; // Norm: adjacent pairs (llama GGUF, q/k are permuted by the converter);
                             // Neox: halves (qwen2, phi3)
  const char* norm_eps_key;  // metadata key suffix of the norm epsilon
  float default_eps;         // used when the key is missing
  bool sliding_window;       // reads "<arch>.attention.sliding_window" (phi3); 0 / absent = full attention
};

// The table, for listing and tests.
const std::vector<ArchQuirks>& arch_table();
// Comma-separated names of the supported architectures ("llama, qwen2, phi3, gpt2").
std::string supported_architectures();
// The row for `arch`; throws ValueError listing the supported architectures when unknown.
const ArchQuirks& arch_quirks(const std::string& arch);

// Hyperparameters of one model (all from metadata; vocab from the token_embd shape).
struct ModelConfig {
  std::string arch;       // general.architecture
  std::string name;       // general.name (may be empty)
  ArchQuirks quirks;
  int n_layers = 0;       // <arch>.block_count
  int d_model = 0;        // <arch>.embedding_length
  int n_heads = 0;        // <arch>.attention.head_count
  int n_kv_heads = 0;     // <arch>.attention.head_count_kv (default n_heads)
  int head_dim = 0;       // <arch>.attention.key_length (default d_model / n_heads)
  int d_ff = 0;           // <arch>.feed_forward_length
  int vocab = 0;          // token_embd rows
  int n_ctx_train = 0;    // <arch>.context_length
  float norm_eps = 1e-5f; // quirks.norm_eps_key
  float rope_theta = 10000.f;  // <arch>.rope.freq_base
  int n_rot = 0;          // <arch>.rope.dimension_count (default head_dim); 0 without rope
  int sliding_window = 0; // <arch>.attention.sliding_window when quirks.sliding_window; 0 = off
  float attn_scale = 0.f; // 1 / sqrt(head_dim)

  // Reads and validates the metadata. Throws ValueError (unknown architecture), GGUFError (missing or
  // inconsistent hyperparameters) or NotSupportedError (a feature inferlab does not implement, e.g.
  // rope scaling), each naming the key.
  static ModelConfig from_gguf(const GGUFFile& f);
};

}  // namespace inferlab
