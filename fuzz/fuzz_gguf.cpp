// libFuzzer target for the GGUF parser: GGUFFile::from_memory on arbitrary bytes, then every
// accessor a consumer would use (typed getters on every key, dequantization of every tensor).
// Only inferlab's documented exceptions may escape the parser; anything else (a crash, a sanitizer
// report, std::bad_alloc, another exception type) is a finding.
//   fuzz/build.sh build/fuzz && build/fuzz/fuzz_gguf -dict=fuzz/gguf.dict build/fuzz/corpus fuzz/seeds
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "gguf/gguf.h"

using namespace inferlab;

namespace {
template <class F>
void expect_gguf_error(F&& f) {
  try {
    f();
  } catch (const GGUFError&) {
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::shared_ptr<GGUFFile> f;
  try {
    f = GGUFFile::from_memory(data, size);
  } catch (const GGUFError&) {
    return 0;
  }
  // Touch everything: typed getters must throw GGUFError (wrong type) or succeed.
  volatile double sink = 0;
  for (const auto& key : f->keys()) {
    const GGUFValue& v = f->get(key);
    sink = sink + (double)v.array_count;
    expect_gguf_error([&] { sink = sink + (double)f->get_int(key); });
    expect_gguf_error([&] { sink = sink + f->get_float(key); });
    expect_gguf_error([&] { sink = sink + f->get_bool(key, false); });
    expect_gguf_error([&] { sink = sink + (double)f->get_str(key).size(); });
    expect_gguf_error([&] { sink = sink + (double)f->get_str_array(key).size(); });
    expect_gguf_error([&] { sink = sink + (double)f->get_f32_array(key).size(); });
    expect_gguf_error([&] { sink = sink + (double)f->get_i32_array(key).size(); });
  }
  expect_gguf_error([&] { sink = sink + (double)f->architecture().size(); });
  // Tensor data must lie inside the buffer: read every byte, dequantize what can be.
  for (const auto& t : f->tensors()) {
    if (f->find_tensor(t.name) != &t) __builtin_trap();
    if (t.data < data || t.data + t.nbytes > data + size) __builtin_trap();
    uint32_t acc = 0;
    for (uint64_t i = 0; i < t.nbytes; ++i) acc += t.data[i];
    sink = sink + acc;
    const GGMLTypeTraits* tr = ggml_type_traits((int32_t)t.type);
    if (tr->can_dequantize && t.n_elements <= (1 << 22)) {
      std::vector<float> out((size_t)t.n_elements);
      f->dequantize(t, out.data());
      if (!out.empty()) sink = sink + out[0];
    }
  }
  (void)sink;
  return 0;
}
