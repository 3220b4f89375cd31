#!/usr/bin/env python3
"""Instruction counts of the loops of CUDA kernels, from their SASS: for every loop (a backward branch)
that holds tensor-core instructions (HMMA), its length, its HMMAs and its most frequent opcodes. A cheap,
GPU-free proxy for the issue cost of a kernel's inner loop (instructions per HMMA), e.g. before and after a
change to the tensor-core decode kernel (csrc/kernels/cuda/matmul.cu, mmq_kernel).

    nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -Icsrc -c csrc/kernels/cuda/matmul.cu -o /tmp/m.o
    python3 scripts/sass_loop_stats.py /tmp/m.o --kernel mmq_kernel [--cuobjdump PATH]

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
    args = ap.parse_args()
    r = subprocess.run([args.cuobjdump, "-sass", args.binary], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return 1
    for name, found in loops(r.stdout).items():
        if args.kernel not in name:
            continue
        print(name)
        for lo, hi, body in found:
            n, h = sum(body.values()), body["HMMA"] + body["IMMA"]
            kind = "IMMA" if body["IMMA"] else "HMMA"
            top = ", ".join(f"{k} {v}" for k, v in body.most_common(10))
            print(f"  loop {lo:#06x}-{hi:#06x}: {n} instructions, {h} {kind}, {n / h:.1f} per {kind}  ({top})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
