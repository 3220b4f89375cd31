#include "core/device.h"

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/error.h"

#ifdef INFERLAB_WITH_CUDA
#include "core/cuda_check.h"
#endif

namespace inferlab {

const char* device_name(Device d) { return d == Device::CUDA ? "cuda" : "cpu"; }

Device device_from_name(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name == "cuda" || name == "cuda:0" || name == "gpu") return Device::CUDA;
  throw ValueError(str_cat("device must be 'cpu' or 'cuda', got '", name, "'"));
}

bool built_with_cuda() {
#ifdef INFERLAB_WITH_CUDA
  return true;
#else
  return false;
#endif
}

#ifdef INFERLAB_WITH_CUDA
void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  std::string msg = str_cat("CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ") in ", expr,
                            " at ", file, ":", line);
  if (err == cudaErrorMemoryAllocation) throw DeviceMemoryError(msg);
  throw RuntimeError(msg);
}

bool cuda_available() {
  static int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no driver" error
      return 0;
    }
    return n;
  }();
  return count > 0;
}

std::vector<DeviceInfo> devices() {
  std::vector<DeviceInfo> out;
  if (!cuda_available()) return out;
  int n = 0;
  IL_CUDA_CHECK(cudaGetDeviceCount(&n));
  int cur = 0;
  IL_CUDA_CHECK(cudaGetDevice(&cur));
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p;
    IL_CUDA_CHECK(cudaGetDeviceProperties(&p, i));
    DeviceInfo d;
    d.index = i;
    d.name = p.name;
    d.total_memory = p.totalGlobalMem;
    d.cc_major = p.major;
    d.cc_minor = p.minor;
    d.multiprocessors = p.multiProcessorCount;
    IL_CUDA_CHECK(cudaSetDevice(i));
    size_t fr = 0, tot = 0;
    IL_CUDA_CHECK(cudaMemGetInfo(&fr, &tot));
    d.free_memory = fr;
    out.push_back(d);
  }
  IL_CUDA_CHECK(cudaSetDevice(cur));
  return out;
}

void require_cuda(const char* what) {
  if (!cuda_available())
    throw NotSupportedError(str_cat(what, " needs a CUDA device, but none is usable on this machine"));
}

static thread_local cudaStream_t t_stream = nullptr;
static thread_local bool t_stream_set = false;

cudaStream_t current_stream() {
  if (t_stream_set) return t_stream;
  static cudaStream_t global = [] {
    cudaStream_t s;
    IL_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
  }();
  return global;
}

StreamGuard::StreamGuard(cudaStream_t s) : prev_(t_stream_set ? t_stream : nullptr) {
  t_stream = s;
  t_stream_set = true;
}
StreamGuard::~StreamGuard() {
  t_stream = prev_;
  t_stream_set = prev_ != nullptr;
}

void synchronize() {
  if (cuda_available()) IL_CUDA_CHECK(cudaStreamSynchronize(current_stream()));
}

void mem_get_info(size_t* free_bytes, size_t* total_bytes) {
  require_cuda("querying device memory");
  IL_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
}

void* device_malloc(size_t nbytes) {
  require_cuda("allocating device memory");
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, nbytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    throw DeviceMemoryError(str_cat("cannot allocate ", nbytes, " bytes (", nbytes / (1 << 20),
                                    " MiB) on the GPU: ", fr / (1 << 20), " MiB free of ", tot / (1 << 20),
                                    " MiB (", cudaGetErrorString(e), ")"));
  }
  return p;
}

void device_free(void* p) noexcept {
  if (p) cudaFree(p);
}

void memcpy_any(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes, bool sync) {
  if (nbytes == 0) return;
  if (dst_dev == Device::CPU && src_dev == Device::CPU) {
    std::memcpy(dst, src, nbytes);
    return;
  }
  cudaStream_t s = current_stream();
  IL_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, s));
  if (sync) IL_CUDA_CHECK(cudaStreamSynchronize(s));
}

#else  // CPU-only build

bool cuda_available() { return false; }
std::vector<DeviceInfo> devices() { return {}; }
void require_cuda(const char* what) {
  throw NotSupportedError(str_cat(what, " needs CUDA, but this build of inferlab was compiled without CUDA"));
}
cudaStream_t current_stream() { return nullptr; }
StreamGuard::StreamGuard(cudaStream_t s) : prev_(s) {}
StreamGuard::~StreamGuard() {}
void synchronize() {}
void mem_get_info(size_t*, size_t*) { require_cuda("querying device memory"); }
void* device_malloc(size_t) { require_cuda("allocating device memory"); return nullptr; }
void device_free(void*) noexcept {}
void memcpy_any(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes, bool) {
  if (dst_dev != Device::CPU || src_dev != Device::CPU) require_cuda("copying to or from the GPU");
  if (nbytes) std::memcpy(dst, src, nbytes);
}
#endif

void* host_malloc(size_t nbytes) {
  size_t n = (nbytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, n ? n : 64);
  if (!p) throw DeviceMemoryError(str_cat("cannot allocate ", nbytes, " bytes of host memory"));
  return p;
}
void host_free(void* p) noexcept { std::free(p); }

}  // namespace inferlab
