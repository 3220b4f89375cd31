// CUDA error checking: every CUDA call goes through IL_CUDA_CHECK, every launch is
// followed by IL_CUDA_CHECK_LAUNCH(). Failures throw (never exit).
#pragma once
#include <cuda_runtime.h>

#include "core/error.h"

namespace inferlab {
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
}

#define IL_CUDA_CHECK(expr)                                                        \
  do {                                                                             \
    cudaError_t il_err_ = (expr);                                                  \
    if (il_err_ != cudaSuccess) ::inferlab::throw_cuda_error(il_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define IL_CUDA_CHECK_LAUNCH() IL_CUDA_CHECK(cudaGetLastError())
