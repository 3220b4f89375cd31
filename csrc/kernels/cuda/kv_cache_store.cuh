// Writes new K/V rows into the KV cache (converting to the cache dtype).
#pragma once
#include <cstdint>

#include "core/device.h"
#include "core/dtype.h"

namespace inferlab {
namespace cuda {

struct KVStoreParams {
  const void* k;  // [T, Hkv, D], dtype in_dtype
  const void* v;  // [T, Hkv, D], dtype in_dtype
  void* k_cache;  // [n_seqs, Hkv, max_tokens, D] of one layer, dtype cache_dtype
  void* v_cache;
  const int32_t* seq_slots;  // [T] on the device
  const int32_t* positions;  // [T] on the device
  int T = 0, Hkv = 0, D = 0, n_seqs = 0, max_tokens = 0;
  DType in_dtype = DType::F16;     // F32, F16 or BF16
  DType cache_dtype = DType::F16;  // F32, F16 or BF16
};

// Tokens whose slot or position is out of range are skipped (the host checks them where it can).
void launch_kv_cache_store(const KVStoreParams& p, cudaStream_t stream);

}  // namespace cuda
}  // namespace inferlab
