// CPU twins of the attention kernels: exact softmax per query row in float32 with O(T) scratch
// (a score row, and the K/V rows one work item needs converted to float), threaded with std::thread
// over (sequence, kv-head, 64-query block) work items.
#pragma once
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace inferlab {
namespace cpu {

// One sequence's queries against its keys.
struct AttnSeq {
  const void* q = nullptr;  // [T, Hq, D] rows at q + t * q_row_stride (elements of q_dtype)
  void* out = nullptr;      // [T, Hq, D] rows at out + t * o_row_stride
  const void* k = nullptr;  // key of kv-head h at position p: k + h * kv_head_stride + p * kv_row_stride
  const void* v = nullptr;  // same strides as k
  int T = 0;                // query rows
  int q_pos0 = 0;           // position of query row 0
  int kv_len = 0;           // keys [0, kv_len) exist
};

struct AttnParams {
  DType q_dtype = DType::F32, kv_dtype = DType::F32, out_dtype = DType::F32;  // F32, F16 or BF16 each
  int64_t q_row_stride = 0, o_row_stride = 0;     // elements
  int64_t kv_row_stride = 0, kv_head_stride = 0;  // elements
  int Hq = 0, Hkv = 0, D = 0;  // Hq % Hkv == 0
  float scale = 1.f;
  bool causal = true;  // query at position p sees keys <= p
  int window = 0;      // > 0: and keys > p - window
};

// Rows that see no key at all get zeros.
void attention(const AttnParams& p, const std::vector<AttnSeq>& seqs);

struct KVStoreParams {
  const void* k = nullptr;  // [T, Hkv, D] of in_dtype
  const void* v = nullptr;
  void* k_cache = nullptr;  // [n_seqs, Hkv, max_tokens, D] of cache_dtype
  void* v_cache = nullptr;
  const int32_t* seq_slots = nullptr;  // [T], in range (checked by the caller)
  const int32_t* positions = nullptr;  // [T], in range (checked by the caller)
  int T = 0, Hkv = 0, D = 0, max_tokens = 0;
  DType in_dtype = DType::F32, cache_dtype = DType::F16;
};
void kv_cache_store(const KVStoreParams& p);

}  // namespace cpu
}  // namespace inferlab
