// Element types of activation tensors (weights in GGUF block formats use GGMLType).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace inferlab {

enum class DType : int32_t { F32 = 0, F16 = 1, BF16 = 2, I32 = 3, I64 = 4, U8 = 5, I8 = 6 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);         // numpy-style name: "float32", "float16", "bfloat16", "int32", ...
DType dtype_from_name(const std::string& name);  // throws ValueError naming the dtype
inline bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

}  // namespace inferlab
