// KV cache for all layers of one model.
//
// Layout, per layer l:  k[l], v[l] : [n_seqs, n_kv_heads, max_tokens, head_dim]  (row-major)
//   element (s, h, t, d) holds key/value dim d of kv-head h for token position t of sequence slot s.
// One contiguous [max_tokens, head_dim] panel per (slot, head) keeps decode reads sequential.
// Each layer's K and V are separate allocations (so a layer's panel base is 256-byte aligned).
// Positions a sequence has not stored yet hold unspecified values; the kernels never let them
// contribute (they read only positions < the sequence length they are given).
//
// memory_bytes() = 2 * n_layers * n_seqs * n_kv_heads * max_tokens * head_dim * dtype_size. A small
// scratch buffer for attention_decode's split-K partials (well under 1% of the cache) is allocated
// lazily on first decode or by reserve_decode_workspace(); it is not counted in memory_bytes().
#pragma once
#include <vector>

#include "core/tensor.h"

namespace inferlab {

struct KVCacheConfig {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;     // 64, 80, 96 or 128 (what the attention kernels support)
  int max_tokens = 0;   // per sequence slot
  int n_seqs = 1;       // sequence slots
  DType dtype = DType::F16;  // F16, BF16 or F32 (F32 only on the CPU)
  Device device = Device::CPU;
};

class KVCache {
 public:
  // Validates cfg (ValueError naming the field), then checks free device memory (free host memory on
  // the CPU) before allocating; throws DeviceMemoryError saying needed vs free.
  explicit KVCache(const KVCacheConfig& cfg);
  // Bytes of K and V for cfg (ValueError when cfg is invalid or the size overflows).
  static size_t bytes_needed(const KVCacheConfig& cfg);
  size_t memory_bytes() const { return bytes_needed(cfg_); }
  const KVCacheConfig& config() const { return cfg_; }
  Device device() const { return cfg_.device; }
  Tensor& k(int layer) { return k_.at(layer); }
  Tensor& v(int layer) { return v_.at(layer); }
  const Tensor& k(int layer) const { return k_.at(layer); }
  const Tensor& v(int layer) const { return v_.at(layer); }

  // attention_decode's scratch (float32, on the cache's device), grown to at least `nbytes`. A buffer
  // that is outgrown is kept alive until the cache dies, so CUDA graphs captured earlier stay valid.
  // On CUDA, growing it while the current stream is capturing a graph throws RuntimeError: call
  // reserve_decode_workspace() (or run one decode step) before capturing. One cache must not be
  // decoded on two streams at once (they would share this scratch).
  Tensor& decode_workspace(size_t nbytes) const;
  // Allocates the decode scratch for every batch size up to n_seqs with n_q_heads query heads.
  void reserve_decode_workspace(int n_q_heads) const;

 private:
  KVCacheConfig cfg_;
  std::vector<Tensor> k_, v_;
  mutable Tensor workspace_;
  mutable std::vector<Tensor> retired_workspaces_;
};

}  // namespace inferlab
