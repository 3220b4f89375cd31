#!/usr/bin/env python3
"""Sweep of the tensor-core decode kernel's knobs (KiB of weight tiles in flight per block, warps per
block) on the GPU, at the matvec shapes of benchmarks/_bench_matmul.py; prints % of the copy ceiling per
setting and writes JSON. Used to choose the defaults in csrc/kernels/cuda/matmul.cu (g_mmq_ring, g_mmq_warps).

    python benchmarks/tune_decode.py [--json PATH] [--ring 32,64,96] [--warps 4,8] [--T 1] [--fold=-1,0,1] [--pdl 1,0] [--cluster 1,2,4] [--direct 0,1] [--dwarps 8]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import inferlab  # noqa: E402
from _bench_common import Ctx, measure_copy_ceiling  # noqa: E402
from _bench_matmul import SHAPES, copy_ms, read_ms, streamed_weights, weight_bytes  # noqa: E402

_mm = inferlab._core.matmul


def sm_clocks() -> str:
    """The GPU's current and maximum SM clocks from nvidia-smi ("" without it). The compute-bound decode kernels
    scale with the SM clock, which differs between machines and runs: compare settings within one run."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,clocks.max.sm", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0].replace(" ", "") if out.returncode == 0 and out.stdout.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--ring", default="0,32,64,96", help="KiB of tiles in flight per block (0: auto)")
    ap.add_argument("--warps", default="4,8")
    ap.add_argument("--T", default="1")
    ap.add_argument("--fold", default="-1", help="path at T = 1: -1 per type, 0 per run, 1 folded scales, 2 integer (list)")
    ap.add_argument("--pdl", default="1", help="programmatic dependent launch on (1) / off (0) (list)")
    ap.add_argument("--cluster", default="0", help="blocks per cluster sharing the staging of x (0: auto) (list)")
    ap.add_argument("--direct", default="0,1", help="direct kernel (matmul_mmd.cuh) off (0: the ring kernel) / on "
                    "(1) at T = 1 (list); with 1 the ring kernel's knobs do not apply")
    ap.add_argument("--dwarps", default="8", help="warps per block of the direct kernel (list)")
    ap.add_argument("--ddepth", default="0", help="weight buffers per warp of the direct kernel, 0: per type (list)")
    ap.add_argument("--dtiles", default="0", help="row tiles per block of the direct kernel, 0: auto (list)")
    ap.add_argument("--dpersist", default="-1", help="direct kernel's blocks per multiprocessor at most, 0: one per "
                    "row tile, -1: auto (list)")
    ap.add_argument("--read-modes", default="0", help="read-side bound probes (bench_read_ms mode: 0 registers, "
                    "1 registers with 4x the bytes in flight, 2 copy engine, 3 the direct kernel's pattern) (list)")
    ap.add_argument("--types", default="Q4_K,Q6_K,Q8_0,F16")
    ap.add_argument("--shapes", default="phi3 o,llama3 o,llama3 down")
    args = ap.parse_args()
    if not inferlab.cuda_available():
        print("no CUDA device")
        return 1
    rings = [int(v) for v in args.ring.split(",")]
    warps = [int(v) for v in args.warps.split(",")]
    Ts = [int(v) for v in args.T.split(",")]
    folds = [int(v) for v in args.fold.split(",")]
    pdls = [bool(int(v)) for v in args.pdl.split(",")]
    clusters = [int(v) for v in args.cluster.split(",")]
    directs = [int(v) for v in args.direct.split(",")]
    dwarps = [int(v) for v in args.dwarps.split(",")]
    ddepths = [int(v) for v in args.ddepth.split(",")]
    dtiles = [int(v) for v in args.dtiles.split(",")]
    dpersists = [int(v) for v in args.dpersist.split(",")]
    read_modes = [int(v) for v in args.read_modes.split(",")]
    # the copy ceiling as benchmarks/kernels.py measures it (1 GiB device-to-device, read + write)
    ceiling = measure_copy_ceiling(Ctx())
    clocks = sm_clocks()
    print(f"copy ceiling {ceiling:.0f} GB/s; SM clock now / max (MHz): {clocks}")
    rng = np.random.default_rng(0)
    rows = []
    for label, n, k in [s for s in SHAPES if s[0] in args.shapes.split(",")]:
        for t in args.types.split(","):
            wbytes = weight_bytes(t, n, k)
            ws = streamed_weights(t, n, k)
            for T in Ts:
                x = inferlab.DeviceArray.from_numpy(rng.standard_normal((T, k)).astype(np.float32), "cuda")
                y = inferlab.DeviceArray.empty((T, n), "float32", "cuda")
                nbytes = wbytes + T * k * 4 + T * n * 4
                line = []
                combos = [(p, 0, 0, 0, 0, 0, c, f, w, r) for p in pdls for c in clusters for f in folds for w in warps
                          for r in rings] if 0 in directs else []
                combos += [(p, 1, dw, dd, dt, dp, 0, -1, 8, 0) for p in pdls for dw in dwarps for dd in ddepths
                           for dt in dtiles for dp in dpersists] if 1 in directs else []
                for pdl, direct, dw, dd, dt, dp, cl, fold, w, ring in combos:
                    _mm.tune_mma_decode(ring, w, fold, cl)
                    _mm.tune_direct_decode(1, dw, dd, dt, dp) if direct else _mm.tune_direct_decode(0)
                    old_pdl = _mm.set_pdl(pdl)
                    try:
                        ms = float(_mm.bench_matmul_ms(x, [q._w for q in ws], y, 100, "fused_mma"))
                    finally:
                        _mm.set_pdl(old_pdl)
                        _mm.tune_direct_decode()
                    pct = 100.0 * nbytes / (ms * 1e-3) / 1e9 / ceiling
                    rows.append(dict(shape=label, n=n, k=k, type=t, T=T, warps=w, ring_kib=ring, fold=fold,
                                     pdl=pdl, cluster=cl, direct=direct, direct_warps=dw,
                                     direct_depth=dd, direct_tiles=dt, direct_persist=dp, ms=ms, pct_of_copy=pct))
                    tag = f"direct/w{dw}/d{dd}/t{dt}/p{dp}" if direct else f"{f'c{cl}/' if cl != 0 else ''}f{fold}/w{w}/r{ring}"
                    line.append(f"{'' if pdl else 'nopdl/'}{tag} {pct:5.1f}")
                print(f"{label:12s} {t:5s} T={T}: " + "  ".join(line), flush=True)
            del ws
            # the ceiling at this size: a D2D copy of the weight's bytes (read + write), as a graph replay
            cpct = 100.0 * 2 * wbytes / (copy_ms(wbytes, 100) * 1e-3) / 1e9 / ceiling
            # the read-side bound at this size: a kernel that only reads the weight's bytes, same graph and PDL
            rpct = {m: 100.0 * wbytes / (read_ms(wbytes, 100, m) * 1e-3) / 1e9 / ceiling for m in read_modes if m != 3}
            if 3 in read_modes:  # the direct kernel's pattern: rows of the weight's bytes per row, cut to 128 bytes
                rb = wbytes // n // 128 * 128
                rows16 = n // 16 * 16
                rpct[3] = 100.0 * rb * rows16 / (read_ms(rb * rows16, 100, 3, rows16) * 1e-3) / 1e9 / ceiling
            rows.append(dict(shape=label, n=n, k=k, type=t, copy_same_size_pct=cpct,
                             read_same_size_pct=max(rpct.values()),
                             read_same_size_pct_by_mode={str(m): v for m, v in rpct.items()}))
            reads = "  ".join(f"mode {m} {v:5.1f}" for m, v in rpct.items())
            print(f"{label:12s} {t:5s} copy same-size {cpct:5.1f}  read same-size {reads}", flush=True)
    _mm.tune_mma_decode()
    clocks_end = sm_clocks()  # right after the last measurement, before the GPU idles down
    print(f"SM clock now / max (MHz) after the sweep: {clocks_end}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(ceiling_gbps=ceiling, sm_clocks_mhz=[clocks, clocks_end], device=inferlab.devices()[0]["name"], rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
