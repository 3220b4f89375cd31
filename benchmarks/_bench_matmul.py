#!/usr/bin/env python3
"""Matmul benchmarks on the GPU (section "matmul" of benchmarks/kernels.py; also runnable on its own).

* matvec (decode, T = 1, plus T = 2/4/8 for a few types): GB/s = bytes moved (weight + x + y) / time, beside
  the copy ceiling. Weights cycle through enough copies (> 2x the L2 cache) that every call streams its
  weight from HBM; calls are timed as a CUDA-graph replay (no launch overhead, as a model running under
  CUDA graphs sees them). "copy same-size" rows time a D2D copy of the weight's size the same way: the
  practical ceiling for a matrix that small (read + write counted). "read same-size" rows time a kernel that
  only reads the weight's bytes (PDL as the decode kernels; the faster of 16-byte register loads and the copy
  engine) the same way: the read-side bound of a one-kernel-per-call matvec at that size (GB/s counts the
  bytes read once).
* crossover: quantized weights at T = 8..128, fused kernel (chunks of 8 rows) vs dequantize + cuBLAS.
* prefill GEMM (T = 512, 2048): TFLOP/s = 2 T N K / time, beside cuBLAS bf16 GEMM through torch (when
  installed) at the same shapes. Quantized weights include their dequantization to fp16 per call.

    python benchmarks/_bench_matmul.py [--json PATH] [--quick]
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import inferlab  # noqa: E402
from inferlab.kernels import QWeight  # noqa: E402

_mm = inferlab._core.matmul
SECTION = "matmul"

# (label, N, K): Phi-3-mini and Llama-3-8B layer shapes.
SHAPES = [
    ("phi3 o", 3072, 3072), ("phi3 qkv", 9216, 3072), ("phi3 gate_up", 16384, 3072), ("phi3 down", 3072, 8192),
    ("llama3 o", 4096, 4096), ("llama3 gate/up", 14336, 4096), ("llama3 down", 4096, 14336),
]
MATVEC_TYPES = ["Q4_K", "Q6_K", "Q8_0", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_K", "BF16", "Q2_K", "Q3_K", "Q5_1", "F32"]
QUICK_TYPES = ["Q4_K", "Q6_K", "Q8_0", "F16"]
PREFILL_TYPES = ["F16", "BF16", "Q4_K", "Q6_K", "Q8_0"]
L2_FLUSH_BYTES = 200 << 20
MMA_EXCLUDED = ("F32", "BF16")  # decode of these stays on the float32 kernels (csrc/kernels/cuda/matmul.cu)
SPLIT_K_MAX_T, SPLIT_K_MIN_K = 2, 8192  # csrc/kernels/cuda/matmul.cuh kSplitKMaxT / kSplitKMinK  # > 2x the 50 MB L2 of an H100

_BLOCK = {"F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22),
          "Q5_1": (32, 24), "Q8_0": (32, 34), "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144),
          "Q5_K": (256, 176), "Q6_K": (256, 210)}
# fp16 scale fields of a block, set to small values in random bytes
_SCALES = {"Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,), "Q2_K": (80, 82),
           "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def random_raw(t: str, n: int, k: int, seed: int = 0) -> np.ndarray:
    """GGUF bytes of a random weight (random quants, small sane scales)."""
    rng = np.random.default_rng(seed)
    if t == "F32":
        return (rng.standard_normal((n, k), dtype=np.float32) * 0.02).view(np.uint8)
    if t == "F16":
        return (rng.standard_normal((n, k), dtype=np.float32) * 0.02).astype(np.float16).view(np.uint8)
    if t == "BF16":
        f = (rng.standard_normal((n, k), dtype=np.float32) * 0.02).view(np.uint32)
        return (f >> 16).astype(np.uint16).view(np.uint8)
    bs, ts = _BLOCK[t]
    raw = rng.integers(0, 256, size=(n * (k // bs), ts), dtype=np.uint8)
    for off in _SCALES[t]:
        raw[:, off:off + 2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    return raw.reshape(n, -1)


def _weights(t: str, n: int, k: int, copies: int) -> list:
    raw = random_raw(t, n, k)
    return [QWeight.from_bytes(raw, t, n, k, device="cuda", name=f"{t}[{n}x{k}]#{i}") for i in range(copies)]


def weight_bytes(t: str, n: int, k: int) -> int:
    """GGUF bytes of an [n, k] weight of type t."""
    return n * (k // _BLOCK[t][0]) * _BLOCK[t][1]


def streamed_weights(t: str, n: int, k: int) -> list:
    """Copies of one random weight, enough (more than L2_FLUSH_BYTES together, at most 32) that calls cycling
    through them stream each weight from HBM."""
    return _weights(t, n, k, flush_copies(weight_bytes(t, n, k), 32))


class _StandaloneCtx:
    """Minimal stand-in for _bench_common.Ctx when this file runs on its own."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.iters = 5 if quick else 20
        self.ceiling_gbps = 0.0
        self.device_name = inferlab.devices()[0]["name"] if inferlab.cuda_available() else ""

    def row(self, section, op, shape, dtype, ms, nbytes=None, flops=None, note=""):
        r = dict(section=section, op=op, shape=str(shape), dtype=dtype, ms=ms, note=note)
        if nbytes is not None:
            r["bytes"] = float(nbytes)
            r["gbps"] = nbytes / (ms * 1e-3) / 1e9
            if self.ceiling_gbps:
                r["pct_of_copy"] = 100.0 * r["gbps"] / self.ceiling_gbps
        if flops is not None:
            r["tflops"] = flops / (ms * 1e-3) / 1e12
        return r


def flush_copies(nbytes: int, cap: int) -> int:
    """Buffers of nbytes (1..cap) that together exceed L2_FLUSH_BYTES: calls cycling through them stream
    each one from HBM."""
    return max(1, min(cap, -(-L2_FLUSH_BYTES // max(nbytes, 1))))


def copy_ms(nbytes: int, iters: int) -> float:
    """ms per D2D copy of nbytes, cycling through buffers totalling > L2, as a graph replay."""
    copies = flush_copies(nbytes, 16)
    src = [inferlab.DeviceArray.empty((nbytes,), "uint8", "cuda") for _ in range(copies)]
    dst = [inferlab.DeviceArray.empty((nbytes,), "uint8", "cuda") for _ in range(copies)]
    return float(_mm.bench_copy_ms(dst, src, iters))


def read_ms(nbytes: int, iters: int, mode: int = 0, rows: int = 0) -> float:
    """ms per call of a kernel that only reads nbytes (PDL as the decode kernels), cycling through buffers
    totalling > L2, as a graph replay: what a decode kernel streaming nbytes could reach. mode: how the
    probe reads (bench_read_ms): 0, 16-byte loads into registers (as the decode kernels); 1, the same with
    four times the bytes in flight; 2, the copy engine into shared memory; 3, the direct decode kernel's
    pattern over `rows` rows (nbytes must split into rows of a multiple of 128 bytes)."""
    copies = flush_copies(nbytes, 16)
    src = [inferlab.DeviceArray.empty((nbytes,), "uint8", "cuda") for _ in range(copies)]
    return float(_mm.bench_read_ms(src, iters, mode, rows))


def run_matvec(ctx) -> list[dict]:
    rows = []
    iters = 40 if ctx.quick else 200
    types = QUICK_TYPES if ctx.quick else MATVEC_TYPES
    shapes = SHAPES[:1] + SHAPES[4:5] + SHAPES[6:] if ctx.quick else SHAPES
    rng = np.random.default_rng(0)
    for label, n, k in shapes:
        same_size = {}
        for t in types:
            wbytes = weight_bytes(t, n, k)
            ws = streamed_weights(t, n, k)
            Ts = (1, 2, 4, 8) if t in ("Q4_K", "Q8_0", "F16") else (1,)
            for T in Ts:
                x = inferlab.DeviceArray.from_numpy(rng.standard_normal((T, k)).astype(np.float32), "cuda")
                y = inferlab.DeviceArray.empty((T, n), "float32", "cuda")
                nbytes = wbytes + T * k * 4 + T * n * 4
                op = "matvec" if T == 1 else f"decode T={T}"
                # The kernel that matmul picks (auto): tensor cores for quantized / F16 weights, else the
                # float32 split-K or staged kernel; then, for comparison, the float32 kernel(s) it replaces
                # and (T = 1) the chosen kernel without programmatic dependent launch.
                f32 = "fused_splitk" if T <= SPLIT_K_MAX_T and k >= SPLIT_K_MIN_K else "fused_staged"
                auto = "fused_mma" if t not in MMA_EXCLUDED else f32
                paths = [auto] + ([f32] if auto != f32 else [])
                if T <= SPLIT_K_MAX_T and not ctx.quick:
                    paths.append("fused_staged" if f32 == "fused_splitk" else "fused_splitk")
                for path in paths:
                    ms = float(_mm.bench_matmul_ms(x, [w._w for w in ws], y, iters, path))
                    kern = path.replace("fused_", "")
                    name = f"{op} {label}" if path == auto else f"{op} {label} [{kern}, not used]"
                    rows.append(ctx.row(SECTION, name, (n, k), t, ms, nbytes, 2.0 * T * n * k,
                                        note=f"{kern} kernel; {copies} weight copies cycled"))
                if T == 1:
                    old = _mm.set_pdl(False)
                    try:
                        ms = float(_mm.bench_matmul_ms(x, [w._w for w in ws], y, iters, auto))
                    finally:
                        _mm.set_pdl(old)
                    rows.append(ctx.row(SECTION, f"{op} {label} [no PDL]", (n, k), t, ms, nbytes, 2.0 * T * n * k,
                                        note="programmatic dependent launch off"))
                if t not in ("F32", "F16", "BF16") and (T == 1 or not ctx.quick):
                    # opt-in int8 activations (dp4a split-K kernel); the x quantization is inside the kernel
                    ms = float(_mm.bench_matmul_ms(x, [w._w for w in ws], y, iters, "auto", True))
                    rows.append(ctx.row(SECTION, f"{op} {label} [int8 x]", (n, k), t, ms, nbytes, 2.0 * T * n * k,
                                        note=f"int8_activations=True; {copies} weight copies cycled"))
            del ws
            # the copy ceiling at this size (once per distinct byte count)
            if wbytes not in same_size:
                same_size[wbytes] = cms = copy_ms(wbytes, iters)
                rows.append(ctx.row(SECTION, f"copy same-size {label}", (n, k), t, cms, 2 * wbytes,
                                    note="D2D copy of this weight's byte count (read+write)"))
                # the faster of register loads (mode 0) and the copy engine (mode 2, compute capability >= 9):
                # neither wins at every size (H200, 2026-12-03, % of the copy ceiling: mode 2 +0.5 to +8 points at
                # 5-20 MB, -1 to -7 from ~30 MB on)
                modes = (0, 2) if tuple(inferlab.devices()[0]["compute_capability"]) >= (9, 0) else (0,)
                rms, mode = min((read_ms(wbytes, iters, m), m) for m in modes)
                rows.append(ctx.row(SECTION, f"read same-size {label}", (n, k), t, rms, wbytes,
                                    note=f"a kernel that only reads this weight's byte count (the read-side bound; "
                                         f"bench_read_ms mode {mode}, the faster of modes {modes})"))
    return rows


def _torch_bf16_gemm_ms(T: int, n: int, k: int, iters: int):
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    a = torch.randn(T, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        torch.matmul(a, b.t())
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(iters):
        torch.matmul(a, b.t())
    e1.record()
    e1.synchronize()
    ms = e0.elapsed_time(e1) / iters
    del a, b
    torch.cuda.empty_cache()
    return ms


def run_prefill(ctx) -> list[dict]:
    rows = []
    iters = 5 if ctx.quick else 20
    Ts = (512,) if ctx.quick else (512, 2048)
    shapes = [SHAPES[4], SHAPES[6]] if ctx.quick else SHAPES[4:]
    rng = np.random.default_rng(1)
    for label, n, k in shapes:
        for T in Ts:
            flops = 2.0 * T * n * k
            tms = _torch_bf16_gemm_ms(T, n, k, iters)
            if tms is not None:
                rows.append(ctx.row(SECTION, f"cuBLAS bf16 GEMM (torch) {label}", (T, n, k), "BF16", tms,
                                    flops=flops, note="reference"))
            x = inferlab.DeviceArray.from_numpy(rng.standard_normal((T, k)).astype(np.float32), "cuda")
            y = inferlab.DeviceArray.empty((T, n), "float32", "cuda")
            for t in PREFILL_TYPES:
                ws = _weights(t, n, k, 1)
                ms = float(_mm.bench_matmul_ms(x, [ws[0]._w], y, iters))
                note = "x f32->fp16 (scaled), W dequant->fp16, cuBLAS" if t not in ("F16", "BF16") else \
                    "x f32->" + ("fp16 (scaled)" if t == "F16" else "bf16") + ", cuBLAS"
                rows.append(ctx.row(SECTION, f"prefill {label}", (T, n, k), t, ms, flops=flops, note=note))
                if t not in ("F16", "BF16"):
                    out = inferlab.DeviceArray.empty((n, k), "float16", "cuda")
                    wbytes = ws[0].nbytes
                    dq = _time_dequant(ws[0], out, iters)
                    rows.append(ctx.row(SECTION, f"dequant->fp16 {label}", (n, k), t, dq, wbytes + n * k * 2,
                                        note="part of the prefill row above"))
                    del out
                del ws
    return rows


def _time_dequant(w, out, iters: int) -> float:
    """Host-timed (many calls queued back to back; each call is tens of microseconds of GPU work)."""
    import time

    for _ in range(2):
        _mm.dequantize_to(w._w, out)
    inferlab._core.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        _mm.dequantize_to(w._w, out)
    inferlab._core.synchronize()
    return (time.perf_counter() - t0) * 1e3 / iters


def run_crossover(ctx) -> list[dict]:
    """Quantized weights at small T: the fused kernel in chunks of 8 rows vs dequantize + cuBLAS
    (matmul.cuh's kChunkedDecodeMaxT picks between them; these rows are the measurement behind it)."""
    rows = []
    iters = 5 if ctx.quick else 20
    label, n, k = SHAPES[4]
    rng = np.random.default_rng(2)
    for t in (["Q4_K"] if ctx.quick else ["Q4_K", "Q6_K", "Q8_0", "Q4_0"]):
        ws = streamed_weights(t, n, k)
        for T in (8, 16, 32, 64, 128):
            x = inferlab.DeviceArray.from_numpy(rng.standard_normal((T, k)).astype(np.float32), "cuda")
            y = inferlab.DeviceArray.empty((T, n), "float32", "cuda")
            for path in ("fused", "cublas"):
                ms = float(_mm.bench_matmul_ms(x, [w._w for w in ws], y, iters, path))
                rows.append(ctx.row(SECTION, f"T={T} {path} {label}", (T, n, k), t, ms, flops=2.0 * T * n * k,
                                    note="crossover fused-chunks vs dequant+cuBLAS"))
        del ws
    return rows


def run(ctx) -> list[dict]:
    """Section entry point for benchmarks/kernels.py."""
    return run_matvec(ctx) + run_crossover(ctx) + run_prefill(ctx)


def _main(argv=None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(description="matmul benchmarks")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if not inferlab.cuda_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    try:
        from _bench_common import Ctx, measure_copy_ceiling

        ctx = Ctx(quick=args.quick, iters=5 if args.quick else 20)
        ctx.device_name = inferlab.devices()[0]["name"]
        ctx.ceiling_gbps = measure_copy_ceiling(ctx)
    except ImportError:
        ctx = _StandaloneCtx(args.quick)
        nb = (256 if args.quick else 1024) << 20
        ctx.ceiling_gbps = 2 * nb / (copy_ms(nb, 10) * 1e-3) / 1e9
    rows = run(ctx)
    print(f"device: {ctx.device_name}\ncopy ceiling (D2D, read+write): {ctx.ceiling_gbps:.1f} GB/s\n")
    print(f"{'op':<40}{'shape':<22}{'dtype':<7}{'ms':>10}{'GB/s':>9}{'%copy':>8}{'TFLOP/s':>9}  note")
    for r in rows:
        gb = f"{r['gbps']:9.1f}" if "gbps" in r else " " * 9
        pc = f"{r['pct_of_copy']:7.1f}%" if "pct_of_copy" in r else " " * 8
        tf = f"{r['tflops']:9.2f}" if "tflops" in r else " " * 9
        print(f"{r['op']:<40}{r['shape']:<22}{r['dtype']:<7}{r['ms']:10.4f}{gb}{pc}{tf}  {r.get('note', '')}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=ctx.device_name, ceiling_gbps=ctx.ceiling_gbps, results=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
