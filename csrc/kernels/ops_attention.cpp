// PLACEHOLDER until attention lands.
#include "kernels/ops.h"
namespace inferlab {
KVCache::KVCache(const KVCacheConfig& cfg) : cfg_(cfg) { throw NotSupportedError("not implemented yet"); }
size_t KVCache::bytes_needed(const KVCacheConfig&) { throw NotSupportedError("not implemented yet"); }
namespace ops {
void kv_cache_store(KVCache&, int, const Tensor&, const Tensor&, const Tensor&, const Tensor&) { throw NotSupportedError("not implemented yet"); }
void attention_prefill(const Tensor&, const Tensor&, const Tensor&, Tensor&, float, bool, int) { throw NotSupportedError("not implemented yet"); }
void attention_prefill_cached(const Tensor&, const KVCache&, int, int, int, Tensor&, float, int) { throw NotSupportedError("not implemented yet"); }
void attention_decode(const Tensor&, const KVCache&, int, const Tensor&, Tensor&, float, int) { throw NotSupportedError("not implemented yet"); }
}}
