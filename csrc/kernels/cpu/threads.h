// The CPU kernels' threads: one persistent worker pool shared by every CPU op (matmul, attention, the
// row-parallel kernels of Kernel library I). Its size is INFERLAB_NUM_THREADS when set and not empty (an
// integer in [1, 256]; anything else raises ValueError at the first parallel call), else
// std::thread::hardware_concurrency().
// The calling thread takes part; calls from several threads are serialised; a call made from inside a
// running task (nested) runs inline on that thread.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace inferlab {
namespace cpu {

// Threads the pool runs on, the caller included (>= 1).
int num_threads();

// Runs fn(i, ctx) for i in [0, n) on the pool. Exceptions thrown by fn are rethrown in the caller (the
// first one; the items not yet started are dropped).
void parallel_for(int64_t n, void (*fn)(int64_t i, void* ctx), void* ctx);

// As above for any callable f(i).
template <class F>
void parallel_for_each(int64_t n, F&& f) {
  using Fn = std::remove_reference_t<F>;
  parallel_for(n, [](int64_t i, void* c) { (*static_cast<Fn*>(c))(i); }, &f);
}

// Calls fn(begin, end) on disjoint row ranges covering [0, rows), on at most num_threads() threads and no
// more than one per 2^17 elements of work (elems_per_row sizes a row): small ops stay on the caller.
template <class F>
void parallel_rows(int64_t rows, int64_t elems_per_row, F&& fn) {
  const int64_t work = rows * std::max<int64_t>(elems_per_row, 1);
  int64_t nt = std::min<int64_t>(work / (1 << 17) + 1, rows);
  if (nt > 1) nt = std::min<int64_t>(nt, num_threads());
  if (nt <= 1) {
    if (rows > 0) fn((int64_t)0, rows);
    return;
  }
  const int64_t per = (rows + nt - 1) / nt;
  parallel_for_each((rows + per - 1) / per, [&](int64_t c) {
    fn(c * per, std::min(rows, (c + 1) * per));
  });
}

}  // namespace cpu
}  // namespace inferlab
