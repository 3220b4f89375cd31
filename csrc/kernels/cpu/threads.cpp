// The CPU kernels' worker pool (threads.h).
#include "kernels/cpu/threads.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"

namespace inferlab {
namespace cpu {

namespace {

// True on a thread while it runs a pool task: parallel_for from there runs inline (the pool is busy with
// the outer call; waiting for it would deadlock).
thread_local bool t_in_task = false;

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
    t_in_task = true;
    struct Reset {
      ~Reset() { t_in_task = false; }
    } reset;
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

// INFERLAB_NUM_THREADS (a positive integer, at most kMaxThreads), else the hardware's threads.
constexpr int kMaxThreads = 256;
int configured_threads() {
  const char* s = std::getenv("INFERLAB_NUM_THREADS");
  if (s != nullptr && *s != '\0') {  // (set but empty: as unset)
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(s, &end, 10);
    IL_CHECK_ARG(s[0] >= '0' && s[0] <= '9' && *end == '\0' && errno == 0 && v >= 1 && v <= kMaxThreads,
                 "INFERLAB_NUM_THREADS must be an integer in [1, ", kMaxThreads, "], got '", s, "'");
    return (int)v;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : (int)std::min<unsigned>(hc, kMaxThreads);
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
  // Inline: one item, a nested call (see t_in_task), or a pool of one thread.
  if (n == 1 || t_in_task || pool().size() == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i, ctx);
    return;
  }
  pool().run(n, fn, ctx);
}

}  // namespace cpu
}  // namespace inferlab
