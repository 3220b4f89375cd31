"""Matrix multiplication on GGUF weights: ``y[T, N] = x[T, K] @ W[N, K].T (+ bias)``.

``W`` stays in its GGUF block format (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K,
Q5_K, Q6_K) inside a :class:`QWeight`; on CUDA the quantized types are repacked once at load time
("split" layout: 16-byte aligned quant bits, scales apart).

    >>> w = QWeight.from_gguf("model.gguf", "blk.0.ffn_down.weight", device="cuda")
    >>> y = matmul(x, w)                      # x: NumPy [T, K] or DeviceArray; y like x

Numerics. The CPU dequantizes each weight row to float32 and accumulates in float32. On CUDA, decode
(T <= 8; quantized weights up to T = 32, in chunks of 8 rows) runs a fused dequantize-and-multiply kernel
that streams the weight once. For quantized and F16 weights on compute capability >= 9 (Hopper and later:
the weight is streamed into shared memory by the copy engine) it uses tensor cores: each weight is decoded to
fp16 in registers (the code exactly, times its block scale rounded to fp16, plus its min rounded to fp16,
one rounding), x is rounded to fp16 -- scaled first by a power of two when its largest magnitude reaches
2^15, so large activations never overflow, and the scale is undone on the float32 result -- and products
accumulate in float32. For one row of x (T = 1) and Q4_K, Q6_K (K up to 8192), Q8_0 or F16 weights, a
second tensor-core kernel loads the weight straight into registers (no shared-memory staging) and applies
the scales after the multiply: the mma sums the exact codes (as fp16 1024 + code) times fp16 x per scale
class in float32, and each class's sum is scaled (and its min and code offset taken off with the float32 sum
of its x) in float32, so the weights are not rounded to fp16 at all; a block whose x holds inf / NaN takes a
float32 path instead. For one row of x and Q5_K weights (and Q4_K when that kernel is switched off) with
finite x, the shared-memory kernel applies the scales after the multiply the same way: the mma sums the exact codes (as fp16 1024 + code) times fp16 x per
sub-block in float32, and each sub-block's sum is scaled (and its min and code offset taken off with the
float32 sum of its x) in float32, so the weights are not rounded to fp16 at all. That is the precision class of prefill below
(a few fp16 units in the last place per product; the CPU and the reference stay float32). An integer path
for one row of x and Q8_0 / Q4_K / Q6_K weights with finite x is available for measurements
(``inferlab._core.matmul.tune_mma_decode(fold=2)``; not the default, it measured slower on an H200): it
multiplies integers instead (mma on int8): each
32-element group of x is quantized to 16-bit integers, ``v = round(x / step)`` with ``step = max|x| / 32512``
over the group, carried as two int8 parts (``v = 256 hi + lo``); the weights' codes enter exactly, the
integer sums are exact, and the scales (and Q4_K's mins) are applied in float32. Each element of x moves by
at most about ``step / 2`` (2^-16 of its group's largest magnitude, finer than fp16 except for elements
much smaller than their group's largest), so the result moves by at most about
``sum over groups of step / 2 * sum |w_group|``; groups whose largest magnitude is below 2^-96 count as zero. BF16 and F32 weights, and every weight on older GPUs,
decode with x in float32 and float32 accumulation. Larger T (prefill), and F16/BF16 weights whose K is not a multiple of 16 at any T,
run cuBLAS on tensor cores with float32 accumulation: quantized and F16 weights as fp16 (quantized ones
dequantized exactly, then rounded to fp16), x rounded to fp16 with the same overflow-safe scaling, BF16
weights with x rounded to bf16, F32 weights in full fp32.

int8 activations (``int8_activations=True``, off by default). With a quantized weight and T <= 32, x is
quantized to int8 before the product, like llama.cpp's int8 paths: per run of 16 consecutive elements of a
row, ``d = max|x| / 127`` and ``q = round(x / d)``, so each element moves by at most ``d / 2`` and the
result by at most ``sum over runs of (max|x_run| / 254) * sum |w_run|``. On CUDA the decode kernel then
forms the integer sums exactly with dp4a (about 2-4x less work per weight than float32); on the CPU x is
replaced by ``d * q`` and the float32 path runs, so both devices compute the same function. A run holding NaN
gives NaN. Float weights and larger T ignore the flag. :func:`inferlab.reference.matmul` takes the same flag.
"""
from __future__ import annotations

import os

import numpy as np

from .._core_loader import core
from .._tensor import DeviceArray, as_device_array

_mm = core.matmul

__all__ = ["QWeight", "matmul"]


def _device_name(device) -> str:
    d = str(device).lower()
    if d == "cpu":
        return "cpu"
    if d == "cuda" or d.startswith("cuda:"):
        return "cuda"
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


class QWeight:
    """A weight matrix ``W[n, k]`` in a GGUF block format, on the CPU or a CUDA GPU.

    Build one with :meth:`from_gguf` (a tensor of a GGUF file) or :meth:`from_bytes` (raw GGUF block bytes).
    Properties: ``type`` (e.g. ``"Q4_K"``), ``shape`` ``(n, k)``, ``nbytes`` (bytes held on the device),
    ``device``, ``name``, ``layout`` (0: as in the file, 1: CUDA split layout).
    """

    __slots__ = ("_w",)

    def __init__(self, core_weight):
        if not isinstance(core_weight, _mm.QWeight):
            raise TypeError("use QWeight.from_gguf or QWeight.from_bytes to build a QWeight")
        self._w = core_weight

    @classmethod
    def from_gguf(cls, gguf, tensor_name: str, device: str = "cpu") -> "QWeight":
        """Loads tensor ``tensor_name`` (ggml shape ``[k, n]``) of a GGUF file.

        ``gguf`` is an :class:`inferlab.GGUFFile` (open) or a path. Raises ``GGUFError`` for a missing
        tensor, ``NotImplementedError`` for a type matmul does not support.
        """
        device = _device_name(device)
        if isinstance(gguf, (str, os.PathLike)):
            return cls(_mm.QWeight.from_gguf_path(os.fspath(gguf), tensor_name, device))
        core_file = getattr(gguf, "_core", None)
        if callable(core_file):  # inferlab.GGUFFile (raises ValueError when closed)
            return cls(_mm.QWeight.from_gguf_file(core_file(), tensor_name, device))
        if isinstance(gguf, core.gguf.GGUFFile):
            return cls(_mm.QWeight.from_gguf_file(gguf, tensor_name, device))
        raise TypeError(f"gguf must be an inferlab.GGUFFile or a path, got {type(gguf).__name__}")

    @classmethod
    def from_bytes(cls, raw, type_name: str, n: int, k: int, device: str = "cpu", name: str = "weight") -> "QWeight":
        """Builds a weight from ``n * row_bytes`` bytes of GGUF blocks (row ``i`` holds ``k`` elements).

        ``raw``: a uint8 array or bytes-like object; ``type_name``: a GGML type name such as ``"Q4_K"``.
        """
        if isinstance(raw, (bytes, bytearray, memoryview)):
            arr = np.frombuffer(raw, dtype=np.uint8)
        else:
            arr = np.asarray(raw)
            if arr.dtype != np.uint8:
                raise ValueError(f"raw must be uint8 bytes, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr.reshape(-1))
        return cls(_mm.QWeight.from_bytes(arr, str(type_name).upper(), int(n), int(k), _device_name(device), name))

    # -- properties -----------------------------------------------------------------------
    @property
    def type(self) -> str:
        return self._w.type

    @property
    def shape(self) -> tuple:
        return (self._w.n, self._w.k)

    @property
    def n(self) -> int:
        return self._w.n

    @property
    def k(self) -> int:
        return self._w.k

    @property
    def nbytes(self) -> int:
        return self._w.nbytes

    @property
    def device(self) -> str:
        return self._w.device

    @property
    def name(self) -> str:
        return self._w.name

    @property
    def layout(self) -> int:
        return self._w.layout

    def gguf_bytes(self) -> np.ndarray:
        """The weight's bytes in GGUF layout (uint8, a host copy), whatever its device and layout."""
        return self._w.gguf_bytes()

    def dequantize(self) -> np.ndarray:
        """``W`` as float32 ``[n, k]`` on the host (inferlab's C++ dequantizer)."""
        return self._w.dequantize()

    def dense(self, dtype: str = "float16") -> "DeviceArray":
        """``W`` dequantized to a new DeviceArray ``[n, k]`` on the weight's device (CUDA: float16 only)."""
        out = DeviceArray.empty((self.n, self.k), dtype, self.device)
        _mm.dequantize_to(self._w, out)
        return out

    def __repr__(self) -> str:
        return f"QWeight({self.name!r}, {self.type}, shape={self.shape}, device={self.device!r})"


def matmul(x, w: QWeight, bias=None, out_dtype="float32", device=None, out=None, int8_activations=False):
    """``y[T, N] = x[T, K] @ W[N, K].T (+ bias[N])``.

    x: float32 / float16 / bfloat16, ``[T, K]`` or ``[K]`` (then y is ``[N]``), a NumPy array or a
    DeviceArray. bias: float32 ``[N]`` or None. out_dtype: ``"float32"`` or ``"float16"``. The op runs on
    ``w.device``; ``device``, if given, must agree. ``out``: an optional DeviceArray to write (shape of y,
    float32 or float16; out_dtype is then ignored), returned as is. Otherwise returns a NumPy array for NumPy
    ``x``, else a new DeviceArray on the weight's device. ``int8_activations``: quantize x to int8 per
    16-element run first (quantized weights, T <= 32; see the module docstring). See the module docstring for
    the precision of each path.
    """
    if not isinstance(w, QWeight):
        raise ValueError(f"w must be a QWeight, got {type(w).__name__}")
    dev = w.device
    if device is not None and _device_name(device) != dev:
        raise ValueError(f"device={device!r} but the weight is on {dev}")
    out_name = np.dtype(out_dtype).name if not isinstance(out_dtype, str) else out_dtype
    if out_name not in ("float32", "float16"):
        raise ValueError(f"out_dtype must be float32 or float16, got {out_dtype!r}")
    as_numpy = not isinstance(x, DeviceArray)
    xa = as_device_array(x, dev, "x")
    squeeze = xa.ndim == 1
    if squeeze:
        xa = xa.reshape((1, xa.shape[0]))
    if xa.ndim != 2:
        raise ValueError(f"x must be [T, K] or [K], got shape {tuple(xa.shape)}")
    if xa.shape[1] != w.k:
        raise ValueError(f"x has {xa.shape[1]} columns but the weight {w.name!r} has k={w.k}")
    ba = None
    if bias is not None:
        ba = as_device_array(bias, dev, "bias", ("float32",))
    if out is not None:
        if not isinstance(out, DeviceArray):
            raise ValueError(f"out must be a DeviceArray, got {type(out).__name__}")
        want = (w.n,) if squeeze else (xa.shape[0], w.n)
        if tuple(out.shape) != want:
            raise ValueError(f"out has shape {tuple(out.shape)}, expected {want}")
        _mm.matmul(xa, w._w, out.reshape((xa.shape[0], w.n)), ba, bool(int8_activations))
        return out
    y = DeviceArray.empty((xa.shape[0], w.n), out_name, dev)
    _mm.matmul(xa, w._w, y, ba, bool(int8_activations))
    if squeeze:
        y = y.reshape((w.n,))
    return y.numpy() if as_numpy else y
