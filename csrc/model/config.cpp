#include "model/config.h"

#include <cmath>

namespace inferlab {

namespace {

// clang-format off
// The per-architecture quirk table. Columns follow ArchQuirks (config.h).
const std::vector<ArchQuirks> kArchTable = {
  // Llama 2/3, SmolLM2, TinyLlama: RMSNorm, SwiGLU with separate gate/up, no biases, optional lm head
  // (SmolLM2 ties it), adjacent-pair rope because the GGUF converter permutes q/k rows.
  {"llama",
   /*qkv_layout=*/QKVLayout::Separate, /*qkv_bias=*/false, /*linear_bias=*/false,
   /*fused_gate_up=*/false, /*tied_embeddings=*/true, /*learned_positions=*/false,
   /*norm=*/NormKind::RMS, /*mlp=*/MlpKind::SwiGLU, /*rope=*/true, /*rope_style=*/ops::RopeStyle::Norm,
   /*norm_eps_key=*/"attention.layer_norm_rms_epsilon", /*default_eps=*/1e-5f, /*sliding_window=*/false},
  // Qwen2 / Qwen2.5: like llama but q/k/v carry biases, NeoX-style rope (halves), tied head on small sizes.
  {"qwen2",
   /*qkv_layout=*/QKVLayout::Separate, /*qkv_bias=*/true, /*linear_bias=*/false,
   /*fused_gate_up=*/false, /*tied_embeddings=*/true, /*learned_positions=*/false,
   /*norm=*/NormKind::RMS, /*mlp=*/MlpKind::SwiGLU, /*rope=*/true, /*rope_style=*/ops::RopeStyle::Neox,
   /*norm_eps_key=*/"attention.layer_norm_rms_epsilon", /*default_eps=*/1e-6f, /*sliding_window=*/false},
  // Phi-3: fused attn_qkv, fused ffn_up = [gate | up] of 2F rows, NeoX rope, sliding window from metadata,
  // always a separate lm head.
  {"phi3",
   /*qkv_layout=*/QKVLayout::Fused, /*qkv_bias=*/false, /*linear_bias=*/false,
   /*fused_gate_up=*/true, /*tied_embeddings=*/false, /*learned_positions=*/false,
   /*norm=*/NormKind::RMS, /*mlp=*/MlpKind::SwiGLU, /*rope=*/true, /*rope_style=*/ops::RopeStyle::Neox,
   /*norm_eps_key=*/"attention.layer_norm_rms_epsilon", /*default_eps=*/1e-5f, /*sliding_window=*/true},
  // GPT-2: learned absolute positions, LayerNorm with bias, fused attn_qkv, GELU (tanh) MLP, a bias on every
  // linear layer, no rope, lm head tied to token_embd when absent.
  {"gpt2",
   /*qkv_layout=*/QKVLayout::Fused, /*qkv_bias=*/true, /*linear_bias=*/true,
   /*fused_gate_up=*/false, /*tied_embeddings=*/true, /*learned_positions=*/true,
   /*norm=*/NormKind::Layer, /*mlp=*/MlpKind::GELU, /*rope=*/false, /*rope_style=*/ops::RopeStyle::Norm,
   /*norm_eps_key=*/"attention.layer_norm_epsilon", /*default_eps=*/1e-5f, /*sliding_window=*/false},
};
// clang-format on

int get_pos_int(const GGUFFile& f, const std::string& key, int64_t max_value = (int64_t(1) << 24)) {
  const int64_t v = f.get_int(key);
  if (v <= 0 || v > max_value)
    throw GGUFError(str_cat("metadata ", key, " = ", v, " is out of range (1..", max_value, ")"));
  return (int)v;
}

// A per-layer hyperparameter may be stored as an array (one value per layer); we need them all equal.
int get_uniform_int(const GGUFFile& f, const std::string& key, int n_layers, int64_t dflt) {
  if (!f.has(key)) {
    if (dflt < 0) throw GGUFError(str_cat("metadata key ", key, " is missing"));
    return (int)dflt;
  }
  const GGUFValue& v = f.get(key);
  if (v.type == GGUFValueType::ARRAY) {
    std::vector<int32_t> a = f.get_i32_array(key);
    if (a.empty()) throw GGUFError(str_cat("metadata ", key, " is an empty array"));
    for (int32_t x : a)
      if (x != a[0])
        throw NotSupportedError(str_cat("metadata ", key, " varies per layer; inferlab needs one value for all ",
                                        n_layers, " layers"));
    if (a[0] <= 0) throw GGUFError(str_cat("metadata ", key, " = ", a[0], " must be positive"));
    return a[0];
  }
  return get_pos_int(f, key);
}

}  // namespace

const std::vector<ArchQuirks>& arch_table() { return kArchTable; }

std::string supported_architectures() {
  std::string s;
  for (const auto& q : kArchTable) s += std::string(s.empty() ? "" : ", ") + q.name;
  return s;
}

const ArchQuirks& arch_quirks(const std::string& arch) {
  for (const auto& q : kArchTable)
    if (arch == q.name) return q;
  throw ValueError(str_cat("unsupported model architecture '", arch, "'; inferlab supports: ",
                           supported_architectures()));
}

ModelConfig ModelConfig::from_gguf(const GGUFFile& f) {
  ModelConfig c;
  if (!f.has("general.architecture"))
    throw GGUFError(str_cat("metadata key general.architecture is missing; inferlab supports: ",
                            supported_architectures()));
  c.arch = f.get_str("general.architecture");
  c.quirks = arch_quirks(c.arch);
  c.name = f.get_str("general.name", "");
  const std::string a = c.arch + ".";

  c.n_layers = get_pos_int(f, a + "block_count", 4096);
  c.d_model = get_pos_int(f, a + "embedding_length", 1 << 20);
  c.n_heads = get_uniform_int(f, a + "attention.head_count", c.n_layers, -1);
  c.n_kv_heads = get_uniform_int(f, a + "attention.head_count_kv", c.n_layers, c.n_heads);
  c.d_ff = get_uniform_int(f, a + "feed_forward_length", c.n_layers, -1);
  c.n_ctx_train = f.has(a + "context_length") ? get_pos_int(f, a + "context_length", int64_t(1) << 30) : 0;

  if (c.n_heads % c.n_kv_heads != 0)
    throw GGUFError(str_cat("metadata ", a, "attention.head_count (", c.n_heads, ") is not a multiple of ", a,
                            "attention.head_count_kv (", c.n_kv_heads, ")"));
  if (f.has(a + "attention.key_length")) {
    c.head_dim = get_pos_int(f, a + "attention.key_length", 4096);
  } else {
    if (c.d_model % c.n_heads != 0)
      throw GGUFError(str_cat("metadata ", a, "embedding_length (", c.d_model, ") is not a multiple of ", a,
                              "attention.head_count (", c.n_heads, ")"));
    c.head_dim = c.d_model / c.n_heads;
  }
  if (f.has(a + "attention.value_length") && f.get_int(a + "attention.value_length") != c.head_dim)
    throw NotSupportedError(str_cat("metadata ", a, "attention.value_length (", f.get_int(a + "attention.value_length"),
                                    ") differs from the key length (", c.head_dim, "); inferlab needs them equal"));

  c.norm_eps = (float)f.get_float(a + c.quirks.norm_eps_key, c.quirks.default_eps);
  if (!(c.norm_eps > 0.f) || !std::isfinite(c.norm_eps))
    throw GGUFError(str_cat("metadata ", a, c.quirks.norm_eps_key, " = ", c.norm_eps, " must be positive"));

  if (c.quirks.rope) {
    c.rope_theta = (float)f.get_float(a + "rope.freq_base", 10000.0);
    if (!(c.rope_theta > 1.f) || !std::isfinite(c.rope_theta))
      throw GGUFError(str_cat("metadata ", a, "rope.freq_base = ", c.rope_theta, " must be > 1"));
    c.n_rot = f.has(a + "rope.dimension_count") ? get_pos_int(f, a + "rope.dimension_count", 4096) : c.head_dim;
    if (c.n_rot > c.head_dim || c.n_rot % 2 != 0)
      throw GGUFError(str_cat("metadata ", a, "rope.dimension_count = ", c.n_rot,
                              " must be even and at most the head size ", c.head_dim));
    // Rope scaling changes every angle; the rope kernel has no frequency scaling, so refuse rather than be wrong.
    const std::string st = f.get_str(a + "rope.scaling.type", "none");
    const double factor = f.get_float(a + "rope.scaling.factor", 1.0);
    if (st != "none" && st != "" && factor != 1.0)
      throw NotSupportedError(str_cat("rope scaling '", st, "' (factor ", factor, ", metadata ", a,
                                      "rope.scaling.type) is not supported by inferlab"));
    for (const char* t : {"rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight"})
      if (f.find_tensor(t))
        throw NotSupportedError(str_cat("this model uses per-dimension rope frequency factors (tensor ", t,
                                        ", e.g. Llama 3.1 / Phi-3 128k), which inferlab does not support yet"));
  } else {
    c.rope_theta = 0.f;
    c.n_rot = 0;
  }
  if (c.quirks.sliding_window) {
    const int64_t w = f.get_int(a + "attention.sliding_window", 0);
    if (w < 0 || w > (int64_t(1) << 30))
      throw GGUFError(str_cat("metadata ", a, "attention.sliding_window = ", w, " is out of range"));
    c.sliding_window = (int)w;
  }
  c.attn_scale = 1.0f / std::sqrt((float)c.head_dim);

  const GGUFTensorInfo* emb = f.find_tensor("token_embd.weight");
  if (!emb) throw GGUFError("tensor token_embd.weight is missing");
  if (emb->ne.size() != 2 || emb->ne[0] != c.d_model)
    throw GGUFError(str_cat("tensor token_embd.weight has shape ", shape_str(emb->ne), " (ggml order) but ", a,
                            "embedding_length is ", c.d_model));
  if (emb->ne[1] <= 0 || emb->ne[1] > (int64_t(1) << 24))
    throw GGUFError(str_cat("tensor token_embd.weight has ", emb->ne[1], " rows; expected 1..2^24"));
  c.vocab = (int)emb->ne[1];
  if (f.has(a + "vocab_size") && f.get_int(a + "vocab_size") != c.vocab)
    throw GGUFError(str_cat("metadata ", a, "vocab_size = ", f.get_int(a + "vocab_size"),
                            " does not match tensor token_embd.weight (", c.vocab, " rows)"));
  if (c.quirks.learned_positions && c.n_ctx_train == 0)
    throw GGUFError(str_cat("metadata ", a, "context_length is missing; ", c.arch,
                            " needs it for its learned position embeddings"));
  return c;
}

}  // namespace inferlab
