// GGML tensor types as stored in GGUF files: ids, block sizes and block byte sizes.
// Numbering follows ggml's enum; ids 4 and 5 (Q4_2, Q4_3) were removed upstream.
#pragma once
#include <cstddef>
#include <cstdint>

namespace inferlab {

enum class GGMLType : int32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3,
  Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35,
};

constexpr int QK_K = 256;  // super-block size of the K-quants

// Plain float storage (F32 / F16 / BF16), as opposed to block-quantized types.
inline bool is_float_type(GGMLType t) { return t == GGMLType::F32 || t == GGMLType::F16 || t == GGMLType::BF16; }

struct GGMLTypeTraits {
  const char* name;     // "Q4_K"
  int64_t block_size;   // elements per block (1 for plain types)
  int64_t type_size;    // bytes per block
  bool can_dequantize;  // inferlab can dequantize / multiply it
};

// Traits for a known type id, or nullptr for an unknown or removed id.
const GGMLTypeTraits* ggml_type_traits(int32_t type);
// Bytes taken by a row of ne0 elements; ne0 must be a multiple of the block size (checked by callers).
int64_t ggml_row_size(GGMLType type, int64_t ne0);
// Type id from its name ("Q4_K"), or -1 if unknown.
int32_t ggml_type_from_name(const char* name);

}  // namespace inferlab
