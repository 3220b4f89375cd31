// A dense, row-major (C-contiguous) tensor on the CPU or a CUDA device.
// Storage is shared and reference-counted; views share the storage.
// Exposed to Python as inferlab.DeviceArray.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"

namespace inferlab {

struct Storage {
  void* ptr = nullptr;
  size_t nbytes = 0;
  Device device = Device::CPU;
  std::function<void(void*)> deleter;  // empty: not owned
  ~Storage() { if (deleter && ptr) deleter(ptr); }
};

class Tensor {
 public:
  Tensor() = default;
  // Allocates uninitialised memory. Throws DeviceMemoryError when it does not fit.
  static Tensor empty(const std::vector<int64_t>& shape, DType dtype, Device device);
  // Wraps external memory (not owned unless `deleter` is given).
  static Tensor from_blob(void* ptr, const std::vector<int64_t>& shape, DType dtype, Device device,
                          std::function<void(void*)> deleter = {});

  bool defined() const { return storage_ != nullptr; }
  void* data() const { return static_cast<char*>(storage_->ptr) + offset_; }
  template <class T> T* data_as() const { return static_cast<T*>(data()); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::CPU; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int ndim() const { return (int)shape_.size(); }
  int64_t size(int d) const { return shape_.at(d < 0 ? d + ndim() : d); }
  int64_t numel() const;
  size_t nbytes() const { return (size_t)numel() * dtype_size(dtype_); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  // Same data, new shape with the same numel.
  Tensor view(const std::vector<int64_t>& shape) const;
  // Rows [start, start+count) along dim 0, sharing storage.
  Tensor slice_rows(int64_t start, int64_t count) const;
  // Copy to another device (or a deep copy on the same one).
  Tensor to(Device device) const;
  // Byte copy from src (same dtype and numel, any devices).
  void copy_from(const Tensor& src);
  std::string repr() const;

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes
  DType dtype_ = DType::F32;
  std::vector<int64_t> shape_;
};

// Shape as "[2, 3, 4]" for error messages.
std::string shape_str(const std::vector<int64_t>& shape);

// Checks used by every op entry point; each message names `arg`.
void check_dtype(const Tensor& t, const char* arg, std::initializer_list<DType> allowed);
void check_ndim(const Tensor& t, const char* arg, int ndim);
void check_shape(const Tensor& t, const char* arg, const std::vector<int64_t>& shape);
void check_same_device(Device expected, const Tensor& t, const char* arg);

}  // namespace inferlab
