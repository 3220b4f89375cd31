"""Vectorized NumPy quantizers for the GGUF block formats, used by :mod:`inferlab.testing`.

The legacy formats (Q4_0 .. Q8_0, BF16) go through ``gguf.quants.quantize``. The K-quants
(Q2_K .. Q6_K) are not implemented there, so they are done here with a simple, fully
vectorized scheme: per sub-block min/max (or absmax) scales, 6- or 4-bit scale codes, and
round-to-nearest values. It is not llama.cpp's error-minimizing search, but every block is a
valid, faithful quantization of its input (the dequantized values are within one step of it),
and the bit layouts are exactly ggml's (checked against ``gguf.quants.dequantize`` in the tests).

All functions take ``x``: float32 [n_blocks, 256] and return uint8 [n_blocks, type_size].
"""
from __future__ import annotations

import numpy as np

QK_K = 256


def _f16_round(a):
    """Round float32 values to what an f16 field will hold; returns (f32 values, f16 bytes [n, 2])."""
    h = np.asarray(a, dtype=np.float32).astype(np.float16)
    return h.astype(np.float32), h.reshape(-1, 1).view(np.uint8)


def _safe_inv(a):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, 1.0 / np.where(a > 0, a, 1.0), 0.0).astype(np.float32)


def _round(a):
    return np.rint(a)


def _pack_scales_k4(sc, m):
    """Pack 8 six-bit scales and 8 six-bit mins into ggml's 12-byte K-quant layout.

    sc, m: uint8 [nb, 8] in 0..63 -> uint8 [nb, 12]
      bytes 0..3  = sc[0..3] | (sc[4..7] >> 4) << 6
      bytes 4..7  = m[0..3]  | (m[4..7]  >> 4) << 6
      bytes 8..11 = (sc[4..7] & 15) | (m[4..7] & 15) << 4
    """
    sc = sc.astype(np.uint8)
    m = m.astype(np.uint8)
    lo = sc[:, :4] | ((sc[:, 4:] >> 4) << 6)
    mid = m[:, :4] | ((m[:, 4:] >> 4) << 6)
    hi = (sc[:, 4:] & 0x0F) | ((m[:, 4:] & 0x0F) << 4)
    return np.concatenate([lo, mid, hi], axis=1)


def _asym(g, nlevels, nscale_levels):
    """Asymmetric sub-block quantization: x ~= d*sc*q - dmin*m.

    g: [nb, n_sub, sub] -> (q [nb, n_sub, sub] uint8, sc [nb, n_sub], m [nb, n_sub], d16, dmin16)
    """
    mn = np.minimum(g.min(axis=-1), 0.0)                        # [nb, n_sub] <= 0
    mx = g.max(axis=-1)
    scale = (mx - mn) / nlevels                                 # [nb, n_sub] >= 0
    d, d_bytes = _f16_round(scale.max(axis=-1) / nscale_levels)          # [nb]
    dmin, dmin_bytes = _f16_round((-mn).max(axis=-1) / nscale_levels)    # [nb]
    sc = np.clip(np.ceil(scale * _safe_inv(d)[:, None] - 1e-4), 0, nscale_levels)
    m = np.clip(_round(-mn * _safe_inv(dmin)[:, None]), 0, nscale_levels)
    step = d[:, None] * sc                                      # [nb, n_sub]
    off = dmin[:, None] * m
    q = np.clip(_round((g + off[..., None]) * _safe_inv(step)[..., None]), 0, nlevels)
    return q.astype(np.uint8), sc.astype(np.uint8), m.astype(np.uint8), d_bytes, dmin_bytes


def _sym(g, qmin, qmax, nscale_max):
    """Symmetric sub-block quantization with a signed scale: x ~= d*sc*q.

    The scale's sign is chosen so that the largest-magnitude element maps to qmin exactly.
    g: [nb, n_sub, sub] -> (q int [nb, n_sub, sub], sc int [nb, n_sub], d16 bytes)
    """
    idx = np.abs(g).argmax(axis=-1)[..., None]
    xmax = np.take_along_axis(g, idx, axis=-1)[..., 0]          # signed value of largest magnitude
    scale = xmax / qmin                                         # x_max / scale == qmin
    d, d_bytes = _f16_round(np.abs(scale).max(axis=-1) / nscale_max)
    sc = np.clip(_round(scale * _safe_inv(d)[:, None]), -nscale_max - 1, nscale_max)
    step = d[:, None] * sc
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(step != 0, 1.0 / np.where(step != 0, step, 1.0), 0.0)
    q = np.clip(_round(g * inv[..., None]), qmin, qmax)
    return q.astype(np.int16), sc.astype(np.int16), d_bytes


def quantize_q4_k(x):
    nb = x.shape[0]
    q, sc, m, d, dmin = _asym(x.reshape(nb, 8, 32), 15, 63)
    q = q.reshape(nb, 4, 2, 32)
    qs = (q[:, :, 0, :] | (q[:, :, 1, :] << 4)).reshape(nb, 128)
    return np.concatenate([d, dmin, _pack_scales_k4(sc, m), qs], axis=1)


def quantize_q5_k(x):
    nb = x.shape[0]
    q, sc, m, d, dmin = _asym(x.reshape(nb, 8, 32), 31, 63)
    low = (q & 0x0F).reshape(nb, 4, 2, 32)
    qs = (low[:, :, 0, :] | (low[:, :, 1, :] << 4)).reshape(nb, 128)
    hbit = ((q >> 4) & 1).astype(np.uint8)                      # [nb, 8, 32]: bit j of qh[e]
    qh = np.zeros((nb, 32), dtype=np.uint8)
    for j in range(8):
        qh |= hbit[:, j, :] << j
    return np.concatenate([d, dmin, _pack_scales_k4(sc, m), qh, qs], axis=1)


def quantize_q6_k(x):
    nb = x.shape[0]
    q, sc, d = _sym(x.reshape(nb, 16, 16), -32, 31, 127)
    u = (q + 32).astype(np.uint8).reshape(nb, 2, 4, 32)         # [nb, h, t, e]
    ql = ((u[:, :, 0:2, :] & 0x0F) | ((u[:, :, 2:4, :] & 0x0F) << 4)).reshape(nb, 128)
    qh = np.zeros((nb, 2, 32), dtype=np.uint8)
    for t in range(4):
        qh |= ((u[:, :, t, :] >> 4) & 3) << (2 * t)
    scales = sc.astype(np.int8).view(np.uint8)                  # [nb, 16]
    return np.concatenate([ql, qh.reshape(nb, 64), scales, d], axis=1)


def quantize_q3_k(x):
    nb = x.shape[0]
    q, sc, d = _sym(x.reshape(nb, 16, 16), -4, 3, 31)
    u = (q + 4).astype(np.uint8)                                # 0..7, flat order n
    low = (u & 3).reshape(nb, 2, 4, 32)                         # n = h*128 + s*32 + e
    qs = np.zeros((nb, 2, 32), dtype=np.uint8)
    for s in range(4):
        qs |= low[:, :, s, :] << (2 * s)
    hb = (u >> 2).reshape(nb, 8, 32)                            # n = b*32 + e
    hmask = np.zeros((nb, 32), dtype=np.uint8)
    for b in range(8):
        hmask |= hb[:, b, :] << b
    su = (sc + 32).astype(np.uint8)                             # [nb, 16] in 0..63
    lo = (su[:, :8] & 0x0F) | ((su[:, 8:] & 0x0F) << 4)         # byte i: scales i and i+8
    hi = np.zeros((nb, 4), dtype=np.uint8)
    for s in range(4):
        hi |= ((su[:, 4 * s:4 * s + 4] >> 4) & 3) << (2 * s)   # byte 8+i: scale s*4+i, bits 2s
    return np.concatenate([hmask, qs.reshape(nb, 64), lo, hi, d], axis=1)


def quantize_q2_k(x):
    nb = x.shape[0]
    q, sc, m, d, dmin = _asym(x.reshape(nb, 16, 16), 3, 15)
    scales = sc | (m << 4)                                      # [nb, 16]
    u = q.reshape(nb, 2, 4, 32)
    qs = np.zeros((nb, 2, 32), dtype=np.uint8)
    for s in range(4):
        qs |= u[:, :, s, :] << (2 * s)
    return np.concatenate([scales, qs.reshape(nb, 64), d, dmin], axis=1)


K_QUANTIZERS = {
    "Q2_K": quantize_q2_k,
    "Q3_K": quantize_q3_k,
    "Q4_K": quantize_q4_k,
    "Q5_K": quantize_q5_k,
    "Q6_K": quantize_q6_k,
}


def quantize_rows(rows, type_name):
    """Quantize float32 rows [n, k] (k % block == 0) to ggml blocks: uint8 [n, k // block * type_size]."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    n, k = rows.shape
    if type_name == "F32":
        return rows
    if type_name == "F16":
        return rows.astype(np.float16)
    if type_name in K_QUANTIZERS:
        if k % QK_K:
            raise ValueError(f"{type_name} needs rows that are a multiple of {QK_K}, got {k}")
        out = K_QUANTIZERS[type_name](rows.reshape(-1, QK_K))
        return out.reshape(n, -1)
    import gguf  # legacy formats and BF16

    return gguf.quants.quantize(rows, gguf.GGMLQuantizationType[type_name])
