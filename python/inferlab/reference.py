"""NumPy references for every inferlab kernel and for a whole forward pass.

Each function reads like its formula, takes the same arguments as the kernel in
:mod:`inferlab.kernels` (minus ``device``), and computes in float64 unless
stated otherwise. Shapes are given in the comments.
"""
from __future__ import annotations

import numpy as np


def _f64(x):
    return np.asarray(x, dtype=np.float64)


# =====================================================================
# Kernel library I: embedding, norms, rope, activations, softmax, sampling
# (owned by kernel library I; keep edits inside this section)
# =====================================================================


# ---- end of kernel library I section ----



# =====================================================================
# Kernel library II: matmul on GGUF weights
# (owned by the matmul work; keep edits inside this section)
# =====================================================================


# ---- end of matmul section ----



# =====================================================================
# Kernel library II: attention and KV cache
# (owned by the attention work; keep edits inside this section)
# =====================================================================


def attention_mask(q_pos, k_pos, causal=True, window=None):
    """visible[t, s]: may the query at position q_pos[t] attend to the key at position k_pos[s]?

    causal: keys at positions <= the query's;  window w > 0: keys at positions > q_pos - w.
    """
    q_pos = np.asarray(q_pos)[:, None]  # [T, 1]
    k_pos = np.asarray(k_pos)[None, :]  # [1, S]
    visible = np.ones((q_pos.shape[0], k_pos.shape[1]), dtype=bool)
    if causal:
        visible &= k_pos <= q_pos
    if window:
        visible &= k_pos > q_pos - window
    return visible


def _attend(q, k, v, q_pos, scale, causal, window):
    """softmax(scale * q k^T + mask) v per query head, in float64.

    q [T, Hq, D]; k, v [S, Hkv, D] with key s at position s; q_pos [T] -> out [T, Hq, D].
    Query head h reads kv-head h // (Hq // Hkv). Rows that see no key are 0.
    """
    q, k, v = _f64(q), _f64(k), _f64(v)
    T, Hq, D = q.shape
    S, Hkv, _ = k.shape
    group = Hq // Hkv
    visible = attention_mask(q_pos, np.arange(S), causal, window)  # [T, S]
    out = np.zeros((T, Hq, D))
    for h in range(Hq):
        kh, vh = k[:, h // group, :], v[:, h // group, :]  # [S, D]
        s = np.where(visible, scale * (q[:, h, :] @ kh.T), -np.inf)  # [T, S]
        m = s.max(axis=1, keepdims=True) if S else np.zeros((T, 1))
        p = np.exp(s - np.where(np.isfinite(m), m, 0.0))  # [T, S], 0 where hidden
        denom = p.sum(axis=1, keepdims=True)
        out[:, h, :] = (p @ vh) / np.where(denom > 0, denom, 1.0)
    return out


class KVCache:
    """Reference KV cache with inferlab.KVCache's layout and rounding (NumPy, host memory).

    k(layer), v(layer): [n_seqs, n_kv_heads, max_tokens, head_dim] arrays of `dtype`; element (s, h, t, d) is
    dim d of kv-head h at position t of sequence slot s. Unstored positions are NaN.
    """

    def __init__(self, n_layers, n_kv_heads, head_dim, max_tokens, dtype="f16", n_seqs=1):
        name = {"f16": "float16", "bf16": "bfloat16", "f32": "float32"}.get(str(dtype), str(dtype))
        if name == "bfloat16":
            import ml_dtypes

            self.dtype = np.dtype(ml_dtypes.bfloat16)
        else:
            self.dtype = np.dtype(name)
        shape = (n_layers, n_seqs, n_kv_heads, max_tokens, head_dim)
        self._k = np.full(shape, np.nan, dtype=self.dtype)
        self._v = np.full(shape, np.nan, dtype=self.dtype)
        self.n_layers, self.n_seqs, self.n_kv_heads, self.max_tokens, self.head_dim = (
            n_layers, n_seqs, n_kv_heads, max_tokens, head_dim)

    def k(self, layer):
        return self._k[layer]

    def v(self, layer):
        return self._v[layer]


def _cache_kv(cache, layer):
    """(k, v) [n_seqs, Hkv, max_tokens, D] of a reference or an inferlab KVCache (in the cache dtype)."""
    return np.asarray(cache.k(layer)), np.asarray(cache.v(layer))


def _cached_keys(kc, vc, seq, n):
    """Keys and values 0 .. n-1 of slot `seq` as float64 [n, Hkv, D]."""
    return _f64(kc[seq, :, :n, :]).transpose(1, 0, 2), _f64(vc[seq, :, :n, :]).transpose(1, 0, 2)


def kv_cache_store(cache, k, v, layer=0, seq=0, start_pos=0, seq_slots=None, positions=None):
    """Reference store into a reference KVCache: token t of k, v [T, Hkv, D] goes to slot seq_slots[t]
    (default seq), position positions[t] (default start_pos + t), rounded to the cache dtype."""
    k, v = np.asarray(k), np.asarray(v)
    T = k.shape[0]
    slots = np.full(T, seq) if seq_slots is None else np.asarray(seq_slots)
    pos = np.arange(start_pos, start_pos + T) if positions is None else np.asarray(positions)
    cache.k(layer)[slots, :, pos, :] = _f64(k).astype(cache.dtype)
    cache.v(layer)[slots, :, pos, :] = _f64(v).astype(cache.dtype)


def attention_prefill(q, k, v, scale=None, causal=True, window=None, cache=None, layer=0, seq=0, start_pos=0):
    """out[t, h] = sum_s softmax_s(scale * q[t, h] . k[s, h // G] + mask) v[s, h // G]   (G = Hq / Hkv).

    q [T, Hq, D]; k, v [T, Hkv, D] -> out [T, Hq, D]; scale defaults to 1 / sqrt(D).
    Without a cache, query t is at position t and attends to keys of this call (causal: s <= t; window w:
    s > t - w). With a (reference) cache, k and v are stored at positions start_pos .. start_pos + T - 1 of
    slot `seq` (pass k = v = None to use what is stored), and query t, at position start_pos + t, attends
    causally to every cached key 0 .. start_pos + t.
    """
    q = np.asarray(q)
    T, Hq, D = q.shape
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    if cache is None:
        return _attend(q, k, v, np.arange(T), scale, causal, window)
    if k is not None:
        kv_cache_store(cache, k, v, layer=layer, seq=seq, start_pos=start_pos)
    kc, vc = _cache_kv(cache, layer)  # [n_seqs, Hkv, max_tokens, D]
    ks, vs = _cached_keys(kc, vc, seq, start_pos + T)  # [start_pos + T, Hkv, D]
    return _attend(q, ks, vs, start_pos + np.arange(T), scale, True, window)


def attention_decode(q, cache, seq_lens, layer=0, scale=None, window=None):
    """One query per sequence slot: q [B, Hq, D], slot b holds seq_lens[b] tokens (the newest at position
    seq_lens[b] - 1, which is where its query sits) -> out [B, Hq, D]. A length of 0 gives zeros."""
    q = np.asarray(q)
    B, Hq, D = q.shape
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    kc, vc = _cache_kv(cache, layer)
    out = np.zeros((B, Hq, D))
    for b, n in enumerate(np.asarray(seq_lens)):
        ks, vs = _cached_keys(kc, vc, b, int(n))  # [n, Hkv, D]
        out[b] = _attend(q[b:b + 1], ks, vs, np.array([int(n) - 1]), scale, True, window)[0]
    return out


# ---- end of attention section ----



# =====================================================================
# Whole-model forward pass (owned by the model work)
# =====================================================================


# ---- end of model section ----
