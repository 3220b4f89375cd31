#include "kernels/kv_cache.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "core/error.h"

#ifdef INFERLAB_WITH_CUDA
#include "core/cuda_check.h"
#include "kernels/cuda/attention_decode.cuh"
#endif

namespace inferlab {

namespace {

bool supported_head_dim(int d) { return d == 64 || d == 80 || d == 96 || d == 128; }

std::string mib(size_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
  return buf;
}

std::string describe(const KVCacheConfig& c) {
  return str_cat("n_layers=", c.n_layers, ", n_kv_heads=", c.n_kv_heads, ", head_dim=", c.head_dim,
                 ", max_tokens=", c.max_tokens, ", n_seqs=", c.n_seqs, ", dtype=", dtype_name(c.dtype), ", device=",
                 device_name(c.device));
}

// Host memory the kernel says is available (MemAvailable), or free physical pages as a fallback.
size_t host_available_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key, unit;
  size_t kib = 0;
  while (f >> key >> kib) {
    std::getline(f, unit);
    if (key == "MemAvailable:") return kib * 1024;
  }
  const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : (size_t)-1;
}

}  // namespace

size_t KVCache::bytes_needed(const KVCacheConfig& c) {
  IL_CHECK_ARG(c.n_layers >= 1, "KVCache: n_layers must be >= 1, got ", c.n_layers);
  IL_CHECK_ARG(c.n_kv_heads >= 1, "KVCache: n_kv_heads must be >= 1, got ", c.n_kv_heads);
  IL_CHECK_ARG(supported_head_dim(c.head_dim), "KVCache: head_dim must be 64, 80, 96 or 128, got ", c.head_dim);
  IL_CHECK_ARG(c.max_tokens >= 1, "KVCache: max_tokens must be >= 1, got ", c.max_tokens);
  IL_CHECK_ARG(c.n_seqs >= 1, "KVCache: n_seqs must be >= 1, got ", c.n_seqs);
  IL_CHECK_ARG(c.dtype == DType::F16 || c.dtype == DType::BF16 || c.dtype == DType::F32,
               "KVCache: dtype must be float16, bfloat16 or float32, got ", dtype_name(c.dtype));
  size_t n = dtype_size(c.dtype) * 2;
  for (int f : {c.n_layers, c.n_seqs, c.n_kv_heads, c.max_tokens, c.head_dim}) {
    IL_CHECK_ARG(!__builtin_mul_overflow(n, (size_t)f, &n), "KVCache: size overflows (", describe(c), ")");
  }
  return n;
}

KVCache::KVCache(const KVCacheConfig& cfg) : cfg_(cfg) {
  const size_t need = bytes_needed(cfg);
  IL_CHECK_ARG(!(cfg.device == Device::CUDA && cfg.dtype == DType::F32),
               "KVCache: dtype float32 is CPU-only; use float16 or bfloat16 on cuda");
  if (cfg.device == Device::CUDA) {
    require_cuda("KVCache(device='cuda')");
    size_t fr = 0, tot = 0;
    mem_get_info(&fr, &tot);
    if (need > fr)
      throw DeviceMemoryError(str_cat("KV cache needs ", mib(need), " (", describe(cfg), ") but only ", mib(fr),
                                      " of GPU memory is free (", mib(tot),
                                      " total); lower max_tokens or n_seqs, or use a smaller dtype"));
  } else {
    const size_t avail = host_available_bytes();
    if (need > avail)
      throw DeviceMemoryError(str_cat("KV cache needs ", mib(need), " (", describe(cfg), ") but only ", mib(avail),
                                      " of host memory is available; lower max_tokens or n_seqs"));
  }
  const std::vector<int64_t> shape = {cfg.n_seqs, cfg.n_kv_heads, cfg.max_tokens, cfg.head_dim};
  k_.reserve(cfg.n_layers);
  v_.reserve(cfg.n_layers);
  for (int l = 0; l < cfg.n_layers; ++l) {
    k_.push_back(Tensor::empty(shape, cfg.dtype, cfg.device));
    v_.push_back(Tensor::empty(shape, cfg.dtype, cfg.device));
  }
  // Deterministic contents (the kernels never read unstored positions, but dumps stay readable).
  for (int l = 0; l < cfg.n_layers; ++l) {
    for (Tensor* t : {&k_[l], &v_[l]}) {
      if (cfg.device == Device::CPU) {
        std::memset(t->data(), 0, t->nbytes());
      } else {
#ifdef INFERLAB_WITH_CUDA
        IL_CUDA_CHECK(cudaMemsetAsync(t->data(), 0, t->nbytes(), current_stream()));
#endif
      }
    }
  }
  if (cfg.device == Device::CUDA) synchronize();
}

Tensor& KVCache::decode_workspace(size_t nbytes) const {
  if (workspace_.defined() && workspace_.nbytes() >= nbytes) return workspace_;
#ifdef INFERLAB_WITH_CUDA
  if (cfg_.device == Device::CUDA) {
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    IL_CUDA_CHECK(cudaStreamIsCapturing(current_stream(), &st));
    if (st != cudaStreamCaptureStatusNone)
      throw RuntimeError(str_cat("attention_decode needs a larger workspace (", nbytes,
                                 " bytes) while a CUDA graph is being captured; call "
                                 "KVCache.reserve_decode_workspace(n_q_heads) or run one decode step first"));
  }
#endif
  const int64_t n = (int64_t)((std::max<size_t>(nbytes, 4) + 3) / 4);
  Tensor grown = Tensor::empty({n}, DType::F32, cfg_.device);
  if (workspace_.defined()) retired_workspaces_.push_back(workspace_);  // a captured graph may still use it
  workspace_ = grown;
  return workspace_;
}

void KVCache::reserve_decode_workspace(int n_q_heads) const {
  IL_CHECK_ARG(n_q_heads >= 1 && n_q_heads % cfg_.n_kv_heads == 0, "reserve_decode_workspace: n_q_heads (",
               n_q_heads, ") must be a positive multiple of n_kv_heads (", cfg_.n_kv_heads, ")");
#ifdef INFERLAB_WITH_CUDA
  if (cfg_.device != Device::CUDA) return;
  size_t most = 0;
  for (int b = 1; b <= cfg_.n_seqs; ++b) {
    const int splits = cuda::attention_decode_splits(b, n_q_heads, cfg_.n_kv_heads, cfg_.max_tokens);
    most = std::max(most, cuda::attention_decode_workspace_bytes(b, n_q_heads, cfg_.head_dim, splits));
  }
  if (most > 0) decode_workspace(most);
#endif
}

}  // namespace inferlab
