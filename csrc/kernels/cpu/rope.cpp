// CPU RoPE: cos/sin of each token's angles computed in double, rotation in float32.
#include <cmath>
#include <vector>

#include "kernels/cpu/basic.h"
#include "kernels/cpu/float_io.h"
#include "kernels/cpu/threads.h"

namespace inferlab {
namespace cpu {

void rope(const Tensor& x, const Tensor& positions, float theta, int n_rot, ops::RopeStyle style, Tensor& out) {
  const int64_t T = x.size(0), H = x.size(1), D = x.size(2);
  const int half = n_rot / 2;
  const int32_t* pos = positions.data_as<int32_t>();
  std::vector<double> inv_freq((size_t)half);
  for (int i = 0; i < half; ++i) inv_freq[i] = std::pow((double)theta, -2.0 * (double)i / (double)n_rot);
  const bool neox = style == ops::RopeStyle::Neox;
  IL_CPU_DISPATCH_FLOAT(x.dtype(), Ti, IL_CPU_DISPATCH_FLOAT(out.dtype(), To, {
    const Ti* xp = x.data_as<Ti>();
    To* op = out.data_as<To>();
    parallel_rows(T, H * D, [&](int64_t t0, int64_t t1) {
      std::vector<float> c((size_t)half), s((size_t)half), v((size_t)D);
      for (int64_t t = t0; t < t1; ++t) {
        for (int i = 0; i < half; ++i) {
          const double a = (double)pos[t] * inv_freq[i];
          c[i] = (float)std::cos(a);
          s[i] = (float)std::sin(a);
        }
        for (int64_t h = 0; h < H; ++h) {
          const int64_t off = (t * H + h) * D;
          load_row(xp + off, v.data(), D);
          for (int i = 0; i < half; ++i) {
            const int ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
            const float a = v[ia], b = v[ib];
            v[ia] = a * c[i] - b * s[i];
            v[ib] = a * s[i] + b * c[i];
          }
          store_row(v.data(), op + off, D);
        }
      }
    });
  }));
}

}  // namespace cpu
}  // namespace inferlab
