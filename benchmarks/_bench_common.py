"""Shared helpers of benchmarks/kernels.py: the CUDA-event timer, the copy ceiling, random device arrays.

Sections (benchmarks/_bench_<area>.py) receive a :class:`Ctx` and return a list of result rows made by
:meth:`Ctx.row`.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

import inferlab
from inferlab._tensor import np_dtype

_core = inferlab._core


@dataclasses.dataclass
class Ctx:
    quick: bool = False          # smaller sizes and fewer iterations (smoke runs)
    iters: int = 20
    warmup: int = 3
    ceiling_gbps: float = 0.0    # device-to-device copy bandwidth measured in this run (read + write bytes)
    device_name: str = ""
    device: str = "cuda"         # "cpu": a smoke run of the harness itself (wall-clock timing)

    def time_ms(self, fn, iters: int | None = None, warmup: int | None = None) -> float:
        """Mean milliseconds per call of fn() (which must only enqueue GPU work), timed with CUDA events."""
        iters = iters or self.iters
        warmup = self.warmup if warmup is None else warmup
        if self.device == "cpu":
            for _ in range(warmup):
                fn()
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            return (time.perf_counter() - t0) * 1e3 / iters
        return float(_core.kernels.cuda_time_ms(fn, iters, warmup))

    def row(self, section: str, op: str, shape, dtype: str, ms: float, nbytes: float | None = None,
            flops: float | None = None, note: str = "") -> dict:
        """One result row. nbytes: bytes the op must move (reads + writes); flops: arithmetic work."""
        r = dict(section=section, op=op, shape=str(shape), dtype=dtype, ms=ms, note=note)
        if nbytes is not None:
            r["bytes"] = float(nbytes)
            r["gbps"] = nbytes / (ms * 1e-3) / 1e9
            if self.ceiling_gbps:
                r["pct_of_copy"] = 100.0 * r["gbps"] / self.ceiling_gbps
        if flops is not None:
            r["tflops"] = flops / (ms * 1e-3) / 1e12
        return r

    # ---- data ----
    def randn(self, shape, dtype: str = "float32", scale: float = 1.0, seed: int = 0) -> "inferlab.DeviceArray":
        rng = np.random.default_rng(seed)
        a = (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np_dtype(dtype))
        return inferlab.DeviceArray.from_numpy(a, self.device)

    def ints(self, shape, high: int, seed: int = 0) -> "inferlab.DeviceArray":
        rng = np.random.default_rng(seed)
        return inferlab.DeviceArray.from_numpy(rng.integers(0, high, size=shape).astype(np.int32), self.device)

    def empty(self, shape, dtype: str = "float32") -> "inferlab.DeviceArray":
        return inferlab.DeviceArray.empty(list(shape), dtype, self.device)


def measure_copy_ceiling(ctx: Ctx, nbytes: int | None = None) -> float:
    """GB/s of a device-to-device cudaMemcpyAsync of nbytes, counting read + write (2 * nbytes)."""
    nbytes = nbytes or ((16 if ctx.device == "cpu" else 256 if ctx.quick else 1024) << 20)
    src = ctx.empty((nbytes,), "uint8")
    dst = ctx.empty((nbytes,), "uint8")
    copy = _core.kernels.copy_async
    ms = ctx.time_ms(lambda: copy(dst, src), iters=max(ctx.iters, 10))
    return 2 * nbytes / (ms * 1e-3) / 1e9
