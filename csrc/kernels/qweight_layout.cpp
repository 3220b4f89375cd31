// Split layout (see qweight_layout.h): sizes and conversions. No device or tensor dependencies, so the
// host emulation of the CUDA kernels (tests/cuda_emu) can compile it alone.
#include "kernels/qweight_layout.h"

#include <cstring>
#include <string>

#include "core/error.h"

namespace inferlab {

namespace {

int64_t block_size_of(GGMLType t) { return ggml_type_traits((int32_t)t)->block_size; }
int64_t type_size_of(GGMLType t) { return ggml_type_traits((int32_t)t)->type_size; }

// Per quantized type: which bytes of a ggml block go to the payload, and how the side record is built.
// `pieces` copy [src, src + len) of the block to side offset dst; unlisted side bytes are zero.
struct SidePiece { int src, len, dst; };
struct SplitRecipe {
  int payload_src;  // payload = block bytes [payload_src, payload_src + PB)
  int npieces;
  SidePiece pieces[3];
};

bool split_recipe(GGMLType t, SplitRecipe& r) {
  switch (t) {
    case GGMLType::Q4_0: r = {2, 1, {{0, 2, 0}}}; return true;
    case GGMLType::Q4_1: r = {4, 1, {{0, 4, 0}}}; return true;
    case GGMLType::Q5_0: r = {6, 2, {{2, 4, 0}, {0, 2, 4}}}; return true;
    case GGMLType::Q5_1: r = {8, 3, {{4, 4, 0}, {0, 2, 4}, {2, 2, 6}}}; return true;
    case GGMLType::Q8_0: r = {2, 1, {{0, 2, 0}}}; return true;
    case GGMLType::Q2_K: r = {0, 1, {{80, 4, 0}}}; return true;
    case GGMLType::Q3_K: r = {0, 2, {{96, 12, 0}, {108, 2, 12}}}; return true;
    case GGMLType::Q4_K: r = {16, 1, {{0, 16, 0}}}; return true;
    case GGMLType::Q5_K: r = {16, 1, {{0, 16, 0}}}; return true;
    case GGMLType::Q6_K: r = {0, 1, {{208, 2, 0}}}; return true;
    default: return false;
  }
}

std::string type_label(GGMLType t) {
  const GGMLTypeTraits* tr = ggml_type_traits((int32_t)t);
  return tr ? std::string(tr->name) : str_cat("#", (int32_t)t);
}

}  // namespace

SplitInfo split_info(GGMLType type) {
  switch (type) {
    case GGMLType::Q4_0: return {16, 2};
    case GGMLType::Q4_1: return {16, 4};
    case GGMLType::Q5_0: return {16, 8};
    case GGMLType::Q5_1: return {16, 8};
    case GGMLType::Q8_0: return {32, 2};
    case GGMLType::Q2_K: return {80, 4};
    case GGMLType::Q3_K: return {96, 16};
    case GGMLType::Q4_K: return {128, 16};
    case GGMLType::Q5_K: return {160, 16};
    case GGMLType::Q6_K: return {208, 2};
    default: return {0, 0};
  }
}

bool matmul_supports(GGMLType type) { return is_float_type(type) || split_info(type).payload_bytes > 0; }

int64_t split_side_offset(GGMLType type, int64_t n, int64_t k) {
  const SplitInfo si = split_info(type);
  const int64_t nblocks = n * (k / block_size_of(type));
  return (nblocks * si.payload_bytes + 255) / 256 * 256;
}

int64_t split_side_stride(GGMLType type, int64_t k) {
  const SplitInfo si = split_info(type);
  return ((k / block_size_of(type)) * si.side_bytes + 15) / 16 * 16;
}

int64_t split_total_bytes(GGMLType type, int64_t n, int64_t k) {
  return split_side_offset(type, n, k) + n * split_side_stride(type, k);
}

void split_from_gguf(GGMLType type, int64_t n, int64_t k, const uint8_t* src, uint8_t* dst) {
  SplitRecipe r;
  if (!split_recipe(type, r)) throw NotSupportedError(str_cat("no split layout for type ", type_label(type)));
  const SplitInfo si = split_info(type);
  const int64_t nblocks = n * (k / block_size_of(type));
  const int64_t ts = type_size_of(type);
  const int64_t nb = k / block_size_of(type), sst = split_side_stride(type, k);
  std::memset(dst, 0, (size_t)split_total_bytes(type, n, k));
  uint8_t* side = dst + split_side_offset(type, n, k);
  for (int64_t b = 0; b < nblocks; ++b) {
    const uint8_t* blk = src + b * ts;
    uint8_t* sd = side + (b / nb) * sst + (b % nb) * si.side_bytes;
    std::memcpy(dst + b * si.payload_bytes, blk + r.payload_src, (size_t)si.payload_bytes);
    for (int i = 0; i < r.npieces; ++i)
      std::memcpy(sd + r.pieces[i].dst, blk + r.pieces[i].src, (size_t)r.pieces[i].len);
  }
}

void gguf_from_split(GGMLType type, int64_t n, int64_t k, const uint8_t* src, uint8_t* dst) {
  SplitRecipe r;
  if (!split_recipe(type, r)) throw NotSupportedError(str_cat("no split layout for type ", type_label(type)));
  const SplitInfo si = split_info(type);
  const int64_t nblocks = n * (k / block_size_of(type));
  const int64_t ts = type_size_of(type);
  const int64_t nb = k / block_size_of(type), sst = split_side_stride(type, k);
  const uint8_t* side = src + split_side_offset(type, n, k);
  for (int64_t b = 0; b < nblocks; ++b) {
    uint8_t* blk = dst + b * ts;
    const uint8_t* sd = side + (b / nb) * sst + (b % nb) * si.side_bytes;
    std::memcpy(blk + r.payload_src, src + b * si.payload_bytes, (size_t)si.payload_bytes);
    for (int i = 0; i < r.npieces; ++i)
      std::memcpy(blk + r.pieces[i].src, sd + r.pieces[i].dst, (size_t)r.pieces[i].len);
  }
}

}  // namespace inferlab
