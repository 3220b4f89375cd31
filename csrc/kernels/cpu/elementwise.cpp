// CPU elementwise ops in float32, processed in row blocks through float buffers.
#include <cmath>
#include <vector>

#include "kernels/cpu/basic.h"
#include "kernels/cpu/float_io.h"
#include "kernels/cpu/threads.h"

namespace inferlab {
namespace cpu {

namespace {

// sigmoid(t) without overflow: exp(t) / (1 + exp(t)) ~= exp(t) to float precision for t < -80.
inline float sigmoid(float t) { return t >= -80.f ? 1.f / (1.f + std::exp(-t)) : std::exp(t); }
inline float silu(float x) { return x * sigmoid(x); }
// 0.5 x (1 + tanh(y)) == x * sigmoid(2 y): the same function without the cancellation of 1 + tanh(y) for x < 0.
inline float gelu_tanh(float x) {
  const float k0 = 0.7978845608028654f;  // sqrt(2/pi)
  return x * sigmoid(2.f * k0 * (x + 0.044715f * x * x * x));
}

constexpr int64_t kBlock = 4096;  // elements per buffer

// out[i] = f(a[i], b[i]) over n elements; b may be null (f ignores it).
template <class Ta, class Tb, class To, class F>
void binary_flat(const void* a, const void* b, void* out, int64_t n, F f) {
  const int64_t nblk = (n + kBlock - 1) / kBlock;
  parallel_rows(nblk, kBlock, [&](int64_t b0, int64_t b1) {
    std::vector<float> va(kBlock), vb(kBlock, 0.f);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t s = blk * kBlock, len = std::min(kBlock, n - s);
      load_row(static_cast<const Ta*>(a) + s, va.data(), len);
      if (b) load_row(static_cast<const Tb*>(b) + s, vb.data(), len);
      for (int64_t i = 0; i < len; ++i) va[i] = f(va[i], vb[i]);
      store_row(va.data(), static_cast<To*>(out) + s, len);
    }
  });
}

}  // namespace

void add(const Tensor& a, const Tensor& b, Tensor& out) {
  IL_CPU_DISPATCH_FLOAT(a.dtype(), Ta, IL_CPU_DISPATCH_FLOAT(b.dtype(), Tb, IL_CPU_DISPATCH_FLOAT(out.dtype(), To, {
    binary_flat<Ta, Tb, To>(a.data(), b.data(), out.data(), out.numel(), [](float x, float y) { return x + y; });
  })));
}

void add_bias(Tensor& x, const Tensor& bias) {
  const int64_t N = x.size(-1), T = N ? x.numel() / N : 0;
  std::vector<float> bf((size_t)N);
  load_row_any(bias.data(), bias.dtype(), bf.data(), N);
  IL_CPU_DISPATCH_FLOAT(x.dtype(), Tx, {
    Tx* xp = x.data_as<Tx>();
    parallel_rows(T, N, [&](int64_t t0, int64_t t1) {
      std::vector<float> v((size_t)N);
      for (int64_t t = t0; t < t1; ++t) {
        load_row(xp + t * N, v.data(), N);
        for (int64_t i = 0; i < N; ++i) v[i] += bf[i];
        store_row(v.data(), xp + t * N, N);
      }
    });
  });
}

void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) {
  IL_CPU_DISPATCH_FLOAT(gate.dtype(), Ti, IL_CPU_DISPATCH_FLOAT(out.dtype(), To, {
    binary_flat<Ti, Ti, To>(gate.data(), up.data(), out.data(), out.numel(),
                            [](float g, float u) { return silu(g) * u; });
  }));
}

void swiglu_fused(const Tensor& gate_up, Tensor& out) {
  const int64_t T = out.size(0), F = out.size(1);
  IL_CPU_DISPATCH_FLOAT(gate_up.dtype(), Ti, IL_CPU_DISPATCH_FLOAT(out.dtype(), To, {
    const Ti* gp = gate_up.data_as<Ti>();
    To* op = out.data_as<To>();
    parallel_rows(T, 2 * F, [&](int64_t t0, int64_t t1) {
      std::vector<float> g((size_t)F), u((size_t)F);
      for (int64_t t = t0; t < t1; ++t) {
        load_row(gp + t * 2 * F, g.data(), F);
        load_row(gp + t * 2 * F + F, u.data(), F);
        for (int64_t i = 0; i < F; ++i) g[i] = silu(g[i]) * u[i];
        store_row(g.data(), op + t * F, F);
      }
    });
  }));
}

void gelu(const Tensor& x, Tensor& out) {
  IL_CPU_DISPATCH_FLOAT(x.dtype(), Ti, IL_CPU_DISPATCH_FLOAT(out.dtype(), To, {
    binary_flat<Ti, Ti, To>(x.data(), nullptr, out.data(), out.numel(), [](float v, float) { return gelu_tanh(v); });
  }));
}

void convert(const Tensor& x, Tensor& out) {
  IL_CPU_DISPATCH_FLOAT(x.dtype(), Ti, IL_CPU_DISPATCH_FLOAT(out.dtype(), To, {
    binary_flat<Ti, Ti, To>(x.data(), nullptr, out.data(), out.numel(), [](float v, float) { return v; });
  }));
}

}  // namespace cpu
}  // namespace inferlab
