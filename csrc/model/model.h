// A loaded model: weights, KV cache and preallocated workspace on one device, and the forward pass
// (one implementation for the CPU and CUDA; every op goes through ops::).
//
// Sequence slots: the KV cache holds n_seqs sequences of up to n_ctx tokens. prefill() starts prompts in slots
// 0..B-1, decode() appends one token to each of slots 0..B-1, sample() draws the next token of each from the
// logits those calls left. logits()/trace() use slot 0 and leave it reset.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "kernels/kv_cache.h"
#include "kernels/ops.h"
#include "model/config.h"
#include "model/weights.h"

namespace inferlab {

struct ModelOptions {
  Device device = Device::CPU;
  int n_ctx = 4096;        // tokens per sequence slot (clamped to the model's trained context length)
  int n_seqs = 1;          // sequence slots (the largest batch of prompts)
  int n_batch = 512;       // tokens per prefill chunk: activations are preallocated for max(n_batch, n_seqs) rows
  DType kv_dtype = DType::F16;
  bool progress = false;   // draw a progress bar on stderr while uploading weights
  bool cuda_graphs = true; // capture the decode step in a CUDA graph (one per batch size)
  int fuse_weights = -1;   // concatenate q/k/v and gate/up weights: -1 auto (on CUDA), 0 never, 1 always
                           // (1 on the CPU runs the GPU's forward variant there, for tests)
  bool int8_activations = false;  // matmuls with quantized weights quantize x to int8 per 16-element run
                                  // when T <= 32 (decode); see ops::matmul. Off: float32 x.
};

// Memory use in bytes. On the CPU, weights are used in place from the file mapping (mapped_weights);
// `weights` counts only converted copies.
struct MemoryReport {
  std::string device;
  size_t weights = 0;
  size_t mapped_weights = 0;
  size_t kv_cache = 0;
  size_t workspace = 0;
  size_t reserve = 0;       // headroom kept free for library handles (cuBLAS) and graphs
  size_t total = 0;         // weights + kv_cache + workspace
  size_t free_at_load = 0;  // free device memory before loading (CPU: MemAvailable), 0 if unknown
};

// One traced activation: `name` (see trace keys in bind_model.cpp), layer index (-1: not per layer),
// shape [T, ...] and float32 data.
struct TraceEntry {
  std::string name;
  int layer = -1;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

class Model {
 public:
  Model(const std::string& path, const ModelOptions& opt);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const ModelOptions& options() const { return opt_; }
  const std::string& path() const { return path_; }
  MemoryReport memory_report() const { return mem_; }
  int n_ctx() const { return opt_.n_ctx; }
  int n_seqs() const { return opt_.n_seqs; }
  bool tied_embeddings() const { return w_.tied; }
  // Whether the device weights concatenate q/k/v (or gate/up) that the file stores separately.
  bool fused_weights() const {
    for (const auto& l : w_.layers)
      if ((l.qkv_fused && l.wqkv.name.find("q+k+v") != std::string::npos) ||
          (l.gate_up_fused && l.w_gate_up.name.find("gate+up") != std::string::npos))
        return true;
    return false;
  }
  int seq_len(int slot) const;
  // Why the decode step is or is not a CUDA graph ("captured" / "eager: <reason>").
  std::string graph_status() const { return graph_status_; }
  int graphs_captured() const;

  // Forgets every sequence (the cache contents are simply overwritten later).
  void reset();

  // Teacher-forced logits for every position of `ids` (slot 0, from position 0): out holds [T, vocab] floats.
  void logits(const std::vector<int32_t>& ids, float* out);
  // Every intermediate activation of a teacher-forced pass (slot 0).
  std::vector<TraceEntry> trace(const std::vector<int32_t>& ids);

  // Starts prompts[b] in slot b (B = prompts.size() <= n_seqs), replacing what the slot held; leaves the
  // logits of each prompt's last token in logits rows 0..B-1.
  void prefill(const std::vector<std::vector<int32_t>>& prompts);
  // Appends tokens[b] to slot b for b < B = tokens.size(); slots with active[b] == false are not advanced
  // (their row is computed on a dummy position and its logits are meaningless). Leaves logits rows 0..B-1.
  void decode(const std::vector<int32_t>& tokens, const std::vector<uint8_t>& active);
  // Draws one token per logits row 0..B-1. seeds[b] seeds row b (sampled independently, as if alone: the same
  // seed gives the same tokens whether or not the sequence is batched); `step` is the Philox offset.
  std::vector<int32_t> sample(int B, const ops::SamplingParams& params, const std::vector<uint64_t>& seeds,
                              uint64_t step);
  // Copies logits rows 0..B-1 (of the last prefill/decode) to out [B, vocab].
  void copy_logits(int B, float* out);

 private:
  struct Segment {
    int slot;       // sequence slot
    int start_pos;  // position of the segment's first token
    int n;          // tokens
    int row;        // first row in the batch
  };
  struct Tracer;

  void check_ids(const std::vector<int32_t>& ids, const char* arg) const;
  void wait_io();    // the previous upload of io_host_ has been consumed (safe to rewrite it)
  void upload_io();  // io_host_ -> io_ on the current stream (CUDA), then records io_event_
  // Embeddings + all layers + final norm over T rows already in the io buffers. segs == nullptr: decode step
  // (one token per slot 0..T-1, attention_decode); else prefill segments. Leaves the normed hidden in h_.
  void forward(int T, const std::vector<Segment>* segs, Tracer* tr);
  void decode_body(int B);
  void lm_head(int row, int n, int out_row);  // logits_[out_row, out_row+n) = h_[row, row+n) . output^T
  void norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& out);
  void add_norm(Tensor& residual, const Tensor& x, const Tensor& w, const Tensor& b, Tensor& out);
  void prefill_segments(const std::vector<std::vector<int32_t>>& seqs, const std::vector<int>& slots,
                        Tracer* tr, float* all_logits);
  void sync_history(int B);
  void warm_up();
  void release_graphs();

  std::string path_;
  ModelOptions opt_;
  ModelConfig cfg_;
  std::shared_ptr<GGUFFile> file_;
  ModelWeights w_;
  std::unique_ptr<KVCache> kv_;
  MemoryReport mem_;

  int M_ = 0;  // activation rows: max(n_batch, n_seqs)
  int R_ = 0;  // logits rows
  Tensor ws_;  // workspace arena (owns every buffer below)
  Tensor io_;       // int32 [4, M]: ids | positions | slots | seq_lens
  Tensor x_, h_;    // [M, D] f32: residual stream, normed hidden
  Tensor qkv_;      // [M, (Hq + 2 Hkv) * hd]: fused q/k/v projection output
  Tensor qkv_idx_;  // int32 [M * (Hq + 2 Hkv)]: gather indices splitting qkv_ into q_, k_, v_ (model.cpp)
  Tensor q_, k_, v_, att_;  // [M, Hq*hd], [M, Hkv*hd] x2, [M, Hq*hd] (att_ in the KV dtype on CUDA)
  Tensor qh_;       // [M, Hq*hd] in the KV dtype: q for the CUDA attention kernels (undefined on the CPU)
  Tensor o_;        // [M, D]: attention / MLP output before the residual add; also position embeddings
  Tensor gu_;       // [M, 2F]: [gate | up] or gate then up
  Tensor act_;      // [M, F]
  Tensor logits_;   // [R, V] f32
  Tensor tokens_;   // [n_seqs] int32
  Tensor prev_;     // [n_seqs, n_ctx] int32: each slot's tokens, -1 beyond its length (repetition penalty)
  std::shared_ptr<void> io_pinned_, tok_pinned_;
  int32_t* io_host_ = nullptr;      // pinned (CUDA) or io_ itself (CPU), [4 * M]
  int32_t* tok_host_ = nullptr;     // pinned (CUDA) or tokens_ itself (CPU), [n_seqs]
  void* io_event_ = nullptr;        // cudaEvent_t recorded after each io upload
  std::shared_ptr<void> io_event_holder_;  // destroys io_event_
  std::vector<int> lens_;           // tokens in each slot
  std::vector<int32_t> hist_;       // host copy of prev_ [n_seqs * n_ctx]
  std::vector<int> hist_synced_;    // per slot: entries already on the device, -1: row must be rewritten

  // CUDA graphs of the decode step, by batch size.
  struct Graph {
    void* exec = nullptr;  // cudaGraphExec_t
    int eager_runs = 0;
  };
  std::map<int, Graph> graphs_;
  bool graphs_ok_ = false;
  std::string graph_status_;
};

}  // namespace inferlab
