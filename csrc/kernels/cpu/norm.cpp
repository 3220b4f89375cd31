// CPU RMSNorm / LayerNorm (+ fused residual add), row by row in float32.
#include <cmath>
#include <vector>

#include "kernels/cpu/basic.h"
#include "kernels/cpu/float_io.h"
#include "kernels/cpu/threads.h"

namespace inferlab {
namespace cpu {

namespace {
template <class Tx, class To>
void norm_rows(const Tensor& x, const std::vector<float>& w, const std::vector<float>& b, Tensor* residual,
               float eps, bool layer_norm, Tensor& out) {
  const int64_t T = x.size(0), D = x.size(1);
  const Tx* xp = x.data_as<Tx>();
  To* op = out.data_as<To>();
  float* rp = residual ? residual->data_as<float>() : nullptr;
  parallel_rows(T, D, [&](int64_t t0, int64_t t1) {
    std::vector<float> v((size_t)D), tmp((size_t)D);
    for (int64_t t = t0; t < t1; ++t) {
      load_row(xp + t * D, v.data(), D);
      if (rp) {
        float* r = rp + t * D;
        for (int64_t i = 0; i < D; ++i) v[i] = r[i] + v[i];
        std::copy(v.begin(), v.end(), r);
      }
      float mean = 0.f, rstd;
      if (layer_norm) {
        mean = sum8(v.data(), D) / (float)D;
        for (int64_t i = 0; i < D; ++i) tmp[i] = (v[i] - mean) * (v[i] - mean);
        rstd = 1.f / std::sqrt(sum8(tmp.data(), D) / (float)D + eps);
      } else {
        for (int64_t i = 0; i < D; ++i) tmp[i] = v[i] * v[i];
        rstd = 1.f / std::sqrt(sum8(tmp.data(), D) / (float)D + eps);
      }
      if (layer_norm) {
        for (int64_t i = 0; i < D; ++i) tmp[i] = (v[i] - mean) * rstd * w[i] + b[i];
      } else {
        for (int64_t i = 0; i < D; ++i) tmp[i] = v[i] * rstd * w[i];
      }
      store_row(tmp.data(), op + t * D, D);
    }
  });
}
}  // namespace

void norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor* residual, float eps, bool layer_norm,
          Tensor& out) {
  const int64_t D = x.size(1);
  std::vector<float> wf((size_t)D), bf(layer_norm ? (size_t)D : 0, 0.f);
  load_row_any(w.data(), w.dtype(), wf.data(), D);
  if (layer_norm && b.defined()) load_row_any(b.data(), b.dtype(), bf.data(), D);
  if (layer_norm && !b.defined()) bf.assign((size_t)D, 0.f);
  IL_CPU_DISPATCH_FLOAT(x.dtype(), Tx, IL_CPU_DISPATCH_FLOAT(out.dtype(), To, {
    norm_rows<Tx, To>(x, wf, bf, residual, eps, layer_norm, out);
  }));
}

}  // namespace cpu
}  // namespace inferlab
