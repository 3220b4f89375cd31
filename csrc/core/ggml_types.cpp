#include "core/ggml_types.h"

#include <cstring>

namespace inferlab {
namespace {
struct Entry { int32_t id; GGMLTypeTraits t; };
// Block layouts (bytes): see csrc/gguf/dequant.cpp for the field-by-field description.
constexpr Entry kTypes[] = {
    {0, {"F32", 1, 4, true}},
    {1, {"F16", 1, 2, true}},
    {2, {"Q4_0", 32, 2 + 16, true}},
    {3, {"Q4_1", 32, 2 + 2 + 16, true}},
    {6, {"Q5_0", 32, 2 + 4 + 16, true}},
    {7, {"Q5_1", 32, 2 + 2 + 4 + 16, true}},
    {8, {"Q8_0", 32, 2 + 32, true}},
    {9, {"Q8_1", 32, 4 + 32, false}},
    {10, {"Q2_K", QK_K, QK_K / 16 + QK_K / 4 + 2 + 2, true}},
    {11, {"Q3_K", QK_K, QK_K / 8 + QK_K / 4 + 12 + 2, true}},
    {12, {"Q4_K", QK_K, 2 + 2 + 12 + QK_K / 2, true}},
    {13, {"Q5_K", QK_K, 2 + 2 + 12 + QK_K / 8 + QK_K / 2, true}},
    {14, {"Q6_K", QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2, true}},
    {15, {"Q8_K", QK_K, 4 + QK_K + QK_K / 16 * 2, false}},
    {16, {"IQ2_XXS", QK_K, 2 + QK_K / 8 * 2, false}},
    {17, {"IQ2_XS", QK_K, 2 + QK_K / 8 * 2 + QK_K / 32, false}},
    {18, {"IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8, false}},
    {19, {"IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16, false}},
    {20, {"IQ4_NL", 32, 2 + 16, false}},
    {21, {"IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4, false}},
    {22, {"IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16, false}},
    {23, {"IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64, false}},
    {24, {"I8", 1, 1, false}},
    {25, {"I16", 1, 2, false}},
    {26, {"I32", 1, 4, false}},
    {27, {"I64", 1, 8, false}},
    {28, {"F64", 1, 8, false}},
    {29, {"IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, false}},
    {30, {"BF16", 1, 2, true}},
    {34, {"TQ1_0", QK_K, (QK_K - 4 * QK_K / 64) / 5 + QK_K / 64 + 2, false}},
    {35, {"TQ2_0", QK_K, 2 + QK_K / 4, false}},
};
}  // namespace

const GGMLTypeTraits* ggml_type_traits(int32_t type) {
  for (const auto& e : kTypes)
    if (e.id == type) return &e.t;
  return nullptr;
}

int64_t ggml_row_size(GGMLType type, int64_t ne0) {
  const GGMLTypeTraits* t = ggml_type_traits((int32_t)type);
  return t ? ne0 / t->block_size * t->type_size : 0;
}

int32_t ggml_type_from_name(const char* name) {
  for (const auto& e : kTypes)
    if (std::strcmp(e.t.name, name) == 0) return e.id;
  return -1;
}

}  // namespace inferlab
