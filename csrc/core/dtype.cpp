#include "core/dtype.h"

#include "core/error.h"

namespace inferlab {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::I64: return 8;
    case DType::U8: case DType::I8: return 1;
  }
  throw ValueError("unknown dtype");
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    case DType::I32: return "int32";
    case DType::I64: return "int64";
    case DType::U8: return "uint8";
    case DType::I8: return "int8";
  }
  return "?";
}

DType dtype_from_name(const std::string& n) {
  if (n == "float32" || n == "f32") return DType::F32;
  if (n == "float16" || n == "f16") return DType::F16;
  if (n == "bfloat16" || n == "bf16") return DType::BF16;
  if (n == "int32") return DType::I32;
  if (n == "int64") return DType::I64;
  if (n == "uint8") return DType::U8;
  if (n == "int8") return DType::I8;
  throw ValueError(str_cat("unsupported dtype '", n,
                           "': expected float32, float16, bfloat16, int32, int64, uint8 or int8"));
}

}  // namespace inferlab
