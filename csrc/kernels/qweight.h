// A weight matrix as stored in a GGUF file, ready for matmul / embedding.
#pragma once
#include <string>

#include "core/ggml_types.h"
#include "core/tensor.h"

namespace inferlab {

// W[N, K] in GGUF block format: row n holds K elements (ggml ne0 = K, ne1 = N).
struct QWeight {
  std::string name;            // tensor name, for error messages
  GGMLType type = GGMLType::F32;
  int64_t n = 0;               // rows (output features)
  int64_t k = 0;               // columns (input features); a multiple of the block size
  Tensor data;                 // uint8 bytes on the weight's device, layout given by `layout`
  int32_t layout = 0;          // 0: GGUF row-major blocks, as in the file; >0: a kernel's repacked layout
                               // (quantized types on CUDA: 1, the split layout of kernels/qweight_layout.h)

  Device device() const { return data.device(); }
  int64_t row_bytes() const { return ggml_row_size(type, k); }
  size_t nbytes() const { return data.nbytes(); }

  // Copies `n * row_bytes` bytes from host memory `src` (e.g. the GGUF mapping) to `device`,
  // repacking for the device's kernels if they want it. Validates type and shape (ValueError).
  static QWeight from_host(const std::string& name, GGMLType type, int64_t n, int64_t k, const void* src,
                           Device device);
};

}  // namespace inferlab
