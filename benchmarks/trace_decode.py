#!/usr/bin/env python3
"""Phase timings of the tensor-core decode kernels (mmq_kernel, mmd_kernel) from a traced build, and their summary.

A build with the kernel's trace points compiled in (diagnostic only; never for measurements of speed):

    CUDAFLAGS=-DINFERLAB_MMQ_TRACE INFERLAB_CUDA=ON python3 -m pip install --no-build-isolation --no-deps .
    python3 -u benchmarks/trace_decode.py > trace.log          # runs the calls; the kernel prints its traces
    python3 benchmarks/trace_decode.py --parse trace.log       # one summary per call (the last of 3 per case)

Thread 0 of blocks 0 and gridDim / 2 prints, in SM cycles from its start: when its first ring tiles were
issued, when the programmatic-launch wait returned, when x was staged, and per chunk when its tile was
ready and when its refill was issued (after the block barrier). The summary gives those and the mean
cycles per chunk spent computing (ready -> refill issued) and waiting (refill issued -> next tile ready).
For the direct kernel (mmd_kernel, cases "direct", "directD" for D weight buffers per warp) a "chunk" is a
unit of thread 0's warp: ready is when its bytes are in (the early load order of Q4_K / Q6_K / Q8_0; F16:
when its compute starts), done when its compute is over and (F16) the reload of its registers issued, so
"wait" is the wait for the next unit's bytes; "stages" is the weight buffers per warp; "issued" is after the
first units' loads. --direct-only runs just these at the shapes of the decode floor.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

_CASE = re.compile(r"^=== (.*) call (\d+)$")
_HDR = re.compile(r"TRACE blk (\d+) nchunks (\d+) S (\d+): issued (\d+) pdl (\d+) staged (\d+) end (\d+)")
_CHUNK = re.compile(r"TRACE blk (\d+) chunk (\d+) ready (\d+) done (\d+)")


def parse(text: str) -> list[dict]:
    """Per (case, call, block): the header phases and the chunks' (ready, done) cycles."""
    out, cur, by = [], None, {}
    for line in text.splitlines():
        m = _CASE.match(line)
        if m:
            cur = (m.group(1), int(m.group(2)))
            continue
        m = _HDR.search(line)
        if m and cur:
            b, nch, s, iss, pdl, st, end = map(int, m.groups())
            rec = dict(case=cur[0], call=cur[1], block=b, chunks=nch, stages=s, issued=iss, pdl=pdl, staged=st,
                       end=end, ready=[], done=[])
            by[(cur, b)] = rec
            out.append(rec)
            continue
        m = _CHUNK.search(line)
        if m and cur and (cur, int(m.group(1))) in by:
            rec = by[(cur, int(m.group(1)))]
            rec["ready"].append(int(m.group(3)))
            rec["done"].append(int(m.group(4)))
    for r in out:
        n = len(r["ready"])
        r["compute"] = sum(d - a for a, d in zip(r["ready"], r["done"])) / n if n else 0.0
        r["wait"] = sum(r["ready"][i + 1] - r["done"][i] for i in range(n - 1)) / (n - 1) if n > 1 else 0.0
    return out


def run(direct_only: bool = False) -> int:
    import numpy as np

    import inferlab
    from inferlab.kernels import QWeight, matmul

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from test_matmul import make_weight  # noqa: E402

    if not inferlab.cuda_available():
        print("no CUDA device")
        return 1
    mm = inferlab._core.matmul
    rng = np.random.default_rng(0)
    shapes = [(1056, 14336), (4096, 14336), (4096, 4096)]
    cases = [("Q8_0", 0), ("Q8_0", 2), ("Q4_K", 2), ("Q6_K", 0), ("F16", -1),
             ("Q4_K", "direct"), ("Q8_0", "direct"), ("F16", "direct")]
    if direct_only:  # the direct kernel at the matvec floor's shapes (Phi-3 o, Llama-3 o, Llama-3 down)
        shapes = [(3072, 3072), (4096, 4096), (4096, 14336)]
        cases = [(t, "direct") for t in ("Q4_K", "Q6_K", "Q8_0", "F16")] + [("Q4_K", "direct3"), ("Q8_0", "direct3")]
    for n, k in shapes:
        for t, fold in cases:
            w = QWeight.from_bytes(make_weight(rng, t, n, k), t, n, k, device="cuda")
            x = rng.standard_normal((1, k)).astype(np.float32)
            direct = str(fold).startswith("direct")  # "direct": default depth; "directD": D weight buffers per warp
            depth = int(fold[6:]) if direct and len(fold) > 6 else 0
            mm.tune_mma_decode(64, 8, -1 if direct else fold, 0)
            mm.tune_direct_decode(1 if direct else 0, 8, depth)  # the ring kernel (mmq_kernel) unless direct
            try:
                for i in range(3):
                    print(f"=== {t} {fold if direct else f'fold {fold}'} n {n} k {k} call {i}", flush=True)
                    matmul(x, w)  # synchronous (NumPy in and out): the kernel's prints follow the marker
            finally:
                mm.tune_mma_decode()
                mm.tune_direct_decode()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parse", metavar="LOG", help="summarize a log of a traced run instead of running")
    ap.add_argument("--direct-only", action="store_true",
                    help="only the direct kernel, Q4_K / Q6_K / Q8_0 / F16 at Phi-3 o, Llama-3 o and Llama-3 down")
    args = ap.parse_args()
    if not args.parse:
        return run(args.direct_only)
    with open(args.parse) as f:
        recs = parse(f.read())
    last = {}
    for r in recs:
        last[(r["case"], r["block"])] = r  # the last call of each case: warm
    for (case, b), r in last.items():
        print(f"{case:32s} blk {b:4d}: {r['chunks']:3d} chunks x {r['stages']} stages; issued {r['issued']:6d}, "
              f"x staged {r['staged']:6d}, end {r['end']:6d} cycles; per chunk: compute+barrier+refill "
              f"{r['compute']:6.0f}, wait {r['wait']:6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
