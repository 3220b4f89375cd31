// Device discovery, the current CUDA stream, and device memory queries.
// This header never includes CUDA headers, so CPU-only translation units can use it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;  // identical to the CUDA runtime's typedef

namespace inferlab {

enum class Device : int32_t { CPU = 0, CUDA = 1 };
const char* device_name(Device d);  // "cpu" / "cuda"
Device device_from_name(const std::string& name);  // "cpu", "cuda", "cuda:0"; throws ValueError

struct DeviceInfo {
  int index;
  std::string name;
  size_t total_memory;  // bytes
  size_t free_memory;   // bytes, at the time of the query
  int cc_major, cc_minor;
  int multiprocessors;
};

bool built_with_cuda();
bool cuda_available();               // built with CUDA and at least one usable device
std::vector<DeviceInfo> devices();   // empty when no usable GPU
void require_cuda(const char* what); // throws NotSupportedError naming `what` when CUDA is unusable

// The stream every inferlab CUDA launch uses on this thread. Defaults to one
// non-blocking stream owned by inferlab; StreamGuard swaps it (e.g. for graph capture).
cudaStream_t current_stream();
struct StreamGuard {
  explicit StreamGuard(cudaStream_t s);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;
 private:
  cudaStream_t prev_;
};
void synchronize();                  // waits for the current stream (no-op without CUDA)
void mem_get_info(size_t* free_bytes, size_t* total_bytes);  // current device; throws without CUDA

// Raw allocations (throw DeviceMemoryError with the sizes on failure).
void* device_malloc(size_t nbytes);
void device_free(void* p) noexcept;
void* host_malloc(size_t nbytes);    // 64-byte aligned
void host_free(void* p) noexcept;
// Copies between any two devices, ordered on the current stream; `sync` waits for completion.
void memcpy_any(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes, bool sync = true);

}  // namespace inferlab
