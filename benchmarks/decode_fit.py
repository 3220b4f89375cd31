#!/usr/bin/env python3
"""Per-call cost against size for the decode matvec (T = 1) on the GPU: times calls at a fixed K over a
range of row counts N and fits time = t0 + N K / R, i.e. a fixed cost per call t0 (launch, prologue,
staging of x, the tail) and a rate R in weights per ns. A kernel that is bound by its decoding has R far
below the copy ceiling's weights per ns; one bound by its per-call cost has a large t0. Writes JSON.

    python benchmarks/decode_fit.py [--json PATH] [--k 4096] [--rows 2112,4224,8448,16896] [--types Q4_K,Q8_0,F16]
                                    [--fold=-1,0,2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import inferlab  # noqa: E402
from _bench_common import Ctx, measure_copy_ceiling  # noqa: E402
from _bench_matmul import _BLOCK, streamed_weights  # noqa: E402

_mm = inferlab._core.matmul


def fit(ns: list[int], k: int, ms: list[float]) -> tuple[float, float]:
    """Least-squares t = t0 + n k / R over the points: (t0 in us, R in weights per ns)."""
    w = np.array([n * k for n in ns], dtype=np.float64)
    t = np.array(ms, dtype=np.float64) * 1e3  # us
    slope, t0 = np.polyfit(w, t, 1)  # us per weight, us
    return float(t0), float(1.0 / (slope * 1e3)) if slope > 0 else float("inf")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--rows", default="2112,4224,8448,16896", help="row counts N (multiples of 16 x 132 SMs)")
    ap.add_argument("--types", default="Q4_K,Q6_K,Q8_0,F16")
    ap.add_argument("--path", default="fused_mma", help="matmul path (bench_matmul_ms), e.g. fused_mma")
    ap.add_argument("--fold", default="-1", help="tensor-core kernel's path at T = 1 (tune_mma_decode's fold: -1 per "
                    "type, 0 per run, 1 folded scales, 2 integer), a list")
    ap.add_argument("--direct", type=int, default=1, help="T = 1 on the direct kernel where it applies (1, the "
                    "default) or always on the ring kernel, whose knobs --fold sets (0)")
    args = ap.parse_args()
    if not inferlab.cuda_available():
        print("no CUDA device")
        return 1
    ceiling = measure_copy_ceiling(Ctx())
    print(f"copy ceiling {ceiling:.0f} GB/s; K = {args.k}")
    rng = np.random.default_rng(0)
    k, ns = args.k, [int(v) for v in args.rows.split(",")]
    out = []
    for fold in [int(v) for v in args.fold.split(",")]:
        _mm.tune_mma_decode(64, 8, fold, 0)
        _mm.tune_direct_decode(args.direct)
        try:
            for t in args.types.split(","):
                ms = []
                for n in ns:
                    ws = streamed_weights(t, n, k)
                    x = inferlab.DeviceArray.from_numpy(rng.standard_normal((1, k)).astype(np.float32), "cuda")
                    y = inferlab.DeviceArray.empty((1, n), "float32", "cuda")
                    ms.append(float(_mm.bench_matmul_ms(x, [q._w for q in ws], y, 100, args.path)))
                    del ws
                t0, rate = fit(ns, k, ms)
                bpw = _BLOCK[t][1] / _BLOCK[t][0]  # bytes per weight
                ceil_rate = ceiling / bpw  # weights per ns at the copy ceiling (GB/s is bytes per ns)
                pts = "  ".join(f"N={n}: {m * 1e3:6.2f} us" for n, m in zip(ns, ms))
                print(f"f{fold:<2d} {t:5s} {pts}  ->  t0 {t0:5.2f} us, {rate:6.1f} weights/ns ({100 * rate / ceil_rate:5.1f}% "
                      f"of the ceiling's {ceil_rate:.0f})", flush=True)
                out.append(dict(type=t, fold=fold, k=k, rows=ns, ms=ms, t0_us=t0, weights_per_ns=rate,
                                ceiling_weights_per_ns=ceil_rate))
        finally:
            _mm.tune_mma_decode()
            _mm.tune_direct_decode()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(ceiling_gbps=ceiling, device=inferlab.devices()[0]["name"], path=args.path, direct=args.direct, rows=out), f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
