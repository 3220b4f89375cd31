"""NumPy references for every inferlab kernel and for a whole forward pass.

Each function reads like its formula, takes the same arguments as the kernel in
:mod:`inferlab.kernels` (minus ``device``), and computes in float64 unless
stated otherwise. Shapes are given in the comments.
"""
from __future__ import annotations

import numpy as np


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def _np_dtype(name):
    """NumPy dtype for a dtype name or object; bfloat16 comes from ml_dtypes."""
    if str(name) == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


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
    """GELU, tanh form: 0.5 x (1 + tanh(y)), y = sqrt(2/pi) (x + 0.044715 x^3).

    Evaluated as the identical x / (1 + exp(-2 y)): for x below about -5, 1 + tanh(y) cancels to a few
    bits even in float64 (at x = -7.25 it gives exactly 0, while the true value is about -1e-16).
    """
    x = _f64(x)
    y = np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)
    with np.errstate(over="ignore", invalid="ignore"):
        return x / (1.0 + np.exp(-2.0 * y))


def convert(x, out_dtype):
    """x [...] rounded to out_dtype (round to nearest even), returned as float64 [...]."""
    return _f64(np.asarray(x).astype(_np_dtype(out_dtype)))  # [...]


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


def quantize_x_int8(x):
    """x [T, K] (K % 16 == 0) after int8 quantization per 16-element run, as float64 (``d * q``).

    d = max|x_run| / 127 (float32) and q = round(x * (127 / max|x_run|)) (half to even), rounding the exact
    product once as the kernels' fused multiply-add does (the float32 factors multiply exactly in float64);
    a run holding NaN becomes NaN.
    """
    x = np.asarray(x, dtype=np.float32)
    runs = x.reshape(x.shape[:-1] + (x.shape[-1] // 16, 16))             # [..., K/16, 16]
    with np.errstate(invalid="ignore", divide="ignore"):
        amax = np.abs(runs).max(axis=-1, keepdims=True)                  # [..., K/16, 1] (NaN if any NaN)
        inv = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
        d = (amax * np.float32(1.0 / 127.0)).astype(np.float32)
        q = np.rint(runs.astype(np.float64) * inv)                       # integers in [-127, 127]
        out = (d * q).astype(np.float64)
    out = np.where(np.isnan(amax), np.nan, out)
    return out.reshape(x.shape)


def matmul(x, w, bias=None, out_dtype="float32", int8_activations=False):
    """y[T, N] = x[T, K] @ W[N, K]^T (+ bias[N]), in float64.

    x: [T, K] or [K]; w: a QWeight or a dequantized array [N, K]; bias: [N] or None. ``out_dtype`` is
    accepted for signature parity with the kernel and ignored (the reference is float64).
    ``int8_activations``: x goes through :func:`quantize_x_int8` first when w is a quantized QWeight and
    T <= 32 (the rule of the kernel).
    """
    if int8_activations and _is_quantized_qweight(w):
        x2 = np.asarray(_f64(x))
        if x2.ndim == 1 or x2.shape[0] <= 32:
            x = quantize_x_int8(x2.reshape(-1, x2.shape[-1])).reshape(x2.shape)
    x = _f64(x)                    # [T, K] or [K]
    W = dequantize_weight(w)       # [N, K]
    y = x @ W.T                    # [T, N] or [N]
    if bias is not None:
        y = y + _f64(bias)         # broadcast over T
    return y


def _is_quantized_qweight(w) -> bool:
    """True for a QWeight of a block-quantized type (not F32 / F16 / BF16, not a plain array)."""
    t = getattr(w, "type", None)
    return isinstance(t, str) and t.upper() not in ("F32", "F16", "BF16")


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
        self.dtype = _np_dtype(name)
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
#
# reference.forward(path, ids) -> trace dict, computed in float64 (or the dtype given) straight from
# the GGUF's dequantized tensors, for the architectures llama, qwen2, phi3 and gpt2:
#
#   {"tokens": ids [T],
#    "embeddings": [T, D]                       token (+ position, gpt2) embeddings
#    "layers": [ {"input":     [T, D]           residual entering the layer
#                 "attn_norm": [T, D]           normed input of attention
#                 "q":         [T, Hq, hd]      after bias and rope
#                 "k":         [T, Hkv, hd]     after bias and rope
#                 "v":         [T, Hkv, hd]
#                 "attn_out":  [T, D]           after the output projection (+ bias), before the residual add
#                 "mlp_out":   [T, D]           after the down projection (+ bias), before the residual add
#               }, ... one per layer ],
#    "output_norm": [T, D],
#    "logits": [T, V]}
#
# Conventions follow llama.cpp: llama GGUFs store q/k rows permuted for "normal" rope (rotate adjacent
# pairs), qwen2 and phi3 use "neox" rope (rotate the two halves), gpt2 has learned positions.
# The private helpers below (_rms_norm, _rope, ...) are self-contained; they compute the same
# formulas as the kernel-level references in the sections above.

import math  # noqa: E402  (kept inside this section)

SUPPORTED_ARCHS = ("llama", "qwen2", "phi3", "gpt2")

# Per-architecture quirks (same table as the C++ model's).
_ARCH = {
    #         norm     mlp       rope style  fused qkv  fused gate/up  learned positions
    "llama": ("rms", "swiglu", "norm", False, False, False),
    "qwen2": ("rms", "swiglu", "neox", False, False, False),
    "phi3": ("rms", "swiglu", "neox", True, True, False),
    "gpt2": ("layer", "gelu", None, True, False, True),
}


def _meta_from_gguf_py(reader):
    meta = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if hasattr(field, "contents"):
            meta[key] = field.contents()
            continue
        import gguf  # older gguf-py without ReaderField.contents()

        vt = field.types[0]
        if vt == gguf.GGUFValueType.STRING:
            meta[key] = bytes(field.parts[field.data[0]]).decode("utf-8")
        elif vt == gguf.GGUFValueType.ARRAY:
            if field.types[1] == gguf.GGUFValueType.STRING:
                meta[key] = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                meta[key] = [field.parts[i].tolist()[0] for i in field.data]
        else:
            meta[key] = field.parts[field.data[0]].tolist()[0]
    return meta


class _GGUFSource:
    """Metadata and dequantized tensors of a GGUF file.

    Uses inferlab's own reader (``inferlab.GGUFFile``) when it is available and falls back to
    gguf-py (``pip install gguf``) otherwise.
    """

    def __init__(self, path):
        import os

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"GGUF file not found: {self.path}")
        self._il = None
        try:
            from .gguf import GGUFFile

            f = GGUFFile(self.path)
            if hasattr(f, "dequantize") and hasattr(f, "metadata"):
                self._il = f
        except (NotImplementedError, AttributeError, TypeError, ImportError):
            self._il = None
        if self._il is not None:
            md = self._il.metadata
            self.meta = dict(md() if callable(md) else md)
            self.shapes = {t.name: tuple(int(n) for n in reversed(t.shape)) for t in self._il.tensors}
            return
        try:
            import gguf
        except ImportError as e:  # pragma: no cover
            raise ImportError("reading GGUF files in inferlab.reference needs inferlab's reader or "
                              "the 'gguf' package: pip install gguf") from e
        self._reader = gguf.GGUFReader(self.path)
        self.meta = _meta_from_gguf_py(self._reader)
        self._tensors = {t.name: t for t in self._reader.tensors}
        self.shapes = {t.name: tuple(int(n) for n in reversed(t.shape)) for t in self._reader.tensors}

    def has(self, name):
        return name in self.shapes

    def get(self, name, dtype=np.float64):
        """The tensor dequantized, in NumPy order (ggml's ne reversed: [rows, row length])."""
        if name not in self.shapes:
            from . import GGUFError

            raise GGUFError(f"{self.path}: tensor {name!r} is missing")
        shape = self.shapes[name]
        if self._il is not None:
            x = np.asarray(self._il.dequantize(name))
        else:
            import gguf

            t = self._tensors[name]
            x = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        return np.asarray(x, dtype=dtype).reshape(shape)


def load_state(path, dtype=np.float32):
    """Every tensor of a GGUF file dequantized: {name: array in NumPy order ([rows, row length])}."""
    src = _GGUFSource(path)
    return {name: src.get(name, dtype) for name in src.shapes}


class _Config:
    """Hyperparameters of a model, read from GGUF metadata (keys as llama.cpp writes them)."""

    def __init__(self, meta, shapes, path=""):
        from . import GGUFError

        arch = meta.get("general.architecture")
        if arch not in _ARCH:
            raise ValueError(f"{path}: unsupported architecture {arch!r}; supported: {', '.join(SUPPORTED_ARCHS)}")
        self.arch = arch
        self.norm, self.mlp, self.rope_style, self.fused_qkv, self.fused_gate_up, self.learned_pos = _ARCH[arch]

        def req(key):
            full = f"{arch}.{key}"
            if full not in meta:
                raise GGUFError(f"{path}: metadata key {full!r} is missing")
            return meta[full]

        def opt(key, default):
            return meta.get(f"{arch}.{key}", default)

        self.n_embd = int(req("embedding_length"))
        self.n_layer = int(req("block_count"))
        self.n_head = int(req("attention.head_count"))
        self.n_head_kv = int(opt("attention.head_count_kv", self.n_head))
        self.head_dim = int(opt("attention.key_length", self.n_embd // self.n_head))
        self.n_ff = int(req("feed_forward_length"))
        self.n_ctx = int(opt("context_length", 0))
        if self.norm == "rms":
            self.eps = float(opt("attention.layer_norm_rms_epsilon", 1e-5))
        else:
            self.eps = float(opt("attention.layer_norm_epsilon", 1e-5))
        self.rope_theta = float(opt("rope.freq_base", 10000.0))
        self.n_rot = int(opt("rope.dimension_count", self.head_dim)) if self.rope_style else 0
        scaling = opt("rope.scaling.type", "none")
        self.rope_scale = 1.0
        if scaling == "linear":
            self.rope_scale = float(opt("rope.scaling.factor", 1.0)) or 1.0
        elif scaling not in ("none", None, ""):
            raise NotImplementedError(f"{path}: rope scaling {scaling!r} is not implemented in the reference")
        self.sliding_window = int(opt("attention.sliding_window", 0)) if arch == "phi3" else 0
        if "token_embd.weight" not in shapes:
            raise GGUFError(f"{path}: tensor 'token_embd.weight' is missing")
        self.n_vocab = shapes["token_embd.weight"][0]
        if self.n_head % self.n_head_kv:
            raise GGUFError(f"{path}: head_count ({self.n_head}) is not a multiple of head_count_kv ({self.n_head_kv})")
        eos = [meta.get("tokenizer.ggml.eos_token_id"), meta.get("tokenizer.ggml.eot_token_id")]
        self.eos_ids = {int(e) for e in eos if e is not None}


def _rms_norm(x, w, eps):
    # x: [T, D], w: [D] -> x / sqrt(mean(x^2) + eps) * w
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _layer_norm(x, w, b, eps):
    # x: [T, D] -> (x - mean) / sqrt(var + eps) * w + b
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _silu(x):
    return x / (1.0 + np.exp(-x))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _rope(x, pos, n_rot, theta, style, freq_factors=None, scale=1.0):
    # x: [T, H, hd]; pos: [T]. Rotates the first n_rot dims of each head by angle pos * theta^(-2i/n_rot):
    #   style "norm": pairs (x[2i], x[2i+1]);  style "neox": pairs (x[i], x[i + n_rot/2]).
    half = n_rot // 2
    inv_freq = theta ** (-2.0 * np.arange(half, dtype=np.float64) / n_rot)     # [half]
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors
    ang = (np.asarray(pos, dtype=np.float64) / scale)[:, None] * inv_freq[None, :]  # [T, half]
    cos = np.cos(ang)[:, None, :].astype(x.dtype)
    sin = np.sin(ang)[:, None, :].astype(x.dtype)
    out = x.copy()
    if style == "norm":
        x0, x1 = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
        out[..., 0:n_rot:2] = x0 * cos - x1 * sin
        out[..., 1:n_rot:2] = x0 * sin + x1 * cos
    else:
        x0, x1 = x[..., :half], x[..., half:n_rot]
        out[..., :half] = x0 * cos - x1 * sin
        out[..., half:n_rot] = x0 * sin + x1 * cos
    return out


def _attention(q, k, v, q_pos, k_pos, window=0):
    # q: [T, Hq, hd], k/v: [S, Hkv, hd], q_pos: [T], k_pos: [S] -> [T, Hq, hd]
    # Query i sees key j iff k_pos[j] <= q_pos[i] and (window == 0 or q_pos[i] - k_pos[j] < window).
    T, Hq, hd = q.shape
    group = Hq // k.shape[1]
    kk = np.repeat(k, group, axis=1)                            # [S, Hq, hd]
    vv = np.repeat(v, group, axis=1)
    s = np.einsum("thd,shd->hts", q, kk) * (1.0 / math.sqrt(hd))  # [Hq, T, S]; python float keeps dtype
    dist = q_pos[:, None] - k_pos[None, :]                      # [T, S]
    visible = dist >= 0
    if window:
        visible &= dist < window
    s = np.where(visible[None], s, -np.inf)
    s = s - s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    return np.einsum("hts,shd->thd", p, vv)


class ReferenceModel:
    """A GGUF model held as dequantized NumPy arrays, with a plain forward pass.

    ReferenceModel(path_or_gguf, dtype=np.float64). Methods: forward(ids) -> trace dict,
    logits(ids) -> [T, V], greedy(ids, n) -> new token ids (uses a KV cache).
    """

    def __init__(self, source, dtype=np.float64):
        self.dtype = np.dtype(dtype)
        src = source if isinstance(source, _GGUFSource) else _GGUFSource(getattr(source, "path", source))
        self.path = src.path
        self.meta = src.meta
        self.cfg = cfg = _Config(src.meta, src.shapes, src.path)
        get = lambda n: src.get(n, self.dtype)  # noqa: E731
        opt = lambda n: src.get(n, self.dtype) if src.has(n) else None  # noqa: E731
        self.tok_embd = get("token_embd.weight")                      # [V, D]
        self.pos_embd = get("position_embd.weight") if cfg.learned_pos else None  # [n_ctx, D]
        self.out_norm_w = get("output_norm.weight")
        self.out_norm_b = opt("output_norm.bias")
        self.output = opt("output.weight")
        if self.output is None:
            self.output = self.tok_embd                               # tied embeddings
        self.freq_factors = opt("rope_freqs.weight")
        hq, hkv, hd = cfg.n_head, cfg.n_head_kv, cfg.head_dim
        self.layers = []
        for i in range(cfg.n_layer):
            b = f"blk.{i}."
            L = {"attn_norm": get(b + "attn_norm.weight"), "attn_norm_b": opt(b + "attn_norm.bias"),
                 "ffn_norm": get(b + "ffn_norm.weight"), "ffn_norm_b": opt(b + "ffn_norm.bias"),
                 "wo": get(b + "attn_output.weight"), "bo": opt(b + "attn_output.bias"),
                 "wdown": get(b + "ffn_down.weight"), "bdown": opt(b + "ffn_down.bias")}
            if src.has(b + "attn_qkv.weight"):
                wqkv, bqkv = get(b + "attn_qkv.weight"), opt(b + "attn_qkv.bias")
                splits = [hq * hd, (hq + hkv) * hd]
                L["wq"], L["wk"], L["wv"] = np.split(wqkv, splits, axis=0)
                L["bq"], L["bk"], L["bv"] = np.split(bqkv, splits) if bqkv is not None else (None, None, None)
            else:
                for x in "qkv":
                    L["w" + x], L["b" + x] = get(b + f"attn_{x}.weight"), opt(b + f"attn_{x}.bias")
            up = get(b + "ffn_up.weight")
            L["bup"] = opt(b + "ffn_up.bias")
            if cfg.mlp == "swiglu" and not src.has(b + "ffn_gate.weight"):
                L["wgate"], L["wup"] = up[:cfg.n_ff], up[cfg.n_ff:]   # fused [gate; up] (phi3)
            else:
                L["wgate"], L["wup"] = opt(b + "ffn_gate.weight"), up
            self._check_layer(i, L)
            self.layers.append(L)

    def _check_layer(self, i, L):
        from . import GGUFError

        c = self.cfg
        want = {"wq": (c.n_head * c.head_dim, c.n_embd), "wk": (c.n_head_kv * c.head_dim, c.n_embd),
                "wv": (c.n_head_kv * c.head_dim, c.n_embd), "wo": (c.n_embd, c.n_head * c.head_dim),
                "wup": (c.n_ff, c.n_embd), "wdown": (c.n_embd, c.n_ff)}
        if c.mlp == "swiglu":
            want["wgate"] = (c.n_ff, c.n_embd)
        for k, shape in want.items():
            if L[k] is None or L[k].shape != shape:
                got = None if L[k] is None else L[k].shape
                raise GGUFError(f"{self.path}: layer {i} {k} has shape {got}, metadata implies {shape}")

    # ---- the forward pass -------------------------------------------------------------------

    def _norm(self, x, w, b):
        if self.cfg.norm == "rms":
            return _rms_norm(x, w, self.cfg.eps)
        return _layer_norm(x, w, b, self.cfg.eps)

    @staticmethod
    def _linear(x, w, b=None):
        # x: [T, in], w: [out, in] -> [T, out]
        y = x @ w.T
        return y + b if b is not None else y

    def _check_ids(self, ids, start=0):
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError(f"ids must be a non-empty 1-D sequence of token ids; got shape {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be integers; got dtype {ids.dtype}")
        if ids.min() < 0 or ids.max() >= self.cfg.n_vocab:
            raise ValueError(f"ids: token id out of range [0, {self.cfg.n_vocab}): min {ids.min()}, max {ids.max()}")
        if self.cfg.learned_pos and start + ids.size > self.pos_embd.shape[0]:
            raise ValueError(f"ids: {start + ids.size} positions exceed the model's {self.pos_embd.shape[0]} "
                             "learned positions")
        return ids.astype(np.int64)

    def _run(self, ids, cache=None, trace=False):
        """Runs ids at positions cache_len.. ; extends the cache (list of (k, v) per layer) if given."""
        c = self.cfg
        start = 0 if not cache else cache[0][0].shape[0]
        ids = self._check_ids(ids, start)
        T = ids.size
        pos = np.arange(start, start + T)
        x = self.tok_embd[ids]                                         # [T, D]
        if c.learned_pos:
            x = x + self.pos_embd[pos]
        out = {"tokens": ids.copy(), "embeddings": x.copy(), "layers": []} if trace else None
        for li, L in enumerate(self.layers):
            h = self._norm(x, L["attn_norm"], L["attn_norm_b"])
            q = self._linear(h, L["wq"], L["bq"]).reshape(T, c.n_head, c.head_dim)
            k = self._linear(h, L["wk"], L["bk"]).reshape(T, c.n_head_kv, c.head_dim)
            v = self._linear(h, L["wv"], L["bv"]).reshape(T, c.n_head_kv, c.head_dim)
            if c.rope_style:
                q = _rope(q, pos, c.n_rot, c.rope_theta, c.rope_style, self.freq_factors, c.rope_scale)
                k = _rope(k, pos, c.n_rot, c.rope_theta, c.rope_style, self.freq_factors, c.rope_scale)
            if cache is not None:
                if len(cache) <= li:
                    cache.append((k, v))
                else:
                    cache[li] = (np.concatenate([cache[li][0], k]), np.concatenate([cache[li][1], v]))
                kk, vv = cache[li]
            else:
                kk, vv = k, v
            k_pos = np.arange(kk.shape[0])
            a = _attention(q, kk, vv, pos, k_pos, c.sliding_window)     # [T, Hq, hd]
            attn_out = self._linear(a.reshape(T, -1), L["wo"], L["bo"])  # [T, D]
            x_mid = x + attn_out
            h2 = self._norm(x_mid, L["ffn_norm"], L["ffn_norm_b"])
            if c.mlp == "swiglu":
                mlp_out = self._linear(_silu(self._linear(h2, L["wgate"])) * self._linear(h2, L["wup"]), L["wdown"])
            else:
                mlp_out = self._linear(_gelu_tanh(self._linear(h2, L["wup"], L["bup"])), L["wdown"], L["bdown"])
            if trace:
                out["layers"].append({"input": x, "attn_norm": h, "q": q, "k": k, "v": v,
                                      "attn_out": attn_out, "mlp_out": mlp_out})
            x = x_mid + mlp_out
        hn = self._norm(x, self.out_norm_w, self.out_norm_b)
        logits = hn @ self.output.T                                    # [T, V]
        if trace:
            out["output_norm"] = hn
            out["logits"] = logits
            return out
        return logits

    def forward(self, ids):
        """The full trace dict (see the section comment) for a teacher-forced sequence ids [T]."""
        return self._run(ids, trace=True)

    def logits(self, ids):
        """Logits [T, V] for a teacher-forced sequence ids [T]."""
        return self._run(ids)

    def greedy(self, ids, n, stop_at_eos=True):
        """Greedy-decode up to n new tokens after the prompt ids (argmax, ties to the lowest id).

        Returns the new ids (a list). With stop_at_eos, decoding stops at the first EOS/EOT token,
        which is not included.
        """
        if not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"n must be a positive integer; got {n!r}")
        cache = []
        logits = self._run(ids, cache=cache)
        new = []
        while True:
            t = int(np.argmax(logits[-1]))
            if stop_at_eos and t in self.cfg.eos_ids:
                break
            new.append(t)
            if len(new) == n:
                break
            logits = self._run([t], cache=cache)
        return new


def _as_reference_model(model, dtype):
    if isinstance(model, ReferenceModel) and model.dtype == np.dtype(dtype):
        return model
    if isinstance(model, ReferenceModel):
        model = model.path
    return ReferenceModel(model, dtype=dtype)


def forward(model, ids, dtype=np.float64):
    """Whole-model forward pass in NumPy: the trace dict for token ids [T] (see the section comment).

    model: a GGUF path, an ``inferlab.GGUFFile`` or a :class:`ReferenceModel` (reused, not reloaded).
    """
    return _as_reference_model(model, dtype).forward(ids)


def greedy_generate(model, ids, n, dtype=np.float64, stop_at_eos=True):
    """The first n greedy tokens after the prompt ids, from the NumPy forward pass (with a KV cache)."""
    return _as_reference_model(model, dtype).greedy(ids, n, stop_at_eos=stop_at_eos)


# ---- end of model section ----
