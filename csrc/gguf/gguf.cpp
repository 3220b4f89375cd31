// GGUF reader: memory-mapped, validated, versions 2 and 3 (little-endian).
//
// File layout (all little-endian):
//   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv x { string key | u32 value_type | value }
//   n_tensors x { string name | u32 n_dims | i64 ne[n_dims] | u32 ggml_type | u64 offset }
//   padding to general.alignment (default 32) | tensor data (offsets relative to its start)
//   string = u64 length | bytes (no terminator);  array = u32 element_type | u64 count | elements
//
// Every read goes through Cursor, which checks the bytes left first; every count
// is checked against the bytes left before it sizes anything.
#include "gguf/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "gguf/dequant.h"

namespace inferlab {

namespace {

constexpr uint64_t kMaxTensorName = 64;   // bytes
constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 8;        // arrays of arrays nest at most this deep
constexpr uint64_t kMinKVBytes = 8 + 1 + 4 + 1;      // key length, >= 1 key byte, type, >= 1 value byte
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 4 + 8;  // name length, >= 1 name byte, n_dims, type, offset

// A printable, bounded rendering of a (possibly hostile) name for error messages.
std::string quoted(const std::string& s) {
  std::string out = "'";
  const size_t n = std::min<size_t>(s.size(), 80);
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out += (char)c;
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > n) out += str_cat("...' (", s.size(), " bytes)");
  else out += "'";
  return out;
}

size_t value_type_size(GGUFValueType t) {
  switch (t) {
    case GGUFValueType::UINT8: case GGUFValueType::INT8: case GGUFValueType::BOOL: return 1;
    case GGUFValueType::UINT16: case GGUFValueType::INT16: return 2;
    case GGUFValueType::UINT32: case GGUFValueType::INT32: case GGUFValueType::FLOAT32: return 4;
    case GGUFValueType::UINT64: case GGUFValueType::INT64: case GGUFValueType::FLOAT64: return 8;
    default: return 0;  // STRING, ARRAY: variable
  }
}

bool is_integer_type(GGUFValueType t) {
  switch (t) {
    case GGUFValueType::UINT8: case GGUFValueType::INT8: case GGUFValueType::UINT16: case GGUFValueType::INT16:
    case GGUFValueType::UINT32: case GGUFValueType::INT32: case GGUFValueType::UINT64: case GGUFValueType::INT64:
      return true;
    default: return false;
  }
}

bool is_unsigned_type(GGUFValueType t) {
  return t == GGUFValueType::UINT8 || t == GGUFValueType::UINT16 || t == GGUFValueType::UINT32 ||
         t == GGUFValueType::UINT64;
}

// Reads one integer element of type t at p into (signed value, unsigned value, is_unsigned).
void load_int(GGUFValueType t, const uint8_t* p, int64_t* i, uint64_t* u) {
  switch (t) {
    case GGUFValueType::UINT8: { uint8_t v; std::memcpy(&v, p, 1); *u = v; *i = (int64_t)v; return; }
    case GGUFValueType::INT8: { int8_t v; std::memcpy(&v, p, 1); *i = v; *u = (uint64_t)(int64_t)v; return; }
    case GGUFValueType::UINT16: { uint16_t v; std::memcpy(&v, p, 2); *u = v; *i = (int64_t)v; return; }
    case GGUFValueType::INT16: { int16_t v; std::memcpy(&v, p, 2); *i = v; *u = (uint64_t)(int64_t)v; return; }
    case GGUFValueType::UINT32: { uint32_t v; std::memcpy(&v, p, 4); *u = v; *i = (int64_t)v; return; }
    case GGUFValueType::INT32: { int32_t v; std::memcpy(&v, p, 4); *i = v; *u = (uint64_t)(int64_t)v; return; }
    case GGUFValueType::UINT64: { uint64_t v; std::memcpy(&v, p, 8); *u = v; *i = (int64_t)v; return; }
    case GGUFValueType::INT64: { int64_t v; std::memcpy(&v, p, 8); *i = v; *u = (uint64_t)v; return; }
    default: *i = 0; *u = 0; return;
  }
}

const char* removed_type_name(int32_t id) {
  switch (id) {
    case 4: return "Q4_2";
    case 5: return "Q4_3";
    case 31: return "Q4_0_4_4";
    case 32: return "Q4_0_4_8";
    case 33: return "Q4_0_8_8";
    case 36: return "IQ4_NL_4_4";
    case 37: return "IQ4_NL_4_8";
    case 38: return "IQ4_NL_8_8";
    default: return nullptr;
  }
}

struct Cursor {
  const uint8_t* base;
  size_t size;
  size_t pos = 0;

  uint64_t left() const { return (uint64_t)(size - pos); }

  void need(uint64_t n, const std::string& what) const {
    if (n > left())
      throw GGUFError(str_cat("truncated file: ", what, " at offset ", pos, " needs ", n, " bytes but only ", left(),
                              " remain (file size ", size, ")"));
  }

  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }

  std::string read_string(const std::string& what) {
    const uint64_t len = read<uint64_t>(str_cat(what, " length"));
    if (len > left())
      throw GGUFError(str_cat(what, ": string length ", len, " at offset ", pos - 8,
                              " runs past the end of the file (", left(), " bytes left)"));
    std::string s(reinterpret_cast<const char*>(base + pos), (size_t)len);
    pos += (size_t)len;
    return s;
  }

  void skip(uint64_t n) { pos += (size_t)n; }  // callers checked n <= left()
};

void read_value(Cursor& c, GGUFValueType type, GGUFValue& v, const std::string& what, int depth);

void read_array(Cursor& c, GGUFValue& v, const std::string& what, int depth) {
  if (depth >= kMaxArrayDepth)
    throw GGUFError(str_cat(what, ": arrays nested more than ", kMaxArrayDepth, " deep"));
  const uint32_t et = c.read<uint32_t>(str_cat(what, " array element type"));
  if (et >= 13)
    throw GGUFError(str_cat(what, ": invalid array element type ", et, " (valid types are 0..12)"));
  const uint64_t count = c.read<uint64_t>(str_cat(what, " array count"));
  v.array_type = (GGUFValueType)et;
  v.array_count = count;
  const size_t esz = value_type_size(v.array_type);
  if (esz != 0) {
    if (count > c.left() / esz)
      throw GGUFError(str_cat(what, ": array count ", count, " x element size ", esz, " (",
                              gguf_value_type_name(v.array_type), ") exceeds the ", c.left(), " bytes left"));
    v.array_data = c.base + c.pos;
    c.skip(count * esz);
    return;
  }
  // Variable-size elements: every string takes >= 8 bytes, every nested array >= 12.
  const uint64_t min_elem = v.array_type == GGUFValueType::STRING ? 8 : 12;
  if (count > c.left() / min_elem)
    throw GGUFError(str_cat(what, ": array count ", count, " of ", gguf_value_type_name(v.array_type),
                            " is larger than the ", c.left(), " bytes left could hold"));
  if (v.array_type == GGUFValueType::STRING) {
    v.array_strings.reserve((size_t)count);  // bounded by file size / 8
    for (uint64_t k = 0; k < count; ++k) v.array_strings.push_back(c.read_string(str_cat(what, "[", k, "]")));
  } else {
    v.array_values.reserve((size_t)count);  // bounded by file size / 12
    for (uint64_t k = 0; k < count; ++k) {
      v.array_values.emplace_back();
      GGUFValue& e = v.array_values.back();
      e.type = GGUFValueType::ARRAY;
      read_array(c, e, str_cat(what, "[", k, "]"), depth + 1);
    }
  }
}

void read_value(Cursor& c, GGUFValueType type, GGUFValue& v, const std::string& what, int depth) {
  v.type = type;
  switch (type) {
    case GGUFValueType::UINT8: case GGUFValueType::INT8: case GGUFValueType::UINT16: case GGUFValueType::INT16:
    case GGUFValueType::UINT32: case GGUFValueType::INT32: case GGUFValueType::UINT64: case GGUFValueType::INT64: {
      const size_t n = value_type_size(type);
      c.need(n, what);
      load_int(type, c.base + c.pos, &v.i, &v.u);
      c.skip(n);
      return;
    }
    case GGUFValueType::FLOAT32: v.f = c.read<float>(what); return;
    case GGUFValueType::FLOAT64: v.f = c.read<double>(what); return;
    case GGUFValueType::BOOL: v.b = c.read<uint8_t>(what) != 0; v.u = v.b; v.i = v.b; return;
    case GGUFValueType::STRING: v.s = c.read_string(what); return;
    case GGUFValueType::ARRAY: read_array(c, v, what, depth); return;
  }
  throw GGUFError(str_cat(what, ": invalid value type ", (uint32_t)type));
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t limit) { return a != 0 && b > limit / a; }

}  // namespace

const char* gguf_value_type_name(GGUFValueType t) {
  switch (t) {
    case GGUFValueType::UINT8: return "uint8";
    case GGUFValueType::INT8: return "int8";
    case GGUFValueType::UINT16: return "uint16";
    case GGUFValueType::INT16: return "int16";
    case GGUFValueType::UINT32: return "uint32";
    case GGUFValueType::INT32: return "int32";
    case GGUFValueType::FLOAT32: return "float32";
    case GGUFValueType::BOOL: return "bool";
    case GGUFValueType::STRING: return "string";
    case GGUFValueType::ARRAY: return "array";
    case GGUFValueType::UINT64: return "uint64";
    case GGUFValueType::INT64: return "int64";
    case GGUFValueType::FLOAT64: return "float64";
  }
  return "invalid";
}

// ---------------------------------------------------------------------------
// Opening
// ---------------------------------------------------------------------------

std::shared_ptr<GGUFFile> GGUFFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw FileNotFound(str_cat("cannot open GGUF file '", path, "': ", std::strerror(errno)));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw FileNotFound(str_cat("cannot stat GGUF file '", path, "': ", std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw FileNotFound(str_cat("GGUF path '", path, "' is not a regular file"));
  }
  std::shared_ptr<GGUFFile> f(new GGUFFile());
  f->path_ = path;
  f->size_ = (size_t)st.st_size;
  static const uint8_t kEmpty[1] = {0};
  f->base_ = kEmpty;
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw RuntimeError(str_cat("cannot memory-map GGUF file '", path, "' (", f->size_, " bytes): ",
                                 std::strerror(err)));
    }
    f->map_ = p;
    f->map_size_ = f->size_;
    f->base_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping stays valid
  try {
    f->parse();
  } catch (const GGUFError& e) {
    throw GGUFError(str_cat(path, ": ", e.what()));
  }
  return f;
}

std::shared_ptr<GGUFFile> GGUFFile::from_memory(const uint8_t* data, size_t size) {
  static const uint8_t kEmpty[1] = {0};
  std::shared_ptr<GGUFFile> f(new GGUFFile());
  f->path_ = "<memory>";
  f->base_ = data ? data : kEmpty;
  f->size_ = data ? size : 0;
  f->parse();
  return f;
}

GGUFFile::~GGUFFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

// ---------------------------------------------------------------------------
// Parsing and validation
// ---------------------------------------------------------------------------

void GGUFFile::parse() {
  Cursor c{base_, size_, 0};

  // --- header
  if (size_ < 4) throw GGUFError(str_cat("truncated file: ", size_, " bytes is too short for the GGUF magic"));
  if (std::memcmp(base_, "GGUF", 4) != 0) {
    static const char* hex = "0123456789abcdef";
    std::string got;
    for (int k = 0; k < 4; ++k) {
      if (k) got += ' ';
      got += hex[base_[k] >> 4];
      got += hex[base_[k] & 15];
    }
    if (std::memcmp(base_, "FUGG", 4) == 0)
      throw GGUFError("bad magic 'FUGG': this looks like a big-endian GGUF file; big-endian files are not supported");
    throw GGUFError(str_cat("bad magic: expected 'GGUF' (47 47 55 46), got ", got, "; not a GGUF file"));
  }
  c.pos = 4;
  const uint32_t version = c.read<uint32_t>("version");
  const uint32_t swapped = __builtin_bswap32(version);
  if (version == 1)
    throw GGUFError("GGUF version 1 is not supported (only versions 2 and 3 are); convert the file with a newer llama.cpp");
  if (version != 2 && version != 3) {
    if ((version & 0xffffu) == 0 && swapped >= 1 && swapped <= 3)
      throw GGUFError(str_cat("big-endian GGUF file (version field reads ", version, ", which is ", swapped,
                              " byte-swapped): big-endian files are not supported"));
    throw GGUFError(str_cat("unsupported GGUF version ", version, " (only versions 2 and 3 are supported)"));
  }
  version_ = version;
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  if (n_kv > c.left() / kMinKVBytes)
    throw GGUFError(str_cat("n_kv = ", n_kv, " metadata entries is larger than the ", c.left(),
                            " bytes left could hold"));
  if (n_tensors > c.left() / kMinTensorInfoBytes)
    throw GGUFError(str_cat("n_tensors = ", n_tensors, " tensor infos is larger than the ", c.left(),
                            " bytes left could hold"));
  if (n_kv * kMinKVBytes + n_tensors * kMinTensorInfoBytes > c.left())
    throw GGUFError(str_cat("n_kv = ", n_kv, " and n_tensors = ", n_tensors, " are larger than the ", c.left(),
                            " bytes left could hold"));

  // --- metadata
  keys_.reserve((size_t)n_kv);
  kv_.reserve((size_t)n_kv);
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.read_string(str_cat("metadata key #", k));
    if (key.empty()) throw GGUFError(str_cat("metadata key #", k, " is empty"));
    if (kv_.count(key)) throw GGUFError(str_cat("duplicate metadata key ", quoted(key)));
    const std::string what = str_cat("metadata ", quoted(key));
    const uint32_t t = c.read<uint32_t>(str_cat(what, " value type"));
    if (t >= 13) throw GGUFError(str_cat(what, ": invalid value type ", t, " (valid types are 0..12)"));
    GGUFValue v;
    read_value(c, (GGUFValueType)t, v, what, 0);
    keys_.push_back(key);
    kv_.emplace(std::move(key), std::move(v));
  }

  // --- alignment
  alignment_ = 32;
  auto it = kv_.find("general.alignment");
  if (it != kv_.end()) {
    const GGUFValue& a = it->second;
    if (a.type != GGUFValueType::UINT32)
      throw GGUFError(str_cat("general.alignment must be of type uint32, got ", gguf_value_type_name(a.type)));
    if (a.u == 0) throw GGUFError("general.alignment is 0; it must be a power of two");
    if ((a.u & (a.u - 1)) != 0)
      throw GGUFError(str_cat("general.alignment is ", a.u, ", which is not a power of two"));
    alignment_ = a.u;
  }

  // --- tensor infos
  tensors_.reserve((size_t)n_tensors);
  tensor_index_.reserve((size_t)n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GGUFTensorInfo t;
    t.name = c.read_string(str_cat("tensor #", k, " name"));
    if (t.name.empty()) throw GGUFError(str_cat("tensor #", k, " has an empty name"));
    if (t.name.size() > kMaxTensorName)
      throw GGUFError(str_cat("tensor #", k, " name ", quoted(t.name), " is ", t.name.size(),
                              " bytes long; at most ", kMaxTensorName, " are allowed"));
    if (tensor_index_.count(t.name)) throw GGUFError(str_cat("duplicate tensor name ", quoted(t.name)));
    const std::string what = str_cat("tensor ", quoted(t.name));
    const uint32_t n_dims = c.read<uint32_t>(str_cat(what, " n_dims"));
    if (n_dims > kMaxDims)
      throw GGUFError(str_cat(what, " has n_dims = ", n_dims, "; at most ", kMaxDims, " are supported"));
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const int64_t ne = c.read<int64_t>(str_cat(what, " dimension ", d));
      if (ne < 0) throw GGUFError(str_cat(what, " has a negative dimension ne[", d, "] = ", ne));
      if (mul_overflows(numel, (uint64_t)ne, (uint64_t)std::numeric_limits<int64_t>::max()))
        throw GGUFError(str_cat(what, ": the product of its dimensions overflows int64 (at ne[", d, "] = ", ne, ")"));
      numel *= (uint64_t)ne;
      t.ne.push_back(ne);
    }
    t.n_elements = (int64_t)numel;
    const int32_t type_id = c.read<int32_t>(str_cat(what, " ggml type"));
    const GGMLTypeTraits* tr = ggml_type_traits(type_id);
    if (tr == nullptr) {
      if (const char* rn = removed_type_name(type_id))
        throw GGUFError(str_cat(what, " has ggml type ", type_id, " (", rn, "), which was removed from ggml"));
      throw GGUFError(str_cat(what, " has unknown ggml type ", type_id));
    }
    t.type = (GGMLType)type_id;
    const int64_t ne0 = n_dims > 0 ? t.ne[0] : 1;
    if (ne0 % tr->block_size != 0)
      throw GGUFError(str_cat(what, ": row length ne[0] = ", ne0, " is not a multiple of the ", tr->name,
                              " block size ", tr->block_size));
    // nbytes = (ne0 / block) * type_size * (numel / ne0), each product checked against INT64_MAX.
    const uint64_t blocks_per_row = (uint64_t)(ne0 / tr->block_size);
    const uint64_t n_rows = ne0 == 0 ? 0 : numel / (uint64_t)ne0;
    constexpr uint64_t kMax = (uint64_t)std::numeric_limits<int64_t>::max();
    if (mul_overflows(blocks_per_row, (uint64_t)tr->type_size, kMax) ||
        mul_overflows(blocks_per_row * (uint64_t)tr->type_size, n_rows, kMax))
      throw GGUFError(str_cat(what, ": its size in bytes overflows"));
    const uint64_t row_bytes = blocks_per_row * (uint64_t)tr->type_size;
    t.nbytes = row_bytes * n_rows;
    t.offset = c.read<uint64_t>(str_cat(what, " data offset"));
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  // --- data section
  const uint64_t pos = c.pos;
  const uint64_t pad = (alignment_ - pos % alignment_) % alignment_;
  data_offset_ = pos + pad;  // pos <= size < 2^63, pad < 2^32: no wrap
  if (!tensors_.empty() && data_offset_ > size_)
    throw GGUFError(str_cat("truncated file: the tensor data section would start at offset ", data_offset_,
                            ", past the end of the file (", size_, " bytes)"));
  const uint64_t data_size = data_offset_ <= size_ ? size_ - data_offset_ : 0;
  for (auto& t : tensors_) {
    const std::string what = str_cat("tensor ", quoted(t.name));
    if (t.offset % alignment_ != 0)
      throw GGUFError(str_cat(what, ": data offset ", t.offset, " is not a multiple of the alignment ", alignment_));
    if (t.offset + t.nbytes < t.offset)
      throw GGUFError(str_cat(what, ": data offset ", t.offset, " + size ", t.nbytes, " wraps around"));
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      throw GGUFError(str_cat(what, ": data [", t.offset, ", ", t.offset + t.nbytes, ") runs past the end of the file ",
                              "(the data section holds ", data_size, " bytes)"));
    t.data = base_ + data_offset_ + t.offset;
  }
  std::vector<const GGUFTensorInfo*> by_offset;
  by_offset.reserve(tensors_.size());
  for (const auto& t : tensors_)
    if (t.nbytes > 0) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GGUFTensorInfo* a, const GGUFTensorInfo* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const GGUFTensorInfo* a = by_offset[k - 1];
    const GGUFTensorInfo* b = by_offset[k];
    if (a->offset + a->nbytes > b->offset)
      throw GGUFError(str_cat("tensor ", quoted(a->name), " [", a->offset, ", ", a->offset + a->nbytes,
                              ") overlaps tensor ", quoted(b->name), " [", b->offset, ", ", b->offset + b->nbytes,
                              ")"));
  }
}

// ---------------------------------------------------------------------------
// Lookups and typed getters
// ---------------------------------------------------------------------------

const GGUFValue& GGUFFile::get(const std::string& key) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) throw GGUFError(str_cat("metadata key ", quoted(key), " is missing"));
  return it->second;
}

namespace {
[[noreturn]] void wrong_type(const std::string& key, const GGUFValue& v, const char* expected) {
  std::string got = gguf_value_type_name(v.type);
  if (v.type == GGUFValueType::ARRAY) got = str_cat("array of ", gguf_value_type_name(v.array_type));
  throw GGUFError(str_cat("metadata key ", quoted(key), " has type ", got, ", expected ", expected));
}
}  // namespace

int64_t GGUFFile::get_int(const std::string& key) const {
  const GGUFValue& v = get(key);
  if (!is_integer_type(v.type)) wrong_type(key, v, "an integer");
  if (v.type == GGUFValueType::UINT64 && v.u > (uint64_t)std::numeric_limits<int64_t>::max())
    throw GGUFError(str_cat("metadata key ", quoted(key), " value ", v.u, " does not fit in int64"));
  return v.i;
}

int64_t GGUFFile::get_int(const std::string& key, int64_t dflt) const { return has(key) ? get_int(key) : dflt; }

double GGUFFile::get_float(const std::string& key) const {
  const GGUFValue& v = get(key);
  if (v.type == GGUFValueType::FLOAT32 || v.type == GGUFValueType::FLOAT64) return v.f;
  if (is_integer_type(v.type)) return is_unsigned_type(v.type) ? (double)v.u : (double)v.i;
  wrong_type(key, v, "a number");
}

double GGUFFile::get_float(const std::string& key, double dflt) const { return has(key) ? get_float(key) : dflt; }

bool GGUFFile::get_bool(const std::string& key, bool dflt) const {
  if (!has(key)) return dflt;
  const GGUFValue& v = get(key);
  if (v.type != GGUFValueType::BOOL) wrong_type(key, v, "bool");
  return v.b;
}

std::string GGUFFile::get_str(const std::string& key) const {
  const GGUFValue& v = get(key);
  if (v.type != GGUFValueType::STRING) wrong_type(key, v, "string");
  return v.s;
}

std::string GGUFFile::get_str(const std::string& key, const std::string& dflt) const {
  return has(key) ? get_str(key) : dflt;
}

const std::vector<std::string>& GGUFFile::get_str_array(const std::string& key) const {
  const GGUFValue& v = get(key);
  if (v.type != GGUFValueType::ARRAY || v.array_type != GGUFValueType::STRING) wrong_type(key, v, "array of string");
  return v.array_strings;
}

std::vector<float> GGUFFile::get_f32_array(const std::string& key) const {
  const GGUFValue& v = get(key);
  if (v.type != GGUFValueType::ARRAY || v.array_type != GGUFValueType::FLOAT32) wrong_type(key, v, "array of float32");
  std::vector<float> out((size_t)v.array_count);
  if (v.array_count) std::memcpy(out.data(), v.array_data, (size_t)v.array_count * 4);
  return out;
}

std::vector<int32_t> GGUFFile::get_i32_array(const std::string& key) const {
  const GGUFValue& v = get(key);
  if (v.type != GGUFValueType::ARRAY || !is_integer_type(v.array_type)) wrong_type(key, v, "array of integers");
  const size_t esz = value_type_size(v.array_type);
  const bool uns = is_unsigned_type(v.array_type);
  std::vector<int32_t> out((size_t)v.array_count);
  for (uint64_t k = 0; k < v.array_count; ++k) {
    int64_t i;
    uint64_t u;
    load_int(v.array_type, v.array_data + k * esz, &i, &u);
    const bool fits = uns ? u <= (uint64_t)std::numeric_limits<int32_t>::max()
                          : (i >= std::numeric_limits<int32_t>::min() && i <= std::numeric_limits<int32_t>::max());
    if (!fits)
      throw GGUFError(str_cat("metadata key ", quoted(key), " element ", k, " (",
                              uns ? str_cat(u) : str_cat(i), ") does not fit in int32"));
    out[(size_t)k] = (int32_t)i;
  }
  return out;
}

const GGUFTensorInfo* GGUFFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GGUFTensorInfo& GGUFFile::tensor(const std::string& name) const {
  const GGUFTensorInfo* t = find_tensor(name);
  if (t == nullptr) throw GGUFError(str_cat("tensor ", quoted(name), " not found in ", path_));
  return *t;
}

void GGUFFile::dequantize(const GGUFTensorInfo& t, float* dst) const {
  const GGMLTypeTraits* tr = ggml_type_traits((int32_t)t.type);
  if (tr == nullptr || !tr->can_dequantize)
    throw NotSupportedError(str_cat("tensor ", quoted(t.name), " has type ", tr ? tr->name : "unknown",
                                    ", which inferlab cannot dequantize"));
  dequantize_row(t.type, t.data, dst, t.n_elements);
}

}  // namespace inferlab
