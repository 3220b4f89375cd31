// CPU softmax along the last axis.
#include <cmath>
#include <vector>

#include "kernels/cpu/basic.h"
#include "kernels/cpu/float_io.h"
#include "kernels/cpu/threads.h"

namespace inferlab {
namespace cpu {

void softmax(const Tensor& x, Tensor& out) {
  const int64_t N = x.size(-1), R = N ? x.numel() / N : 0;
  IL_CPU_DISPATCH_FLOAT(x.dtype(), Ti, IL_CPU_DISPATCH_FLOAT(out.dtype(), To, {
    const Ti* xp = x.data_as<Ti>();
    To* op = out.data_as<To>();
    parallel_rows(R, N, [&](int64_t r0, int64_t r1) {
      std::vector<float> v((size_t)N);
      for (int64_t r = r0; r < r1; ++r) {
        load_row(xp + r * N, v.data(), N);
        float m = -INFINITY;
        for (int64_t i = 0; i < N; ++i) m = std::fmax(m, v[i]);
        if (m == -INFINITY) m = 0.f;  // all -inf: 0/0 = nan, like the reference
        for (int64_t i = 0; i < N; ++i) v[i] = std::exp(v[i] - m);
        const float inv = 1.f / sum8(v.data(), N);
        for (int64_t i = 0; i < N; ++i) v[i] *= inv;
        store_row(v.data(), op + r * N, N);
      }
    });
  }));
}

}  // namespace cpu
}  // namespace inferlab
