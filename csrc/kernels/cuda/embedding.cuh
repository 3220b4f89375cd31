// Token embedding: a row gather from a float table, or from a GGUF-typed table dequantized on the fly.
#pragma once
#include <cstdint>

#include "core/device.h"
#include "core/dtype.h"

namespace inferlab {
namespace cuda {

struct EmbeddingParams {
  const int32_t* ids = nullptr;  // [T]; ids outside [0, V) give zero rows
  const void* table = nullptr;   // [V, D]: float (table_dtype) when ggml_type < 0, else GGUF blocks
  void* out = nullptr;           // [T, D], out_dtype
  DType table_dtype = DType::F32, out_dtype = DType::F32;
  int32_t ggml_type = -1;        // -1: float table; else a GGMLType id (see kernels/dequant_group.h)
  int32_t layout = 0;            // quantized tables: 0 = GGUF blocks, row after row (row_bytes each);
                                 // 1 = the matmul's CUDA split layout (kernels/qweight_layout.h)
  int64_t row_bytes = 0;         // bytes per table row (layout 0)
  int64_t T = 0, V = 0, D = 0;
};

void launch_embedding(const EmbeddingParams& p, cudaStream_t stream);
// Whether this build can gather from quantized tables in the split layout (layout 1).
bool embedding_supports_split_layout();

}  // namespace cuda
}  // namespace inferlab
