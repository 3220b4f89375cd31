#!/usr/bin/env python3
"""Launches each kernel of interest once, at benchmark sizes, for a profiler run (Nsight Compute).

    ncu --clock-control none --section SpeedOfLight --section Occupancy --section WarpStateStats \
        python3 benchmarks/profile_ncu.py [--only matvec,basic]

Nothing is timed here: ncu replays each launch and reports its counters. Sizes follow benchmarks/kernels.py
(memory-bound ops at (16384, 4096); matvec at Llama-3-8B / Phi-3-mini layer shapes).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import inferlab  # noqa: E402
from _bench_matmul import random_raw  # noqa: E402
from inferlab.kernels import QWeight  # noqa: E402

_k = inferlab._core.kernels
_mm = inferlab._core.matmul


def _dev(a):
    return inferlab.DeviceArray.from_numpy(np.ascontiguousarray(a), "cuda")


def basic():
    rng = np.random.default_rng(0)
    T, d, V = 16384, 4096, 151936
    for dt in (np.float16, np.float32):
        x = _dev(rng.standard_normal((T, d)).astype(dt))
        out = inferlab.DeviceArray.empty([T, d], np.dtype(dt).name, "cuda")
        w = _dev(rng.standard_normal(d).astype(np.float32))
        b = _dev(rng.standard_normal(d).astype(np.float32))
        _k.gelu(x, out)
        _k.layer_norm(x, w, b, 1e-5, out)
        _k.rms_norm(x, w, 1e-6, out)
        _k.softmax(x, out)
    ids = _dev(rng.integers(0, V, T).astype(np.int32))
    raw = rng.integers(0, 256, size=(V, d // 32, 34), dtype=np.uint8)
    raw[:, :, 0:2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    qt = _dev(raw.reshape(-1))
    emb = inferlab.DeviceArray.empty([T, d], "float32", "cuda")
    _k.embedding_q(ids, qt, 8, V, d, emb, "bench")


MATVEC = [("Q4_K", 4096, 14336, (1, 8)), ("Q4_K", 4096, 4096, (1,)), ("Q6_K", 4096, 14336, (1,)),
          ("Q8_0", 4096, 14336, (1,)), ("F16", 4096, 14336, (1,))]


def matvec(types=None):
    rng = np.random.default_rng(0)
    for t, n, k, Ts in MATVEC:
        if types and t not in types:
            continue
        w = QWeight.from_bytes(random_raw(t, n, k), t, n, k, device="cuda", name=f"{t}")
        for T in Ts:
            x = _dev(rng.standard_normal((T, k)).astype(np.float32))
            y = inferlab.DeviceArray.empty([T, n], "float32", "cuda")
            _mm.matmul(x, w._w, y)
    inferlab._core.synchronize()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="basic,matvec")
    ap.add_argument("--types", default="", help="matvec: only these weight types (comma-separated)")
    ap.add_argument("--mma", default="", help="tensor-core decode knobs ring_kib,warps,fold,cluster "
                    "(matmul.tune_mma_decode), e.g. 64,8,0,1")
    args = ap.parse_args()
    types = [t for t in args.types.split(",") if t]
    if args.mma:  # knobs of the ring kernel: one row of x on it too (the direct kernel off)
        r, w, f, c = (int(v) for v in args.mma.split(","))
        _mm.tune_mma_decode(r, w, f, c)
        _mm.tune_direct_decode(0)
    for s in args.only.split(","):
        basic() if s == "basic" else matvec(types)
    inferlab._core.synchronize()
