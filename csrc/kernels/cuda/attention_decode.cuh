// Decode attention on CUDA (flash-decoding): one new query token for each of B sequences, attending
// over the KV cache. The grid is [n_splits, Hkv * head groups, B] whatever the sequence lengths are,
// so a CUDA graph can replay it; each block computes its token range from seq_lens on the device and
// exits when it lies beyond its sequence. A block takes the G query heads that share one kv-head as
// the 16 rows of a tensor-core tile, so K/V are read from memory once per kv-head. Partials go to a
// float32 workspace and a second kernel combines them (skipped when n_splits == 1).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/device.h"
#include "core/dtype.h"

namespace inferlab {
namespace cuda {

struct AttnDecodeParams {
  const void* q;        // [B, Hq, D]; row b belongs to sequence slot b
  const void* k_cache;  // [n_seqs, Hkv, max_tokens, D] of one layer
  const void* v_cache;  // same layout
  void* out;            // [B, Hq, D]
  const int32_t* seq_lens;  // [B] on the device: cached tokens of slot b, including the new one
  float* ws;            // workspace of attention_decode_workspace_bytes() bytes (unused if n_splits == 1)
  int B = 0, Hq = 0, Hkv = 0, D = 0;
  int max_tokens = 0;
  int n_splits = 1;     // from attention_decode_splits()
  float scale = 1.f;    // > 0
  int window = 0;       // > 0: the query (position len-1) sees keys > len-1-window
  DType dtype = DType::F16;  // of q, the cache and out: F16 or BF16
};

// Split count along the sequence: enough blocks that one sequence of max_tokens fills the GPU.
// Depends only on shapes and the device (never on sequence lengths).
int attention_decode_splits(int B, int Hq, int Hkv, int max_tokens);
// Workspace bytes for these shapes (0 when n_splits == 1).
size_t attention_decode_workspace_bytes(int B, int Hq, int D, int n_splits);
// seq_lens outside [0, max_tokens] are clamped on the device; a length of 0 gives zeros.
void launch_attention_decode(const AttnDecodeParams& p, cudaStream_t stream);

}  // namespace cuda
}  // namespace inferlab
