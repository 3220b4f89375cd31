"""Attention benchmarks (GPU): prefill TFLOP/s and decode GB/s beside the device-to-device copy ceiling.

``run(ctx) -> list[dict]`` is what benchmarks/kernels.py calls; ``python benchmarks/_bench_attention.py
[--json out.json]`` runs it alone. Timing uses CUDA events on inferlab's own stream around a C++ loop of
launches (``inferlab._core.attention._time_*``), so Python overhead is not measured.

Rows:
  * ``attention_prefill``: causal, bf16, Llama-3-8B heads (Hq 32, Hkv 8), T in {512, 4096, 16384}, D in
    {64, 128}; FLOPs counted as 4 * T^2 * D * Hq / 2 (QK^T and PV, half the square for causal).
  * ``attention_decode``: one token, Llama-3-8B heads, D 128, f16 cache, n_past in {4096, 32768} (B = 1, and
    B = 8 at 4096); bytes = the K and V of every cached token read once; ``pct_of_copy`` against ``copy``.
  * ``copy``: cudaMemcpy device-to-device of 256 MiB; GB/s counts bytes read + written.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

FLOOR_PREFILL_TFLOPS = 150.0   # T=4096, D=128, bf16, causal
FLOOR_DECODE_PCT = 60.0        # n_past 32768, % of the copy ceiling


def _ctx_get(ctx, key, default=None):
    if ctx is None:
        return default
    if isinstance(ctx, dict):
        return ctx.get(key, default)
    return getattr(ctx, key, default)


def copy_ceiling_gbps(core_attn, nbytes=256 << 20, iters=20) -> float:
    ms = core_attn._time_copy(nbytes, iters)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def _bench_prefill(inferlab, A, T, D, hq=32, hkv=8, dtype="bfloat16"):
    from inferlab._tensor import np_dtype

    rng = np.random.default_rng(0)
    dt = np_dtype(dtype)
    q = inferlab.DeviceArray.from_numpy(rng.standard_normal((T, hq, D)).astype(dt), "cuda")
    k = inferlab.DeviceArray.from_numpy(rng.standard_normal((T, hkv, D)).astype(dt), "cuda")
    v = inferlab.DeviceArray.from_numpy(rng.standard_normal((T, hkv, D)).astype(dt), "cuda")
    out = inferlab.DeviceArray.empty([T, hq, D], dtype, "cuda")
    flops = 4.0 * T * T * D * hq / 2
    iters = int(min(200, max(3, 0.3e12 / flops)))
    ms = A._time_prefill(q, k, v, out, 1.0 / np.sqrt(D), True, 0, iters)
    tflops = flops / (ms * 1e-3) / 1e12
    row = dict(bench="attention_prefill", T=T, D=D, Hq=hq, Hkv=hkv, dtype=dtype, causal=True, ms=round(ms, 4),
               tflops=round(tflops, 1))
    if T == 4096 and D == 128:
        row["floor_tflops"] = FLOOR_PREFILL_TFLOPS
        row["meets_floor"] = bool(tflops >= FLOOR_PREFILL_TFLOPS)
    return row


def _bench_decode(inferlab, A, n_past, copy_gbps, B=1, hq=32, hkv=8, D=128, dtype="float16"):
    from inferlab._tensor import np_dtype

    rng = np.random.default_rng(1)
    n = n_past + 1  # cached tokens including the new one
    cache = inferlab.KVCache(1, hkv, D, n, dtype=dtype, device="cuda", n_seqs=B)
    # Random contents (zeros would be a special case for nothing, but keep the data honest).
    block = rng.standard_normal((B, hkv, n, D)).astype(np_dtype(dtype))
    cache.k(0).copy_(block)
    cache.v(0).copy_(block[::-1].copy() if B > 1 else -block)
    del block
    q = inferlab.DeviceArray.from_numpy(rng.standard_normal((B, hq, D)).astype(np_dtype(dtype)), "cuda")
    lens = inferlab.DeviceArray.from_numpy(np.full(B, n, np.int32), "cuda")
    out = inferlab.DeviceArray.empty([B, hq, D], dtype, "cuda")
    cache.reserve_decode_workspace(hq)
    ms = A._time_decode(q, cache._c, 0, lens, out, 1.0 / np.sqrt(D), 0, 50)
    nbytes = 2 * B * n * hkv * D * np.dtype(np_dtype(dtype)).itemsize
    gbps = nbytes / (ms * 1e-3) / 1e9
    row = dict(bench="attention_decode", n_past=n_past, B=B, D=D, Hq=hq, Hkv=hkv, dtype=dtype, ms=round(ms, 4),
               gbps=round(gbps, 1), copy_gbps=round(copy_gbps, 1), pct_of_copy=round(100 * gbps / copy_gbps, 1))
    if n_past == 32768 and B == 1:
        row["floor_pct"] = FLOOR_DECODE_PCT
        row["meets_floor"] = bool(row["pct_of_copy"] >= FLOOR_DECODE_PCT)
    return row


def run(ctx=None) -> list:
    """Benchmark rows (dicts); [] with a 'skipped' row when there is no usable GPU."""
    import inferlab

    if not inferlab.cuda_available():
        return [dict(bench="attention", skipped="no usable CUDA GPU")]
    A = inferlab._core.attention
    copy_gbps = _ctx_get(ctx, "copy_gbps") or _ctx_get(ctx, "ceiling_gbps")
    rows = []
    if copy_gbps is None:
        copy_gbps = copy_ceiling_gbps(A)
        rows.append(dict(bench="copy", nbytes=256 << 20, gbps=round(copy_gbps, 1), note="read + write"))
    for D in (64, 128):
        for T in (512, 4096, 16384):
            rows.append(_bench_prefill(inferlab, A, T, D))
    for n_past, B in ((4096, 1), (4096, 8), (32768, 1)):
        rows.append(_bench_decode(inferlab, A, n_past, copy_gbps, B=B))
    return rows


def format_table(rows) -> str:
    lines = []
    for r in rows:
        if r.get("bench") == "attention_prefill":
            flag = "" if "meets_floor" not in r else (f"  (floor {r['floor_tflops']:.0f}: "
                                                      f"{'ok' if r['meets_floor'] else 'BELOW'})")
            lines.append(f"prefill  T={r['T']:>5} D={r['D']:>3} {r['dtype']} causal  {r['ms']:>9.3f} ms "
                         f"{r['tflops']:>7.1f} TFLOP/s{flag}")
        elif r.get("bench") == "attention_decode":
            flag = "" if "meets_floor" not in r else (f"  (floor {r['floor_pct']:.0f}%: "
                                                      f"{'ok' if r['meets_floor'] else 'BELOW'})")
            lines.append(f"decode   n_past={r['n_past']:>5} B={r['B']} D={r['D']} {r['dtype']}  {r['ms']:>9.4f} ms "
                         f"{r['gbps']:>7.1f} GB/s = {r['pct_of_copy']:5.1f}% of copy {r['copy_gbps']:.0f}{flag}")
        elif r.get("bench") == "copy":
            lines.append(f"copy     {r['nbytes'] >> 20} MiB d2d  {r['gbps']:.1f} GB/s (read + write)")
        else:
            lines.append(str(r))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args(argv)
    rows = run()
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
