// CPU dequantization of GGUF block formats to float32 (bit-exact with gguf-py / ggml).
#pragma once
#include <cstdint>

#include "core/ggml_types.h"

namespace inferlab {

// Dequantizes n elements (a multiple of the type's block size) from src into dst.
// Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
// Throws NotSupportedError for any other type and ValueError if n is not a multiple of the block size.
void dequantize_row(GGMLType type, const void* src, float* dst, int64_t n);

}  // namespace inferlab
