// Splits a row loop over the machine's cores when the work is large enough to pay for the threads.
#pragma once
#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace inferlab {
namespace cpu {

// Calls fn(begin, end) on disjoint row ranges covering [0, rows). `elems_per_row` sizes the work.
template <class F>
void parallel_rows(int64_t rows, int64_t elems_per_row, F&& fn) {
  static const int64_t hw = std::max<int64_t>(1, (int64_t)std::thread::hardware_concurrency());
  const int64_t work = rows * std::max<int64_t>(elems_per_row, 1);
  const int64_t nt = std::min<int64_t>({hw, rows, work / (1 << 17) + 1});
  if (nt <= 1) {
    fn((int64_t)0, rows);
    return;
  }
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors((size_t)nt);
  const int64_t per = (rows + nt - 1) / nt;
  for (int64_t t = 1; t < nt; ++t) {
    const int64_t b = t * per, e = std::min(rows, b + per);
    if (b >= e) break;
    threads.emplace_back([&, t, b, e] {
      try {
        fn(b, e);
      } catch (...) {
        errors[(size_t)t] = std::current_exception();
      }
    });
  }
  try {
    fn((int64_t)0, std::min(rows, per));
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (auto& th : threads) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace cpu
}  // namespace inferlab
