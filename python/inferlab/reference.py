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


def embedding(ids, table):
    """out[t, :] = table[ids[t], :];  ids [T] int, table [V, D] -> [T, D]."""
    return _f64(table)[np.asarray(ids, dtype=np.int64)]


def rms_norm(x, w, eps):
    """x / sqrt(mean(x^2) + eps) * w;  x [..., D], w [D] -> [..., D]."""
    x = _f64(x)
    ms = np.mean(x * x, axis=-1, keepdims=True)  # [..., 1]
    return x / np.sqrt(ms + eps) * _f64(w)


def add_rms_norm(residual, x, w, eps):
    """h = residual + x;  returns (h, rms_norm(h, w, eps))."""
    h = _f64(residual) + _f64(x)
    return h, rms_norm(h, w, eps)


def layer_norm(x, w, b, eps):
    """(x - mean) / sqrt(var + eps) * w + b (biased variance over the last axis);  x [..., D], w, b [D]."""
    x = _f64(x)
    mean = np.mean(x, axis=-1, keepdims=True)               # [..., 1]
    var = np.mean((x - mean) ** 2, axis=-1, keepdims=True)  # [..., 1]
    y = (x - mean) / np.sqrt(var + eps) * _f64(w)
    return y if b is None else y + _f64(b)


def add_layer_norm(residual, x, w, b, eps):
    """h = residual + x;  returns (h, layer_norm(h, w, b, eps))."""
    h = _f64(residual) + _f64(x)
    return h, layer_norm(h, w, b, eps)


def rope(x, positions, theta, n_rot=None, style="neox"):
    """Rotate pairs of the first n_rot dims of each head by angle pos * theta^(-2i/n_rot).

    x [T, H, D], positions [T]; "norm": pairs (2i, 2i+1); "neox": pairs (i, i + n_rot/2).
    (a, b) -> (a cos - b sin, a sin + b cos); dims >= n_rot are copied.
    """
    x = _f64(x)
    D = x.shape[-1]
    n_rot = D if n_rot is None else int(n_rot)
    half = n_rot // 2
    inv_freq = float(theta) ** (-2.0 * np.arange(half) / n_rot)                # [half]
    angle = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None]  # [T, half]
    cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]            # [T, 1, half]
    if style == "norm":
        ia, ib = np.arange(0, n_rot, 2), np.arange(1, n_rot, 2)
    elif style == "neox":
        ia, ib = np.arange(half), np.arange(half, n_rot)
    else:
        raise ValueError(f"style must be 'norm' or 'neox', got {style!r}")
    a, b = x[..., ia], x[..., ib]  # [T, H, half]
    out = x.copy()
    out[..., ia] = a * cos - b * sin
    out[..., ib] = a * sin + b * cos
    return out


def add(a, b):
    """a + b (same shape)."""
    return _f64(a) + _f64(b)


def add_bias(x, bias):
    """x[..., n] + bias[n];  x [..., N], bias [N]."""
    return _f64(x) + _f64(bias)


def silu(x):
    """x * sigmoid(x) = x / (1 + exp(-x))."""
    x = _f64(x)
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-x))


def swiglu(gate, up):
    """silu(gate) * up;  gate, up [..., F]."""
    return silu(gate) * _f64(up)


def swiglu_fused(gate_up):
    """gate_up [T, 2F] = [gate | up] -> silu(gate) * up [T, F]."""
    g = _f64(gate_up)
    F = g.shape[-1] // 2
    return swiglu(g[..., :F], g[..., F:])


def gelu(x):
    """GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    x = _f64(x)
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def softmax(x):
    """exp(x - max) / sum(exp(x - max)) over the last axis;  x [..., N]."""
    x = _f64(x)
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


# ---- sampling --------------------------------------------------------------------------------

_M32 = 0xFFFFFFFF


def philox4x32_10(counter, key):
    """Philox4x32-10 block function (Salmon et al. 2011): counter 4 x uint32, key 2 x uint32 -> 4 x uint32."""
    c = [int(v) & _M32 for v in counter]
    k0, k1 = int(key[0]) & _M32, int(key[1]) & _M32
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & _M32, (k1 + 0xBB67AE85) & _M32
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [((p1 >> 32) ^ c[1] ^ k0) & _M32, p1 & _M32, ((p0 >> 32) ^ c[3] ^ k1) & _M32, p0 & _M32]
    return c


def random_bits(seed, offset, row):
    """The 64 random bits sample() uses for (seed, offset, row): Philox keyed by seed, counter (offset, row, 0)."""
    seed, offset = int(seed), int(offset)
    c = philox4x32_10([offset & _M32, (offset >> 32) & _M32, int(row) & _M32, 0], [seed & _M32, (seed >> 32) & _M32])
    return (c[0] << 32) | c[1]


def sample_probs(logits, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0,
                 prev_tokens=None):
    """The distribution sample() draws from, after every filter;  logits [B, V] -> probabilities [B, V].

    penalty (CTRL: l > 0 ? l / r : l * r on tokens in prev_tokens) -> temperature (greedy: one-hot argmax,
    lowest index on ties) -> top_k (keep z >= k-th largest z) -> softmax -> top_p (keep tokens whose mass of
    strictly larger z is < top_p) -> min_p (keep p >= min_p * max p) -> renormalise.
    """
    l = np.array(logits, dtype=np.float64, ndmin=2)  # [B, V]
    B, V = l.shape
    if prev_tokens is not None and repetition_penalty != 1.0:
        prev = np.asarray(prev_tokens, dtype=np.int64)  # [B, P] or [P] (same for every row)
        if prev.ndim == 1:
            prev = np.broadcast_to(prev, (B, prev.shape[0]))
        for b in range(B):
            toks = np.unique(prev[b][(prev[b] >= 0) & (prev[b] < V)])
            v = l[b, toks]
            l[b, toks] = np.where(v > 0, v / repetition_penalty, v * repetition_penalty)
    if temperature <= 0:
        out = np.zeros((B, V))
        out[np.arange(B), np.argmax(l, axis=-1)] = 1.0
        return out
    z = l / temperature                                                # [B, V]
    keep = np.ones_like(z, dtype=bool)
    if 0 < top_k < V:
        kth = -np.partition(-z, top_k - 1, axis=-1)[:, top_k - 1:top_k]  # [B, 1] k-th largest
        keep &= z >= kth
    zmax = np.max(z, axis=-1, keepdims=True)
    p = np.where(keep, np.exp(z - zmax), 0.0)
    p /= p.sum(axis=-1, keepdims=True)
    if top_p < 1.0:
        for b in range(B):
            order = np.argsort(z[b], kind="stable")               # ascending z
            zs, cum = z[b][order], np.cumsum(p[b][order])
            n_le = np.searchsorted(zs, z[b], side="right")        # tokens with z <= z_i
            above = cum[-1] - cum[n_le - 1]                       # mass of tokens with z > z_i
            keep[b] &= above < top_p * cum[-1]
    if min_p > 0.0:
        keep &= p >= min_p * np.max(p, axis=-1, keepdims=True)
    p = np.where(keep, p, 0.0)
    return p / p.sum(axis=-1, keepdims=True)


def sample(logits, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0, seed=0, offset=0,
           prev_tokens=None):
    """Inverse-CDF draw from sample_probs with u = random_bits(seed, offset, row) / 2^64: the first token (in
    index order) whose cumulative probability exceeds u.  logits [B, V] -> int64 tokens [B] (an int for [V])."""
    one = np.ndim(logits) == 1
    p = sample_probs(logits, temperature, top_k, top_p, min_p, repetition_penalty, prev_tokens)  # [B, V]
    tokens = np.empty(p.shape[0], dtype=np.int64)
    for b in range(p.shape[0]):
        u = random_bits(seed, offset, b) / 2.0**64
        cdf = np.cumsum(p[b])
        tokens[b] = min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), int(np.flatnonzero(p[b])[-1]))
    return int(tokens[0]) if one else tokens



# ---- end of kernel library I section ----



# =====================================================================
# Kernel library II: matmul on GGUF weights
# (owned by the matmul work; keep edits inside this section)
# =====================================================================



def dequantize_weight(w):
    """W[N, K] in float64 from a QWeight or an array.

    A QWeight's GGUF bytes are decoded by gguf-py (``gguf.quants.dequantize``, an implementation
    independent of inferlab's) when the ``gguf`` package is installed, else by inferlab's C++ dequantizer.
    Arrays (already dequantized weights) are returned as float64.
    """
    if not hasattr(w, "gguf_bytes"):
        return _f64(w)  # [N, K]
    n, k = w.shape
    try:
        import gguf.quants as gq
        from gguf import GGMLQuantizationType
    except ImportError:  # pragma: no cover - the gguf package is a test dependency
        return _f64(w.dequantize())
    qtype = GGMLQuantizationType[w.type]
    raw = w.gguf_bytes().reshape(n, -1)  # [N, row_bytes]
    return _f64(gq.dequantize(raw, qtype)).reshape(n, k)


def matmul(x, w, bias=None, out_dtype="float32"):
    """y[T, N] = x[T, K] @ W[N, K]^T (+ bias[N]), in float64.

    x: [T, K] or [K]; w: a QWeight or a dequantized array [N, K]; bias: [N] or None. ``out_dtype`` is
    accepted for signature parity with the kernel and ignored (the reference is float64).
    """
    x = _f64(x)                    # [T, K] or [K]
    W = dequantize_weight(w)       # [N, K]
    y = x @ W.T                    # [T, N] or [N]
    if bias is not None:
        y = y + _f64(bias)         # broadcast over T
    return y


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
