// Prefill attention on CUDA: FlashAttention-2-style tiled kernel on tensor cores (mma.sync m16n8k16,
// fp16/bf16 inputs, fp32 accumulation, online softmax, O(T) memory).
//
// One block = 64 query rows of one query head (4 warps x 16 rows, Q fragments held in registers);
// 64-key K/V tiles stream through shared memory with cp.async double buffering. Causal and window
// tiles that no query of the block can see are skipped; only tiles that straddle a mask boundary pay
// for masking.
#pragma once
#include <cstdint>

#include "core/device.h"
#include "core/dtype.h"

namespace inferlab {
namespace cuda {

struct AttnPrefillParams {
  const void* q;  // [T, Hq, D]: query row t of head h at q + t * q_row_stride + h * D (elements)
  const void* k;  // key of kv-head h at position p: k + h * kv_head_stride + p * kv_row_stride
  const void* v;  // value, same strides as k
  void* out;      // [T, Hq, D]: out + t * o_row_stride + h * D
  int64_t q_row_stride = 0, o_row_stride = 0;     // elements
  int64_t kv_row_stride = 0, kv_head_stride = 0;  // elements
  int T = 0;        // query rows
  int Hq = 0, Hkv = 0, D = 0;  // Hq % Hkv == 0; D in {64, 80, 96, 128}
  int q_pos0 = 0;   // position of query row 0 (chunked prefill: start_pos)
  int kv_len = 0;   // keys at positions [0, kv_len) exist; no others are read
  float scale = 1.f;  // > 0
  bool causal = true;  // query at position p sees keys <= p
  int window = 0;   // > 0: query at position p also only sees keys > p - window
  DType dtype = DType::F16;  // of q, k, v and out: F16 or BF16
};

// All pointers 16-byte aligned, strides multiples of 8 elements (checked by the caller).
void launch_attention_prefill(const AttnPrefillParams& p, cudaStream_t stream);

}  // namespace cuda
}  // namespace inferlab
