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


# ---- end of attention section ----



# =====================================================================
# Whole-model forward pass (owned by the model work)
# =====================================================================


# ---- end of model section ----
