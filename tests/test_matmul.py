"""matmul on GGUF weights: every type against x @ dequantize(W).T (float64, gguf-py's dequantizer).

Weights: random floats quantized by gguf-py where it can (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0);
random bytes with small finite fp16 scales for the K-quants. Layer shapes come from MODEL_SHAPES; on the
CPU the number of rows is trimmed (K is always the real one). Outputs are poisoned with NaN before each
run. Tolerance: factor(path, K) * (|x| @ |W|.T) (+ fp16 output rounding), where the factor follows the
precision of the path taken (see inferlab.kernels._matmul).
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

import inferlab
from inferlab import reference as R
from inferlab.kernels import QWeight, matmul
from conftest import DEVICES, MODEL_SHAPES

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as G  # noqa: E402

ALL_TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
QUANTIZABLE = {"BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"}
# Offsets of the fp16 scale fields (d, dmin / m) inside a block, for random K-quant blocks.
SCALE_FIELDS = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}
DECODE_MAX_T = 8          # CUDA: fused kernel up to this T for float weights
CHUNKED_DECODE_MAX_T = 32  # CUDA: fused kernel (in chunks of 8 rows) up to this T for quantized weights


def block_size(t: str) -> int:
    return gguf.GGML_QUANT_SIZES[G[t]][0]


def layer_shapes(model: str) -> dict:
    """(N, K) of the matmuls of one transformer layer (and the output head) of a model."""
    s = MODEL_SHAPES[model]
    d, hq, hkv, hd, ffn = s["d"], s["hq"], s["hkv"], s["hd"], s["ffn"]
    return {
        "qkv": ((hq + 2 * hkv) * hd, d),
        "o": (d, hq * hd),
        "gate_up": (2 * ffn, d),
        "down": (d, ffn),
        "head": (s["vocab"], d),
    }


def make_weight(rng, t: str, n: int, k: int) -> np.ndarray:
    """Raw GGUF bytes [n, row_bytes] of a random weight of type t."""
    if t == "F32":
        return (rng.standard_normal((n, k)) * 0.05).astype(np.float32).view(np.uint8)
    if t == "F16":
        return (rng.standard_normal((n, k)) * 0.05).astype(np.float16).view(np.uint8)
    if t in QUANTIZABLE:
        w = (rng.standard_normal((n, k)) * rng.uniform(0.01, 0.2)).astype(np.float32)
        return gguf.quants.quantize(w, G[t]).view(np.uint8).reshape(n, -1)
    bs, ts = gguf.GGML_QUANT_SIZES[G[t]]
    raw = rng.integers(0, 256, size=(n, k // bs * ts), dtype=np.uint8)
    blocks = raw.reshape(-1, ts)
    for off in SCALE_FIELDS[t]:
        sc = (rng.uniform(0.002, 0.05, size=blocks.shape[0]) * rng.choice([-1, 1], size=blocks.shape[0]))
        blocks[:, off:off + 2] = sc.astype(np.float16).view(np.uint8).reshape(-1, 2)
    return raw


def ref_dequant(raw: np.ndarray, t: str, n: int, k: int) -> np.ndarray:
    return gguf.quants.dequantize(raw.reshape(n, -1), G[t]).astype(np.float64).reshape(n, k)


MMA_MAX_K = 96 * 1024 // 2 - 8  # CUDA: the tensor-core decode kernel stages one row of x (fp16) up to this K


def _mma_available() -> bool:
    """The tensor-core decode kernel runs on compute capability >= 9 (it streams W with bulk copies) with
    208 KB of shared memory per block, as on H100 / H200 (matmul.cu mmq_available); devices() does not
    report shared memory, so a cc >= 9 GPU with less would be mispredicted here."""
    if not inferlab.cuda_available():
        return False
    return tuple(inferlab.devices()[0]["compute_capability"]) >= (9, 0)


def path_of(device: str, t: str, T: int, K: int = 16) -> str:
    """Which precision path the op takes (see kernels/_matmul.py). On CUDA, float weights whose K is not
    a multiple of 16 always take the cuBLAS path (the fused kernel reads them 16 at a time); decode with
    quantized or F16 weights runs the tensor-core kernel (W and x in fp16); BF16 decode stays float32."""
    is_float = t in ("F32", "F16", "BF16")
    fused_ok = not is_float or K % 16 == 0
    if device == "cpu" or t == "F32":
        return "fp32"
    if fused_ok and T <= (DECODE_MAX_T if is_float else CHUNKED_DECODE_MAX_T):
        return "mma" if t != "BF16" and K <= MMA_MAX_K and _mma_available() else "fp32"
    return "bf16" if t == "BF16" else "fp16"


def tolerance(path: str, K: int, mag: np.ndarray, ref: np.ndarray, out_dtype: str, t: str) -> np.ndarray:
    u32 = 2.0 ** -24
    # float32 accumulation; quantized types are accumulated as s * sum(x q) + m * sum(x), whose terms can be
    # larger than |x| |w| -- hence the larger constant.
    f = (1.0 if t in ("F32", "F16", "BF16") else 4.0) * np.sqrt(K) * u32
    if path == "fp16":
        f += 2.5 * 2.0 ** -11  # x and W rounded to fp16: each product off by <= ~2 u16
    elif path == "mma":
        f += 4.0 * 2.0 ** -11  # also the unit's scale and min rounded to fp16 before W is formed
    elif path == "bf16":
        f += 1.5 * 2.0 ** -8   # x rounded to bf16 (BF16 weights are exact)
    tol = f * mag + 1e-30
    if out_dtype == "float16":
        tol = tol + 2.0 ** -11 * np.abs(ref) + 6e-8
    return tol


def run_and_check(rng, device, t, n, k, T, *, x_dtype="float32", bias=False, out_dtype="float32", w=None,
                  raw=None, W=None, x=None, label=""):
    """Runs matmul on a poisoned output and checks it against the float64 reference. W: the reference
    dequantization of raw, when the caller already has it."""
    if raw is None:
        raw = make_weight(rng, t, n, k)
    if w is None:
        w = QWeight.from_bytes(raw, t, n, k, device=device)
    if W is None:
        W = ref_dequant(raw, t, n, k)
    if x is None:
        x = rng.standard_normal((T, k)).astype(np.float32)
    x = np.asarray(x).astype(inferlab._tensor.np_dtype(x_dtype))
    b = (rng.standard_normal(n) * 0.5).astype(np.float32) if bias else None
    out = inferlab.DeviceArray.from_numpy(np.full((T, n), np.nan, dtype=np.dtype(out_dtype)), device)
    res = matmul(x, w, bias=b, out=out)
    assert res is out
    y = out.numpy().astype(np.float64)
    xf = x.astype(np.float64)
    ref = xf @ W.T + (b.astype(np.float64) if bias else 0.0)
    mag = np.abs(xf) @ np.abs(W).T
    tol = tolerance(path_of(device, t, T, k), k, mag, ref, out_dtype, t)
    err = np.abs(y - ref)
    bad = ~(err <= tol)  # NaN (unwritten) counts as bad
    if bad.any():
        i = np.argwhere(bad)[0]
        pytest.fail(f"{label} {t} [{n}x{k}] T={T} {device}: {bad.sum()} bad of {bad.size}; first at {tuple(i)}: "
                    f"got {y[tuple(i)]}, want {ref[tuple(i)]}, tol {tol[tuple(i)]:.3g}")
    return y, ref


# --------------------------------------------------------------------------------------------------------
# Every type at real layer shapes, odd T
# --------------------------------------------------------------------------------------------------------
SHAPE_CASES = [
    ("qwen2.5-0.5b", "down"), ("qwen2.5-0.5b", "qkv"), ("smollm2-135m", "down"), ("smollm2-135m", "gate_up"),
    ("gpt2", "down"), ("phi3-mini-4k", "qkv"), ("phi3-mini-4k", "down"), ("llama3-8b", "down"),
    ("llama3-8b", "o"),
]


def _cases():
    out = []
    for t in ALL_TYPES:
        for model, layer in SHAPE_CASES:
            n, k = layer_shapes(model)[layer]
            if k % block_size(t):
                continue  # GGUF files use another type for such tensors
            out.append(pytest.param(t, model, layer, id=f"{t}-{model}-{layer}"))
    return out


@pytest.mark.parametrize("t,model,layer", _cases())
@pytest.mark.parametrize("device", DEVICES)
def test_every_type_real_shapes(device, rng, t, model, layer):
    n, k = layer_shapes(model)[layer]
    n = min(n, 72 if device == "cpu" else 1000)  # not a multiple of the 16 rows of a CUDA block
    Ts = (1, 3, 8, 17) if device == "cpu" else (1, 2, 3, 4, 5, 6, 7, 8, 9, 17, 20, 33)
    raw = make_weight(rng, t, n, k)
    w = QWeight.from_bytes(raw, t, n, k, device=device)
    W = ref_dequant(raw, t, n, k)
    for T in Ts:
        run_and_check(rng, device, t, n, k, T, raw=raw, w=w, W=W, label=f"{model}/{layer}")


@pytest.mark.parametrize("t", ALL_TYPES)
@pytest.mark.parametrize("device", DEVICES)
def test_awkward_sizes(device, rng, t):
    """Tiny and odd shapes: one block per row, one row, N not a multiple of anything."""
    bs = max(block_size(t), 32)
    for n, k, T in [(1, bs, 1), (3, bs, 2), (33, 2 * bs, 5), (17, 4 * bs, 1), (5, bs, 11)]:
        run_and_check(rng, device, t, n, k, T)


@pytest.mark.parametrize("t", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("device", DEVICES)
def test_float_weights_any_k(device, rng, t):
    """Float weights need no block alignment: odd K (CUDA falls back to cuBLAS for K % 16 != 0)."""
    for n, k, T in [(7, 50, 1), (9, 97, 3), (4, 1, 1), (12, 33, 12)]:
        run_and_check(rng, device, t, n, k, T)


@pytest.mark.parametrize("t", ["Q4_1", "Q8_0", "Q4_K", "Q6_K", "F16", "BF16"])
@pytest.mark.parametrize("device", DEVICES)
def test_bias_and_f16_output(device, rng, t):
    n, k = layer_shapes("qwen2.5-0.5b")["qkv"] if block_size(t) < 256 else layer_shapes("phi3-mini-4k")["o"]
    n = min(n, 200)
    for T in (1, 5, 19):
        for bias in (False, True):
            for od in ("float32", "float16"):
                run_and_check(rng, device, t, n, k, T, bias=bias, out_dtype=od)


@pytest.mark.parametrize("x_dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("t", ["Q4_0", "Q5_K", "F16", "BF16", "F32"])
@pytest.mark.parametrize("device", DEVICES)
def test_half_activations(device, rng, t, x_dtype):
    for T in (1, 4, 12):
        run_and_check(rng, device, t, 48, 512, T, x_dtype=x_dtype)


@pytest.mark.parametrize("t", ["Q4_K", "Q8_0", "F16"])
@pytest.mark.parametrize("device", DEVICES)
def test_large_activations_do_not_overflow(device, rng, t):
    """Qwen2.5-like outliers: |x| up to 2e5, beyond fp16's range; the prefill path must rescale."""
    k = 1024
    for T in (3, 40):
        x = rng.standard_normal((T, k)).astype(np.float32)
        x[:, rng.integers(0, k, size=4)] *= 2e5
        y, _ = run_and_check(rng, device, t, 64, k, T, x=x)
        assert np.isfinite(y).all()


QUANT_TYPES = [t for t in ALL_TYPES if t not in ("F32", "F16", "BF16")]


def int8_bound(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """[T, N]: the largest change int8 activations can make, sum over 16-runs of max|x_run| / 254 * sum |w_run|."""
    T, K = x.shape
    amax = np.abs(x.astype(np.float64)).reshape(T, K // 16, 16).max(axis=2)     # [T, K/16]
    wsum = np.abs(W).reshape(W.shape[0], K // 16, 16).sum(axis=2)               # [N, K/16]
    return (amax / 254.0) @ wsum.T


def int8_x(rng, T: int, k: int) -> np.ndarray:
    """Activations whose 16-runs differ wildly in scale, with all-zero runs and a few outliers."""
    x = rng.standard_normal((T, k)).astype(np.float32)
    scale = rng.choice([0.0, 1e-3, 1.0, 40.0], size=(T, k // 16)).repeat(16, axis=1)
    x *= scale.astype(np.float32)
    x[:, rng.integers(0, k, 3)] *= 100.0
    return x


@pytest.mark.parametrize("t", QUANT_TYPES)
@pytest.mark.parametrize("device", DEVICES)
def test_int8_activations(device, rng, t):
    """int8 activations: within the quantization bound of the exact product, and equal (to float32
    rounding) to the reference applied to the quantized x, on every quantized type, for T from 1 to 32
    (the fused decode path on CUDA, in chunks of 8). Larger T and float weights ignore the flag."""
    n, k = 40, 768 if block_size(t) == 256 else 416
    raw = make_weight(rng, t, n, k)
    w = QWeight.from_bytes(raw, t, n, k, device=device)
    W = ref_dequant(raw, t, n, k)
    for T in (1, 2, 3, 8, 13, 32):
        x = int8_x(rng, T, k)
        y = matmul(x, w, int8_activations=True).astype(np.float64)
        exact = x.astype(np.float64) @ W.T
        mag = np.abs(x.astype(np.float64)) @ np.abs(W).T
        f32 = 4.0 * np.sqrt(k) * 2.0 ** -24 * mag + 1e-30
        bound = int8_bound(x, W)
        assert np.all(np.abs(y - exact) <= bound + f32), (t, T)
        assert np.abs(y - exact).max() > 0, "int8 activations changed nothing"
        xq = R.quantize_x_int8(x)
        ref = xq @ W.T
        tol = 4.0 * np.sqrt(k) * 2.0 ** -24 * (np.abs(xq) @ np.abs(W).T) + 1e-30
        np.testing.assert_array_less(np.abs(y - ref), tol + 1e-30)
        np.testing.assert_allclose(R.matmul(x, w, int8_activations=True), ref, rtol=0, atol=0)
    # T > 32: not quantized (prefill path), same as without the flag
    x = rng.standard_normal((33, k)).astype(np.float32)
    np.testing.assert_array_equal(matmul(x, w, int8_activations=True), matmul(x, w))


@pytest.mark.parametrize("device", DEVICES)
def test_int8_activations_edge_cases(device, rng):
    """NaN in a run gives NaN in every output of that row of x (only); float weights ignore the flag;
    half-precision x is quantized from its float value."""
    n, k = 24, 512
    raw = make_weight(rng, "Q4_K", n, k)
    w = QWeight.from_bytes(raw, "Q4_K", n, k, device=device)
    x = rng.standard_normal((3, k)).astype(np.float32)
    x[1, 100] = np.nan
    y = matmul(x, w, int8_activations=True)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()
    xh = rng.standard_normal((2, k)).astype(np.float16)
    np.testing.assert_allclose(matmul(xh, w, int8_activations=True),
                               matmul(xh.astype(np.float32), w, int8_activations=True), rtol=1e-6, atol=1e-6)
    rawf = make_weight(rng, "F16", n, k)
    wf = QWeight.from_bytes(rawf, "F16", n, k, device=device)
    np.testing.assert_array_equal(matmul(x[[0, 2]], wf, int8_activations=True), matmul(x[[0, 2]], wf))


@pytest.mark.cuda
@pytest.mark.parametrize("t", ["Q4_K", "Q6_K", "Q8_0", "Q5_0"])
def test_int8_activations_cuda_matches_cpu_at_real_shapes(rng, t):
    """The CUDA dp4a kernel and the CPU twin compute the same function (to float32 rounding) at a
    Llama-3 down-projection width (K = 14336, split over warps)."""
    n, k = 96, 14336
    raw = make_weight(rng, t, n, k)
    wc = QWeight.from_bytes(raw, t, n, k, device="cpu")
    wg = QWeight.from_bytes(raw, t, n, k, device="cuda")
    W = ref_dequant(raw, t, n, k)
    for T in (1, 2, 8):
        x = int8_x(rng, T, k)
        xq = R.quantize_x_int8(x)
        tol = 4.0 * np.sqrt(k) * 2.0 ** -24 * (np.abs(xq) @ np.abs(W).T) + 1e-30
        yc = matmul(x, wc, int8_activations=True)
        yg = matmul(x, wg, int8_activations=True)
        assert np.all(np.abs(yg.astype(np.float64) - yc) <= 2 * tol), (t, T)


def test_cpu_threads_cover_all_rows(rng):
    """Enough work to go through the worker pool: N large, T=1 and T=9."""
    t, n, k = "Q4_1", 3000, 576
    raw = make_weight(rng, t, n, k)
    w = QWeight.from_bytes(raw, t, n, k)
    W = ref_dequant(raw, t, n, k)
    for T in (1, 9):
        run_and_check(rng, "cpu", t, n, k, T, raw=raw, w=w, W=W)


def test_empty_batch_and_vector_input(rng):
    raw = make_weight(rng, "Q8_0", 10, 64)
    w = QWeight.from_bytes(raw, "Q8_0", 10, 64)
    y = matmul(np.zeros((0, 64), np.float32), w)
    assert y.shape == (0, 10)
    x = rng.standard_normal(64).astype(np.float32)
    y = matmul(x, w)
    assert y.shape == (10,)
    np.testing.assert_allclose(y, R.matmul(x, w), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------------
# CUDA: decode for every T in 1..8 at full layer shapes, prefill at T=512
# --------------------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("t", ALL_TYPES)
def test_cuda_decode_full_shapes(rng, t):
    for model, layer in [("phi3-mini-4k", "gate_up"), ("llama3-8b", "down"), ("llama3-8b", "o"),
                         ("qwen2.5-0.5b", "down")]:
        n, k = layer_shapes(model)[layer]
        if k % block_size(t):
            continue
        raw = make_weight(rng, t, n, k)
        w = QWeight.from_bytes(raw, t, n, k, device="cuda")
        W = ref_dequant(raw, t, n, k)
        for T in range(1, DECODE_MAX_T + 1):
            run_and_check(rng, "cuda", t, n, k, T, raw=raw, w=w, W=W, label=f"{model}/{layer}")


@pytest.mark.cuda
@pytest.mark.parametrize("t", ALL_TYPES)
def test_cuda_prefill(rng, t):
    n, k = 1536, 4096
    raw = make_weight(rng, t, n, k)
    w = QWeight.from_bytes(raw, t, n, k, device="cuda")
    W = ref_dequant(raw, t, n, k)
    for T in (512, 97):
        run_and_check(rng, "cuda", t, n, k, T, raw=raw, w=w, W=W, bias=(T == 97))
    run_and_check(rng, "cuda", t, n, k, 64, raw=raw, w=w, W=W, out_dtype="float16", bias=True)


@pytest.mark.cuda
@pytest.mark.parametrize("t", ["Q4_K", "Q8_0"])
def test_cuda_prefill_tiled(rng, t):
    """W larger than one 64 MB fp16 dequantization tile (K = 14336: 2304 rows per tile): tiles stitch up."""
    n, k = 5000, 14336
    raw = make_weight(rng, t, n, k)
    w = QWeight.from_bytes(raw, t, n, k, device="cuda")
    run_and_check(rng, "cuda", t, n, k, 40, raw=raw, w=w, bias=True)


@pytest.mark.cuda
@pytest.mark.parametrize("t,T", [("Q4_K", 1), ("Q6_K", 8), ("Q8_0", 20), ("Q4_K", 64), ("F16", 3), ("F16", 64)])
def test_cuda_graph_capture(rng, t, T):
    """The op can be captured in a CUDA graph (after one warm-up call) and the replays compute the same y."""
    n, k = 512, 2048
    raw = make_weight(rng, t, n, k)
    w = QWeight.from_bytes(raw, t, n, k, device="cuda")
    x = rng.standard_normal((T, k)).astype(np.float32)
    xd = inferlab.DeviceArray.from_numpy(x, "cuda")
    y = inferlab.DeviceArray.from_numpy(np.full((T, n), np.nan, np.float32), "cuda")
    ms = inferlab._core.matmul.bench_matmul_ms(xd, [w._w], y, 3)
    assert ms > 0
    W = ref_dequant(raw, t, n, k)
    ref = x.astype(np.float64) @ W.T
    tol = tolerance(path_of("cuda", t, T), k, np.abs(x.astype(np.float64)) @ np.abs(W).T, ref, "float32", t)
    assert (np.abs(y.numpy() - ref) <= tol).all()


@pytest.mark.cuda
def test_cuda_bench_read():
    """The benchmarks' read probe (bench_read_ms): a time per call that grows with the bytes read, and clear
    errors for buffers it cannot read in 16-byte words."""
    mm = inferlab._core.matmul
    small = [inferlab.DeviceArray.empty((1 << 20,), "uint8", "cuda") for _ in range(2)]
    big = [inferlab.DeviceArray.empty((256 << 20,), "uint8", "cuda") for _ in range(2)]
    # odd: not a whole number of the copy engine probe's chunks or of a block's share
    odd = [inferlab.DeviceArray.empty(((5 << 20) + 48,), "uint8", "cuda") for _ in range(2)]
    modes = (0, 1, 2) if _mma_available() else (0, 1)  # 2: the copy engine (compute capability >= 9)
    for mode in modes:
        ms_small, ms_odd, ms_big = (mm.bench_read_ms(b, 5, mode) for b in (small, odd, big))
        assert 0 < ms_small < ms_big and 0 < ms_odd < ms_big, mode
        assert (256 << 20) / (ms_big * 1e-3) < 20e12, mode  # below any HBM's bandwidth: the bytes were read
    # mode 3: the direct decode kernel's pattern over rows (small: 512 rows of 2 KB; big: 65536 rows of 4 KB;
    # 17 tiles of 16 rows of 384 bytes: not a whole number of a warp's two chunks)
    ms_small, ms_big = mm.bench_read_ms(small, 5, 3, 512), mm.bench_read_ms(big, 5, 3, 65536)
    assert 0 < ms_small < ms_big and (256 << 20) / (ms_big * 1e-3) < 20e12
    assert mm.bench_read_ms([inferlab.DeviceArray.empty((17 * 16 * 384,), "uint8", "cuda")], 2, 3, 17 * 16) > 0
    with pytest.raises(ValueError, match="mode"):
        mm.bench_read_ms(small, 1, 4)
    with pytest.raises(ValueError, match="rows"):
        mm.bench_read_ms(small, 1, 3)  # mode 3 without rows
    with pytest.raises(ValueError, match="rows"):
        mm.bench_read_ms(small, 1, 3, 24)  # not a multiple of 16
    with pytest.raises(ValueError, match="multiple of 16"):
        mm.bench_read_ms([inferlab.DeviceArray.empty((17,), "uint8", "cuda")], 1)
    with pytest.raises(ValueError, match="same size"):
        mm.bench_read_ms([small[0], big[0]], 1)
    with pytest.raises(ValueError, match="at least one"):
        mm.bench_read_ms([], 1)


@contextlib.contextmanager
def ring_decode():
    """One row of x on the shared-memory ring kernel too (matmul_mma.cuh; its knobs, tune_mma_decode, apply):
    the direct kernel (matmul_mmd.cuh), the default for T = 1 and Q4_K / Q6_K / Q8_0 / F16, switched off."""
    mm = inferlab._core.matmul
    mm.tune_direct_decode(0)
    try:
        yield
    finally:
        mm.tune_direct_decode()


@pytest.mark.cuda
@pytest.mark.parametrize("t", ["Q4_K", "Q6_K", "Q8_0", "F16", "Q4_0", "Q5_K", "Q2_K", "BF16"])
def test_cuda_forced_decode_paths(rng, t):
    """Every decode kernel, forced (the benchmark's paths), computes y within its precision class, at a
    Llama-3 down shape (K = 14336: the tensor-core kernel runs T = 8 in 3 launches) and a small odd one."""
    mm = inferlab._core.matmul
    for n, k in [(203, 14336), (37, 512)]:
        raw = make_weight(rng, t, n, k)
        w = QWeight.from_bytes(raw, t, n, k, device="cuda")
        W = ref_dequant(raw, t, n, k)
        for T in (1, 2, 5, 8):
            x = rng.standard_normal((T, k)).astype(np.float32)
            xf = x.astype(np.float64)
            ref, mag = xf @ W.T, np.abs(xf) @ np.abs(W).T
            mma = t != "BF16" and _mma_available()
            # the tensor-core kernel also with its smallest ring (two tiles: every tile refilled many times
            # at K = 14336), with 3 warps (warps that get no step of a chunk), with clusters of 4 and 2
            # blocks sharing the staging of x (203 rows: 13 row blocks, padded to 16; 37 rows: 3 row blocks,
            # so the cluster shrinks to 2, padded to 4) and, at T = 1, with its folded scales (Q4_K / Q5_K)
            # forced off and on (with 3 warps, the smallest ring and a cluster), and its integer path (Q8_0 /
            # Q4_K / Q6_K; the per-run path for other types) with the default knobs, with 3 warps, the
            # smallest ring and clusters of 4, and with 5 warps, the largest ring and clusters of 2
            runs = [("fused_staged", None)] + ([("fused_splitk", None)] if T <= 2 else []) + (
                [("fused_mma", None), ("fused_mma", (1, 8)), ("fused_mma", (96, 3)), ("fused_mma", (64, 8, -1, 4)),
                 ("fused_mma", (1, 3, -1, 2))] if mma else []) + (
                [("fused_mma", (64, 8, 0)), ("fused_mma", (1, 3, 1, 4)), ("fused_mma", (64, 8, 2)),
                 ("fused_mma", (1, 3, 2, 4)), ("fused_mma", (96, 5, 2, 2))] if mma and T == 1 else [])
            for path, knobs in runs:
                y = inferlab.DeviceArray.from_numpy(np.full((T, n), np.nan, np.float32), "cuda")
                if knobs:
                    mm.tune_mma_decode(*knobs)
                try:
                    with ring_decode():
                        mm.bench_matmul_ms(inferlab.DeviceArray.from_numpy(x, "cuda"), [w._w], y, 1, path)
                finally:
                    mm.tune_mma_decode()
                tol = tolerance("mma" if path == "fused_mma" else "fp32", k, mag, ref, "float32", t)
                err = np.abs(y.numpy() - ref)
                assert (err <= tol).all(), (path, knobs, n, k, T, float(np.nanmax(err / tol)))
    with pytest.raises(ValueError, match="ring_kib"):
        mm.tune_mma_decode(-1, 8)
    with pytest.raises(ValueError, match="warps"):
        mm.tune_mma_decode(64, 9)
    with pytest.raises(ValueError, match="fold"):
        mm.tune_mma_decode(64, 8, 3)
    with pytest.raises(ValueError, match="cluster"):
        mm.tune_mma_decode(64, 8, -1, 3)
    if t == "BF16":
        with pytest.raises(ValueError, match="tensor-core"):
            mm.bench_matmul_ms(inferlab.DeviceArray.from_numpy(x, "cuda"), [w._w], y, 1, "fused_mma")


@pytest.mark.cuda
@pytest.mark.parametrize("t", ["Q4_K", "Q6_K", "Q8_0", "F16"])
def test_cuda_mma_decode_nan_inf_and_pdl(rng, t):
    """Tensor-core decode: NaN / inf in a row of x reach only that row of y; huge finite x is rescaled, not
    overflowed; with programmatic dependent launch off the result is bit-identical."""
    n, k, T = 48, 1024, 4
    raw = make_weight(rng, t, n, k)
    w = QWeight.from_bytes(raw, t, n, k, device="cuda")
    x = rng.standard_normal((T, k)).astype(np.float32)
    x[1, 7] = np.nan
    x[2, 9] = np.inf
    x[3] *= 1e6
    y = matmul(x, w)
    assert np.isnan(y[1]).all() and not np.isfinite(y[2]).any()
    assert np.isfinite(y[[0, 3]]).all()
    W = ref_dequant(raw, t, n, k)
    xf = x[[0, 3]].astype(np.float64)
    tol = tolerance("mma", k, np.abs(xf) @ np.abs(W).T, xf @ W.T, "float32", t)
    assert (np.abs(y[[0, 3]] - xf @ W.T) <= tol).all()
    mm = inferlab._core.matmul
    old = mm.set_pdl(False)
    try:
        y2 = matmul(x, w)
    finally:
        mm.set_pdl(old)
    np.testing.assert_array_equal(y2, y)
    # One row at a time (T = 1: the folded-scale path and the integer path where the type has them, which
    # must step aside for non-finite x: the folded path's offset cancellation would turn inf into NaN, the
    # integer path cannot carry inf / NaN at all), each forced on, x staged by clusters of 2 blocks (the row
    # maximum, NaN included, combined over the cluster).
    for fold in (1, 2):
        mm.tune_mma_decode(64, 8, fold, 2)
        try:
            with ring_decode():
                y1 = [matmul(x[i:i + 1], w)[0] for i in range(T)]
        finally:
            mm.tune_mma_decode()
        assert np.isnan(y1[1]).all() and not np.isfinite(y1[2]).any(), fold
        inf = np.isinf(y[2])
        assert np.array_equal(np.isinf(y1[2]), inf) and np.array_equal(np.sign(y1[2][inf]), np.sign(y[2][inf]))
        assert (np.abs(np.stack([y1[0], y1[3]]) - xf @ W.T) <= tol).all(), fold


@pytest.mark.cuda
@pytest.mark.parametrize("t", ["Q8_0", "Q4_K", "Q6_K"])
@pytest.mark.parametrize("shape", [(4096, 14336), (3072, 3072), (37, 96 * 32)])
def test_cuda_integer_decode_path(rng, t, shape):
    """The integer path at T = 1 (Q8_0 / Q4_K / Q6_K, tune_mma_decode(fold=2)): x is quantized to 16-bit
    integers per 32-element group (step = max|x| / 32512), and the result stays within that quantization's
    bound plus float32 rounding, also with outliers (a group's step is set by its largest element), groups
    of zeros and a tiny group (below 2^-96: taken as zero). The default path is not it."""
    if not _mma_available():
        pytest.skip("the tensor-core decode kernel needs compute capability >= 9")
    n, k = shape
    raw = make_weight(rng, t, n, k)
    w = QWeight.from_bytes(raw, t, n, k, device="cuda")
    W = ref_dequant(raw, t, n, k)
    x = rng.standard_normal((1, k)).astype(np.float32)
    x[0, 5::97] *= 300.0                 # outliers in some groups
    x[0, 64:96] = 0.0                    # a group of zeros
    x[0, 32:64] *= np.float32(1e-30)     # a tiny group
    mm = inferlab._core.matmul
    mm.tune_mma_decode(64, 8, 2)
    try:
        with ring_decode():
            y = matmul(x, w)
    finally:
        mm.tune_mma_decode()
    xf = x[0].astype(np.float64)
    step = np.abs(xf).reshape(-1, 32).max(axis=1) / 32512.0              # [K / 32]
    qbound = (0.505 * np.repeat(step, 32)[None, :] * np.abs(W)).sum(axis=1)  # [N]
    mag = np.abs(W) @ np.abs(xf)
    ref = W @ xf
    err = np.abs(y[0] - ref)
    tol = qbound + 4.0 * np.sqrt(k) * 2.0 ** -24 * mag + 1e-28 * np.abs(W).sum(axis=1)
    assert (err <= tol).all(), float(np.max(err / tol))
    # the integer path is the one measured: the ring kernel's fp16 path gives another result
    with ring_decode():
        assert not np.array_equal(matmul(x, w), y)


@pytest.mark.cuda
@pytest.mark.parametrize("t", ["Q4_K", "Q6_K", "Q8_0", "F16"])
def test_cuda_direct_decode(rng, t):
    """The direct tensor-core decode kernel (T = 1; weights loaded into registers, tune_direct_decode(1)):
    within the mma precision class at Llama-3 down / Phi-3 o shapes and small odd ones, with 8 and 3 warps
    (3: units not a multiple of the warps), fp16 / bf16 x, bias with fp16 output, x rescaled past 2^15, and
    NaN / inf in x reaching y as on the ring kernel. It is the kernel that runs, Q6_K at K = 14336 too: its
    result differs from the ring kernel's in the last bits."""
    if not _mma_available():
        pytest.skip("the tensor-core decode kernels need compute capability >= 9")
    mm = inferlab._core.matmul
    # (17000, 512): with one block per multiprocessor, more row tiles than a block's slots (the grid grows);
    # (4240, 3072): 265 row tiles, one more than two blocks per multiprocessor of an H100 / H200 take, so by
    # default blocks walk several (Q8_0: two row tiles per block and three weight buffers per warp)
    for n, k in [(4096, 14336), (3072, 3072), (37, 512), (203, 1024), (17000, 512), (4240, 3072)]:
        raw = make_weight(rng, t, n, k)
        w = QWeight.from_bytes(raw, t, n, k, device="cuda")
        W = ref_dequant(raw, t, n, k)
        x = rng.standard_normal((1, k)).astype(np.float32)
        with ring_decode():
            y_ring = matmul(x, w)
        by_warps = {}
        # tiles: row tiles of 16 per block; persist: blocks per multiprocessor at most (0: one per row tile)
        for warps, tiles, persist in ((8, 1, 0), (3, 1, 0), (8, 2, 0), (3, 2, 0), (8, 1, 1), (3, 2, 1), (8, 1, 2),
                                      (8, 2, 2)):
            mm.tune_direct_decode(1, warps, 0, tiles, persist)
            try:
                run_and_check(rng, "cuda", t, n, k, 1, w=w, raw=raw, W=W, x=x,
                              label=f"direct w{warps} tiles {tiles} persist {persist}")
                y = matmul(x, w)
            finally:
                mm.tune_direct_decode()
            if n >= 3072:  # the direct kernel is the one that ran (the ring kernel rounds otherwise)
                assert not np.array_equal(y, y_ring)
            # tiles and persist move rows between blocks, not the order of a row's sums
            np.testing.assert_array_equal(y, by_warps.setdefault(warps, y), err_msg=f"tiles {tiles} persist {persist}")
    n, k = 203, 1024
    raw = make_weight(rng, t, n, k)
    w = QWeight.from_bytes(raw, t, n, k, device="cuda")
    W = ref_dequant(raw, t, n, k)
    x = rng.standard_normal((4, k)).astype(np.float32)
    x[1, 7] = np.nan
    x[2, 9] = np.inf
    x[3] *= 1e6
    y_default = matmul(x, w)
    mm.tune_direct_decode(1)
    try:
        for depth in (2, 3, 4):  # weight buffers per warp
            mm.tune_direct_decode(1, 8, depth)
            run_and_check(rng, "cuda", t, n, k, 1, w=w, raw=raw, W=W, label=f"direct depth {depth}")
        mm.tune_direct_decode(1)
        for x_dtype in ("float16", "bfloat16"):
            run_and_check(rng, "cuda", t, n, k, 1, w=w, raw=raw, W=W, x_dtype=x_dtype, label="direct")
        run_and_check(rng, "cuda", t, n, k, 1, w=w, raw=raw, W=W, bias=True, out_dtype="float16", label="direct")
        run_and_check(rng, "cuda", t, n, k, 1, w=w, raw=raw, W=W, x=x[3:4], label="direct, x * 1e6")
        y = np.stack([matmul(x[i:i + 1], w)[0] for i in range(4)])
        # two row tiles per block, and the persist knob (here one block per row tile still: 13 row tiles)
        y2 = []
        for tiles, persist in ((2, 0), (1, 1), (2, 1)):
            mm.tune_direct_decode(1, 8, 0, tiles, persist)
            run_and_check(rng, "cuda", t, n, k, 1, w=w, raw=raw, W=W, x=x[3:4],
                          label=f"direct, x * 1e6, tiles {tiles} persist {persist}")
            y2.append(np.stack([matmul(x[i:i + 1], w)[0] for i in range(4)]))
    finally:
        mm.tune_direct_decode()
    assert np.isnan(y[1]).all() and not np.isfinite(y[2]).any()
    for yv in y2:
        np.testing.assert_array_equal(yv, y)  # the same sums whatever the tiles and blocks
    # x with inf where blocks walk several row tiles (17000 rows: 1063 row tiles for at most 1 or 2 blocks per
    # multiprocessor): every row non-finite, the same whatever the grid, infinities signed as in float64
    n, k = 17000, 512
    raw = make_weight(rng, t, n, k)
    w = QWeight.from_bytes(raw, t, n, k, device="cuda")
    x = rng.standard_normal((1, k)).astype(np.float32)
    x[0, 5] = np.inf
    ys = {}
    try:
        for persist in (0, 1, 2):
            mm.tune_direct_decode(1, 8, 0, 0, persist)
            ys[persist] = matmul(x, w)
    finally:
        mm.tune_direct_decode()
    assert not np.isfinite(ys[0]).any()
    np.testing.assert_array_equal(ys[1], ys[0])
    np.testing.assert_array_equal(ys[2], ys[0])
    with np.errstate(invalid="ignore"):
        ref = x.astype(np.float64) @ ref_dequant(raw, t, n, k).T
    both = np.isinf(ref) & np.isinf(ys[0])
    assert both.sum() > n // 2 and np.array_equal(np.sign(ys[0][both]), np.sign(ref[both]))
    inf = np.isinf(y_default[2])
    assert np.array_equal(np.isinf(y[2]), inf) and np.array_equal(np.sign(y[2][inf]), np.sign(y_default[2][inf]))
    with pytest.raises(ValueError, match="mode"):
        mm.tune_direct_decode(2)
    with pytest.raises(ValueError, match="depth"):
        mm.tune_direct_decode(1, 8, 5)
    with pytest.raises(ValueError, match="warps"):
        mm.tune_direct_decode(1, 9)
    with pytest.raises(ValueError, match="tiles"):
        mm.tune_direct_decode(1, 8, 0, 3)
    with pytest.raises(ValueError, match="tiles"):
        mm.tune_direct_decode(1, 8, 0, -1)
    with pytest.raises(ValueError, match="persist"):
        mm.tune_direct_decode(1, 8, 0, 0, 5)
    with pytest.raises(ValueError, match="persist"):
        mm.tune_direct_decode(1, 8, 0, 0, -2)


@pytest.mark.cuda
def test_cuda_matches_cpu_on_device_arrays(rng):
    """DeviceArray in, DeviceArray out; the same weight on both devices agrees."""
    t, n, k = "Q5_1", 300, 1024
    raw = make_weight(rng, t, n, k)
    wc, wg = QWeight.from_bytes(raw, t, n, k), QWeight.from_bytes(raw, t, n, k, device="cuda")
    x = rng.standard_normal((6, k)).astype(np.float32)
    yc = matmul(x, wc)
    yg = matmul(inferlab.DeviceArray.from_numpy(x, "cuda"), wg)
    assert isinstance(yg, inferlab.DeviceArray) and yg.device == "cuda"
    W = ref_dequant(raw, t, n, k)
    xf = x.astype(np.float64)
    mag = np.abs(xf) @ np.abs(W).T
    tol = tolerance(path_of("cuda", t, 6, k), k, mag, xf @ W.T, "float32", t) + \
        tolerance("fp32", k, mag, xf @ W.T, "float32", t)
    assert (np.abs(yg.numpy() - yc) <= tol).all()


@pytest.mark.cuda
@pytest.mark.parametrize("t", ALL_TYPES)
def test_cuda_layout_round_trip(rng, t):
    n, k = 40, 512
    raw = make_weight(rng, t, n, k)
    w = QWeight.from_bytes(raw, t, n, k, device="cuda")
    assert w.layout == (0 if t in ("F32", "F16", "BF16") else 1)
    assert np.array_equal(w.gguf_bytes(), raw.reshape(-1))
    np.testing.assert_array_equal(w.dense("float16").numpy(),
                                  ref_dequant(raw, t, n, k).astype(np.float32).astype(np.float16))


# --------------------------------------------------------------------------------------------------------
# QWeight construction
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", ALL_TYPES)
def test_qweight_properties_and_dequantize(rng, t):
    n, k = 9, 512
    raw = make_weight(rng, t, n, k)
    w = QWeight.from_bytes(raw, t, n, k, name="blk.0.attn_q.weight")
    assert w.type == t and w.shape == (n, k) and w.device == "cpu" and w.layout == 0
    assert w.nbytes == raw.size and w.name == "blk.0.attn_q.weight"
    assert np.array_equal(w.gguf_bytes(), raw.reshape(-1))
    np.testing.assert_array_equal(w.dequantize().astype(np.float64), ref_dequant(raw, t, n, k))
    np.testing.assert_array_equal(R.dequantize_weight(w), ref_dequant(raw, t, n, k))
    assert t in repr(w)
    np.testing.assert_array_equal(w.dense("float32").numpy().astype(np.float64), ref_dequant(raw, t, n, k))
    np.testing.assert_array_equal(w.dense("float16").numpy(), ref_dequant(raw, t, n, k).astype(np.float32).astype(np.float16))


def _write_gguf(path, tensors):
    wr = gguf.GGUFWriter(str(path), "llama")
    for name, (raw, t) in tensors.items():
        wr.add_tensor(name, raw, raw_dtype=G[t])
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


@pytest.mark.parametrize("device", DEVICES)
def test_from_gguf(tmp_path, rng, device):
    q8 = make_weight(rng, "Q8_0", 24, 256)
    k4 = make_weight(rng, "Q4_K", 5, 512)
    vec = np.zeros(16, np.float32).view(np.uint8)
    path = tmp_path / "w.gguf"
    _write_gguf(path, {"a.weight": (q8, "Q8_0"), "b.weight": (k4, "Q4_K"), "norm": (vec, "F32")})
    w1 = QWeight.from_gguf(path, "a.weight", device=device)
    assert w1.type == "Q8_0" and w1.shape == (24, 256) and w1.device == device and w1.name == "a.weight"
    with inferlab.GGUFFile(path) as f:
        w2 = QWeight.from_gguf(f, "b.weight", device=device)
        with pytest.raises(inferlab.GGUFError):
            QWeight.from_gguf(f, "missing.weight", device=device)
        with pytest.raises(ValueError, match="2-D"):
            QWeight.from_gguf(f, "norm", device=device)
    assert w2.type == "Q4_K" and w2.shape == (5, 512)
    assert np.array_equal(w2.gguf_bytes(), k4.reshape(-1))
    x = rng.standard_normal((2, 256)).astype(np.float32)
    W1 = ref_dequant(q8, "Q8_0", 24, 256)
    mag = np.abs(x.astype(np.float64)) @ np.abs(W1).T
    tol = tolerance(path_of(device, "Q8_0", 2, 256), 256, mag, x @ W1.T, "float32", "Q8_0")
    assert (np.abs(matmul(x, w1) - R.matmul(x, w1)) <= tol + 1e-5 * mag).all()
    with pytest.raises(ValueError, match="closed"):
        QWeight.from_gguf(f, "a.weight")
    with pytest.raises(FileNotFoundError):
        QWeight.from_gguf(tmp_path / "nope.gguf", "a.weight")


# --------------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_bad_inputs(device, rng):
    raw = make_weight(rng, "Q4_0", 8, 64)
    w = QWeight.from_bytes(raw, "Q4_0", 8, 64, device=device)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    with pytest.raises(ValueError, match="k=64"):
        matmul(rng.standard_normal((2, 96)).astype(np.float32), w)
    with pytest.raises(ValueError, match="x has dtype int32"):
        matmul(x.astype(np.int32), w)
    with pytest.raises(ValueError, match="x has dtype float64"):
        matmul(x.astype(np.float64), w)
    with pytest.raises(ValueError, match="bias"):
        matmul(x, w, bias=np.zeros(8, np.float16))
    with pytest.raises(ValueError, match="bias"):
        matmul(x, w, bias=np.zeros(9, np.float32))
    with pytest.raises(ValueError, match="out_dtype"):
        matmul(x, w, out_dtype="bfloat16")
    with pytest.raises(ValueError, match="x must be"):
        matmul(np.zeros((2, 2, 64), np.float32), w)
    with pytest.raises(ValueError, match="out"):
        matmul(x, w, out=inferlab.DeviceArray.empty((3, 8), "float32", device))
    with pytest.raises(ValueError, match="out|y has dtype"):
        matmul(x, w, out=inferlab.DeviceArray.empty((2, 8), "int32", device))
    with pytest.raises(ValueError, match="QWeight"):
        matmul(x, np.zeros((8, 64), np.float32))
    other = "cuda" if device == "cpu" else "cpu"
    with pytest.raises(ValueError, match="device"):
        matmul(x, w, device=other)


@pytest.mark.cuda
def test_bad_inputs_cross_device(rng):
    w = QWeight.from_bytes(make_weight(rng, "Q8_0", 8, 64), "Q8_0", 8, 64, device="cuda")
    xc = inferlab.DeviceArray.from_numpy(rng.standard_normal((2, 64)).astype(np.float32), "cpu")
    with pytest.raises(ValueError, match="x is on cpu"):
        matmul(xc, w)


def test_bad_weights(rng):
    with pytest.raises(ValueError, match="not a multiple of the Q4_K block size 256"):
        QWeight.from_bytes(np.zeros(144, np.uint8), "Q4_K", 1, 128)
    with pytest.raises(ValueError, match="not a multiple of the Q8_0 block size 32"):
        QWeight.from_bytes(np.zeros(34 * 3, np.uint8), "Q8_0", 3, 40)
    with pytest.raises(ValueError, match="needs 288"):
        QWeight.from_bytes(np.zeros(144, np.uint8), "Q4_K", 2, 256)
    with pytest.raises(NotImplementedError, match="IQ2_XXS"):
        QWeight.from_bytes(np.zeros(66, np.uint8), "IQ2_XXS", 1, 256)
    with pytest.raises(NotImplementedError, match="Q8_K"):
        QWeight.from_bytes(np.zeros(292, np.uint8), "Q8_K", 1, 256)
    with pytest.raises(ValueError, match="unknown GGML type name"):
        QWeight.from_bytes(np.zeros(16, np.uint8), "Q9_9", 1, 16)
    with pytest.raises(ValueError, match="positive"):
        QWeight.from_bytes(np.zeros(0, np.uint8), "F32", 0, 4)
    with pytest.raises(ValueError, match="uint8"):
        QWeight.from_bytes(np.zeros(4, np.float32), "F32", 1, 4)
    with pytest.raises(ValueError, match="device"):
        QWeight.from_bytes(np.zeros(16, np.uint8), "F32", 1, 4, device="tpu")
    with pytest.raises(TypeError):
        QWeight.from_gguf(123, "x")


def test_reference_formula(rng):
    """The reference is the plain formula: x @ W.T + b in float64, for arrays and QWeights alike."""
    x = rng.standard_normal((3, 32))
    W = rng.standard_normal((5, 32))
    b = rng.standard_normal(5)
    np.testing.assert_allclose(R.matmul(x, W, b), x @ W.T + b)
    raw = make_weight(rng, "Q8_0", 5, 32)
    w = QWeight.from_bytes(raw, "Q8_0", 5, 32)
    np.testing.assert_allclose(R.matmul(x, w), x @ ref_dequant(raw, "Q8_0", 5, 32).T)


# --------------------------------------------------------------------------------------------------------
# The CUDA kernels' lane logic, emulated on the host (no GPU needed)
# --------------------------------------------------------------------------------------------------------
ROOT = pathlib.Path(__file__).resolve().parent.parent


def _cuda_include():
    for d in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if d and (pathlib.Path(d) / "include" / "cuda_fp16.h").exists():
            return pathlib.Path(d) / "include"
    return None


@pytest.mark.slow
def test_cuda_lane_logic_emulated(tmp_path):
    """Builds tests/cuda_emu/mmv_emu.cpp with g++ against the CUDA headers (no GPU or CUDA library needed)
    and runs it: device block decoders vs dequantize_row (bit-exact), the decode kernel's per-lane work
    summed like its warp reduction vs a float64 dot (single and multi-pass staging), and freedom from
    shared-memory bank conflicts."""
    inc = _cuda_include()
    gxx = shutil.which("g++")
    if inc is None or gxx is None:
        pytest.skip("needs g++ and the CUDA headers (CUDA_HOME or /usr/local/cuda)")
    exe = tmp_path / "mmv_emu"
    src = ROOT / "csrc"
    cmd = [gxx, "-std=c++17", "-O1", "-Wno-unknown-pragmas", f"-I{src}", f"-I{inc}",
           str(ROOT / "tests" / "cuda_emu" / "mmv_emu.cpp"), str(src / "kernels" / "qweight_layout.cpp"),
           str(src / "gguf" / "dequant.cpp"), str(src / "core" / "ggml_types.cpp"), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "all ok" in r.stdout, r.stdout[-4000:]
