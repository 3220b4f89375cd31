#include "core/tensor.h"

#include <sstream>

namespace inferlab {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

static int64_t checked_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    IL_CHECK_ARG(d >= 0, "negative dimension in shape ", shape_str(shape));
    IL_CHECK_ARG(d == 0 || n <= (int64_t(1) << 62) / d, "shape ", shape_str(shape), " is too large");
    n *= d;
  }
  return n;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

Tensor Tensor::empty(const std::vector<int64_t>& shape, DType dtype, Device device) {
  const int64_t n = checked_numel(shape);
  const size_t nbytes = std::max<size_t>((size_t)n * dtype_size(dtype), 1);
  auto st = std::make_shared<Storage>();
  st->device = device;
  st->nbytes = nbytes;
  if (device == Device::CUDA) {
    st->ptr = device_malloc(nbytes);
    st->deleter = [](void* p) { device_free(p); };
  } else {
    st->ptr = host_malloc(nbytes);
    st->deleter = [](void* p) { host_free(p); };
  }
  Tensor t;
  t.storage_ = std::move(st);
  t.dtype_ = dtype;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::from_blob(void* ptr, const std::vector<int64_t>& shape, DType dtype, Device device,
                         std::function<void(void*)> deleter) {
  const int64_t n = checked_numel(shape);
  auto st = std::make_shared<Storage>();
  st->ptr = ptr;
  st->nbytes = (size_t)n * dtype_size(dtype);
  st->device = device;
  st->deleter = std::move(deleter);
  Tensor t;
  t.storage_ = std::move(st);
  t.dtype_ = dtype;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::view(const std::vector<int64_t>& shape) const {
  IL_CHECK_ARG(checked_numel(shape) == numel(), "cannot view tensor of shape ", shape_str(shape_),
               " as ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice_rows(int64_t start, int64_t count) const {
  IL_CHECK_ARG(ndim() >= 1, "slice_rows needs at least one dimension");
  IL_CHECK_ARG(start >= 0 && count >= 0 && start + count <= shape_[0], "rows [", start, ", ", start + count,
               ") out of range for shape ", shape_str(shape_));
  Tensor t = *this;
  const int64_t row = shape_[0] ? numel() / shape_[0] : 0;
  t.offset_ += (size_t)(start * row) * dtype_size(dtype_);
  t.shape_[0] = count;
  return t;
}

Tensor Tensor::to(Device device) const {
  Tensor t = Tensor::empty(shape_, dtype_, device);
  t.copy_from(*this);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  IL_CHECK_ARG(src.dtype() == dtype_ && src.numel() == numel(), "copy_from: source ", src.repr(),
               " does not match destination ", repr());
  if (nbytes() == 0) return;
  memcpy_any(data(), device(), src.data(), src.device(), nbytes(), true);
}

std::string Tensor::repr() const {
  return str_cat("DeviceArray(shape=", shape_str(shape_), ", dtype=", dtype_name(dtype_), ", device=",
                 device_name(device()), ")");
}

void check_dtype(const Tensor& t, const char* arg, std::initializer_list<DType> allowed) {
  IL_CHECK_ARG(t.defined(), arg, " is missing");
  for (DType d : allowed)
    if (t.dtype() == d) return;
  std::string names;
  for (DType d : allowed) names += std::string(names.empty() ? "" : ", ") + dtype_name(d);
  throw ValueError(str_cat(arg, " has dtype ", dtype_name(t.dtype()), "; expected one of: ", names));
}

void check_ndim(const Tensor& t, const char* arg, int ndim) {
  IL_CHECK_ARG(t.defined(), arg, " is missing");
  IL_CHECK_ARG(t.ndim() == ndim, arg, " must be ", ndim, "-D, got shape ", shape_str(t.shape()));
}

void check_shape(const Tensor& t, const char* arg, const std::vector<int64_t>& shape) {
  IL_CHECK_ARG(t.defined(), arg, " is missing");
  IL_CHECK_ARG(t.shape() == shape, arg, " must have shape ", shape_str(shape), ", got ", shape_str(t.shape()));
}

void check_same_device(Device expected, const Tensor& t, const char* arg) {
  IL_CHECK_ARG(t.defined(), arg, " is missing");
  IL_CHECK_ARG(t.device() == expected, arg, " is on ", device_name(t.device()), " but the op runs on ",
               device_name(expected));
}

}  // namespace inferlab
