#!/usr/bin/env python3
"""Instruction counts of the loops of CUDA kernels, from their SASS: for every loop (a backward branch)
that holds tensor-core instructions (HMMA), its length, its HMMAs and its most frequent opcodes. A cheap,
GPU-free proxy for the issue cost of a kernel's inner loop (instructions per HMMA), e.g. before and after a
change to the tensor-core decode kernel (csrc/kernels/cuda/matmul.cu, mmq_kernel).

    nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -Icsrc -c csrc/kernels/cuda/matmul.cu -o /tmp/m.o
    python3 scripts/sass_loop_stats.py /tmp/m.o --kernel mmq_kernel [--cuobjdump PATH] [--waits]

--waits also prints, per loop, the order of its global loads (G: LDG / LDGSTS, with the scoreboard they
set), the waits on those scoreboards (W) and the tensor-core instructions (H), runs counted, e.g.
"W5 G5x6 H16 G5x6 H16": a wait on a load's scoreboard waits for every load in flight on it, so a wait right
after loads makes them a round trip (the control bits of sm_70+ SASS: stall, yield, write / read
scoreboard, wait mask, in the top 23 bits of each 128-bit instruction).

cuobjdump comes with the CUDA toolkit; where the toolkit lacks it, Triton's wheel carries one
(triton/backends/nvidia/bin/cuobjdump).
"""
from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys

_FUNC = re.compile(r"\n(?=\s*Function : )")
_INS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+((?:@!?U?P\w+\s+)?[A-Z][A-Z0-9_.]*)([^\n]*)")
# An instruction line and the next one: its two 64-bit halves (the second holds the control bits).
_CTRL = re.compile(r"/\*([0-9a-f]{4,})\*/\s+((?:@!?U?P\w+\s+)?[A-Z][A-Z0-9_.]*)[^\n]*/\* 0x[0-9a-f]+ \*/\s*\n"
                   r"\s*/\* (0x[0-9a-f]+) \*/")


def control(sass: str) -> dict:
    """address -> (opcode, write scoreboard or None, wait mask) for every instruction of one function."""
    out = {}
    for a, op, hi in _CTRL.findall(sass):
        c = int(hi, 16) >> 41
        wb = (c >> 5) & 7
        out[int(a, 16)] = (op.split()[-1], None if wb == 7 else wb, (c >> 11) & 0x3F)
    return out


def wait_order(ctrl: dict, lo: int, hi: int) -> str:
    """Global loads (G<sb>), waits on their scoreboards (W<sb>) and HMMA / IMMA (H) of [lo, hi], in order."""
    body = sorted((a, v) for a, v in ctrl.items() if lo <= a <= hi)
    sbs = {wb for _, (op, wb, _) in body if op.startswith("LDG") and wb is not None}
    seq = []
    for _, (op, wb, mask) in body:
        waits = "".join(str(s) for s in sorted(sbs) if mask >> s & 1)
        if waits:
            seq.append(f"W{waits}")
        if op.startswith("LDG"):
            seq.append(f"G{wb if wb is not None else '-'}")
        elif op.startswith(("HMMA", "IMMA")):
            seq.append("H")
    runs = []
    for s in seq:
        if runs and runs[-1][0] == s:
            runs[-1][1] += 1
        else:
            runs.append([s, 1])
    return " ".join(s if n == 1 else f"{s}x{n}" for s, n in runs)


def loops(sass: str):
    """(start, end, opcode counter) of every loop with at least one HMMA or IMMA, per function."""
    out = {}
    for part in _FUNC.split(sass):
        m = re.match(r"\s*Function : (\S+)", part)
        if not m:
            continue
        ins = [(int(a, 16), op.split()[-1], rest) for a, op, rest in _INS.findall(part)]
        found = []
        for addr, op, rest in ins:
            t = re.search(r"0x([0-9a-f]+)", rest) if op.startswith("BRA") else None
            if t and int(t.group(1), 16) < addr:
                lo = int(t.group(1), 16)
                body = collections.Counter(o.split(".")[0] for a, o, _ in ins if lo <= a <= addr)
                if body["HMMA"] + body["IMMA"]:
                    found.append((lo, addr, body))
        if found:
            out[m.group(1)] = found
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary", help="object file, executable or shared library with device code")
    ap.add_argument("--kernel", default="", help="only functions whose mangled name contains this")
    ap.add_argument("--cuobjdump", default=shutil.which("cuobjdump") or "cuobjdump")
    ap.add_argument("--waits", action="store_true", help="also the order of global loads, their waits and HMMA")
    args = ap.parse_args()
    r = subprocess.run([args.cuobjdump, "-sass", args.binary], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return 1
    funcs = {}
    if args.waits:
        for part in _FUNC.split(r.stdout):
            m = re.match(r"\s*Function : (\S+)", part)
            if m:
                funcs[m.group(1)] = control(part)
    for name, found in loops(r.stdout).items():
        if args.kernel not in name:
            continue
        print(name)
        for lo, hi, body in found:
            n, h = sum(body.values()), body["HMMA"] + body["IMMA"]
            kind = "IMMA" if body["IMMA"] else "HMMA"
            top = ", ".join(f"{k} {v}" for k, v in body.most_common(10))
            print(f"  loop {lo:#06x}-{hi:#06x}: {n} instructions, {h} {kind}, {n / h:.1f} per {kind}  ({top})")
            if args.waits:
                print(f"    loads and waits: {wait_order(funcs[name], lo, hi)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
