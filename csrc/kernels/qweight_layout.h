// On-device layouts of QWeight (see qweight.h) and host helpers to convert between them.
//
// Layout 0 ("gguf"): the bytes exactly as in the GGUF file, row after row of ggml blocks. Used on the CPU
// for every type, and on CUDA for F32 / F16 / BF16.
//
// Layout 1 ("split"): used on CUDA for every quantized type. Each ggml block is cut in two parts:
//   payload: the quant bits (and, for Q2_K / Q6_K, the packed sub-block scales), a multiple of 16 bytes,
//            so kernels can read it with aligned 16-byte loads;
//   side:    the block's fp16 scale(s) and whatever else is left, 2 to 16 bytes.
// The data buffer holds all payloads, then (at byte offset split_side_offset(), 256-aligned) all sides,
// each row's sides padded to a multiple of 16 bytes (split_side_stride(), so a row's run of sides can be
// copied with 16-byte bulk copies, see kernels/cuda/matmul_mma.cuh):
//   payload of block b of row n: data + (n * nb + b) * PB
//   side    of block b of row n: data + side_offset + n * side_stride + b * SB     (nb = k / block size)
// Per type (byte ranges refer to the ggml block; "pad" bytes are zero):
//   type   PB  payload                         SB  side
//   Q4_0   16  qs[16]            [2, 18)        2  d
//   Q4_1   16  qs[16]            [4, 20)        4  d, m
//   Q5_0   16  qs[16]            [6, 22)        8  qh (u32), d, pad
//   Q5_1   16  qs[16]            [8, 24)        8  qh (u32), d, m
//   Q8_0   32  qs[32]            [2, 34)        2  d
//   Q2_K   80  scales[16] qs[64] [0, 80)        4  d, dmin
//   Q3_K   96  hmask[32] qs[64]  [0, 96)       16  scales[12], d, pad
//   Q4_K  128  qs[128]           [16, 144)     16  d, dmin, scales[12]   (the ggml header as is)
//   Q5_K  160  qh[32] qs[128]    [16, 176)     16  d, dmin, scales[12]
//   Q6_K  208  ql[128] qh[64] scales[16] [0, 208)  2  d
// This header has no CUDA dependency; device code uses the same constants (kernels/cuda/dequant.cuh).
#pragma once
#include <cstdint>
#include <vector>

#include "core/ggml_types.h"
#include "core/tensor.h"

namespace inferlab {

struct QWeight;
struct GGUFTensorInfo;

enum : int32_t { kLayoutGGUF = 0, kLayoutSplit = 1 };

struct SplitInfo {
  int32_t payload_bytes = 0;  // PB, a multiple of 16 (0: the type has no split layout)
  int32_t side_bytes = 0;     // SB
};
// Split-layout sizes of a type; payload_bytes == 0 for F32 / F16 / BF16 and unsupported types.
SplitInfo split_info(GGMLType type);
// Whether matmul supports the type at all (CPU and CUDA).
bool matmul_supports(GGMLType type);

// Byte offset of the side array and total byte size of a split-layout buffer for an [n, k] weight.
int64_t split_side_offset(GGMLType type, int64_t n, int64_t k);
// Bytes from one row's sides to the next: k / block size * SB rounded up to a multiple of 16.
int64_t split_side_stride(GGMLType type, int64_t k);
int64_t split_total_bytes(GGMLType type, int64_t n, int64_t k);

// Converts `n * row_bytes` GGUF-layout bytes into the split layout (dst: split_total_bytes bytes).
void split_from_gguf(GGMLType type, int64_t n, int64_t k, const uint8_t* src, uint8_t* dst);
// Inverse of split_from_gguf.
void gguf_from_split(GGMLType type, int64_t n, int64_t k, const uint8_t* src, uint8_t* dst);

// The weight's bytes in GGUF layout, copied to the host (whatever its device and layout).
std::vector<uint8_t> qweight_gguf_bytes(const QWeight& w);
// A QWeight from a GGUF tensor (ggml shape [k, n], trailing dims of 1 allowed), uploaded to `device`.
// The name is the tensor's. ValueError for tensors that are not 2-D, NotSupportedError for other types.
QWeight qweight_from_gguf(const GGUFTensorInfo& ti, Device device);

// Dequantizes the whole weight to float32 on the host: out [n, k].
void qweight_dequantize_host(const QWeight& w, float* out);
// Dequantizes the whole weight into `out` [n, k] (F32 or F16) on the weight's device (enqueued on
// current_stream() for CUDA; on CUDA float weights need k % 16 == 0). ValueError on bad arguments.
void qweight_dequantize_to(const QWeight& w, Tensor& out);

}  // namespace inferlab
