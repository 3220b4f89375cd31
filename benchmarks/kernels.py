#!/usr/bin/env python3
"""Kernel benchmarks on the GPU: GB/s (and TFLOP/s where it applies) of every kernel at real sizes, beside
the device-to-device copy ceiling measured in the same run.

    python benchmarks/kernels.py [--json PATH] [--quick] [--only basic,matmul,attention]

Contract for other areas' sections
----------------------------------
A section lives in ``benchmarks/_bench_<name>.py`` next to this file (today: ``_bench_matmul.py`` and
``_bench_attention.py``; kernels.py imports each one that exists) and defines::

    def run(ctx: _bench_common.Ctx) -> list[dict]

Build every row with ``ctx.row(section, op, shape, dtype, ms, nbytes=..., flops=..., note=...)``: ``nbytes`` is
what the op must move (reads + writes, each byte counted once), ``flops`` its arithmetic. Time with
``ctx.time_ms(fn)`` (CUDA events on inferlab's stream; ``fn`` must only enqueue GPU work: call the
``inferlab._core`` entry points on DeviceArrays, never NumPy round trips), allocate with ``ctx.randn / ctx.ints /
ctx.empty``, and honour ``ctx.quick`` (smaller sizes). ``ctx.ceiling_gbps`` holds the copy ceiling.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import inferlab  # noqa: E402
from _bench_common import Ctx, measure_copy_ceiling  # noqa: E402

_k = inferlab._core.kernels
SECTIONS = ["basic", "matmul", "attention"]
_ISZ = {"float32": 4, "float16": 2, "bfloat16": 2}


def _basic_elementwise(ctx: Ctx, T: int, dt: str) -> list[dict]:
    S, d, F, H, hd = "basic", 4096, 14336, 32, 128
    if ctx.device == "cpu":
        d, F = 512, 1024
    e = _ISZ[dt]
    n = T * d
    x, y, out = ctx.randn((T, d), dt), ctx.randn((T, d), dt), ctx.empty((T, d), dt)
    w, b, bias = ctx.randn((d,), "float32"), ctx.randn((d,), "float32"), ctx.randn((d,), dt)
    res = ctx.randn((T, d), "float32")
    q, pos = ctx.randn((T, H, hd), dt), ctx.ints((T,), 32768)
    rows = [
        ctx.row(S, "rms_norm", (T, d), dt, ctx.time_ms(lambda: _k.rms_norm(x, w, 1e-6, out)), 2 * n * e),
        ctx.row(S, "layer_norm", (T, d), dt, ctx.time_ms(lambda: _k.layer_norm(x, w, b, 1e-5, out)), 2 * n * e),
        ctx.row(S, "add_rms_norm", (T, d), dt, ctx.time_ms(lambda: _k.add_rms_norm(res, x, w, 1e-6, out)),
                n * (4 + e + 4 + e), note="residual f32"),
        ctx.row(S, "add_layer_norm", (T, d), dt, ctx.time_ms(lambda: _k.add_layer_norm(res, x, w, b, 1e-5, out)),
                n * (4 + e + 4 + e), note="residual f32"),
        ctx.row(S, "add", (T, d), dt, ctx.time_ms(lambda: _k.add(x, y, out)), 3 * n * e),
        ctx.row(S, "add", (T, d), f"f32+{dt}", ctx.time_ms(lambda: _k.add(res, y, res)), n * (4 + e + 4),
                note="in place"),
        ctx.row(S, "add_bias", (T, d), dt, ctx.time_ms(lambda: _k.add_bias(x, bias)), 2 * n * e, note="in place"),
        ctx.row(S, "gelu", (T, d), dt, ctx.time_ms(lambda: _k.gelu(x, out)), 2 * n * e),
        ctx.row(S, "softmax", (T, d), dt, ctx.time_ms(lambda: _k.softmax(x, out)), 2 * n * e),
        ctx.row(S, "rope norm", (T, H, hd), dt, ctx.time_ms(lambda: _k.rope(q, pos, 5e5, hd, 0, q)),
                2 * T * H * hd * e, note="in place"),
        ctx.row(S, "rope neox", (T, H, hd), dt, ctx.time_ms(lambda: _k.rope(q, pos, 5e5, hd, 1, q)),
                2 * T * H * hd * e, note="in place"),
    ]
    x = y = out = res = q = None  # free before the FFN-sized buffers
    act = ctx.empty((T, F), dt)
    gate, up = ctx.randn((T, F), dt), ctx.randn((T, F), dt)
    rows.append(ctx.row(S, "swiglu", (T, F), dt, ctx.time_ms(lambda: _k.swiglu(gate, up, act)), 3 * T * F * e))
    gate = up = None
    gu = ctx.randn((T, 2 * F), dt)
    rows.append(ctx.row(S, "swiglu_fused", (T, 2 * F), dt, ctx.time_ms(lambda: _k.swiglu_fused(gu, act)),
                        3 * T * F * e))
    return rows


def _basic_embedding(ctx: Ctx, T: int) -> list[dict]:
    import numpy as np

    S, d, V = "basic", 4096, 151936
    if ctx.device == "cpu":
        d, V = 512, 2048
    ids = ctx.ints((T,), V)
    emb = ctx.empty((T, d), "float32")
    table = ctx.randn((V, d), "float16")
    rows = [ctx.row(S, "embedding", (T, d), "f16->f32", ctx.time_ms(lambda: _k.embedding(ids, table, emb)),
                    T * d * (2 + 4))]
    table = None
    rb = d // 32 * 34  # Q8_0 row bytes
    raw = np.random.default_rng(0).integers(0, 256, size=(V, d // 32, 34), dtype=np.uint8)
    raw[:, :, 0:2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)  # sane scales
    qt = inferlab.DeviceArray.from_numpy(raw.reshape(-1), ctx.device)
    rows.append(ctx.row(S, "embedding_q", (T, d), "Q8_0->f32",
                        ctx.time_ms(lambda: _k.embedding_q(ids, qt, 8, V, d, emb, "bench")), T * (rb + d * 4)))
    return rows


def _basic_sampling(ctx: Ctx, B: int) -> list[dict]:
    S, V = "basic", 151936 if ctx.device != "cpu" else 4096
    logits, probs = ctx.randn((B, V), "float32", 3.0), ctx.empty((B, V), "float32")
    rows = [ctx.row(S, "softmax", (B, V), "float32", ctx.time_ms(lambda: _k.softmax(logits, probs)), 2 * B * V * 4)]
    toks, prev = ctx.empty((B,), "int32"), ctx.ints((B, 256), V)
    for name, kw in [("sample greedy", (0.0, 0, 1.0, 0.0, 1.0)),
                     ("sample T=0.8", (0.8, 0, 1.0, 0.0, 1.0)),
                     ("sample top_k=40 top_p=0.9", (0.8, 40, 0.9, 0.0, 1.0)),
                     ("sample top_p=0.9 min_p=0.05 pen=1.1", (0.8, 0, 0.9, 0.05, 1.1))]:
        ms = ctx.time_ms(lambda: _k.sample(logits, prev, toks, *kw, 1, 0))
        rows.append(ctx.row(S, name, (B, V), "float32", ms, B * V * 4, note="bytes = logits read once"))
    return rows


def run_basic(ctx: Ctx) -> list[dict]:
    """Kernel library I: memory-bound ops at model sizes (d = 4096, ffn = 14336, 32 heads x 128), embedding
    gathers from a Qwen-sized vocabulary, softmax and sampling over 151936 logits."""
    rows = []
    Ts = [16] if ctx.device == "cpu" else [2048] if ctx.quick else [4096, 16384]
    for T in Ts:
        for dt in ["float16", "bfloat16", "float32"]:
            rows += _basic_elementwise(ctx, T, dt)
        rows += _basic_embedding(ctx, T)
    for B in [1] if ctx.device == "cpu" else [1, 64]:
        rows += _basic_sampling(ctx, B)
    return rows


def _fmt_ms(ms):
    return f"{ms:10.4f}" if isinstance(ms, (int, float)) else " " * 10


def _normalise_row(r):
    """Rows of the attention section carry their parameters as keys: name them like the other rows."""
    if "op" in r or "bench" not in r:
        return r
    r = dict(r, section="attention")
    b = r["bench"]
    if b == "attention_prefill":
        r["op"] = f"prefill T={r['T']} D={r['D']} causal"
        r["shape"] = f"({r['Hq']}q/{r['Hkv']}kv heads)"
    elif b == "attention_decode":
        r["op"] = f"decode n_past={r['n_past']} B={r['B']} D={r['D']}"
        r["shape"] = f"({r['Hq']}q/{r['Hkv']}kv heads)"
    else:
        r["op"] = b
    notes = [r.get("note", "")] if r.get("note") else []
    if "meets_floor" in r:
        floor = f"{r['floor_tflops']} TFLOP/s" if "floor_tflops" in r else f"{r['floor_pct']}% of copy"
        notes.append(f"floor {floor}: {'met' if r['meets_floor'] else 'NOT met'}")
    if "skipped" in r:
        notes.append(f"skipped: {r['skipped']}")
    r["note"] = "; ".join(notes)
    return r


def _print_table(rows, ceiling):
    print(f"\ncopy ceiling (D2D memcpy, read+write): {ceiling:8.1f} GB/s\n")
    print(f"{'section':<10}{'op':<38}{'shape':<22}{'dtype':<12}{'ms':>10}{'GB/s':>10}{'%copy':>8}{'TFLOP/s':>9}  note")
    for r in rows:
        r = _normalise_row(r)
        gb = f"{r['gbps']:10.1f}" if "gbps" in r else " " * 10
        pc = f"{r['pct_of_copy']:7.1f}%" if "pct_of_copy" in r else " " * 8
        tf = f"{r['tflops']:9.2f}" if "tflops" in r else " " * 9
        print(f"{r.get('section', ''):<10}{str(r.get('op', '')):<38}{str(r.get('shape', '')):<22}{str(r.get('dtype', '')):<12}{_fmt_ms(r.get('ms'))}{gb}{pc}{tf}  "
              f"{r.get('note', '')}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--quick", action="store_true", help="small sizes, few iterations")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections to run")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="run the harness on the CPU with tiny sizes (checks the script, numbers mean little)")
    args = ap.parse_args(argv)
    if args.cpu_smoke:
        ctx = Ctx(quick=True, iters=2, warmup=1, device="cpu", device_name="cpu (smoke run)")
    elif not inferlab.cuda_available():
        print("benchmarks/kernels.py needs a CUDA GPU (inferlab.cuda_available() is False); "
              "--cpu-smoke checks the harness on the CPU", file=sys.stderr)
        return 2
    else:
        ctx = Ctx(quick=args.quick, iters=5 if args.quick else 20)
        ctx.device_name = inferlab.devices()[0]["name"]
    ctx.ceiling_gbps = measure_copy_ceiling(ctx)
    rows, errors = [], {}
    for name in [s.strip() for s in args.only.split(",") if s.strip()]:
        if name == "basic":
            fn = run_basic
        else:
            try:
                fn = importlib.import_module(f"_bench_{name}").run
            except ModuleNotFoundError as e:
                if e.name != f"_bench_{name}":
                    raise
                print(f"(section {name}: benchmarks/_bench_{name}.py not present, skipped)")
                continue
        try:
            rows += fn(ctx)
        except Exception as e:  # keep the other sections' numbers
            errors[name] = f"{type(e).__name__}: {e}"
            print(f"section {name} failed: {errors[name]}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=ctx.device_name, ceiling_gbps=ctx.ceiling_gbps, quick=args.quick, results=rows,
                           errors=errors), f, indent=1)
    print(f"device: {ctx.device_name}")
    _print_table(rows, ctx.ceiling_gbps)
    if args.json:
        print(f"\nwrote {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
