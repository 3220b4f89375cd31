// GGUF reader: memory-mapped, validated, versions 2 and 3 (little-endian).
// Every malformed input throws GGUFError naming the problem; nothing is read
// outside the mapping and no allocation is driven by an unchecked count.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "core/ggml_types.h"

namespace inferlab {

enum class GGUFValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_value_type_name(GGUFValueType t);

// One metadata value. Scalars are held by value; arrays keep a pointer into the
// mapping (numeric) or the decoded strings (string arrays).
struct GGUFValue {
  GGUFValueType type = GGUFValueType::UINT8;
  // scalars (the one matching `type` is meaningful; ints also mirrored into i/u)
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0.0;
  bool b = false;
  std::string s;
  // arrays
  GGUFValueType array_type = GGUFValueType::UINT8;
  uint64_t array_count = 0;
  const uint8_t* array_data = nullptr;   // numeric arrays: little-endian elements in the mapping
  std::vector<std::string> array_strings;  // string arrays
  std::vector<GGUFValue> array_values;     // arrays of arrays (nested), one GGUFValue (type ARRAY) each
};

struct GGUFTensorInfo {
  std::string name;
  std::vector<int64_t> ne;    // ggml order: ne[0] is the fastest-varying (row length)
  GGMLType type;
  uint64_t offset = 0;        // relative to the data section
  uint64_t nbytes = 0;
  int64_t n_elements = 0;     // product of ne (1 for n_dims == 0)
  const uint8_t* data = nullptr;  // inside the mapping
};

class GGUFFile {
 public:
  // Opens and validates the whole header. Throws FileNotFound, GGUFError.
  static std::shared_ptr<GGUFFile> open(const std::string& path);
  // Same, over bytes already in memory (used by the fuzzer and tests); `data` must outlive the object.
  static std::shared_ptr<GGUFFile> from_memory(const uint8_t* data, size_t size);
  ~GGUFFile();

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const std::string& path() const { return path_; }
  size_t file_size() const { return size_; }
  const uint8_t* base() const { return base_; }

  const std::vector<std::string>& keys() const { return keys_; }  // file order
  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  const GGUFValue& get(const std::string& key) const;  // throws GGUFError if missing

  // Typed getters: throw GGUFError naming the key when missing or of the wrong type.
  // Integer getters accept any integer type whose value fits.
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t dflt) const;
  double get_float(const std::string& key) const;  // float32/float64 (and integers)
  double get_float(const std::string& key, double dflt) const;
  bool get_bool(const std::string& key, bool dflt) const;
  std::string get_str(const std::string& key) const;
  std::string get_str(const std::string& key, const std::string& dflt) const;
  const std::vector<std::string>& get_str_array(const std::string& key) const;
  std::vector<float> get_f32_array(const std::string& key) const;    // float32 arrays
  std::vector<int32_t> get_i32_array(const std::string& key) const;  // any integer array that fits
  std::string architecture() const { return get_str("general.architecture", ""); }

  const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
  const GGUFTensorInfo* find_tensor(const std::string& name) const;  // nullptr if absent
  const GGUFTensorInfo& tensor(const std::string& name) const;       // throws GGUFError if absent
  // Dequantizes a whole tensor into dst (n_elements floats, ggml order = row-major NumPy order).
  // Throws NotSupportedError for types that cannot be dequantized.
  void dequantize(const GGUFTensorInfo& t, float* dst) const;

 private:
  GGUFFile() = default;
  GGUFFile(const GGUFFile&) = delete;
  GGUFFile& operator=(const GGUFFile&) = delete;
  void parse();
  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  void* map_ = nullptr;  // mmap'd region (nullptr for from_memory and empty files)
  size_t map_size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::string> keys_;
  std::unordered_map<std::string, GGUFValue> kv_;
  std::vector<GGUFTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace inferlab
