"""Kernel library I: embedding, norms, RoPE, activations, residual adds, softmax and sampling.

Every function takes NumPy arrays (float32, float16 or bfloat16 from ``ml_dtypes``) or
:class:`inferlab.DeviceArray` and runs on ``device`` ("cpu" or "cuda"; by default the device of the
first DeviceArray argument, else "cpu"). It returns NumPy arrays when its main input is a NumPy array
and DeviceArrays when it is a DeviceArray (chain kernels on the GPU without round trips that way).
``out_dtype`` picks the output's float type (default: the main input's). ``out`` (a DeviceArray, or a
writeable C-contiguous NumPy array) receives the result instead of a new array and is returned; it may
be the very input array where the op allows it (add, rope, gelu, softmax, swiglu, norms' x).
Arithmetic is float32.
Each op has a float64 NumPy reference with the same signature in :mod:`inferlab.reference`.
"""
from __future__ import annotations

import numpy as np

from .._core_loader import core as _core
from .._tensor import DeviceArray, as_device_array

_k = _core.kernels

__all__ = [
    "embedding", "embedding_q", "rms_norm", "add_rms_norm", "layer_norm", "add_layer_norm", "rope", "add",
    "add_bias", "swiglu", "swiglu_fused", "gelu", "convert", "softmax", "sample",
    "GGML_TYPES",
]

_FLOATS = ("float32", "float16", "bfloat16")

# GGML type ids accepted by embedding_q (names as in GGUF files).
GGML_TYPES = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q2_K": 10, "Q3_K": 11,
    "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "BF16": 30,
}


# ---------------------------------------------------------------------------------------------
# argument handling
# ---------------------------------------------------------------------------------------------

def _pick_device(device, *arrays) -> str:
    if device is not None:
        if device not in ("cpu", "cuda", "cuda:0"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        return "cuda" if device.startswith("cuda") else "cpu"
    for a in arrays:
        if isinstance(a, DeviceArray):
            return a.device
    return "cpu"


def _dtype_name(x) -> str:
    return x.dtype_name if isinstance(x, DeviceArray) else np.asarray(x).dtype.name


def _check_float_arg(x, arg: str):
    if x is None:
        raise ValueError(f"{arg} is missing")
    if not isinstance(x, DeviceArray):
        a = np.asarray(x)
        if a.dtype.name not in _FLOATS:
            raise ValueError(f"{arg} has dtype {a.dtype.name}; expected one of {', '.join(_FLOATS)}")


def _dev(x, device: str, arg: str, dtypes=_FLOATS) -> DeviceArray:
    if x is None:
        raise ValueError(f"{arg} is missing")
    return as_device_array(x, device, arg, dtypes)


def _ids(ids, device: str, arg: str = "ids") -> DeviceArray:
    """int32 ids as a DeviceArray (NumPy integer arrays are range-checked and converted)."""
    if isinstance(ids, DeviceArray):
        if ids.dtype_name != "int32":
            raise ValueError(f"{arg} has dtype {ids.dtype_name}; expected int32")
        if ids.device != device:
            raise ValueError(f"{arg} is on {ids.device} but device={device!r}")
        return ids
    a = np.asarray(ids)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{arg} must hold integers, got dtype {a.dtype.name}")
    if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{arg} has values outside the int32 range")
    return DeviceArray.from_numpy(np.ascontiguousarray(a, dtype=np.int32), device)


def _out_dtype(out_dtype, default: str) -> str:
    if out_dtype is None:
        name = default
    elif isinstance(out_dtype, str):
        name = out_dtype
    else:
        name = np.dtype(out_dtype).name
    if name not in _FLOATS:
        raise ValueError(f"out_dtype must be one of {', '.join(_FLOATS)}, got {name}")
    return name


def _empty(shape, dtype: str, device: str) -> DeviceArray:
    return DeviceArray.empty(list(shape), dtype, device)


class _Out:
    """The output of one call: a DeviceArray to write, and how to hand it back."""

    def __init__(self, out, shape, out_dtype, default_dtype: str, device: str):
        shape = tuple(int(v) for v in shape)
        self.user = out
        if out is None:
            self.dev = _empty(shape, _out_dtype(out_dtype, default_dtype), device)
            return
        name = _dtype_name(out)
        if out_dtype is not None and _out_dtype(out_dtype, default_dtype) != name:
            raise ValueError(f"out has dtype {name} but out_dtype is {_out_dtype(out_dtype, default_dtype)}")
        if name not in _FLOATS:
            raise ValueError(f"out has dtype {name}; expected one of {', '.join(_FLOATS)}")
        if tuple(out.shape) != shape:
            raise ValueError(f"out must have shape {shape}, got {tuple(out.shape)}")
        if isinstance(out, DeviceArray):
            if out.device != device:
                raise ValueError(f"out is on {out.device} but device={device!r}")
            self.dev = out
        else:
            if not isinstance(out, np.ndarray) or not out.flags.c_contiguous or not out.flags.writeable:
                raise ValueError("out must be a writeable C-contiguous NumPy array or a DeviceArray")
            # CPU: wraps the array without a copy; CUDA: a device copy (so poisoned contents travel too)
            self.dev = DeviceArray.from_numpy(out, device)

    def result(self, as_numpy: bool):
        if isinstance(self.user, DeviceArray):
            return self.user
        if isinstance(self.user, np.ndarray):
            if self.dev.device != "cpu":
                self.user[...] = self.dev.numpy()
            return self.user
        return self.dev.numpy() if as_numpy else self.dev


def _result(out: DeviceArray, as_numpy: bool):
    return out.numpy() if as_numpy else out


def _check_eps(eps) -> float:
    eps = float(eps)
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    return eps


# ---------------------------------------------------------------------------------------------
# ops
# ---------------------------------------------------------------------------------------------

def embedding(ids, table, device=None, out_dtype=None, out=None):
    """Row gather: ``out[t, :] = table[ids[t], :]``.

    ids [T] integers in [0, V); table [V, D] float, or an :class:`inferlab.kernels.QWeight` (any GGUF type,
    dequantized on the fly; default out_dtype float32). Returns [T, D] (out_dtype, default table's dtype).
    Out-of-range ids raise ValueError on the CPU; on CUDA their rows are zero (check ids beforehand).
    """
    qw = getattr(table, "_w", table)
    if type(qw).__name__ == "QWeight":  # inferlab.kernels.QWeight (or its core object): GGUF-typed table
        device = _pick_device(device, ids) if device is not None or isinstance(ids, DeviceArray) else qw.device
        if qw.device != device:
            raise ValueError(f"table is on {qw.device} but device={device!r}")
        i = _ids(ids, device)
        if i.ndim != 1:
            raise ValueError(f"ids must be 1-D [T], got shape {tuple(i.shape)}")
        o = _Out(out, (i.shape[0], qw.k), out_dtype, "float32", device)
        _k.embedding_qw(i, qw, o.dev)
        return o.result(not isinstance(ids, DeviceArray))
    device = _pick_device(device, table, ids)
    as_numpy = not isinstance(table, DeviceArray)
    t = _dev(table, device, "table")
    if t.ndim != 2:
        raise ValueError(f"table must be 2-D [V, D], got shape {tuple(t.shape)}")
    i = _ids(ids, device)
    if i.ndim != 1:
        raise ValueError(f"ids must be 1-D [T], got shape {tuple(i.shape)}")
    if as_numpy and not isinstance(ids, DeviceArray):
        a = np.asarray(ids)
        if a.size and (a.min() < 0 or a.max() >= t.shape[0]):
            raise ValueError(f"ids must be in [0, {t.shape[0]}), got values in [{a.min()}, {a.max()}]")
    o = _Out(out, (i.shape[0], t.shape[1]), out_dtype, t.dtype_name, device)
    _k.embedding(i, t, o.dev)
    return o.result(as_numpy)


def embedding_q(ids, data, ggml_type, shape, device=None, out_dtype=None, out=None):
    """Row gather from a GGUF-typed table, dequantized on the fly: ``out[t, :] = dequant(table)[ids[t], :]``.

    data: uint8 bytes of the table as stored in the GGUF file ([V, row_bytes] or flat; NumPy or DeviceArray);
    ggml_type: name ("Q8_0", "Q6_K", ...) or id; shape: (V, D). Returns [T, D] of out_dtype (default float32).
    """
    device = _pick_device(device, data, ids)
    as_numpy = not isinstance(data, DeviceArray)
    if isinstance(ggml_type, str):
        if ggml_type.upper() not in GGML_TYPES:
            raise ValueError(f"ggml_type {ggml_type!r} is not supported; expected one of {', '.join(GGML_TYPES)}")
        tid = GGML_TYPES[ggml_type.upper()]
    else:
        tid = int(ggml_type)
    try:
        V, D = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (V, D), got {shape!r}") from None
    if isinstance(data, DeviceArray):
        d = data
        if d.device != device:
            raise ValueError(f"data is on {d.device} but device={device!r}")
    else:
        a = np.ascontiguousarray(data)
        if a.dtype != np.uint8:
            raise ValueError(f"data must be uint8 bytes, got dtype {a.dtype.name}")
        d = DeviceArray.from_numpy(a.reshape(-1), device)
    i = _ids(ids, device)
    if i.ndim != 1:
        raise ValueError(f"ids must be 1-D [T], got shape {tuple(i.shape)}")
    o = _Out(out, (i.shape[0], D), out_dtype, "float32", device)
    _k.embedding_q(i, d, tid, V, D, o.dev)
    return o.result(as_numpy)


def rms_norm(x, w, eps, device=None, out_dtype=None, out=None):
    """RMSNorm: ``out = x / sqrt(mean(x**2, axis=-1) + eps) * w``.

    x [..., D], w [D]; returns [..., D].
    """
    device = _pick_device(device, x, w)
    as_numpy = not isinstance(x, DeviceArray)
    xd, wd = _dev(x, device, "x"), _dev(w, device, "w")
    o = _Out(out, xd.shape, out_dtype, xd.dtype_name, device)
    _k.rms_norm(xd, wd, _check_eps(eps), o.dev)
    return o.result(as_numpy)


def add_rms_norm(residual, x, w, eps, device=None, out_dtype=None, out=None):
    """Residual add + RMSNorm: ``h = residual + x; out = rms_norm(h, w, eps)``; returns ``(h, out)``.

    residual [..., D] float32, x [..., D], w [D]. A DeviceArray residual is updated in place (and returned);
    a NumPy residual is left untouched.
    """
    device = _pick_device(device, residual, x, w)
    as_numpy = not isinstance(x, DeviceArray)
    if isinstance(residual, DeviceArray):
        rd = _dev(residual, device, "residual", ("float32",))
    else:
        r = np.asarray(residual)
        if r.dtype != np.float32:
            raise ValueError(f"residual has dtype {r.dtype.name}; expected float32")
        rd = DeviceArray.from_numpy(np.array(r, dtype=np.float32, copy=True), device)
    xd, wd = _dev(x, device, "x"), _dev(w, device, "w")
    o = _Out(out, xd.shape, out_dtype, xd.dtype_name, device)
    _k.add_rms_norm(rd, xd, wd, _check_eps(eps), o.dev)
    return (rd.numpy(), o.result(True)) if as_numpy else (rd, o.result(False))


def layer_norm(x, w, b, eps, device=None, out_dtype=None, out=None):
    """LayerNorm: ``out = (x - mean) / sqrt(var + eps) * w + b`` over the last axis (biased variance).

    x [..., D], w [D], b [D] or None; returns [..., D].
    """
    device = _pick_device(device, x, w, b)
    as_numpy = not isinstance(x, DeviceArray)
    xd, wd = _dev(x, device, "x"), _dev(w, device, "w")
    bd = None if b is None else _dev(b, device, "b")
    o = _Out(out, xd.shape, out_dtype, xd.dtype_name, device)
    _k.layer_norm(xd, wd, bd, _check_eps(eps), o.dev)
    return o.result(as_numpy)


def add_layer_norm(residual, x, w, b, eps, device=None, out_dtype=None, out=None):
    """Residual add + LayerNorm: ``h = residual + x; out = layer_norm(h, w, b, eps)``; returns ``(h, out)``.

    residual [..., D] float32 (a DeviceArray is updated in place), x [..., D], w [D], b [D] or None.
    """
    device = _pick_device(device, residual, x, w, b)
    as_numpy = not isinstance(x, DeviceArray)
    if isinstance(residual, DeviceArray):
        rd = _dev(residual, device, "residual", ("float32",))
    else:
        r = np.asarray(residual)
        if r.dtype != np.float32:
            raise ValueError(f"residual has dtype {r.dtype.name}; expected float32")
        rd = DeviceArray.from_numpy(np.array(r, dtype=np.float32, copy=True), device)
    xd, wd = _dev(x, device, "x"), _dev(w, device, "w")
    bd = None if b is None else _dev(b, device, "b")
    o = _Out(out, xd.shape, out_dtype, xd.dtype_name, device)
    _k.add_layer_norm(rd, xd, wd, bd, _check_eps(eps), o.dev)
    return (rd.numpy(), o.result(True)) if as_numpy else (rd, o.result(False))


_ROPE_STYLES = {"norm": 0, "neox": 1}


def rope(x, positions, theta, n_rot=None, style="neox", device=None, out_dtype=None, out=None):
    """Rotary position embedding of the first ``n_rot`` dims of every head (the rest are copied).

    x [T, H, D]; positions [T] integers; pair i (0 <= i < n_rot/2) of token t turns by
    ``positions[t] * theta**(-2i/n_rot)``: ``(a, b) -> (a cos - b sin, a sin + b cos)``.
    style "norm": pairs (2i, 2i+1) (Llama in GGUF); "neox": pairs (i, i + n_rot/2) (Qwen2, Phi-3).
    n_rot defaults to D. Returns [T, H, D].
    """
    device = _pick_device(device, x, positions)
    as_numpy = not isinstance(x, DeviceArray)
    if style not in _ROPE_STYLES:
        raise ValueError(f"style must be 'norm' or 'neox', got {style!r}")
    xd = _dev(x, device, "x")
    if xd.ndim != 3:
        raise ValueError(f"x must be 3-D [T, H, D], got shape {tuple(xd.shape)}")
    n_rot = xd.shape[2] if n_rot is None else int(n_rot)
    pd = _ids(positions, device, "positions")
    o = _Out(out, xd.shape, out_dtype, xd.dtype_name, device)
    _k.rope(xd, pd, float(theta), n_rot, _ROPE_STYLES[style], o.dev)
    return o.result(as_numpy)


def add(a, b, device=None, out_dtype=None, out=None):
    """Residual add: ``out = a + b``; a, b, out of one shape. Returns the sum."""
    device = _pick_device(device, a, b)
    as_numpy = not isinstance(a, DeviceArray)
    ad, bd = _dev(a, device, "a"), _dev(b, device, "b")
    o = _Out(out, ad.shape, out_dtype, ad.dtype_name, device)
    _k.add(ad, bd, o.dev)
    return o.result(as_numpy)


def add_bias(x, bias, device=None):
    """Bias add over the last axis: ``x[..., n] + bias[n]``; x [..., N], bias [N].

    A DeviceArray x is updated in place and returned; a NumPy x is left untouched (a new array is returned).
    """
    device = _pick_device(device, x, bias)
    as_numpy = not isinstance(x, DeviceArray)
    if as_numpy:
        _check_float_arg(x, "x")
        xd = DeviceArray.from_numpy(np.array(x, copy=True), device)
    else:
        xd = _dev(x, device, "x")
    bd = _dev(bias, device, "bias")
    _k.add_bias(xd, bd)
    return _result(xd, as_numpy)


def swiglu(gate, up, device=None, out_dtype=None, out=None):
    """SwiGLU: ``out = silu(gate) * up`` with ``silu(g) = g / (1 + exp(-g))``; gate, up [..., F] (same dtype)."""
    device = _pick_device(device, gate, up)
    as_numpy = not isinstance(gate, DeviceArray)
    gd, ud = _dev(gate, device, "gate"), _dev(up, device, "up")
    o = _Out(out, gd.shape, out_dtype, gd.dtype_name, device)
    _k.swiglu(gd, ud, o.dev)
    return o.result(as_numpy)


def swiglu_fused(gate_up, device=None, out_dtype=None, out=None):
    """SwiGLU on a fused projection (Phi-3): gate_up [T, 2F] = [gate | up] -> ``silu(gate) * up`` [T, F]."""
    device = _pick_device(device, gate_up)
    as_numpy = not isinstance(gate_up, DeviceArray)
    gd = _dev(gate_up, device, "gate_up")
    if gd.ndim != 2 or gd.shape[1] % 2:
        raise ValueError(f"gate_up must be 2-D [T, 2F], got shape {tuple(gd.shape)}")
    o = _Out(out, (gd.shape[0], gd.shape[1] // 2), out_dtype, gd.dtype_name, device)
    _k.swiglu_fused(gd, o.dev)
    return o.result(as_numpy)


def _unary(kernel, x, device, out_dtype, out):
    """Runs a one-input kernel whose output has x's shape (gelu, convert, softmax)."""
    device = _pick_device(device, x)
    as_numpy = not isinstance(x, DeviceArray)
    xd = _dev(x, device, "x")
    o = _Out(out, xd.shape, out_dtype, xd.dtype_name, device)
    kernel(xd, o.dev)
    return o.result(as_numpy)


def gelu(x, device=None, out_dtype=None, out=None):
    """GELU, tanh form (GPT-2): ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3)))``; any shape."""
    return _unary(_k.gelu, x, device, out_dtype, out)


def convert(x, out_dtype, device=None, out=None):
    """Dtype conversion: ``out = x`` rounded to ``out_dtype`` (float32, float16 or bfloat16; round to
    nearest even); any shape. The model uses it to hand float32 queries to the fp16/bf16 attention."""
    return _unary(_k.convert, x, device, out_dtype, out)


def softmax(x, device=None, out_dtype=None, out=None):
    """Softmax over the last axis: ``exp(x - max) / sum(exp(x - max))``; x [..., N]."""
    return _unary(_k.softmax, x, device, out_dtype, out)


def sample(logits, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0, seed=0, offset=0,
           prev_tokens=None, device=None):
    """Draw one token per row of ``logits`` [B, V] (or [V]) float32.

    Steps (identical on CPU and CUDA, see :func:`inferlab.reference.sample_probs`):
      1. repetition penalty (CTRL) on tokens in ``prev_tokens`` [B, P] (entries < 0 ignored):
         ``l > 0 ? l / penalty : l * penalty``;
      2. ``temperature == 0``: greedy, the argmax (lowest index on ties); else ``z = l / temperature``;
      3. top_k > 0: keep ``z >= `` the k-th largest z (ties at the boundary are kept);
      4. ``p = softmax(z)`` over the kept tokens;
      5. top_p < 1: keep tokens whose strictly more probable mass is < top_p (the nucleus);
      6. min_p > 0: keep ``p >= min_p * max(p)``;
      7. renormalise and draw by inverse CDF (in index order) with one uniform from Philox4x32-10 keyed by
         ``seed``, counter (offset, row): the same seed, offset and logits give the same token on CPU and CUDA.
    Returns int32 tokens [B] (a Python int for 1-D NumPy logits; a DeviceArray for DeviceArray logits).
    """
    device = _pick_device(device, logits)
    as_numpy = not isinstance(logits, DeviceArray)
    one = False
    if as_numpy:
        a = np.asarray(logits)
        if a.dtype != np.float32:
            raise ValueError(f"logits has dtype {a.dtype.name}; expected float32")
        if a.ndim == 1:
            one, a = True, a[None, :]
        ld = DeviceArray.from_numpy(np.ascontiguousarray(a), device)
    else:
        ld = _dev(logits, device, "logits", ("float32",))
    if ld.ndim != 2:
        raise ValueError(f"logits must be [B, V] or [V], got shape {tuple(ld.shape)}")
    B = ld.shape[0]
    pd = None
    if prev_tokens is not None:
        if isinstance(prev_tokens, DeviceArray):
            pd = _ids(prev_tokens, device, "prev_tokens")
        else:
            p = np.asarray(prev_tokens)
            if p.ndim == 1:
                p = np.broadcast_to(p, (B, p.shape[0]))
            pd = _ids(np.ascontiguousarray(p), device, "prev_tokens")
    if int(top_k) < 0:
        raise ValueError(f"top_k must be >= 0 (0: off), got {top_k}")
    if int(seed) < 0 or int(offset) < 0:
        raise ValueError("seed and offset must be >= 0")
    tokens = _empty((B,), "int32", device)
    _k.sample(ld, pd, tokens, float(temperature), int(top_k), float(top_p), float(min_p),
              float(repetition_penalty), int(seed) & (2**64 - 1), int(offset) & (2**64 - 1))
    if not as_numpy:
        return tokens
    t = tokens.numpy().copy()
    return int(t[0]) if one else t
