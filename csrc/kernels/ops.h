// Checked entry points of every kernel. Each validates its arguments (ValueError naming
// the argument), then dispatches to the CUDA launcher (kernels/cuda/<op>.cuh) or its CPU
// twin (kernels/cpu/<op>.h) by the device of its tensors. All tensors of one call must be
// on one device. CUDA launches go on current_stream() and are asynchronous.
//
// Float dtypes: unless stated otherwise inputs and outputs may each be F32, F16 or BF16;
// arithmetic is done in float32.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "kernels/kv_cache.h"
#include "kernels/qweight.h"

namespace inferlab {
namespace ops {

// ============================ Kernel library I ============================

// out[t, :] = table[ids[t], :]; ids [T] int32, table [V, D] float, out [T, D] float.
// Throws ValueError for ids outside [0, V) (checked on the CPU; on CUDA out-of-range rows are zero-filled
// and the model checks ids on the host before launch).
void embedding(const Tensor& ids, const Tensor& table, Tensor& out);
// Same, from a GGUF-typed table [V, D] (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K),
// dequantized on the fly. Layout 0 (GGUF blocks) on either device; on CUDA also the matmul's split
// layout 1, so one QWeight can serve as both the token embedding and a tied output head.
void embedding_q(const Tensor& ids, const QWeight& table, Tensor& out);

// out = x / sqrt(mean(x^2) + eps) * w;  x [T, D], w [D], out [T, D]
// (the norms also accept x/out [..., D], normalising over the last axis; out may be x itself)
void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& out);
// Fused residual step: residual += x (residual is F32, updated in place), out = rms_norm(residual) * w.
void add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps, Tensor& out);
// out = (x - mean) / sqrt(var + eps) * w + b;  x [T, D], w [D], b [D]
void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& out);
// Fused: residual += x, out = layer_norm(residual).
void add_layer_norm(Tensor& residual, const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& out);

// Rotary embedding style: which dimension pairs rotate together.
enum class RopeStyle : int32_t {
  Norm = 0,  // adjacent pairs (2i, 2i+1), as Llama in GGUF
  Neox = 1,  // halves (i, i + n_rot/2), as Qwen2, Phi-3, GPT-NeoX
};
// x [T, H, D], positions [T] int32; rotates the first n_rot (even, <= D) dims of every head by
// angle pos * theta^(-2i/n_rot); the rest are copied. out may alias x.
void rope(const Tensor& x, const Tensor& positions, float theta, int n_rot, RopeStyle style, Tensor& out);

// out = a + b (same shape); out may alias a or b.
void add(const Tensor& a, const Tensor& b, Tensor& out);
// x[t, :] += bias (in place); x [T, N], bias [N].
void add_bias(Tensor& x, const Tensor& bias);
// out = silu(gate) * up;  gate, up, out [T, F]
void swiglu(const Tensor& gate, const Tensor& up, Tensor& out);
// Fused gate/up input (Phi-3): gate_up [T, 2F] = [gate | up] -> out [T, F]
void swiglu_fused(const Tensor& gate_up, Tensor& out);
// GELU, tanh approximation (GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
void gelu(const Tensor& x, Tensor& out);
// out = x converted to out's float dtype (round to nearest even); same shape; out may not alias x.
void convert(const Tensor& x, Tensor& out);
// Softmax along the last axis; x, out [..., N]
void softmax(const Tensor& x, Tensor& out);

struct SamplingParams {
  float temperature = 0.f;        // 0: greedy (argmax, lowest index on ties)
  int32_t top_k = 0;              // 0: off
  float top_p = 1.f;              // 1: off
  float min_p = 0.f;              // 0: off; keeps p >= min_p * p_max
  float repetition_penalty = 1.f; // 1: off; CTRL-style: logit>0 ? logit/p : logit*p for previous tokens
  uint64_t seed = 0;
  uint64_t offset = 0;            // Philox counter offset (the decode step); row b uses subsequence b
};
// logits [B, V] float32 -> tokens [B] int32. prev_tokens [B, P] int32 (entries < 0 ignored) feeds the
// repetition penalty; pass an undefined Tensor for none. Same seed, offset and logits give the same
// token on the CPU and on CUDA.
void sample(const Tensor& logits, const SamplingParams& p, const Tensor& prev_tokens, Tensor& tokens);

// ============================ Kernel library II ============================

// y[T, N] = x[T, K] . W[N, K]^T (+ bias[N] when defined). x float, y F32 or F16, bias F32.
// Accumulates in float32. int8_activations (opt-in, quantized W, T <= cpu::kInt8MaxT): x is quantized to
// int8 per 16-element run (scale max|x| / 127) before the product, as llama.cpp's int8 paths do; on CUDA
// the fused decode kernel then multiplies with dp4a. Error per run <= (max|x| / 254) * sum |w|.
void matmul(const Tensor& x, const QWeight& w, Tensor& y, const Tensor& bias = Tensor(),
            bool int8_activations = false);

// ---- attention (kernels/ops_attention.cpp, cpu/attention.cpp, cuda/attention_{prefill,decode}.cu) ----
// Shapes: Hq % Hkv == 0 (query head h reads kv-head h / (Hq / Hkv)); D (head_dim) in {64, 80, 96, 128}.
// dtypes: CPU: q, k, v, out and the cache each F32, F16 or BF16. CUDA: q, k, v, out and the cache share one
// dtype, F16 or BF16 (tensor cores; data pointers 16-byte aligned). Math in float32 (online softmax, fp32
// accumulation, O(T) memory). scale > 0 (usually 1/sqrt(D)). window == 0: off; window > 0: the query at
// position p sees only keys at positions > p - window (with causal: keys in (p - window, p]).
// A query row that sees no key at all gets zeros.

// Writes k, v [T, Hkv, D] (any float dtype; converted to the cache dtype) of layer `layer` into the cache at
// (seq_slots[t], positions[t]); both [T] int32 on the cache's device. CPU: out-of-range slots/positions
// throw ValueError before anything is written; CUDA: such tokens are skipped (check on the host).
void kv_cache_store(KVCache& cache, int layer, const Tensor& k, const Tensor& v, const Tensor& seq_slots,
                    const Tensor& positions);

// Self-attention without a cache. q [T, Hq, D], k, v [T, Hkv, D], out [T, Hq, D]; Hq % Hkv == 0.
// causal: query t sees keys <= t. window > 0: query t also only sees keys > t - window.
void attention_prefill(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, float scale,
                       bool causal, int window);
// Chunked prefill over the cache: q [T, Hq, D] holds positions [start_pos, start_pos + T) of sequence slot
// `seq`, whose K/V (including these T tokens) are already stored (kv_cache_store). Causal: query t attends
// to cached keys 0 .. start_pos + t; window as above. start_pos + T <= max_tokens. out [T, Hq, D].
void attention_prefill_cached(const Tensor& q, const KVCache& cache, int layer, int seq, int start_pos,
                              Tensor& out, float scale, int window);
// One new token per sequence: q [B, Hq, D] (row b is slot b, B <= n_seqs), seq_lens [B] int32 on the op's
// device = number of cached tokens of slot b including the new one (its query sits at position
// seq_lens[b] - 1; 0 gives zeros). out [B, Hq, D]. CPU: seq_lens outside [0, max_tokens] throw ValueError;
// CUDA: they are clamped on the device. Launch shape does not depend on seq_lens values (CUDA-graph safe);
// on CUDA it uses the cache's decode workspace (KVCache::reserve_decode_workspace before graph capture).
void attention_decode(const Tensor& q, const KVCache& cache, int layer, const Tensor& seq_lens, Tensor& out,
                      float scale, int window);

}  // namespace ops
}  // namespace inferlab
