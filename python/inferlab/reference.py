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
