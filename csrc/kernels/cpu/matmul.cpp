// CPU matmul on GGUF weights: rows of W are dequantized once (dequantize_row) into a per-thread float
// buffer and dotted with every row of x by small register-blocked SIMD kernels. Work is spread over a
// persistent worker pool by tiles of output rows.
#include "kernels/cpu/matmul.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "gguf/dequant.h"

namespace inferlab {
namespace cpu {

// ============================================================================================
// Worker pool
// ============================================================================================
namespace {

class Pool {
 public:
  explicit Pool(int nthreads) {
    for (int i = 0; i + 1 < nthreads; ++i) threads_.emplace_back([this] { worker(); });
  }
  int size() const { return (int)threads_.size() + 1; }

  void run(int64_t n, void (*fn)(int64_t, void*), void* ctx) {
    std::lock_guard<std::mutex> serial(run_mu_);
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = fn;
      ctx_ = ctx;
      total_ = n;
      next_.store(0);
      error_ = nullptr;
      active_ = (int)threads_.size();
      ++generation_;
    }
    cv_.notify_all();
    work();
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return active_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work() {
    for (;;) {
      const int64_t i = next_.fetch_add(1);
      if (i >= total_) return;
      try {
        fn_(i, ctx_);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
        next_.store(total_);  // stop handing out work
      }
    }
  }
  void worker() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return generation_ != seen; });
      seen = generation_;
      lk.unlock();
      work();
      lk.lock();
      if (--active_ == 0) done_cv_.notify_one();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex run_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  void (*fn_)(int64_t, void*) = nullptr;
  void* ctx_ = nullptr;
  int64_t total_ = 0;
  std::atomic<int64_t> next_{0};
  std::exception_ptr error_;
  int active_ = 0;
  uint64_t generation_ = 0;
};

int configured_threads() {
  if (const char* s = std::getenv("INFERLAB_NUM_THREADS")) {
    const int v = std::atoi(s);
    if (v > 0) return std::min(v, 256);
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : (int)std::min(hc, 256u);
}

std::atomic<Pool*> g_pool{nullptr};
std::mutex g_pool_mu;

// After fork() the child has none of the parent's workers: forget (leak) the pool, make a new one lazily.
void reset_pool_after_fork() { g_pool.store(nullptr); }

Pool& pool() {
  Pool* p = g_pool.load();
  if (p) return *p;
  std::lock_guard<std::mutex> lk(g_pool_mu);
  p = g_pool.load();
  if (!p) {
    static std::once_flag atfork_once;
    std::call_once(atfork_once, [] { pthread_atfork(nullptr, nullptr, reset_pool_after_fork); });
    p = new Pool(configured_threads());  // never destroyed: workers sleep until the process exits
    g_pool.store(p);
  }
  return *p;
}

}  // namespace

int num_threads() { return pool().size(); }

void parallel_for(int64_t n, void (*fn)(int64_t, void*), void* ctx) {
  if (n <= 0) return;
  if (n == 1) {
    fn(0, ctx);
    return;
  }
  Pool& p = pool();
  if (p.size() == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i, ctx);
    return;
  }
  p.run(n, fn, ctx);
}

// ============================================================================================
// Dot-product kernels: out[r * TX + t] = sum_i w[r][i] * x[t][i]
// ============================================================================================
namespace {

typedef float v8f __attribute__((vector_size(32)));

template <int RW, int TX>
inline __attribute__((always_inline)) void dot_tile(const float* const* w, const float* const* x, int64_t k,
                                                    float* out) {
  v8f acc[RW][TX];
  for (int r = 0; r < RW; ++r)
    for (int t = 0; t < TX; ++t) acc[r][t] = v8f{0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    v8f xv[TX];
    for (int t = 0; t < TX; ++t) std::memcpy(&xv[t], x[t] + i, sizeof(v8f));
    for (int r = 0; r < RW; ++r) {
      v8f wv;
      std::memcpy(&wv, w[r] + i, sizeof(v8f));
      for (int t = 0; t < TX; ++t) acc[r][t] += wv * xv[t];
    }
  }
  for (int r = 0; r < RW; ++r) {
    for (int t = 0; t < TX; ++t) {
      const v8f a = acc[r][t];
      float s = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
      for (int64_t j = i; j < k; ++j) s += w[r][j] * x[t][j];
      out[r * TX + t] = s;
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define IL_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define IL_CLONES
#endif

IL_CLONES void dot_2x4(const float* const* w, const float* const* x, int64_t k, float* out) { dot_tile<2, 4>(w, x, k, out); }
IL_CLONES void dot_1x4(const float* const* w, const float* const* x, int64_t k, float* out) { dot_tile<1, 4>(w, x, k, out); }
IL_CLONES void dot_2x1(const float* const* w, const float* const* x, int64_t k, float* out) { dot_tile<2, 1>(w, x, k, out); }
IL_CLONES void dot_1x1(const float* const* w, const float* const* x, int64_t k, float* out) { dot_tile<1, 1>(w, x, k, out); }

struct Job {
  const MatmulParams* p;
  const float* x;     // [t, k] float32
  int64_t rows_per_tile;
  int64_t row_bytes;
};

inline void store_y(const MatmulParams& p, int64_t t, int64_t row, float v) {
  if (p.bias) v += p.bias[row];
  if (p.y_dtype == DType::F32)
    static_cast<float*>(p.y)[t * p.n + row] = v;
  else
    static_cast<uint16_t*>(p.y)[t * p.n + row] = f32_to_fp16(v);
}

void tile_fn(int64_t tile, void* ctx) {
  const Job& job = *static_cast<const Job*>(ctx);
  const MatmulParams& p = *job.p;
  const int64_t r0 = tile * job.rows_per_tile;
  const int64_t r1 = std::min(p.n, r0 + job.rows_per_tile);
  const int64_t nr = r1 - r0, k = p.k;

  // Weight rows as float32: F32 weights are used in place, everything else is dequantized once.
  thread_local std::vector<float> buf;
  std::vector<const float*> wrow((size_t)nr);
  if (p.type == GGMLType::F32) {
    for (int64_t r = 0; r < nr; ++r) wrow[r] = reinterpret_cast<const float*>(p.w + (r0 + r) * job.row_bytes);
  } else {
    if ((int64_t)buf.size() < nr * k) buf.resize((size_t)(nr * k));
    for (int64_t r = 0; r < nr; ++r) {
      dequantize_row(p.type, p.w + (r0 + r) * job.row_bytes, buf.data() + r * k, k);
      wrow[r] = buf.data() + r * k;
    }
  }

  float out[8];
  int64_t t = 0;
  for (; t + 4 <= p.t; t += 4) {
    const float* xs[4] = {job.x + t * k, job.x + (t + 1) * k, job.x + (t + 2) * k, job.x + (t + 3) * k};
    int64_t r = 0;
    for (; r + 2 <= nr; r += 2) {
      dot_2x4(&wrow[r], xs, k, out);
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 4; ++b) store_y(p, t + b, r0 + r + a, out[a * 4 + b]);
    }
    for (; r < nr; ++r) {
      dot_1x4(&wrow[r], xs, k, out);
      for (int b = 0; b < 4; ++b) store_y(p, t + b, r0 + r, out[b]);
    }
  }
  for (; t < p.t; ++t) {
    const float* xs[1] = {job.x + t * k};
    int64_t r = 0;
    for (; r + 2 <= nr; r += 2) {
      dot_2x1(&wrow[r], xs, k, out);
      store_y(p, t, r0 + r, out[0]);
      store_y(p, t, r0 + r + 1, out[1]);
    }
    for (; r < nr; ++r) {
      dot_1x1(&wrow[r], xs, k, out);
      store_y(p, t, r0 + r, out[0]);
    }
  }
}

}  // namespace

void matmul(const MatmulParams& p) {
  if (p.t == 0 || p.n == 0) return;
  // x as float32.
  std::vector<float> xf;
  const float* x = static_cast<const float*>(p.x);
  if (p.x_dtype != DType::F32) {
    const int64_t cnt = p.t * p.k;
    xf.resize((size_t)cnt);
    const uint16_t* src = static_cast<const uint16_t*>(p.x);
    if (p.x_dtype == DType::F16)
      for (int64_t i = 0; i < cnt; ++i) xf[i] = fp16_to_f32(src[i]);
    else if (p.x_dtype == DType::BF16)
      for (int64_t i = 0; i < cnt; ++i) xf[i] = bf16_to_f32(src[i]);
    else
      throw ValueError(str_cat("x has dtype ", dtype_name(p.x_dtype), "; expected float32, float16 or bfloat16"));
    x = xf.data();
  }
  Job job;
  job.p = &p;
  job.x = x;
  job.row_bytes = ggml_row_size(p.type, p.k);
  // Few tokens: small tiles (more parallelism, the dequantized rows stay in L1/L2). Many tokens: larger
  // tiles so x is streamed fewer times.
  job.rows_per_tile = p.t < 8 ? 4 : 32;
  const int64_t ntiles = (p.n + job.rows_per_tile - 1) / job.rows_per_tile;
  if (p.n * p.k * std::max<int64_t>(p.t, 4) < (int64_t)1 << 18) {
    for (int64_t i = 0; i < ntiles; ++i) tile_fn(i, &job);  // too small to be worth waking the workers
  } else {
    parallel_for(ntiles, tile_fn, &job);
  }
}

}  // namespace cpu
}  // namespace inferlab
