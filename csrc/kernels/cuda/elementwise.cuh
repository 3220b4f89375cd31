// Elementwise ops: residual add, bias add, SwiGLU (separate or fused gate/up), GELU (tanh), dtype conversion.
#pragma once
#include <cstdint>

#include "core/device.h"
#include "core/dtype.h"

namespace inferlab {
namespace cuda {

enum class EwOp : int32_t {
  Add = 0,          // out[i] = a[i] + b[i]                              a, b, out [rows * cols]
  AddBias = 1,      // out[r, c] = a[r, c] + b[c]   (out == a, in place)   a, out [rows, cols]; b [cols]
  Swiglu = 2,       // out[i] = silu(a[i]) * b[i]   (a = gate, b = up)   a, b, out [rows * cols]
  SwigluFused = 3,  // out[r, c] = silu(a[r, c]) * a[r, cols + c]        a [rows, 2 * cols]; out [rows, cols]
  Gelu = 4,         // out[i] = 0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3)))   a, out [rows * cols]
  Convert = 5,      // out[i] = a[i] in out's dtype (round to nearest even)  a, out [rows * cols]
};

struct EwParams {
  EwOp op = EwOp::Add;
  const void* a = nullptr;
  const void* b = nullptr;  // unused by SwigluFused, Gelu and Convert
  void* out = nullptr;      // may be exactly a or b (same dtype)
  DType a_dtype = DType::F32, b_dtype = DType::F32, out_dtype = DType::F32;
  int64_t rows = 0, cols = 0;  // out is [rows, cols]
};

void launch_elementwise(const EwParams& p, cudaStream_t stream);

}  // namespace cuda
}  // namespace inferlab
