// Softmax along the last axis.
#pragma once
#include <cstdint>

#include "core/device.h"
#include "core/dtype.h"

namespace inferlab {
namespace cuda {

struct SoftmaxParams {
  const void* x = nullptr;  // [rows, n], x_dtype
  void* out = nullptr;      // [rows, n], out_dtype; may be exactly x (same dtype)
  DType x_dtype = DType::F32, out_dtype = DType::F32;
  int64_t rows = 0, n = 0;
};

// out[r, i] = exp(x[r, i] - max_j x[r, j]) / sum_j exp(x[r, j] - max_j x[r, j])
void launch_softmax(const SoftmaxParams& p, cudaStream_t stream);

}  // namespace cuda
}  // namespace inferlab
