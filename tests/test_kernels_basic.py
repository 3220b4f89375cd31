"""Kernel library I against the float64 references in inferlab.reference, on the CPU and on CUDA.

Every run uses fresh random inputs (the `rng` fixture), writes into NaN-poisoned outputs, and compares with
a tolerance atol + rtol * |ref| set by the output dtype (and the op's accumulation length).
"""
from __future__ import annotations

import numpy as np
import pytest

import inferlab
from inferlab import kernels as K
from inferlab import reference as R
from inferlab._tensor import np_dtype

from conftest import DEVICES, MODEL_SHAPES

F32, F16, BF16 = "float32", "float16", "bfloat16"
# (input dtype, output dtype) pairs; every dtype appears on both sides
DTYPE_PAIRS = [(F32, F32), (F16, F16), (BF16, BF16), (F16, F32), (F32, BF16), (BF16, F16)]
# rounding unit of each float type
EPS = {F32: 2.0**-24, F16: 2.0**-11, BF16: 2.0**-8}

MODELS = list(MODEL_SHAPES)


def tol(out_dtype, k=1.0):
    """rtol for a result stored as out_dtype after float32 arithmetic with an error growth of ~k ulp."""
    return 2 * EPS[out_dtype] + 8 * k * EPS[F32]


# smallest subnormal step of each type: the absolute floor of its rounding error
TINY = {F32: 2.0**-149, F16: 2.0**-24, BF16: 2.0**-133}


def rand(rng, shape, dtype, scale=1.0):
    """Random normal data rounded to dtype (the reference sees exactly the same values)."""
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(np_dtype(dtype))


def poisoned(shape, dtype):
    return np.full(shape, np.nan, dtype=np.float32).astype(np_dtype(dtype))


def check(got, ref, out_dtype, k=1.0, what=""):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert np.isfinite(got).all(), f"{what}: {np.size(got) - np.isfinite(got).sum()} non-finite outputs"
    rtol = tol(out_dtype, k)
    # absolute slack: the same relative error measured against the data's typical magnitude
    atol = rtol * float(np.sqrt(np.mean(ref * ref))) + TINY[out_dtype]
    err = np.abs(got - ref)
    bad = err > atol + rtol * np.abs(ref)
    if bad.any():
        i = np.unravel_index(np.argmax(err - rtol * np.abs(ref)), err.shape)
        raise AssertionError(f"{what}: {bad.sum()} of {bad.size} elements off; worst at {i}: got {got[i]!r}, "
                             f"ref {ref[i]!r} (atol {atol:.2e}, rtol {rtol:.2e})")


# ---------------------------------------------------------------------------------------------
# norms
# ---------------------------------------------------------------------------------------------

NORM_CASES = [pytest.param(MODEL_SHAPES[m]["d"], id=m) for m in MODELS] + [
    pytest.param(1, id="d1"), pytest.param(97, id="d97"), pytest.param(1025, id="d1025"),
    pytest.param(20000, id="d20000"),  # CUDA: beyond the register path for float rows (f16/bf16: within it)
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("d", NORM_CASES)
@pytest.mark.parametrize("T", [1, 97])
@pytest.mark.parametrize("dt_in,dt_out", DTYPE_PAIRS)
def test_rms_norm(device, d, T, dt_in, dt_out, rng):
    x = rand(rng, (T, d), dt_in, 3.0)
    w = rand(rng, (d,), dt_in)
    out = poisoned((T, d), dt_out)
    got = K.rms_norm(x, w, 1e-6, device=device, out=out)
    assert got is out
    check(got, R.rms_norm(x, w, 1e-6), dt_out, 4, "rms_norm")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("d", NORM_CASES)
@pytest.mark.parametrize("T", [1, 97])
@pytest.mark.parametrize("dt_in,dt_out", DTYPE_PAIRS)
def test_layer_norm(device, d, T, dt_in, dt_out, rng):
    x = rand(rng, (T, d), dt_in, 2.0) + np.asarray(1.5, dtype=np_dtype(dt_in))  # non-zero mean
    w, b = rand(rng, (d,), dt_in), rand(rng, (d,), F32)
    out = poisoned((T, d), dt_out)
    got = K.layer_norm(x, w, b, 1e-5, device=device, out=out)
    check(got, R.layer_norm(x, w, b, 1e-5), dt_out, 8, "layer_norm")
    if d > 1:  # without bias
        check(K.layer_norm(x, w, None, 1e-5, device=device), R.layer_norm(x, w, None, 1e-5), dt_in, 8, "no bias")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("d", NORM_CASES)
@pytest.mark.parametrize("dt_in,dt_out", DTYPE_PAIRS)
@pytest.mark.parametrize("kind", ["rms", "layer"])
def test_add_norm(device, d, dt_in, dt_out, kind, rng):
    T = 33
    res = rand(rng, (T, d), F32, 2.0)
    x = rand(rng, (T, d), dt_in)
    w, b = rand(rng, (d,), dt_in), rand(rng, (d,), dt_in)
    out = poisoned((T, d), dt_out)
    if kind == "rms":
        h, got = K.add_rms_norm(res, x, w, 1e-6, device=device, out=out)
        h_ref, ref = R.add_rms_norm(res, x, w, 1e-6)
    else:
        h, got = K.add_layer_norm(res, x, w, b, 1e-5, device=device, out=out)
        h_ref, ref = R.add_layer_norm(res, x, w, b, 1e-5)
    check(h, h_ref, F32, 1, "residual")
    check(got, ref, dt_out, 8, kind)


@pytest.mark.parametrize("device", DEVICES)
def test_add_rms_norm_device_residual_in_place(device, rng):
    d, T = 896, 5
    res = rand(rng, (T, d), F32)
    x, w = rand(rng, (T, d), F16), rand(rng, (d,), F32)
    rd = inferlab.DeviceArray.from_numpy(res.copy(), device)
    h, out = K.add_rms_norm(rd, inferlab.DeviceArray.from_numpy(x, device), w, 1e-6)
    assert h is rd and isinstance(out, inferlab.DeviceArray) and out.dtype_name == F16
    check(rd.numpy(), res.astype(np.float64) + x.astype(np.float64), F32, 1, "residual")
    check(out.numpy(), R.rms_norm(res.astype(np.float64) + x, w, 1e-6), F16, 4, "out")


@pytest.mark.parametrize("device", DEVICES)
def test_norm_in_place(device, rng):
    x = rand(rng, (7, 4096), F32)
    w = rand(rng, (4096,), F32)
    ref = R.rms_norm(x, w, 1e-6)
    xd = inferlab.DeviceArray.from_numpy(x.copy(), device)
    K.rms_norm(xd, w, 1e-6, out=xd)
    check(xd.numpy(), ref, F32, 4, "in place")


# ---------------------------------------------------------------------------------------------
# rope
# ---------------------------------------------------------------------------------------------

ROPE_CASES = [
    #            T,   H,  D, n_rot, style, theta
    pytest.param(97, MODEL_SHAPES["qwen2.5-0.5b"]["hq"], 64, 64, "neox", 1e6, id="qwen2.5-0.5b"),
    pytest.param(97, MODEL_SHAPES["phi3-mini-4k"]["hq"], 96, 96, "neox", 1e4, id="phi3-mini-4k"),
    pytest.param(97, MODEL_SHAPES["smollm2-135m"]["hq"], 64, 64, "norm", 1e5, id="smollm2-135m"),
    pytest.param(97, MODEL_SHAPES["llama3-8b"]["hkv"], 128, 128, "norm", 5e5, id="llama3-8b-k"),
    pytest.param(1, 32, 128, 128, "neox", 1e6, id="decode-hd128"),
    pytest.param(1025, 2, 64, 64, "norm", 1e4, id="T1025"),
    pytest.param(5, 4, 96, 32, "neox", 1e4, id="partial32-of-96"),
    pytest.param(5, 4, 80, 24, "neox", 1e4, id="partial24-of-80"),  # n_rot/2 not a multiple of 8
    pytest.param(5, 3, 80, 24, "norm", 1e4, id="partial24-norm"),
    pytest.param(3, 2, 6, 6, "norm", 1e4, id="D6"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T,H,D,n_rot,style,theta", ROPE_CASES)
@pytest.mark.parametrize("dt_in,dt_out", DTYPE_PAIRS)
def test_rope(device, T, H, D, n_rot, style, theta, dt_in, dt_out, rng):
    x = rand(rng, (T, H, D), dt_in)
    pos = rng.integers(0, 32768, size=T).astype(np.int32)
    out = poisoned((T, H, D), dt_out)
    got = K.rope(x, pos, theta, n_rot, style, device=device, out=out)
    ref = R.rope(x, pos, theta, n_rot, style)
    check(got, ref, dt_out, 4, f"rope {style}")
    np.testing.assert_array_equal(got[..., n_rot:].astype(np.float32),
                                  x[..., n_rot:].astype(np_dtype(dt_out)).astype(np.float32))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("style", ["norm", "neox"])
def test_rope_in_place_and_styles_differ(device, style, rng):
    x = rand(rng, (9, 4, 64), F16)
    pos = np.arange(9, dtype=np.int32) * 7
    ref = R.rope(x, pos, 1e4, 64, style)
    other = R.rope(x, pos, 1e4, 64, "neox" if style == "norm" else "norm")
    assert np.abs(ref - other).max() > 0.1  # the two layouts really differ
    xd = inferlab.DeviceArray.from_numpy(x.copy(), device)
    K.rope(xd, pos, 1e4, 64, style, out=xd)
    check(xd.numpy(), ref, F16, 4, "in place")


# ---------------------------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------------------------

EW_CASES = [pytest.param(3, MODEL_SHAPES[m]["ffn"], id=m) for m in MODELS] + [
    pytest.param(1, 1, id="1x1"), pytest.param(97, 97, id="97x97"), pytest.param(2, 1025, id="2x1025"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T,N", EW_CASES)
@pytest.mark.parametrize("dt_in,dt_out", DTYPE_PAIRS)
def test_add(device, T, N, dt_in, dt_out, rng):
    a = rand(rng, (T, N), F32)  # residual-like float32 plus a lower-precision delta
    b = rand(rng, (T, N), dt_in)
    out = poisoned((T, N), dt_out)
    check(K.add(a, b, device=device, out=out), R.add(a, b), dt_out, 1, "add")
    c = rand(rng, (T, N), dt_in)
    check(K.add(b, c, device=device, out_dtype=dt_out), R.add(b, c), dt_out, 1, "add same dtype")


@pytest.mark.parametrize("device", DEVICES)
def test_add_in_place(device, rng):
    a, b = rand(rng, (5, 4096), F32), rand(rng, (5, 4096), F32)
    ref = R.add(a, b)
    ad = inferlab.DeviceArray.from_numpy(a.copy(), device)  # CPU arrays share memory
    K.add(ad, b, out=ad)
    check(ad.numpy(), ref, F32, 1, "out=a")
    bd = inferlab.DeviceArray.from_numpy(b.copy(), device)
    K.add(a, bd, out=bd)
    check(bd.numpy(), ref, F32, 1, "out=b")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T,N", [pytest.param(5, 3 * MODEL_SHAPES[m]["d"], id=m) for m in MODELS]
                         + [pytest.param(97, 97, id="97x97"), pytest.param(1, 1, id="1x1")])
@pytest.mark.parametrize("dt_x,dt_b", [(F32, F32), (F16, F32), (BF16, BF16), (F32, F16)])
def test_add_bias(device, T, N, dt_x, dt_b, rng):
    x, bias = rand(rng, (T, N), dt_x), rand(rng, (N,), dt_b)
    got = K.add_bias(x, bias, device=device)
    check(got, R.add_bias(x, bias), dt_x, 1, "add_bias")
    xd = inferlab.DeviceArray.from_numpy(x.copy(), device)
    assert K.add_bias(xd, bias) is xd
    check(xd.numpy(), R.add_bias(x, bias), dt_x, 1, "add_bias in place")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T,N", EW_CASES)
@pytest.mark.parametrize("dt_in,dt_out", DTYPE_PAIRS)
def test_swiglu(device, T, N, dt_in, dt_out, rng):
    g, u = rand(rng, (T, N), dt_in, 3.0), rand(rng, (T, N), dt_in)
    out = poisoned((T, N), dt_out)
    check(K.swiglu(g, u, device=device, out=out), R.swiglu(g, u), dt_out, 4, "swiglu")
    gu = rand(rng, (T, 2 * N), dt_in, 3.0)
    out = poisoned((T, N), dt_out)
    check(K.swiglu_fused(gu, device=device, out=out), R.swiglu_fused(gu), dt_out, 4, "swiglu_fused")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T,N", EW_CASES)
@pytest.mark.parametrize("dt_in,dt_out", DTYPE_PAIRS)
def test_gelu(device, T, N, dt_in, dt_out, rng):
    x = rand(rng, (T, N), dt_in, 3.0)
    out = poisoned((T, N), dt_out)
    check(K.gelu(x, device=device, out=out), R.gelu(x), dt_out, 8, "gelu")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T,N", EW_CASES)
@pytest.mark.parametrize("dt_in,dt_out", DTYPE_PAIRS + [(F32, F16), (BF16, F32)])
def test_convert_is_exact_rounding(device, T, N, dt_in, dt_out, rng):
    # conversion is exact rounding to nearest even: no tolerance
    x = rand(rng, (T, N), dt_in, 3.0)
    x.flat[:4] = np.array([60000.0, -1e-7, 6.0e-8, 0.0]).astype(x.dtype)  # near the f16 max, subnormals, zero
    out = poisoned((T, N), dt_out)
    got = K.convert(x, dt_out, device=device, out=out)
    ref = R.convert(x, dt_out)
    np.testing.assert_array_equal(np.asarray(got, np.float64), ref)


@pytest.mark.parametrize("device", DEVICES)
def test_activations_extreme_values(device):
    x = np.array([[-100.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 100.0, 1e4]], dtype=np.float32)
    check(K.gelu(x, device=device), R.gelu(x), F32, 8, "gelu")
    check(K.swiglu(x, x, device=device), R.swiglu(x, x), F32, 8, "swiglu")
    for dt_out in (F16, BF16):  # the CUDA kernel's approximate exp/rcp path for 16-bit outputs
        check(K.gelu(x, device=device, out_dtype=dt_out), R.gelu(x), dt_out, 8, f"gelu -> {dt_out}")


# ---------------------------------------------------------------------------------------------
# softmax
# ---------------------------------------------------------------------------------------------

SOFTMAX_CASES = [pytest.param(2, MODEL_SHAPES[m]["vocab"], id=f"{m}-vocab") for m in ("qwen2.5-0.5b", "gpt2")] + [
    pytest.param(97, 97, id="97x97"), pytest.param(5, 1025, id="5x1025"), pytest.param(64, 4096, id="64x4096"),
    pytest.param(3, 1, id="3x1"), pytest.param(4, 16384, id="4x16384"), pytest.param(2, 20000, id="2x20000"),
    pytest.param(9, 1000, id="9x1000"),  # CUDA: one warp per row, a partly filled last block
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("R_,N", SOFTMAX_CASES)
@pytest.mark.parametrize("dt_in,dt_out", DTYPE_PAIRS)
def test_softmax(device, R_, N, dt_in, dt_out, rng):
    x = rand(rng, (R_, N), dt_in, 4.0)
    out = poisoned((R_, N), dt_out)
    got = K.softmax(x, device=device, out=out)
    # relative error of each probability: a few ulp of exp plus the row-sum rounding
    check(got, R.softmax(x), dt_out, 16, "softmax")
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64).sum(-1), 1.0, rtol=0, atol=64 * EPS[dt_out] + 1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_softmax_masked_and_3d(device, rng):
    x = rand(rng, (2, 3, 40), F32)
    x[0, 1, 5:] = -np.inf  # attention-style mask
    got = K.softmax(x, device=device)
    check(got, R.softmax(x), F32, 16, "softmax -inf")
    assert (got[0, 1, 5:] == 0).all()
    for dt in (F16, BF16):  # 16-bit rows and outputs (CUDA: raw rows, approximate exp)
        xh = x.astype(np_dtype(dt))
        got = K.softmax(xh, device=device)
        check(got, R.softmax(xh), dt, 16, f"softmax -inf {dt}")
        assert (np.asarray(got, np.float64)[0, 1, 5:] == 0).all()


# ---------------------------------------------------------------------------------------------
# embedding
# ---------------------------------------------------------------------------------------------

EMB_CASES = [pytest.param(MODEL_SHAPES[m]["d"], id=m) for m in MODELS] + [pytest.param(97, id="d97"),
                                                                       pytest.param(1, id="d1")]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("d", EMB_CASES)
@pytest.mark.parametrize("dt_in,dt_out", DTYPE_PAIRS)
def test_embedding(device, d, dt_in, dt_out, rng):
    V, T = 1000, 97
    table = rand(rng, (V, d), dt_in)
    ids = rng.integers(0, V, size=T)
    ids[:2] = [0, V - 1]
    out = poisoned((T, d), dt_out)
    check(K.embedding(ids, table, device=device, out=out), R.embedding(ids, table), dt_out, 0, "embedding")


@pytest.mark.parametrize("device", DEVICES)
def test_embedding_bad_ids(device, rng):
    table = rand(rng, (10, 8), F32)
    with pytest.raises(ValueError, match="ids"):
        K.embedding(np.array([0, 10]), table, device=device)
    with pytest.raises(ValueError, match="ids"):
        K.embedding(np.array([-1]), table, device=device)
    with pytest.raises(ValueError, match="ids"):
        K.embedding(np.array([0.5]), table, device=device)


def test_embedding_bad_ids_cpu_core():
    # the C++ check itself (bypassing the Python pre-check)
    table = inferlab.DeviceArray.from_numpy(np.ones((10, 8), np.float32), "cpu")
    ids = inferlab.DeviceArray.from_numpy(np.array([3, 12], np.int32), "cpu")
    out = inferlab.DeviceArray.empty([2, 8], "float32", "cpu")
    with pytest.raises(ValueError, match=r"ids\[1\] = 12"):
        inferlab._core.kernels.embedding(ids, table, out)


# ---- GGUF-typed tables -----------------------------------------------------------------------

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as QT  # noqa: E402
from gguf.quants import dequantize as gguf_dequantize  # noqa: E402

QTYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# byte offsets of the fp16 scale fields inside one block (random bytes elsewhere are all valid)
_F16_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q2_K": [80, 82],
               "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


def random_qtable(rng, qtype: str, V: int, D: int) -> np.ndarray:
    """Random table bytes [V, row_bytes] of a GGUF type with sane (finite, moderate) scales."""
    if qtype in ("F32", "F16", "BF16"):
        return rand(rng, (V, D), {"F32": F32, "F16": F16, "BF16": BF16}[qtype]).view(np.uint8).reshape(V, -1)
    block, nbytes = gguf.GGML_QUANT_SIZES[QT[qtype]]
    nb = V * D // block
    raw = rng.integers(0, 256, size=(nb, nbytes), dtype=np.uint8)
    for off in _F16_FIELDS[qtype]:
        raw[:, off:off + 2] = (rng.uniform(0.002, 0.05, size=nb) * rng.choice([-1, 1], size=nb)).astype(
            np.float16).view(np.uint8).reshape(nb, 2)
    return raw.reshape(V, -1)


def qtable_ref(data: np.ndarray, qtype: str, D: int) -> np.ndarray:
    if qtype in ("F32", "F16", "BF16"):
        return data.view({"F32": np.float32, "F16": np.float16, "BF16": np_dtype(BF16)}[qtype]).astype(np.float64)
    return gguf_dequantize(data, QT[qtype]).astype(np.float64).reshape(data.shape[0], D)


@pytest.mark.parametrize("qtype", QTYPES)
def test_device_dequant_groups_match_gguf(qtype, rng):
    # The CUDA embedding's group dequantizer (kernels/dequant_group.h), compiled for the host.
    D = 1024
    data = random_qtable(rng, qtype, 3, D)
    ref = qtable_ref(data, qtype, D)
    for r in range(3):
        got = inferlab._core.kernels._dequant_groups(K.GGML_TYPES[qtype],
                                                     inferlab.DeviceArray.from_numpy(data[r], "cpu"), D).numpy()
        np.testing.assert_allclose(got, ref[r], rtol=1e-6, atol=1e-7, err_msg=f"{qtype} row {r}")


def check_embedding_q(device, qtype, V, D, T, dt_out, rng):
    """T random ids gathered from a random [V, D] qtype table into a poisoned output, against the reference."""
    data = random_qtable(rng, qtype, V, D)
    ids = rng.integers(0, V, size=T)
    out = poisoned((T, D), dt_out)
    got = K.embedding_q(ids, data, qtype, (V, D), device=device, out=out)
    check(got, R.embedding(ids, qtable_ref(data, qtype, D)), dt_out, 2, f"embedding_q {qtype} D={D}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("dt_out", [F32, F16, BF16])
def test_embedding_q(device, qtype, model, dt_out, rng):
    D = MODEL_SHAPES[model]["d"]
    block = gguf.GGML_QUANT_SIZES[QT[qtype]][0]
    if D % block:
        pytest.skip(f"d={D} is not a multiple of the {qtype} block ({block})")
    check_embedding_q(device, qtype, 300, D, 37, dt_out, rng)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("qtype,D", [("Q8_0", 4384), ("Q4_0", 4384), ("Q5_1", 8224), ("Q6_K", 4352),
                                     ("Q3_K", 4352), ("Q2_K", 4352), ("Q4_K", 8448)])
@pytest.mark.parametrize("dt_out", [F32, F16])
def test_embedding_q_long_rows(device, qtype, D, dt_out, rng):
    # CUDA: rows of several 128-group shared-memory chunks (the last one partial); row_bytes not a multiple
    # of 16 for all but Q4_K, so most rows start unaligned
    check_embedding_q(device, qtype, 40, D, 23, dt_out, rng)


@pytest.mark.cuda
@pytest.mark.parametrize("qtype,D", [("Q8_0", 896), ("Q4_K", 4352)])
def test_embedding_q_out_of_range_ids_give_zero_rows_on_cuda(qtype, D, rng):
    V = 30
    data = random_qtable(rng, qtype, V, D)
    ids = np.array([3, -1, V, 0, V + 1000, V - 1], np.int64)
    got = np.asarray(K.embedding_q(ids, data, qtype, (V, D), device="cuda", out=poisoned((6, D), F32)), np.float64)
    ref = qtable_ref(data, qtype, D)
    for t, i in enumerate(ids):
        if 0 <= i < V:
            check(got[t], ref[i], F32, 2, f"row {t}")
        else:
            assert (got[t] == 0).all(), f"row {t} (id {i}) is not zero"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("qtype", ["Q8_0", "Q6_K", "Q4_K", "Q5_0", "Q3_K", "F16"])
def test_embedding_from_qweight(device, qtype, rng):
    # a QWeight as the matmul area builds it (on CUDA: its split layout for quantized types)
    QW = getattr(K, "QWeight", None)
    if QW is None or not hasattr(QW, "from_bytes"):
        pytest.skip("inferlab.kernels.QWeight (matmul area) is not available in this build")
    V, D, T = 200, 1024, 41
    data = random_qtable(rng, qtype, V, D)
    w = QW.from_bytes(data, qtype, V, D, device=device)
    ids = rng.integers(0, V, size=T)
    out = poisoned((T, D), F32)
    got = K.embedding(ids, w, device=device, out=out)
    check(got, R.embedding(ids, qtable_ref(data, qtype, D)), F32, 2, f"embedding from QWeight {qtype}")


@pytest.mark.parametrize("device", DEVICES)
def test_embedding_q_errors(device, rng):
    data = random_qtable(rng, "Q8_0", 4, 64)
    with pytest.raises(ValueError, match="multiple of 32"):
        K.embedding_q([0], data, "Q8_0", (4, 48), device=device)
    with pytest.raises(ValueError, match="bytes"):
        K.embedding_q([0], data[:2], "Q8_0", (4, 64), device=device)
    with pytest.raises(NotImplementedError, match="IQ2_XXS"):
        K.embedding_q([0], data, 16, (4, 256), device=device)
    with pytest.raises(ValueError, match="ggml_type"):
        K.embedding_q([0], data, "Q9_9", (4, 64), device=device)


# ---------------------------------------------------------------------------------------------
# API behaviour and validation
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_device_arrays_chain_without_numpy(device, rng):
    x = inferlab.DeviceArray.from_numpy(rand(rng, (4, 64), F16), device)
    w = inferlab.DeviceArray.from_numpy(rand(rng, (64,), F32), device)
    h = K.rms_norm(x, w, 1e-6)
    g = K.gelu(h, out_dtype=F32)
    assert isinstance(h, inferlab.DeviceArray) and isinstance(g, inferlab.DeviceArray)
    assert h.device == device and g.dtype_name == F32
    # each step against its reference on the step's actual input (a 1-ulp fp16 rounding difference in h
    # would otherwise be amplified by gelu past float32 tolerances)
    check(h.numpy(), R.rms_norm(x.numpy(), w.numpy(), 1e-6), F16, 4, "chain rms_norm")
    check(g.numpy(), R.gelu(h.numpy()), F32, 8, "chain gelu")


def test_validation_messages_name_arguments(rng):
    x, w = rand(rng, (4, 64), F32), rand(rng, (64,), F32)
    with pytest.raises(ValueError, match="w must have shape"):
        K.rms_norm(x, w[:32], 1e-6)
    with pytest.raises(ValueError, match="x has dtype float64"):
        K.rms_norm(x.astype(np.float64), w, 1e-6)
    with pytest.raises(ValueError, match="eps"):
        K.rms_norm(x, w, -1.0)
    with pytest.raises(ValueError, match="residual has dtype"):
        K.add_rms_norm(x.astype(np.float16), x, w, 1e-6)
    with pytest.raises(ValueError, match="b must have shape"):
        K.layer_norm(x, w, w[:3], 1e-5)
    with pytest.raises(ValueError, match="b has shape"):
        K.add(x, x[:2])
    with pytest.raises(ValueError, match="up has dtype"):
        K.swiglu(x, x.astype(np.float16))
    with pytest.raises(ValueError, match="gate_up"):
        K.swiglu_fused(rand(rng, (4, 7), F32))
    with pytest.raises(ValueError, match="bias must have shape"):
        K.add_bias(x, w[:5])
    with pytest.raises(ValueError, match="out must have shape"):
        K.gelu(x, out=np.zeros((4, 63), np.float32))
    with pytest.raises(ValueError, match="out_dtype"):
        K.gelu(x, out_dtype="int32")
    with pytest.raises(ValueError, match="device"):
        K.gelu(x, device="tpu")
    q = rand(rng, (3, 2, 8), F32)
    with pytest.raises(ValueError, match="n_rot"):
        K.rope(q, [0, 1, 2], 1e4, 7, "neox")
    with pytest.raises(ValueError, match="n_rot"):
        K.rope(q, [0, 1, 2], 1e4, 10, "neox")
    with pytest.raises(ValueError, match="positions must have shape"):
        K.rope(q, [0, 1], 1e4, 8, "neox")
    with pytest.raises(ValueError, match="theta"):
        K.rope(q, [0, 1, 2], -1.0, 8, "neox")
    with pytest.raises(ValueError, match="style"):
        K.rope(q, [0, 1, 2], 1e4, 8, "gptj")
    with pytest.raises(ValueError, match="x must be 3-D"):
        K.rope(x, [0, 1, 2, 3], 1e4, 8, "neox")


def test_aliasing_rules():
    core = inferlab._core.kernels
    da = inferlab.DeviceArray.from_numpy
    r = da(np.ones((2, 8), np.float32), "cpu")
    x = da(np.ones((2, 8), np.float32), "cpu")
    w = da(np.ones(8, np.float32), "cpu")
    out = da(np.zeros((2, 8), np.float32), "cpu")
    core.add(x, x, x)  # out may be a (or b) itself
    with pytest.raises(ValueError, match="out must not be the same array as residual"):
        core.add_rms_norm(r, x, w, 1e-6, r)  # the residual must keep the sum
    with pytest.raises(ValueError, match="residual must not be the same array as x"):
        core.add_rms_norm(r, r, w, 1e-6, out)
    # arrays whose bytes overlap without being the same array
    big = np.arange(32, dtype=np.float32)
    with pytest.raises(ValueError, match="out partially overlaps x"):
        core.gelu(da(big[0:16], "cpu"), da(big[8:24], "cpu"))


@pytest.mark.skipif(inferlab.cuda_available(), reason="checks the error without a GPU")
def test_cuda_without_gpu_is_a_clear_error(rng):
    with pytest.raises((NotImplementedError, ValueError, MemoryError)):
        K.gelu(rand(rng, (2, 8), F32), device="cuda")
