// CPU embedding gather (float tables) and GGUF-typed gather (dequantize_row per row).
#include <vector>

#include "gguf/dequant.h"
#include "kernels/cpu/basic.h"
#include "kernels/cpu/float_io.h"
#include "kernels/cpu/threads.h"

namespace inferlab {
namespace cpu {

namespace {
void check_ids(const int32_t* ids, int64_t T, int64_t V) {
  for (int64_t t = 0; t < T; ++t)
    IL_CHECK_ARG(ids[t] >= 0 && ids[t] < V, "ids[", t, "] = ", ids[t], " is out of range for a table of ", V,
                 " rows");
}
}  // namespace

void embedding(const Tensor& ids, const Tensor& table, Tensor& out) {
  const int64_t T = ids.size(0), V = table.size(0), D = table.size(1);
  const int32_t* ip = ids.data_as<int32_t>();
  check_ids(ip, T, V);
  IL_CPU_DISPATCH_FLOAT(table.dtype(), Tt, IL_CPU_DISPATCH_FLOAT(out.dtype(), To, {
    const Tt* tp = table.data_as<Tt>();
    To* op = out.data_as<To>();
    parallel_rows(T, D, [&](int64_t t0, int64_t t1) {
      std::vector<float> v((size_t)D);
      for (int64_t t = t0; t < t1; ++t) {
        load_row(tp + (int64_t)ip[t] * D, v.data(), D);
        store_row(v.data(), op + t * D, D);
      }
    });
  }));
}

void embedding_q(const Tensor& ids, const QWeight& table, Tensor& out) {
  const int64_t T = ids.size(0), V = table.n, D = table.k, rb = table.row_bytes();
  const int32_t* ip = ids.data_as<int32_t>();
  check_ids(ip, T, V);
  const uint8_t* tp = table.data.data_as<uint8_t>();
  IL_CPU_DISPATCH_FLOAT(out.dtype(), To, {
    To* op = out.data_as<To>();
    parallel_rows(T, D, [&](int64_t t0, int64_t t1) {
      std::vector<float> v((size_t)D);
      for (int64_t t = t0; t < t1; ++t) {
        dequantize_row(table.type, tp + (int64_t)ip[t] * rb, v.data(), D);
        store_row(v.data(), op + t * D, D);
      }
    });
  });
}

}  // namespace cpu
}  // namespace inferlab
