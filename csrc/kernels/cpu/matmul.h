// CPU twin of the matmul op (kernels/ops.h): y[T, N] = x[T, K] . W[N, K]^T (+ bias[N]).
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/ggml_types.h"

namespace inferlab {
namespace cpu {

struct MatmulParams {
  const void* x = nullptr;      // [t, k] row-major, x_dtype F32 / F16 / BF16
  DType x_dtype = DType::F32;
  void* y = nullptr;            // [t, n] row-major, y_dtype F32 / F16
  DType y_dtype = DType::F32;
  const float* bias = nullptr;  // [n] or nullptr
  const uint8_t* w = nullptr;   // [n, k] GGUF blocks, row-major (n * ggml_row_size(type, k) bytes)
  GGMLType type = GGMLType::F32;
  int64_t n = 0, k = 0, t = 0;
  bool x_int8 = false;          // quantized W and t <= kInt8MaxT: x fake-quantized to int8 per 16-element
                                // run first (quantize_x_int8_runs), as the CUDA int8-activation kernel does
};

// int8 activations apply to quantized weights for t up to this (the CUDA fused decode path; larger t runs
// fp16 tensor cores there, float32 here).
constexpr int64_t kInt8MaxT = 32;


// Multi-threaded over tiles of output rows on the CPU worker pool (threads.h).
// Each weight row is dequantized once to float32 (dequantize_row) and dotted with every row of x;
// accumulation in float32.
void matmul(const MatmulParams& p);

}  // namespace cpu
}  // namespace inferlab
