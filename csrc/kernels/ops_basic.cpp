// Checked entry points of kernel library I (see kernels/ops.h): validate, then dispatch to the CUDA
// launcher (kernels/cuda/<family>.cuh) or the CPU twin (kernels/cpu/basic.h).
#include <cmath>

#include "kernels/cpu/basic.h"
#include "kernels/dequant_group.h"
#include "kernels/ops.h"

#ifdef INFERLAB_WITH_CUDA
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/norm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/sample.cuh"
#include "kernels/cuda/softmax.cuh"
#endif

namespace inferlab {
namespace ops {

namespace {

constexpr std::initializer_list<DType> kFloat = {DType::F32, DType::F16, DType::BF16};

void check_float(const Tensor& t, const char* arg) { check_dtype(t, arg, kFloat); }

// The op's device is the first tensor's; every other tensor must be there too.
Device op_device(const Tensor& first, const char* arg) {
  IL_CHECK_ARG(first.defined(), arg, " is missing");
  return first.device();
}

void require_cuda_build(const char* op) {
#ifndef INFERLAB_WITH_CUDA
  require_cuda(op);
#else
  (void)op;
#endif
}

// out may be the very same array as in (same data, dtype and size) but must not partially overlap it.
void check_alias(const Tensor& out, const char* out_name, const Tensor& in, const char* in_name,
                 bool exact_ok = true) {
  if (!out.defined() || !in.defined() || out.nbytes() == 0 || in.nbytes() == 0) return;
  const char* o0 = static_cast<const char*>(out.data());
  const char* i0 = static_cast<const char*>(in.data());
  const bool overlap = o0 < i0 + in.nbytes() && i0 < o0 + out.nbytes();
  if (!overlap) return;
  const bool exact = o0 == i0 && out.dtype() == in.dtype() && out.nbytes() == in.nbytes();
  IL_CHECK_ARG(exact && exact_ok, out_name, exact ? " must not be the same array as " : " partially overlaps ",
               in_name);
}

void check_same_shape(const Tensor& t, const char* arg, const Tensor& ref, const char* ref_name) {
  IL_CHECK_ARG(t.defined(), arg, " is missing");
  IL_CHECK_ARG(t.shape() == ref.shape(), arg, " has shape ", shape_str(t.shape()), " but ", ref_name,
               " has shape ", shape_str(ref.shape()));
}

// Checks of an elementwise op with one input: float x and out of one shape on one device; out may be x itself.
Device check_unary(const Tensor& x, const Tensor& out) {
  check_float(x, "x");
  const Device dev = op_device(x, "x");
  check_float(out, "out");
  check_same_device(dev, out, "out");
  check_same_shape(out, "out", x, "x");
  check_alias(out, "out", x, "x");
  return dev;
}

// Rows and width of a [..., D] float tensor.
void rows_cols(const Tensor& t, const char* arg, int64_t* rows, int64_t* cols) {
  IL_CHECK_ARG(t.ndim() >= 1, arg, " must have at least one dimension, got shape ", shape_str(t.shape()));
  *cols = t.size(-1);
  *rows = *cols ? t.numel() / *cols : 0;
}

void check_eps(float eps) { IL_CHECK_ARG(std::isfinite(eps) && eps >= 0.f, "eps must be finite and >= 0, got ", eps); }

void check_vector(const Tensor& v, const char* arg, int64_t n, Device dev) {
  check_float(v, arg);
  check_same_device(dev, v, arg);
  IL_CHECK_ARG(v.ndim() == 1 && v.size(0) == n, arg, " must have shape [", n, "], got ", shape_str(v.shape()));
}

void norm_common(Tensor* residual, const Tensor& x, const Tensor& w, const Tensor& b, float eps, bool ln,
                 Tensor& out, const char* op) {
  check_float(x, "x");
  const Device dev = op_device(x, "x");
  int64_t rows, d;
  rows_cols(x, "x", &rows, &d);
  IL_CHECK_ARG(d >= 1, "x must have a non-empty last dimension, got shape ", shape_str(x.shape()));
  check_vector(w, "w", d, dev);
  if (ln && b.defined()) check_vector(b, "b", d, dev);
  check_float(out, "out");
  check_same_device(dev, out, "out");
  check_same_shape(out, "out", x, "x");
  check_eps(eps);
  if (residual) {
    check_dtype(*residual, "residual", {DType::F32});
    check_same_device(dev, *residual, "residual");
    check_same_shape(*residual, "residual", x, "x");
    check_alias(*residual, "residual", x, "x", false);
    check_alias(out, "out", *residual, "residual", false);
  }
  check_alias(out, "out", x, "x");
  check_alias(out, "out", w, "w", false);
  if (dev == Device::CUDA) {
    require_cuda_build(op);
#ifdef INFERLAB_WITH_CUDA
    cuda::NormParams p;
    p.x = x.data();
    p.w = w.data();
    p.b = ln && b.defined() ? b.data() : nullptr;
    p.residual = residual ? residual->data_as<float>() : nullptr;
    p.out = out.data();
    p.x_dtype = x.dtype();
    p.w_dtype = w.dtype();
    p.b_dtype = ln && b.defined() ? b.dtype() : DType::F32;
    p.out_dtype = out.dtype();
    p.rows = rows;
    p.d = d;
    p.eps = eps;
    p.layer_norm = ln;
    cuda::launch_norm(p, current_stream());
#endif
  } else {
    Tensor x2 = x.view({rows, d}), o2 = out.view({rows, d});
    Tensor r2 = residual ? residual->view({rows, d}) : Tensor();
    cpu::norm(x2, w, b, residual ? &r2 : nullptr, eps, ln, o2);
  }
}

#ifdef INFERLAB_WITH_CUDA
void launch_ew(cuda::EwOp op, const Tensor& a, const Tensor* b, Tensor& out, int64_t rows, int64_t cols) {
  cuda::EwParams p;
  p.op = op;
  p.a = a.data();
  p.b = b ? b->data() : nullptr;
  p.out = out.data();
  p.a_dtype = a.dtype();
  p.b_dtype = b ? b->dtype() : a.dtype();
  p.out_dtype = out.dtype();
  p.rows = rows;
  p.cols = cols;
  cuda::launch_elementwise(p, current_stream());
}
#endif

}  // namespace

// ---------------------------------------------------------------------------------------------

void embedding(const Tensor& ids, const Tensor& table, Tensor& out) {
  check_dtype(ids, "ids", {DType::I32});
  const Device dev = op_device(ids, "ids");
  IL_CHECK_ARG(ids.ndim() == 1, "ids must be 1-D [T], got shape ", shape_str(ids.shape()));
  check_float(table, "table");
  check_same_device(dev, table, "table");
  IL_CHECK_ARG(table.ndim() == 2, "table must be 2-D [V, D], got shape ", shape_str(table.shape()));
  check_float(out, "out");
  check_same_device(dev, out, "out");
  check_shape(out, "out", {ids.size(0), table.size(1)});
  check_alias(out, "out", table, "table", false);
  if (dev == Device::CUDA) {
    require_cuda_build("embedding");
#ifdef INFERLAB_WITH_CUDA
    cuda::EmbeddingParams p;
    p.ids = ids.data_as<int32_t>();
    p.table = table.data();
    p.out = out.data();
    p.table_dtype = table.dtype();
    p.out_dtype = out.dtype();
    p.T = ids.size(0);
    p.V = table.size(0);
    p.D = table.size(1);
    cuda::launch_embedding(p, current_stream());
#endif
  } else {
    cpu::embedding(ids, table, out);
  }
}

void embedding_q(const Tensor& ids, const QWeight& table, Tensor& out) {
  check_dtype(ids, "ids", {DType::I32});
  const Device dev = op_device(ids, "ids");
  IL_CHECK_ARG(ids.ndim() == 1, "ids must be 1-D [T], got shape ", shape_str(ids.shape()));
  const GGMLTypeTraits* tr = ggml_type_traits((int32_t)table.type);
  IL_CHECK_ARG(tr != nullptr, "table '", table.name, "' has unknown GGML type id ", (int)table.type);
  if (!qgroup::supported((int32_t)table.type))
    throw NotSupportedError(str_cat("embedding_q: GGML type ", tr->name, " of table '", table.name,
                                    "' is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, "
                                    "Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)"));
  // Layout 0: GGUF blocks row after row (any device). Layout 1: the matmul's CUDA split layout.
  bool layout_ok = table.layout == 0;
#ifdef INFERLAB_WITH_CUDA
  if (table.layout == 1 && table.data.defined() && table.data.device() == Device::CUDA)
    layout_ok = cuda::embedding_supports_split_layout();
#endif
  if (!layout_ok)
    throw NotSupportedError(str_cat("embedding_q cannot read table '", table.name, "' in layout ", table.layout,
                                    " on ", device_name(table.data.device())));
  IL_CHECK_ARG(table.n >= 1 && table.k >= 1 && table.k % tr->block_size == 0, "table '", table.name,
               "' has shape [", table.n, ", ", table.k, "]; k must be a positive multiple of ", tr->block_size,
               " for ", tr->name);
  IL_CHECK_ARG(table.data.defined(), "table '", table.name, "' has no data");
  check_dtype(table.data, "table.data", {DType::U8, DType::I8});
  check_same_device(dev, table.data, "table.data");
  if (table.layout == 0)
    IL_CHECK_ARG((int64_t)table.data.nbytes() >= table.n * table.row_bytes(), "table '", table.name, "' holds ",
                 table.data.nbytes(), " bytes but [", table.n, ", ", table.k, "] ", tr->name, " needs ",
                 table.n * table.row_bytes());
  check_float(out, "out");
  check_same_device(dev, out, "out");
  check_shape(out, "out", {ids.size(0), table.k});
  check_alias(out, "out", table.data, "table.data", false);
  if (dev == Device::CUDA) {
    require_cuda_build("embedding_q");
#ifdef INFERLAB_WITH_CUDA
    cuda::EmbeddingParams p;
    p.ids = ids.data_as<int32_t>();
    p.table = table.data.data();
    p.out = out.data();
    p.out_dtype = out.dtype();
    p.T = ids.size(0);
    p.V = table.n;
    p.D = table.k;
    p.row_bytes = table.row_bytes();
    p.layout = table.layout;
    switch (table.type) {  // plain float tables take the (any-width) float gather
      case GGMLType::F32: p.table_dtype = DType::F32; break;
      case GGMLType::F16: p.table_dtype = DType::F16; break;
      case GGMLType::BF16: p.table_dtype = DType::BF16; break;
      default: p.ggml_type = (int32_t)table.type; break;
    }
    cuda::launch_embedding(p, current_stream());
#endif
  } else {
    cpu::embedding_q(ids, table, out);
  }
}

void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& out) {
  norm_common(nullptr, x, w, Tensor(), eps, false, out, "rms_norm");
}
void add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps, Tensor& out) {
  IL_CHECK_ARG(residual.defined(), "residual is missing");
  norm_common(&residual, x, w, Tensor(), eps, false, out, "add_rms_norm");
}
void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& out) {
  norm_common(nullptr, x, w, b, eps, true, out, "layer_norm");
}
void add_layer_norm(Tensor& residual, const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& out) {
  IL_CHECK_ARG(residual.defined(), "residual is missing");
  norm_common(&residual, x, w, b, eps, true, out, "add_layer_norm");
}

void rope(const Tensor& x, const Tensor& positions, float theta, int n_rot, RopeStyle style, Tensor& out) {
  check_float(x, "x");
  const Device dev = op_device(x, "x");
  IL_CHECK_ARG(x.ndim() == 3, "x must be 3-D [T, H, D], got shape ", shape_str(x.shape()));
  const int64_t T = x.size(0), D = x.size(2);
  check_dtype(positions, "positions", {DType::I32});
  check_same_device(dev, positions, "positions");
  check_shape(positions, "positions", {T});
  IL_CHECK_ARG(n_rot >= 2 && n_rot % 2 == 0 && n_rot <= D, "n_rot must be even and in [2, D = ", D, "], got ",
               n_rot);
  IL_CHECK_ARG(n_rot <= 8192, "n_rot must be <= 8192, got ", n_rot);
  IL_CHECK_ARG(std::isfinite(theta) && theta > 0.f, "theta must be finite and > 0, got ", theta);
  IL_CHECK_ARG(style == RopeStyle::Norm || style == RopeStyle::Neox, "style must be Norm (0) or Neox (1), got ",
               (int)style);
  check_float(out, "out");
  check_same_device(dev, out, "out");
  check_same_shape(out, "out", x, "x");
  check_alias(out, "out", x, "x");
  if (dev == Device::CUDA) {
    require_cuda_build("rope");
#ifdef INFERLAB_WITH_CUDA
    cuda::RopeParams p;
    p.x = x.data();
    p.positions = positions.data_as<int32_t>();
    p.out = out.data();
    p.x_dtype = x.dtype();
    p.out_dtype = out.dtype();
    p.T = T;
    p.H = x.size(1);
    p.D = D;
    p.n_rot = n_rot;
    p.theta = theta;
    p.style = (int)style;
    cuda::launch_rope(p, current_stream());
#endif
  } else {
    cpu::rope(x, positions, theta, n_rot, style, out);
  }
}

void add(const Tensor& a, const Tensor& b, Tensor& out) {
  check_float(a, "a");
  const Device dev = op_device(a, "a");
  check_float(b, "b");
  check_same_device(dev, b, "b");
  check_same_shape(b, "b", a, "a");
  check_float(out, "out");
  check_same_device(dev, out, "out");
  check_same_shape(out, "out", a, "a");
  check_alias(out, "out", a, "a");
  check_alias(out, "out", b, "b");
  if (dev == Device::CUDA) {
    require_cuda_build("add");
#ifdef INFERLAB_WITH_CUDA
    launch_ew(cuda::EwOp::Add, a, &b, out, 1, a.numel());
#endif
  } else {
    cpu::add(a, b, out);
  }
}

void add_bias(Tensor& x, const Tensor& bias) {
  check_float(x, "x");
  const Device dev = op_device(x, "x");
  int64_t rows, n;
  rows_cols(x, "x", &rows, &n);
  check_vector(bias, "bias", n, dev);
  check_alias(x, "x", bias, "bias", false);
  if (dev == Device::CUDA) {
    require_cuda_build("add_bias");
#ifdef INFERLAB_WITH_CUDA
    launch_ew(cuda::EwOp::AddBias, x, &bias, x, rows, n);
#endif
  } else {
    cpu::add_bias(x, bias);
  }
}

void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) {
  check_float(gate, "gate");
  const Device dev = op_device(gate, "gate");
  check_float(up, "up");
  check_same_device(dev, up, "up");
  check_same_shape(up, "up", gate, "gate");
  IL_CHECK_ARG(up.dtype() == gate.dtype(), "up has dtype ", dtype_name(up.dtype()), " but gate has dtype ",
               dtype_name(gate.dtype()), "; they must match");
  check_float(out, "out");
  check_same_device(dev, out, "out");
  check_same_shape(out, "out", gate, "gate");
  check_alias(out, "out", gate, "gate");
  check_alias(out, "out", up, "up");
  if (dev == Device::CUDA) {
    require_cuda_build("swiglu");
#ifdef INFERLAB_WITH_CUDA
    launch_ew(cuda::EwOp::Swiglu, gate, &up, out, 1, gate.numel());
#endif
  } else {
    cpu::swiglu(gate, up, out);
  }
}

void swiglu_fused(const Tensor& gate_up, Tensor& out) {
  check_float(gate_up, "gate_up");
  const Device dev = op_device(gate_up, "gate_up");
  IL_CHECK_ARG(gate_up.ndim() == 2 && gate_up.size(1) % 2 == 0, "gate_up must be 2-D [T, 2F], got shape ",
               shape_str(gate_up.shape()));
  check_float(out, "out");
  check_same_device(dev, out, "out");
  check_shape(out, "out", {gate_up.size(0), gate_up.size(1) / 2});
  check_alias(out, "out", gate_up, "gate_up", false);
  if (dev == Device::CUDA) {
    require_cuda_build("swiglu_fused");
#ifdef INFERLAB_WITH_CUDA
    launch_ew(cuda::EwOp::SwigluFused, gate_up, nullptr, out, out.size(0), out.size(1));
#endif
  } else {
    cpu::swiglu_fused(gate_up, out);
  }
}

void gelu(const Tensor& x, Tensor& out) {
  const Device dev = check_unary(x, out);
  if (dev == Device::CUDA) {
    require_cuda_build("gelu");
#ifdef INFERLAB_WITH_CUDA
    launch_ew(cuda::EwOp::Gelu, x, nullptr, out, 1, x.numel());
#endif
  } else {
    cpu::gelu(x, out);
  }
}

void convert(const Tensor& x, Tensor& out) {
  const Device dev = check_unary(x, out);
  if (dev == Device::CUDA) {
    require_cuda_build("convert");
#ifdef INFERLAB_WITH_CUDA
    launch_ew(cuda::EwOp::Convert, x, nullptr, out, 1, x.numel());
#endif
  } else {
    cpu::convert(x, out);
  }
}

void softmax(const Tensor& x, Tensor& out) {
  check_float(x, "x");
  const Device dev = op_device(x, "x");
  int64_t rows, n;
  rows_cols(x, "x", &rows, &n);
  check_float(out, "out");
  check_same_device(dev, out, "out");
  check_same_shape(out, "out", x, "x");
  check_alias(out, "out", x, "x");
  if (dev == Device::CUDA) {
    require_cuda_build("softmax");
#ifdef INFERLAB_WITH_CUDA
    cuda::SoftmaxParams p;
    p.x = x.data();
    p.out = out.data();
    p.x_dtype = x.dtype();
    p.out_dtype = out.dtype();
    p.rows = rows;
    p.n = n;
    cuda::launch_softmax(p, current_stream());
#endif
  } else {
    cpu::softmax(x, out);
  }
}

void sample(const Tensor& logits, const SamplingParams& p, const Tensor& prev_tokens, Tensor& tokens) {
  check_dtype(logits, "logits", {DType::F32});
  const Device dev = op_device(logits, "logits");
  IL_CHECK_ARG(logits.ndim() == 2, "logits must be 2-D [B, V], got shape ", shape_str(logits.shape()));
  const int64_t B = logits.size(0), V = logits.size(1);
  IL_CHECK_ARG(V >= 1 && V <= (int64_t(1) << 20), "logits must have 1 <= V <= 1048576 columns, got ", V);
  IL_CHECK_ARG(B <= (int64_t(1) << 31) - 1, "logits has too many rows: ", B);
  check_dtype(tokens, "tokens", {DType::I32});
  check_same_device(dev, tokens, "tokens");
  check_shape(tokens, "tokens", {B});
  if (prev_tokens.defined()) {
    check_dtype(prev_tokens, "prev_tokens", {DType::I32});
    check_same_device(dev, prev_tokens, "prev_tokens");
    IL_CHECK_ARG(prev_tokens.ndim() == 2 && prev_tokens.size(0) == B, "prev_tokens must be 2-D [B = ", B,
                 ", P], got shape ", shape_str(prev_tokens.shape()));
  }
  IL_CHECK_ARG(std::isfinite(p.temperature) && p.temperature >= 0.f, "temperature must be finite and >= 0, got ",
               p.temperature);
  IL_CHECK_ARG(p.top_k >= 0, "top_k must be >= 0 (0: off), got ", p.top_k);
  IL_CHECK_ARG(p.top_p > 0.f && p.top_p <= 1.f, "top_p must be in (0, 1] (1: off), got ", p.top_p);
  IL_CHECK_ARG(p.min_p >= 0.f && p.min_p <= 1.f, "min_p must be in [0, 1] (0: off), got ", p.min_p);
  IL_CHECK_ARG(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0.f,
               "repetition_penalty must be finite and > 0 (1: off), got ", p.repetition_penalty);
  if (dev == Device::CUDA) {
    require_cuda_build("sample");
#ifdef INFERLAB_WITH_CUDA
    cuda::SampleParams c;
    c.logits = logits.data_as<float>();
    c.prev = prev_tokens.defined() && prev_tokens.numel() > 0 ? prev_tokens.data_as<int32_t>() : nullptr;
    c.tokens = tokens.data_as<int32_t>();
    c.B = B;
    c.V = V;
    c.P = prev_tokens.defined() ? prev_tokens.size(1) : 0;
    c.temperature = p.temperature;
    c.top_k = p.top_k;
    c.top_p = p.top_p;
    c.min_p = p.min_p;
    c.repetition_penalty = p.repetition_penalty;
    c.seed = p.seed;
    c.offset = p.offset;
    cuda::launch_sample(c, current_stream());
#endif
  } else {
    cpu::sample(logits, p, prev_tokens, tokens);
  }
}

}  // namespace ops
}  // namespace inferlab
