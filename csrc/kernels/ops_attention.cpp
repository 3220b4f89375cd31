// Entry points of the attention ops and the KV cache store: validate, then dispatch by device.
//
// dtypes: on the CPU q, k, v, out and the cache may each be float32, float16 or bfloat16 (math in
// float32). On CUDA the tensor-core kernels need q, k, v, out (and the cache) to share one dtype,
// float16 or bfloat16; kv_cache_store also converts from float32 on CUDA.
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/attention.h"
#include "kernels/ops.h"

#ifdef INFERLAB_WITH_CUDA
#include "kernels/cuda/attention_decode.cuh"
#include "kernels/cuda/attention_prefill.cuh"
#include "kernels/cuda/kv_cache_store.cuh"
#endif

namespace inferlab {
namespace ops {

namespace {

constexpr std::initializer_list<DType> kFloat = {DType::F32, DType::F16, DType::BF16};

bool supported_head_dim(int64_t d) { return d == 64 || d == 80 || d == 96 || d == 128; }

void check_head_dim(int64_t d, const char* what) {
  IL_CHECK_ARG(supported_head_dim(d), what, " head_dim must be 64, 80, 96 or 128, got ", d);
}

void check_scale_window(float scale, int window) {
  IL_CHECK_ARG(std::isfinite(scale) && scale > 0.f, "scale must be a finite number > 0, got ", scale);
  IL_CHECK_ARG(window >= 0, "window must be >= 0 (0: no sliding window), got ", window);
}

void check_layer(const KVCache& cache, int layer) {
  IL_CHECK_ARG(layer >= 0 && layer < cache.config().n_layers, "layer ", layer, " out of range: the KV cache has ",
               cache.config().n_layers, " layers");
}

#ifdef INFERLAB_WITH_CUDA
// The CUDA kernels use 16-byte vector loads and need one fp16/bf16 dtype throughout.
void check_cuda_operand(const Tensor& t, const char* arg, DType dtype) {
  IL_CHECK_ARG(t.dtype() == dtype, arg, " has dtype ", dtype_name(t.dtype()),
               "; attention on cuda needs every operand in one dtype (", dtype_name(dtype), " here)");
  IL_CHECK_ARG(reinterpret_cast<uintptr_t>(t.data()) % 16 == 0, arg,
               " must be 16-byte aligned for the CUDA attention kernels");
}
void check_cuda_dtype(DType dt, const char* arg) {
  IL_CHECK_ARG(dt == DType::F16 || dt == DType::BF16, arg, " has dtype ", dtype_name(dt),
               "; attention on cuda supports float16 and bfloat16");
}
#endif

}  // namespace

void kv_cache_store(KVCache& cache, int layer, const Tensor& k, const Tensor& v, const Tensor& seq_slots,
                    const Tensor& positions) {
  const KVCacheConfig& c = cache.config();
  check_layer(cache, layer);
  check_ndim(k, "k", 3);
  check_dtype(k, "k", kFloat);
  check_shape(k, "k", {k.size(0), c.n_kv_heads, c.head_dim});
  check_shape(v, "v", k.shape());
  IL_CHECK_ARG(v.dtype() == k.dtype(), "v has dtype ", dtype_name(v.dtype()), " but k has ", dtype_name(k.dtype()));
  const int64_t T = k.size(0);
  check_dtype(seq_slots, "seq_slots", {DType::I32});
  check_shape(seq_slots, "seq_slots", {T});
  check_dtype(positions, "positions", {DType::I32});
  check_shape(positions, "positions", {T});
  const Device dev = cache.device();
  check_same_device(dev, k, "k");
  check_same_device(dev, v, "v");
  check_same_device(dev, seq_slots, "seq_slots");
  check_same_device(dev, positions, "positions");
  IL_CHECK_ARG(T <= INT32_MAX, "k has too many rows (", T, ")");
  if (T == 0) return;

  if (dev == Device::CPU) {
    const int32_t* slots = seq_slots.data_as<int32_t>();
    const int32_t* pos = positions.data_as<int32_t>();
    for (int64_t t = 0; t < T; ++t) {
      IL_CHECK_ARG(slots[t] >= 0 && slots[t] < c.n_seqs, "seq_slots[", t, "] = ", slots[t],
                   " out of range: the KV cache has ", c.n_seqs, " sequence slots");
      IL_CHECK_ARG(pos[t] >= 0 && pos[t] < c.max_tokens, "positions[", t, "] = ", pos[t],
                   " out of range: the KV cache holds max_tokens = ", c.max_tokens, " per sequence");
    }
    cpu::KVStoreParams p;
    p.k = k.data();
    p.v = v.data();
    p.k_cache = cache.k(layer).data();
    p.v_cache = cache.v(layer).data();
    p.seq_slots = slots;
    p.positions = pos;
    p.T = (int)T;
    p.Hkv = c.n_kv_heads;
    p.D = c.head_dim;
    p.max_tokens = c.max_tokens;
    p.in_dtype = k.dtype();
    p.cache_dtype = c.dtype;
    cpu::kv_cache_store(p);
    return;
  }
#ifdef INFERLAB_WITH_CUDA
  cuda::KVStoreParams p;
  p.k = k.data();
  p.v = v.data();
  p.k_cache = cache.k(layer).data();
  p.v_cache = cache.v(layer).data();
  p.seq_slots = seq_slots.data_as<int32_t>();
  p.positions = positions.data_as<int32_t>();
  p.T = (int)T;
  p.Hkv = c.n_kv_heads;
  p.D = c.head_dim;
  p.n_seqs = c.n_seqs;
  p.max_tokens = c.max_tokens;
  p.in_dtype = k.dtype();
  p.cache_dtype = c.dtype;
  cuda::launch_kv_cache_store(p, current_stream());
#else
  require_cuda("kv_cache_store");
#endif
}

void attention_prefill(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, float scale, bool causal,
                       int window) {
  check_ndim(q, "q", 3);
  check_ndim(k, "k", 3);
  check_dtype(q, "q", kFloat);
  check_dtype(k, "k", kFloat);
  check_dtype(v, "v", kFloat);
  check_dtype(out, "out", kFloat);
  const int64_t T = q.size(0), Hq = q.size(1), D = q.size(2), Hkv = k.size(1);
  check_head_dim(D, "q");
  IL_CHECK_ARG(Hkv >= 1, "k must have at least one head, got shape ", shape_str(k.shape()));
  check_shape(k, "k", {T, Hkv, D});
  check_shape(v, "v", {T, Hkv, D});
  check_shape(out, "out", {T, Hq, D});
  IL_CHECK_ARG(Hq >= 1 && Hq % Hkv == 0, "the number of query heads (", Hq,
               ") must be a multiple of the number of kv heads (", Hkv, ")");
  IL_CHECK_ARG(T <= INT32_MAX && Hq <= INT32_MAX, "q is too large: ", shape_str(q.shape()));
  IL_CHECK_ARG(v.dtype() == k.dtype(), "v has dtype ", dtype_name(v.dtype()), " but k has ", dtype_name(k.dtype()));
  check_scale_window(scale, window);
  const Device dev = q.device();
  check_same_device(dev, k, "k");
  check_same_device(dev, v, "v");
  check_same_device(dev, out, "out");
  if (T == 0) return;

  if (dev == Device::CPU) {
    cpu::AttnParams p;
    p.q_dtype = q.dtype();
    p.kv_dtype = k.dtype();
    p.out_dtype = out.dtype();
    p.q_row_stride = Hq * D;
    p.o_row_stride = Hq * D;
    p.kv_row_stride = Hkv * D;
    p.kv_head_stride = D;
    p.Hq = (int)Hq;
    p.Hkv = (int)Hkv;
    p.D = (int)D;
    p.scale = scale;
    p.causal = causal;
    p.window = window;
    cpu::AttnSeq s;
    s.q = q.data();
    s.out = out.data();
    s.k = k.data();
    s.v = v.data();
    s.T = (int)T;
    s.q_pos0 = 0;
    s.kv_len = (int)T;
    cpu::attention(p, {s});
    return;
  }
#ifdef INFERLAB_WITH_CUDA
  check_cuda_dtype(q.dtype(), "q");
  check_cuda_operand(q, "q", q.dtype());
  check_cuda_operand(k, "k", q.dtype());
  check_cuda_operand(v, "v", q.dtype());
  check_cuda_operand(out, "out", q.dtype());
  cuda::AttnPrefillParams p;
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.out = out.data();
  p.q_row_stride = Hq * D;
  p.o_row_stride = Hq * D;
  p.kv_row_stride = Hkv * D;
  p.kv_head_stride = D;
  p.T = (int)T;
  p.Hq = (int)Hq;
  p.Hkv = (int)Hkv;
  p.D = (int)D;
  p.q_pos0 = 0;
  p.kv_len = (int)T;
  p.scale = scale;
  p.causal = causal;
  p.window = window;
  p.dtype = q.dtype();
  cuda::launch_attention_prefill(p, current_stream());
#else
  require_cuda("attention_prefill");
#endif
}

void attention_prefill_cached(const Tensor& q, const KVCache& cache, int layer, int seq, int start_pos, Tensor& out,
                              float scale, int window) {
  const KVCacheConfig& c = cache.config();
  check_layer(cache, layer);
  check_ndim(q, "q", 3);
  check_dtype(q, "q", kFloat);
  check_dtype(out, "out", kFloat);
  const int64_t T = q.size(0), Hq = q.size(1), D = q.size(2);
  IL_CHECK_ARG(D == c.head_dim, "q has head_dim ", D, " but the KV cache has head_dim ", c.head_dim);
  IL_CHECK_ARG(Hq >= 1 && Hq % c.n_kv_heads == 0, "the number of query heads (", Hq,
               ") must be a multiple of the KV cache's kv heads (", c.n_kv_heads, ")");
  check_shape(out, "out", {T, Hq, D});
  IL_CHECK_ARG(seq >= 0 && seq < c.n_seqs, "seq ", seq, " out of range: the KV cache has ", c.n_seqs,
               " sequence slots");
  IL_CHECK_ARG(start_pos >= 0, "start_pos must be >= 0, got ", start_pos);
  IL_CHECK_ARG(start_pos + T <= c.max_tokens, "start_pos (", start_pos, ") + T (", T,
               ") exceeds the KV cache's max_tokens (", c.max_tokens, ")");
  check_scale_window(scale, window);
  const Device dev = cache.device();
  check_same_device(dev, q, "q");
  check_same_device(dev, out, "out");
  if (T == 0) return;
  const int64_t panel = (int64_t)seq * c.n_kv_heads * c.max_tokens * D;  // slot offset, elements
  const size_t esz = dtype_size(c.dtype);

  if (dev == Device::CPU) {
    cpu::AttnParams p;
    p.q_dtype = q.dtype();
    p.kv_dtype = c.dtype;
    p.out_dtype = out.dtype();
    p.q_row_stride = Hq * D;
    p.o_row_stride = Hq * D;
    p.kv_row_stride = D;
    p.kv_head_stride = (int64_t)c.max_tokens * D;
    p.Hq = (int)Hq;
    p.Hkv = c.n_kv_heads;
    p.D = (int)D;
    p.scale = scale;
    p.causal = true;
    p.window = window;
    cpu::AttnSeq s;
    s.q = q.data();
    s.out = out.data();
    s.k = static_cast<const char*>(cache.k(layer).data()) + panel * esz;
    s.v = static_cast<const char*>(cache.v(layer).data()) + panel * esz;
    s.T = (int)T;
    s.q_pos0 = start_pos;
    s.kv_len = start_pos + (int)T;
    cpu::attention(p, {s});
    return;
  }
#ifdef INFERLAB_WITH_CUDA
  check_cuda_dtype(c.dtype, "the KV cache");
  check_cuda_operand(q, "q", c.dtype);
  check_cuda_operand(out, "out", c.dtype);
  cuda::AttnPrefillParams p;
  p.q = q.data();
  p.k = static_cast<const char*>(cache.k(layer).data()) + panel * esz;
  p.v = static_cast<const char*>(cache.v(layer).data()) + panel * esz;
  p.out = out.data();
  p.q_row_stride = Hq * D;
  p.o_row_stride = Hq * D;
  p.kv_row_stride = D;
  p.kv_head_stride = (int64_t)c.max_tokens * D;
  p.T = (int)T;
  p.Hq = (int)Hq;
  p.Hkv = c.n_kv_heads;
  p.D = (int)D;
  p.q_pos0 = start_pos;
  p.kv_len = start_pos + (int)T;
  p.scale = scale;
  p.causal = true;
  p.window = window;
  p.dtype = c.dtype;
  cuda::launch_attention_prefill(p, current_stream());
#else
  require_cuda("attention_prefill_cached");
#endif
}

void attention_decode(const Tensor& q, const KVCache& cache, int layer, const Tensor& seq_lens, Tensor& out,
                      float scale, int window) {
  const KVCacheConfig& c = cache.config();
  check_layer(cache, layer);
  check_ndim(q, "q", 3);
  check_dtype(q, "q", kFloat);
  check_dtype(out, "out", kFloat);
  const int64_t B = q.size(0), Hq = q.size(1), D = q.size(2);
  IL_CHECK_ARG(D == c.head_dim, "q has head_dim ", D, " but the KV cache has head_dim ", c.head_dim);
  IL_CHECK_ARG(Hq >= 1 && Hq % c.n_kv_heads == 0, "the number of query heads (", Hq,
               ") must be a multiple of the KV cache's kv heads (", c.n_kv_heads, ")");
  IL_CHECK_ARG(B <= c.n_seqs, "q has ", B, " rows (one per sequence slot) but the KV cache has only ", c.n_seqs,
               " slots");
  check_shape(out, "out", {B, Hq, D});
  check_dtype(seq_lens, "seq_lens", {DType::I32});
  check_shape(seq_lens, "seq_lens", {B});
  check_scale_window(scale, window);
  const Device dev = cache.device();
  check_same_device(dev, q, "q");
  check_same_device(dev, out, "out");
  check_same_device(dev, seq_lens, "seq_lens");
  if (B == 0) return;

  if (dev == Device::CPU) {
    const int32_t* lens = seq_lens.data_as<int32_t>();
    for (int64_t b = 0; b < B; ++b)
      IL_CHECK_ARG(lens[b] >= 0 && lens[b] <= c.max_tokens, "seq_lens[", b, "] = ", lens[b],
                   " out of range: the KV cache holds max_tokens = ", c.max_tokens, " per sequence");
    cpu::AttnParams p;
    p.q_dtype = q.dtype();
    p.kv_dtype = c.dtype;
    p.out_dtype = out.dtype();
    p.q_row_stride = Hq * D;
    p.o_row_stride = Hq * D;
    p.kv_row_stride = D;
    p.kv_head_stride = (int64_t)c.max_tokens * D;
    p.Hq = (int)Hq;
    p.Hkv = c.n_kv_heads;
    p.D = (int)D;
    p.scale = scale;
    p.causal = true;
    p.window = window;
    const size_t qsz = dtype_size(q.dtype()), osz = dtype_size(out.dtype()), esz = dtype_size(c.dtype);
    std::vector<cpu::AttnSeq> seqs(B);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t panel = b * c.n_kv_heads * (int64_t)c.max_tokens * D;
      cpu::AttnSeq& s = seqs[b];
      s.q = static_cast<const char*>(q.data()) + b * Hq * D * qsz;
      s.out = static_cast<char*>(out.data()) + b * Hq * D * osz;
      s.k = static_cast<const char*>(cache.k(layer).data()) + panel * esz;
      s.v = static_cast<const char*>(cache.v(layer).data()) + panel * esz;
      s.T = 1;
      s.q_pos0 = lens[b] - 1;
      s.kv_len = lens[b];
    }
    cpu::attention(p, seqs);
    return;
  }
#ifdef INFERLAB_WITH_CUDA
  check_cuda_dtype(c.dtype, "the KV cache");
  check_cuda_operand(q, "q", c.dtype);
  check_cuda_operand(out, "out", c.dtype);
  cuda::AttnDecodeParams p;
  p.q = q.data();
  p.k_cache = cache.k(layer).data();
  p.v_cache = cache.v(layer).data();
  p.out = out.data();
  p.seq_lens = seq_lens.data_as<int32_t>();
  p.B = (int)B;
  p.Hq = (int)Hq;
  p.Hkv = c.n_kv_heads;
  p.D = (int)D;
  p.max_tokens = c.max_tokens;
  p.n_splits = cuda::attention_decode_splits(p.B, p.Hq, p.Hkv, p.max_tokens);
  p.scale = scale;
  p.window = window;
  p.dtype = c.dtype;
  const size_t ws = cuda::attention_decode_workspace_bytes(p.B, p.Hq, p.D, p.n_splits);
  p.ws = ws ? cache.decode_workspace(ws).data_as<float>() : nullptr;
  cuda::launch_attention_decode(p, current_stream());
#else
  require_cuda("attention_decode");
#endif
}

}  // namespace ops
}  // namespace inferlab
