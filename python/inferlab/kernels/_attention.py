"""Attention over a KV cache (kernel library II): prefill, chunked prefill and batched decode.

Every function takes NumPy arrays or :class:`inferlab.DeviceArray` s. It runs on ``device`` (``"cpu"`` or
``"cuda"``; by default the device of the cache, else of the first DeviceArray argument, else the CPU) and
returns a NumPy array when every array argument was NumPy, else a DeviceArray; pass ``out=`` to write into
an existing array. NumPy references with the same signatures live in :mod:`inferlab.reference`.

Shapes: ``q [T, Hq, D]``, ``k, v [T, Hkv, D]`` with ``Hq % Hkv == 0`` (GQA; query head h reads kv-head
``h // (Hq // Hkv)``) and ``D`` in {64, 80, 96, 128}. Arithmetic is float32 (fp32 accumulation). On CUDA,
q/k/v/out and the cache share one dtype, float16 or bfloat16, and prefill runs on tensor cores; the CPU
also takes float32 and mixed dtypes.
"""
from __future__ import annotations

import math

import numpy as np

from .._core_loader import core
from .._tensor import DeviceArray, as_device_array, np_dtype

_A = core.attention

__all__ = ["KVCache", "kv_cache_store", "attention_prefill", "attention_decode"]

_DTYPE_ALIASES = {
    "f16": "float16", "fp16": "float16", "half": "float16", "float16": "float16",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "f32": "float32", "fp32": "float32", "float": "float32", "float32": "float32",
}


def _dtype_name(dtype) -> str:
    if isinstance(dtype, str):
        key = dtype.lower()
    else:
        key = np.dtype(dtype).name
    if key not in _DTYPE_ALIASES:
        raise ValueError(f"dtype must be one of f16, bf16, f32 (float16, bfloat16, float32), got {dtype!r}")
    return _DTYPE_ALIASES[key]


def _device_name(device) -> str:
    d = str(device).lower()
    if d in ("cpu",):
        return "cpu"
    if d in ("cuda", "cuda:0", "gpu"):
        return "cuda"
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


class KVCache:
    """KV cache for every layer of one model, on the CPU or a CUDA GPU.

    ``KVCache(n_layers, n_kv_heads, head_dim, max_tokens, dtype="f16", device="cpu", n_seqs=1)``

    Layout, per layer ``l``: ``k(l)`` and ``v(l)`` are ``[n_seqs, n_kv_heads, max_tokens, head_dim]``
    row-major arrays (DeviceArray views sharing the cache's memory); element ``(s, h, t, d)`` is dim ``d``
    of kv-head ``h`` at token position ``t`` of sequence slot ``s``. Each (slot, head) owns one
    contiguous ``[max_tokens, head_dim]`` panel, so decode reads are sequential. Each layer's K and V are
    separate allocations. The cache starts zeroed; kernels read only positions below the lengths they
    are given.

    ``dtype``: ``"f16"`` (default), ``"bf16"`` or ``"f32"`` (f32 on the CPU only). Allocation first checks
    free GPU memory (available host memory on the CPU) and raises :class:`inferlab.DeviceMemoryError`
    saying how much is needed and how much is free. ``memory_bytes()`` is
    ``2 * n_layers * n_seqs * n_kv_heads * max_tokens * head_dim * itemsize``; a small decode scratch
    (under 1% of that) is allocated on first CUDA decode or by ``reserve_decode_workspace`` and is not
    counted.
    """

    def __init__(self, n_layers, n_kv_heads, head_dim, max_tokens, dtype="f16", device="cpu", n_seqs=1):
        self._c = _A.KVCache(int(n_layers), int(n_kv_heads), int(head_dim), int(max_tokens), _dtype_name(dtype),
                             _device_name(device), int(n_seqs))

    @staticmethod
    def bytes_needed(n_layers, n_kv_heads, head_dim, max_tokens, dtype="f16", n_seqs=1) -> int:
        """Bytes ``KVCache(...)`` with these arguments would hold, without allocating."""
        return int(_A.KVCache.bytes_needed(int(n_layers), int(n_kv_heads), int(head_dim), int(max_tokens),
                                           _dtype_name(dtype), int(n_seqs)))

    def memory_bytes(self) -> int:
        """Bytes held by K and V of all layers."""
        return int(self._c.memory_bytes())

    def k(self, layer: int) -> DeviceArray:
        """Keys of one layer: ``[n_seqs, n_kv_heads, max_tokens, head_dim]`` view of the cache."""
        return self._c.k(int(layer))

    def v(self, layer: int) -> DeviceArray:
        """Values of one layer, like :meth:`k`."""
        return self._c.v(int(layer))

    def reserve_decode_workspace(self, n_q_heads: int) -> None:
        """Allocate the CUDA decode scratch now (do this before capturing a CUDA graph)."""
        self._c.reserve_decode_workspace(int(n_q_heads))

    n_layers = property(lambda self: self._c.n_layers)
    n_kv_heads = property(lambda self: self._c.n_kv_heads)
    head_dim = property(lambda self: self._c.head_dim)
    max_tokens = property(lambda self: self._c.max_tokens)
    n_seqs = property(lambda self: self._c.n_seqs)
    device = property(lambda self: self._c.device)
    dtype = property(lambda self: np_dtype(self._c.dtype_name))

    def __repr__(self) -> str:
        return (f"KVCache(n_layers={self.n_layers}, n_kv_heads={self.n_kv_heads}, head_dim={self.head_dim}, "
                f"max_tokens={self.max_tokens}, dtype={self._c.dtype_name!r}, device={self.device!r}, "
                f"n_seqs={self.n_seqs}, memory_bytes={self.memory_bytes()})")


# ---------------------------------------------------------------------------------------------- helpers

def _pick_device(device, *arrays) -> str:
    if device is not None:
        return _device_name(device)
    for a in arrays:
        if isinstance(a, DeviceArray):
            return a.device
    return "cpu"


def _cache_device(cache, device) -> str:
    if not isinstance(cache, KVCache):
        raise TypeError(f"cache must be an inferlab.KVCache, got {type(cache).__name__}")
    if device is not None and _device_name(device) != cache.device:
        raise ValueError(f"the KV cache is on {cache.device} but device={device!r}")
    return cache.device


def _all_numpy(*arrays) -> bool:
    return not any(isinstance(a, DeviceArray) for a in arrays)


def _prepare_out(out, shape, dtype_name: str, device: str):
    """(DeviceArray to write, NumPy array to copy the result back into or None)."""
    if out is None:
        return DeviceArray.empty(list(shape), dtype_name, device), None
    if isinstance(out, DeviceArray):
        if out.device != device:
            raise ValueError(f"out is on {out.device} but the op runs on {device}")
        return out, None
    if not isinstance(out, np.ndarray) or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be a DeviceArray or a writeable C-contiguous NumPy array")
    if device == "cpu":
        return DeviceArray.from_numpy(out, "cpu"), None  # shares the NumPy buffer
    return DeviceArray.from_numpy(out, device), out


def _finish(out_dev, copy_back, user_out, return_numpy: bool):
    if copy_back is not None:
        copy_back[...] = out_dev.numpy()
        return user_out
    if user_out is not None:
        return user_out
    return out_dev.numpy() if return_numpy else out_dev


def _int32_host(x, arg: str, length: int) -> np.ndarray:
    """A host int32 copy of an integer vector (for range checks), ValueError naming `arg`."""
    a = x.numpy() if isinstance(x, DeviceArray) else np.asarray(x)
    if a.ndim != 1 or a.shape[0] != length:
        raise ValueError(f"{arg} must have shape ({length},), got {tuple(a.shape)}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{arg} must hold integers, got dtype {a.dtype}")
    if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{arg} does not fit in int32")
    return a.astype(np.int32)


def _int32_dev(x, host: np.ndarray, device: str, arg: str) -> DeviceArray:
    if isinstance(x, DeviceArray) and x.dtype_name == "int32":
        if x.device != device:
            raise ValueError(f"{arg} is on {x.device} but the op runs on {device}")
        return x
    return as_device_array(host, device, arg, dtypes=("int32",))


def _scale_window(scale, window, D):
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale}")
    window = 0 if window is None else int(window)
    if window < 0:
        raise ValueError(f"window must be None or >= 0 (0: off), got {window}")
    return scale, window


def _check_3d(x, arg: str):
    if len(x.shape) != 3:
        raise ValueError(f"{arg} must be 3-D [T, heads, head_dim], got shape {tuple(x.shape)}")


# ---------------------------------------------------------------------------------------------- ops

def kv_cache_store(cache, k, v, layer=0, seq=0, start_pos=0, seq_slots=None, positions=None) -> None:
    """Write ``k, v [T, Hkv, D]`` into ``cache`` at layer ``layer``.

    Token ``t`` goes to sequence slot ``seq_slots[t]`` (default: ``seq``) at position ``positions[t]``
    (default: ``start_pos + t``), converted to the cache dtype. Slots and positions are checked on the host
    (ValueError when out of range).
    """
    dev = _cache_device(cache, None)
    k = as_device_array(k, dev, "k")
    v = as_device_array(v, dev, "v")
    _check_3d(k, "k")
    T = k.shape[0]
    slots_h = _int32_host(np.full(T, seq) if seq_slots is None else seq_slots, "seq_slots", T)
    pos_h = _int32_host(np.arange(start_pos, start_pos + T) if positions is None else positions, "positions", T)
    if T and (slots_h.min() < 0 or slots_h.max() >= cache.n_seqs):
        bad = int(slots_h[(slots_h < 0) | (slots_h >= cache.n_seqs)][0])
        raise ValueError(f"sequence slot {bad} out of range: the KV cache has {cache.n_seqs} slots")
    if T and (pos_h.min() < 0 or pos_h.max() >= cache.max_tokens):
        bad = int(pos_h[(pos_h < 0) | (pos_h >= cache.max_tokens)][0])
        raise ValueError(f"position {bad} out of range: the KV cache holds max_tokens={cache.max_tokens}")
    slots = _int32_dev(seq_slots, slots_h, dev, "seq_slots")
    pos = _int32_dev(positions, pos_h, dev, "positions")
    _A.kv_cache_store(cache._c, int(layer), k, v, slots, pos)


def attention_prefill(q, k, v, scale=None, causal=True, window=None, cache=None, layer=0, seq=0, start_pos=0,
                      device=None, out=None):
    """Multi-head self-attention of a prompt (or of one chunk of it).

    ``q [T, Hq, D]``, ``k, v [T, Hkv, D]`` -> ``[T, Hq, D]``. ``scale`` defaults to ``1/sqrt(D)``.
    ``causal``: query t sees keys <= t. ``window`` (None or 0: off): query t sees only keys > t - window.

    With ``cache`` (chunked prefill): k and v are first stored at positions ``start_pos .. start_pos+T-1``
    of slot ``seq`` in layer ``layer`` (pass ``k = v = None`` when they are stored already), then query t,
    at position ``start_pos + t``, attends causally to every cached key of that slot up to its position
    (the earlier chunks included). Feeding a prompt chunk by chunk gives the one-shot result.

    Tiled online softmax, O(T) memory: on CUDA a FlashAttention-2-style tensor-core kernel.
    """
    if cache is not None:
        dev = _cache_device(cache, device)
        if not causal:
            raise ValueError("attention with a KV cache is causal; pass causal=True (or cache=None)")
        qd = as_device_array(q, dev, "q")
        _check_3d(qd, "q")
        if (k is None) != (v is None):
            raise ValueError("pass both k and v (to store them) or neither (to use what is cached)")
        if k is not None:
            kv_cache_store(cache, k, v, layer=layer, seq=seq, start_pos=start_pos)
        scale, window = _scale_window(scale, window, qd.shape[2])
        o, back = _prepare_out(out, qd.shape, qd.dtype_name, dev)
        _A.attention_prefill_cached(qd, cache._c, int(layer), int(seq), int(start_pos), o, scale, window)
        return _finish(o, back, out, _all_numpy(q, k, v))

    if k is None or v is None:
        raise ValueError("k and v are required without a cache")
    dev = _pick_device(device, q, k, v, out)
    qd = as_device_array(q, dev, "q")
    kd = as_device_array(k, dev, "k")
    vd = as_device_array(v, dev, "v")
    _check_3d(qd, "q")
    scale, window = _scale_window(scale, window, qd.shape[2])
    o, back = _prepare_out(out, qd.shape, qd.dtype_name, dev)
    _A.attention_prefill(qd, kd, vd, o, scale, bool(causal), window)
    return _finish(o, back, out, _all_numpy(q, k, v))


def attention_decode(q, cache, seq_lens, layer=0, scale=None, window=None, out=None):
    """One new query token per sequence: ``q [B, Hq, D]`` (row b is slot b) over the cache -> ``[B, Hq, D]``.

    ``seq_lens[b]``: tokens cached in slot b *including* the new one (store its k/v first with
    :func:`kv_cache_store`); the query sits at position ``seq_lens[b] - 1``. Lengths may differ per
    sequence (0 gives zeros); they must not exceed ``cache.max_tokens``. On CUDA this is flash-decoding:
    the launch shape depends only on shapes (CUDA-graph safe), the sequence is split so that even one long
    sequence fills the GPU, and a second kernel combines the splits.
    """
    dev = _cache_device(cache, None)
    qd = as_device_array(q, dev, "q")
    _check_3d(qd, "q")
    B = qd.shape[0]
    lens_h = _int32_host(seq_lens, "seq_lens", B)
    if B and (lens_h.min() < 0 or lens_h.max() > cache.max_tokens):
        b = int(np.nonzero((lens_h < 0) | (lens_h > cache.max_tokens))[0][0])
        raise ValueError(f"seq_lens[{b}] = {int(lens_h[b])} out of range: the KV cache holds "
                         f"max_tokens={cache.max_tokens} per sequence")
    lens = _int32_dev(seq_lens, lens_h, dev, "seq_lens")
    scale, window = _scale_window(scale, window, qd.shape[2])
    o, back = _prepare_out(out, qd.shape, qd.dtype_name, dev)
    _A.attention_decode(qd, cache._c, int(layer), lens, o, scale, window)
    return _finish(o, back, out, _all_numpy(q, seq_lens))
