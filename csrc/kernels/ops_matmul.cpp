// Matmul on GGUF weights: QWeight construction (with the CUDA split layout) and the checked entry point.
#include <cstring>
#include <vector>

#include "core/device.h"
#include "core/half.h"
#include "gguf/dequant.h"
#include "gguf/gguf.h"
#include "kernels/cpu/matmul.h"
#include "kernels/ops.h"
#include "kernels/qweight_layout.h"
#ifdef INFERLAB_WITH_CUDA
#include "kernels/cuda/matmul.cuh"
#endif

namespace inferlab {

std::vector<uint8_t> qweight_gguf_bytes(const QWeight& w) {
  IL_CHECK_ARG(w.data.defined(), "weight '", w.name, "' has no data");
  const int64_t total = w.n * w.row_bytes();
  std::vector<uint8_t> raw(w.data.nbytes());
  if (!raw.empty()) memcpy_any(raw.data(), Device::CPU, w.data.data(), w.device(), raw.size(), true);
  if (w.layout == kLayoutGGUF) {
    IL_CHECK_ARG((int64_t)raw.size() >= total, "weight '", w.name, "' holds ", raw.size(), " bytes, expected ", total);
    raw.resize((size_t)total);
    return raw;
  }
  IL_CHECK_ARG(w.layout == kLayoutSplit, "weight '", w.name, "' has unknown layout ", w.layout);
  IL_CHECK_ARG((int64_t)raw.size() >= split_total_bytes(w.type, w.n, w.k), "weight '", w.name, "' holds ",
               raw.size(), " bytes, expected ", split_total_bytes(w.type, w.n, w.k));
  std::vector<uint8_t> out((size_t)total);
  gguf_from_split(w.type, w.n, w.k, raw.data(), out.data());
  return out;
}

void qweight_dequantize_host(const QWeight& w, float* out) {
  const std::vector<uint8_t> raw = qweight_gguf_bytes(w);
  const int64_t rb = w.row_bytes();
  for (int64_t r = 0; r < w.n; ++r) dequantize_row(w.type, raw.data() + r * rb, out + r * w.k, w.k);
}

QWeight qweight_from_gguf(const GGUFTensorInfo& ti, Device device) {
  IL_CHECK_ARG(ti.ne.size() >= 2, "tensor '", ti.name, "' is ", ti.ne.size(), "-D; a matmul weight is 2-D");
  int64_t n = 1;
  for (size_t i = 1; i < ti.ne.size(); ++i) {
    IL_CHECK_ARG(i == 1 || ti.ne[i] == 1, "tensor '", ti.name, "' has more than 2 non-trivial dimensions");
    n *= ti.ne[i];
  }
  return QWeight::from_host(ti.name, ti.type, n, ti.ne[0], ti.data, device);
}

void qweight_dequantize_to(const QWeight& w, Tensor& out) {
  IL_CHECK_ARG(w.data.defined(), "weight '", w.name, "' has no data");
  check_ndim(out, "out", 2);
  check_dtype(out, "out", {DType::F32, DType::F16});
  check_shape(out, "out", {w.n, w.k});
  check_same_device(w.device(), out, "out");
  if (w.device() == Device::CPU) {
    const int64_t rb = w.row_bytes();
    const uint8_t* src = static_cast<const uint8_t*>(w.data.data());
    std::vector<float> row(out.dtype() == DType::F16 ? (size_t)w.k : 0);
    for (int64_t r = 0; r < w.n; ++r) {
      if (out.dtype() == DType::F32) {
        dequantize_row(w.type, src + r * rb, out.data_as<float>() + r * w.k, w.k);
      } else {
        dequantize_row(w.type, src + r * rb, row.data(), w.k);
        uint16_t* o = out.data_as<uint16_t>() + r * w.k;
        for (int64_t i = 0; i < w.k; ++i) o[i] = f32_to_fp16(row[i]);
      }
    }
    return;
  }
#ifdef INFERLAB_WITH_CUDA
  IL_CHECK_ARG(out.dtype() == DType::F16, "out must be float16 for a CUDA weight");
  cuda::dequantize_to_f16(w, out.data(), current_stream());
#else
  require_cuda("dequantize_to");
#endif
}

QWeight QWeight::from_host(const std::string& name, GGMLType type, int64_t n, int64_t k, const void* src,
                           Device device) {
  const GGMLTypeTraits* tr = ggml_type_traits((int32_t)type);
  IL_CHECK_ARG(tr != nullptr, "weight '", name, "': unknown GGML type id ", (int32_t)type);
  if (!matmul_supports(type))
    throw NotSupportedError(str_cat("weight '", name, "': type ", tr->name,
                                    " is not supported by matmul (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, "
                                    "Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)"));
  IL_CHECK_ARG(n > 0, "weight '", name, "': n (rows) must be positive, got ", n);
  IL_CHECK_ARG(k > 0, "weight '", name, "': k (columns) must be positive, got ", k);
  IL_CHECK_ARG(k % tr->block_size == 0, "weight '", name, "': k=", k, " is not a multiple of the ", tr->name,
               " block size ", tr->block_size);
  IL_CHECK_ARG(src != nullptr, "weight '", name, "': source pointer is null");
  const int64_t total = n * ggml_row_size(type, k);

  QWeight w;
  w.name = name;
  w.type = type;
  w.n = n;
  w.k = k;
  if (device == Device::CPU || is_float_type(type)) {
    w.layout = kLayoutGGUF;
    w.data = Tensor::empty({total}, DType::U8, device);
    memcpy_any(w.data.data(), device, src, Device::CPU, (size_t)total, true);
    return w;
  }
  // CUDA, quantized: repack into the split layout on the host, then upload.
  const int64_t split_total = split_total_bytes(type, n, k);
  std::vector<uint8_t> host((size_t)split_total);
  split_from_gguf(type, n, k, static_cast<const uint8_t*>(src), host.data());
  w.layout = kLayoutSplit;
  w.data = Tensor::empty({split_total}, DType::U8, device);
  memcpy_any(w.data.data(), device, host.data(), Device::CPU, (size_t)split_total, true);
  return w;
}

namespace ops {

namespace {

bool overlaps(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.nbytes() == 0 || b.nbytes() == 0) return false;
  const char* a0 = static_cast<const char*>(a.data());
  const char* b0 = static_cast<const char*>(b.data());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

void check_weight(const QWeight& w) {
  const GGMLTypeTraits* tr = ggml_type_traits((int32_t)w.type);
  IL_CHECK_ARG(tr != nullptr, "w ('", w.name, "') has unknown GGML type id ", (int32_t)w.type);
  if (!matmul_supports(w.type))
    throw NotSupportedError(str_cat("w ('", w.name, "'): type ", tr->name, " is not supported by matmul"));
  IL_CHECK_ARG(w.data.defined(), "w ('", w.name, "') has no data");
  IL_CHECK_ARG(w.n > 0 && w.k > 0, "w ('", w.name, "') has invalid shape [", w.n, ", ", w.k, "]");
  IL_CHECK_ARG(w.k % tr->block_size == 0, "w ('", w.name, "'): k=", w.k, " is not a multiple of the ", tr->name,
               " block size ", tr->block_size);
  int64_t need = w.n * w.row_bytes();
  if (w.device() == Device::CPU) {
    IL_CHECK_ARG(w.layout == kLayoutGGUF, "w ('", w.name, "') on the CPU must be in GGUF layout (0), got ", w.layout);
  } else if (is_float_type(w.type)) {
    IL_CHECK_ARG(w.layout == kLayoutGGUF, "w ('", w.name, "') of type ", tr->name,
                 " on CUDA must be in GGUF layout (0), got ", w.layout);
  } else {
    IL_CHECK_ARG(w.layout == kLayoutSplit, "w ('", w.name, "') of type ", tr->name,
                 " on CUDA must be in the split layout (1); build it with QWeight::from_host");
    need = split_total_bytes(w.type, w.n, w.k);
    IL_CHECK_ARG(reinterpret_cast<uintptr_t>(w.data.data()) % 16 == 0, "w ('", w.name,
                 "') data must be 16-byte aligned on CUDA");
  }
  IL_CHECK_ARG((int64_t)w.data.nbytes() >= need, "w ('", w.name, "') holds ", w.data.nbytes(),
               " bytes but its type and shape need ", need);
}

}  // namespace

void matmul(const Tensor& x, const QWeight& w, Tensor& y, const Tensor& bias, bool int8_activations) {
  check_weight(w);
  const Device dev = w.device();
  check_ndim(x, "x", 2);
  check_dtype(x, "x", {DType::F32, DType::F16, DType::BF16});
  check_same_device(dev, x, "x");
  IL_CHECK_ARG(x.size(1) == w.k, "x has ", x.size(1), " columns but w ('", w.name, "') has k=", w.k,
               " (x must be [T, ", w.k, "])");
  const int64_t T = x.size(0);
  check_ndim(y, "y", 2);
  check_dtype(y, "y", {DType::F32, DType::F16});
  check_same_device(dev, y, "y");
  check_shape(y, "y", {T, w.n});
  IL_CHECK_ARG(!overlaps(x, y), "y must not overlap x");
  const float* bias_ptr = nullptr;
  if (bias.defined()) {
    check_dtype(bias, "bias", {DType::F32});
    check_same_device(dev, bias, "bias");
    check_shape(bias, "bias", {w.n});
    IL_CHECK_ARG(!overlaps(bias, y), "y must not overlap bias");
    bias_ptr = bias.data_as<float>();
  }
  if (T == 0) return;

  if (dev == Device::CPU) {
    cpu::MatmulParams p;
    p.x = x.data();
    p.x_dtype = x.dtype();
    p.y = y.data();
    p.y_dtype = y.dtype();
    p.bias = bias_ptr;
    p.w = static_cast<const uint8_t*>(w.data.data());
    p.type = w.type;
    p.n = w.n;
    p.k = w.k;
    p.t = T;
    p.x_int8 = int8_activations;
    cpu::matmul(p);
    return;
  }
#ifdef INFERLAB_WITH_CUDA
  cuda::MatmulParams p;
  p.x = x.data();
  p.x_dtype = x.dtype();
  p.y = y.data();
  p.y_dtype = y.dtype();
  p.bias = bias_ptr;
  p.w = &w;
  p.t = T;
  p.x_int8 = int8_activations;
  cuda::matmul(p, current_stream());
#else
  require_cuda("matmul");
#endif
}

}  // namespace ops
}  // namespace inferlab
