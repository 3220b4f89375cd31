// CUDA matmul on GGUF weights: y[T, N] = x[T, K] . W[N, K]^T (+ bias[N]).
// Host-includable (no CUDA headers). Kernels in matmul.cu; block decoding in dequant.cuh.
//
// Decode (T <= kDecodeMaxT; quantized W: T <= kChunkedDecodeMaxT, in chunks of 8 rows): a fused
//   dequantize-and-multiply kernel that streams W once.
//   tensor cores (default for quantized and F16 W on compute capability >= 9; matmul_mma.cuh): each block
//            owns 16 rows; the copy engine streams chunks of their bytes into a shared-memory ring (many KB in
//            flight per block, no registers held), its warps split each chunk's K; W decoded to fp16 in
//            registers, x staged in shared memory as fp16 (scaled by a power of two when |x| reaches 2^15),
//            mma.m16n8k16 with float32 accumulation: the precision class of the prefill path below, at
//            about 1.5 instructions per weight for any T <= 8.
//   direct (default for one row of x and Q4_K / Q6_K / Q8_0 / F16; matmul_mmd.cuh): each block owns 16
//            rows, its warps take units of K round-robin and load their weight bytes straight into
//            registers (2-4 weight buffers per warp, the first loads before the PDL wait); codes enter the
//            mma exactly as fp16 1024 + code, B's 8 columns carry the scale classes, scales and code
//            offsets are applied in float32.
//   For BF16 / F32 W, with int8 activations, or when asked for (MatmulPath), one of two float32 forms:
//   staged:  each block of 8 warps owns 16 rows (2 per warp); x (converted to float32) and its 16-element
//            partial sums are staged in shared memory (in chunks of K when T*K is large);
//   split-K: (T <= kSplitKMaxT, K >= kSplitKMinK) each block owns 2 rows and its warps split K; x is read
//            from global memory (L1 / L2); partial sums meet in shared memory.
//   In both, every lane decodes 16-byte pieces of W with 16-byte loads and accumulates in float32;
//   warp-shuffle reduction; bias added in the epilogue. Activations are NOT quantized: they stay float32
//   all the way. No allocation (CUDA-graph safe).
//   All decode kernels are launched with programmatic dependent launch on Hopper (set_pdl_enabled): they
//   load their first weights before waiting for the previous kernel, which hides most of the launch and
//   tail gaps between back-to-back matmuls under CUDA graphs.
// Prefill (T > kDecodeMaxT): tensor cores through cuBLAS (fp32 accumulation).
//   F16 W:  W as is; x converted to fp16 (see below) unless already fp16.
//   BF16 W: W as is; x converted to bf16 unless already bf16.
//   F32 W:  fp32 GEMM (x converted to fp32 if needed).
//   quantized W: W dequantized to an fp16 scratch buffer (exact fp16 rounding of the float32 dequantized
//   value), x converted to fp16.
//   fp16 conversion of x is overflow-safe: the largest |x| is measured on the device and, when it reaches
//   2^15, x is scaled by a power of two 2^-e before rounding (exact) and cuBLAS's alpha is 2^e (device
//   pointer mode). Scratch buffers (per host thread) grow on first use and are reused.
#pragma once
#include <cstdint>

#include "core/device.h"
#include "core/dtype.h"
#include "kernels/qweight.h"

namespace inferlab {
namespace cuda {

constexpr int64_t kDecodeMaxT = 8;
// Quantized weights: up to this many rows of x run the fused kernel in chunks of kDecodeMaxT rows (W is
// re-read per chunk) rather than dequantizing W to fp16 for cuBLAS (which writes and re-reads 2 bytes per
// weight). Float weights use cuBLAS above kDecodeMaxT. Tune with benchmarks/_bench_matmul.py.
constexpr int64_t kChunkedDecodeMaxT = 32;

// Decode with T <= kSplitKMaxT and K >= kSplitKMinK uses the split-K fused kernel, otherwise the staged
// one (see matmul.cu use_split_k).
constexpr int64_t kSplitKMaxT = 2;
constexpr int64_t kSplitKMinK = 8192;

// Auto: chosen by T and type. Fused: the fused kernels (split-K or staged, by T). FusedStaged /
// FusedSplitK force one of them (benchmarks). Cublas: dequantize to fp16 + cuBLAS.
// FusedMma forces the tensor-core decode kernel (quantized or F16 W).
enum class MatmulPath : int32_t { Auto = 0, Fused = 1, Cublas = 2, FusedStaged = 3, FusedSplitK = 4, FusedMma = 5 };

struct MatmulParams {
  const void* x = nullptr;     // [t, w->k] row-major, F32 / F16 / BF16
  DType x_dtype = DType::F32;
  void* y = nullptr;           // [t, w->n] row-major, F32 / F16
  DType y_dtype = DType::F32;
  const float* bias = nullptr; // [w->n] or nullptr
  const QWeight* w = nullptr;  // on CUDA: float types in layout 0, quantized types in layout 1 (split)
  int64_t t = 0;               // rows of x and y
  MatmulPath path = MatmulPath::Auto;  // benchmarks force a path; Fused needs float weights with k % 16 == 0
  bool x_int8 = false;         // decode with quantized W: x quantized to int8 per 16-element run (dp4a);
                               // see matmul_kernels.cuh. Ignored for float W and for the cuBLAS path.
};

// Validated by ops::matmul; enqueues on `stream`.
void matmul(const MatmulParams& p, cudaStream_t stream);

// Dequantizes a whole CUDA QWeight (any type matmul supports; float types need k % 16 == 0) to fp16:
// out [w.n, w.k] row-major, device memory.
void dequantize_to_f16(const QWeight& w, void* out, cudaStream_t stream);

// Programmatic dependent launch of the decode kernels (compute capability >= 9): on by default; returns the
// previous setting. For measurements (benchmarks/_bench_matmul.py).
bool set_pdl_enabled(bool on);
// Tensor-core decode kernel tuning (benchmarks): KiB of weight tiles in flight per block (its shared-memory
// ring, at least two tiles; default 64; 0: as much as leaves two blocks per multiprocessor, at least 64)
// and warps per block (default 8).
void tune_mma_decode(int ring_kib, int warps, int fold, int cluster);
// Direct tensor-core decode for one row of x (matmul_mmd.cuh): mode 1 on (default; Q4_K, Q6_K, Q8_0, F16), 0 off;
// warps per row tile 1..8; weight buffers per warp 2..4 (0: per type; see mmd_kernel); row tiles of 16 rows
// per block 1..2 (0: auto), which share one staging of x; persist: blocks per multiprocessor at most 1..4
// (each walks several row tiles), 0 one block per row tile (or pair), -1 auto. ValueError on other values.
void tune_direct_decode(int mode, int warps, int depth, int tiles = 0, int persist = -1);

// Benchmark helpers (benchmarks/_bench_matmul.py). Each runs `iters` calls cycling through the list,
// captured in one CUDA graph on a private stream (so launch overhead is not measured; this is how a model
// running under CUDA graphs sees the kernels), after one warm-up pass; returns milliseconds per call.
double bench_matmul_ms(const MatmulParams* calls, int ncalls, int iters);
// Same for device-to-device copies of `nbytes` from srcs[i] to dsts[i].
double bench_copy_ms(void* const* dsts, const void* const* srcs, int ncopies, size_t nbytes, int iters);
// Same for a kernel that only reads the `nbytes` of srcs[i] (programmatic dependent launch as the decode
// kernels): the time per call that a decode kernel streaming that many weight bytes could reach in the same
// graph. mode: how it reads: 0, 16-byte loads, 4 in flight per thread, two blocks of 256 threads per
// multiprocessor; 1, 8 in flight and four blocks, the last partial batch in flight at once too; 2, the copy engine (cp.async.bulk into a
// shared-memory ring of 96 KB per block, two blocks per multiprocessor; compute capability >= 9); 3, the
// direct decode kernel's pattern: the buffer as `rows` rows (a multiple of 16, rows of a multiple of 128
// bytes), tiles of 16 rows per block, 128-byte chunks per warp, lane (g, t) reading 16 bytes of rows g, g + 8.
double bench_read_ms(const void* const* srcs, int nsrcs, size_t nbytes, int iters, int mode, int64_t rows = 0);

}  // namespace cuda
}  // namespace inferlab
