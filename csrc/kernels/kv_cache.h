// KV cache for all layers of one model.
//
// Layout, per layer l:  k[l], v[l] : [n_seqs, n_kv_heads, max_tokens, head_dim]  (row-major)
//   element (s, h, t, d) holds key/value dim d of kv-head h for token position t of sequence slot s.
// One contiguous [max_tokens, head_dim] panel per (slot, head) keeps decode reads sequential.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace inferlab {

struct KVCacheConfig {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int max_tokens = 0;   // per sequence slot
  int n_seqs = 1;       // sequence slots
  DType dtype = DType::F16;  // F16, BF16 or F32
  Device device = Device::CPU;
};

class KVCache {
 public:
  // Checks free device memory before allocating; throws DeviceMemoryError saying needed vs free.
  explicit KVCache(const KVCacheConfig& cfg);
  static size_t bytes_needed(const KVCacheConfig& cfg);
  size_t memory_bytes() const { return bytes_needed(cfg_); }
  const KVCacheConfig& config() const { return cfg_; }
  Tensor& k(int layer) { return k_.at(layer); }
  Tensor& v(int layer) { return v_.at(layer); }
  const Tensor& k(int layer) const { return k_.at(layer); }
  const Tensor& v(int layer) const { return v_.at(layer); }

 private:
  KVCacheConfig cfg_;
  std::vector<Tensor> k_, v_;
};

}  // namespace inferlab
