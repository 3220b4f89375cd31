"""Attention (prefill, chunked prefill, decode) and the KV cache against the float64 NumPy references.

CPU cases are sized for CI; the full grid (T up to 4096, n_past up to 16383 with every model) runs under
the cuda mark. Outputs and unstored cache positions are NaN-poisoned before every run.
"""
from __future__ import annotations

import numpy as np
import pytest

import inferlab
from inferlab import kernels as K
from inferlab import reference as R
from inferlab._tensor import DeviceArray, np_dtype

from conftest import MODEL_SHAPES

# Model head layouts: GQA ratio 1 (phi3, gpt2), 3 (smollm2), 4 (llama3), 7 (qwen2.5), plus head_dim 80.
HEADS = {name: (s["hq"], s["hkv"], s["hd"]) for name, s in MODEL_SHAPES.items()}
HEADS["hd80-gqa2"] = (8, 4, 80)

# |got - ref| <= atol + rtol * |ref|, by the dtype of q/k/v/out (and the cache), in units of its epsilon:
# rounding of the output, and on CUDA of the probabilities fed to the tensor cores (each off by up to eps/2,
# weighted by |v| of a few units).
EPS = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
TOL = {"float32": (2e-5, 2e-5),  # CPU only: float32 accumulation over up to 16k keys
       "float16": (3 * EPS["float16"], 2 * EPS["float16"]),
       "bfloat16": (2 * EPS["bfloat16"], 2 * EPS["bfloat16"])}

CPU_PREFILL_BUDGET = 1.1e9  # Hq * T^2 * D above this runs on cuda only


def cuda_param(*values):
    return pytest.param(*values, marks=pytest.mark.cuda)


def rand(rng, shape, dtype, std=1.0):
    return (rng.standard_normal(shape) * std).astype(np_dtype(dtype))


def poisoned(shape, dtype, device):
    return DeviceArray.from_numpy(np.full(shape, np.nan, dtype=np_dtype(dtype)), device)


def assert_close(got, ref, dtype, what=""):
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert np.isfinite(got).all(), f"{what}: {np.count_nonzero(~np.isfinite(got))} non-finite outputs (unwritten?)"
    atol, rtol = TOL[dtype]
    err = np.abs(got - ref)
    bad = err > atol + rtol * np.abs(ref)
    if bad.any():
        i = np.unravel_index(np.argmax(err - (atol + rtol * np.abs(ref))), err.shape)
        raise AssertionError(f"{what}: {np.count_nonzero(bad)} of {bad.size} elements out of tolerance "
                             f"({dtype}: atol {atol}, rtol {rtol}); worst at {i}: got {got[i]}, ref {ref[i]}")


def qkv(rng, T, hq, hkv, d, dtype):
    # q scaled up a little so softmax rows are not flat (masking errors show more).
    return rand(rng, (T, hq, d), dtype, 1.5), rand(rng, (T, hkv, d), dtype), rand(rng, (T, hkv, d), dtype)


def head_subset(hq, hkv, T):
    """Query heads checked against the reference (all, or the first and last GQA group when T is long)."""
    if T <= 1024 or hkv == 1:
        return np.arange(hq), np.arange(hkv)
    g = hq // hkv
    return np.r_[0:g, hq - g:hq], np.array([0, hkv - 1])


def prefill_ref(q, k, v, window=None, causal=True):
    T, hq, _ = q.shape
    hsel, ksel = head_subset(hq, k.shape[1], T)
    return hsel, R.attention_prefill(q[:, hsel], k[:, ksel], v[:, ksel], causal=causal, window=window)


# ------------------------------------------------------------------------------------------- prefill

def _prefill_cases():
    cases = []
    for model, (hq, hkv, d) in HEADS.items():
        for T in (1, 7, 97, 512, 1025, 4096):
            for dtype in ("float16", "bfloat16"):
                cases.append(cuda_param("cuda", model, T, dtype))
            if hq * T * T * d <= CPU_PREFILL_BUDGET:
                cases.append(pytest.param("cpu", model, T, "float16"))
                if T in (7, 97):
                    cases += [pytest.param("cpu", model, T, "bfloat16"), pytest.param("cpu", model, T, "float32")]
    return cases


@pytest.mark.parametrize("device,model,T,dtype", _prefill_cases())
def test_prefill_causal_matches_reference(device, model, T, dtype, rng):
    hq, hkv, d = HEADS[model]
    q, k, v = qkv(rng, T, hq, hkv, d, dtype)
    out = poisoned(q.shape, dtype, device)
    K.attention_prefill(q, k, v, device=device, out=out)
    hsel, ref = prefill_ref(q, k, v)
    got = np.asarray(out, dtype=np.float64)
    assert np.isfinite(got).all(), "unwritten (NaN) outputs"
    assert_close(got[:, hsel], ref, dtype, f"{model} T={T}")


@pytest.mark.parametrize("device,T,hq,hkv,d", [
    ("cpu", 4096, 2, 1, 64),                     # long sequence, few heads: CI-sized
    cuda_param("cuda", 16384, 8, 2, 128),        # O(T) memory at T=16384
    cuda_param("cuda", 16384, 14, 2, 64),
])
def test_prefill_long_sequence(device, T, hq, hkv, d, rng):
    dtype = "float16"
    q, k, v = qkv(rng, T, hq, hkv, d, dtype)
    out = poisoned(q.shape, dtype, device)
    K.attention_prefill(q, k, v, device=device, out=out)
    got = np.asarray(out, dtype=np.float64)
    assert np.isfinite(got).all()
    # First rows (they only see the first keys) and last rows (they see everything, via the cached form).
    n = 64
    assert_close(got[:n], R.attention_prefill(q[:n], k[:n], v[:n]), dtype, "first rows")
    ref_cache = R.KVCache(1, hkv, d, T, dtype=dtype)
    R.kv_cache_store(ref_cache, k, v)
    last = R.attention_prefill(q[T - n:], None, None, cache=ref_cache, start_pos=T - n)
    assert_close(got[T - n:], last, dtype, "last rows")


def _window_cases():
    cases = []
    for model, T, window in [("qwen2.5-0.5b", 97, 1), ("qwen2.5-0.5b", 97, 16), ("phi3-mini-4k", 97, 64),
                             ("llama3-8b", 200, 65), ("hd80-gqa2", 300, 100), ("gpt2", 1025, 128),
                             ("smollm2-135m", 512, 2000)]:
        cases.append(pytest.param("cpu", model, T, window, "float16"))
        cases += [cuda_param("cuda", model, T, window, dt) for dt in ("float16", "bfloat16")]
    cases += [cuda_param("cuda", "llama3-8b", 4096, 1000, dt) for dt in ("float16", "bfloat16")]
    cases.append(cuda_param("cuda", "phi3-mini-4k", 1025, 63, "bfloat16"))
    return cases


@pytest.mark.parametrize("device,model,T,window,dtype", _window_cases())
def test_prefill_sliding_window_matches_reference(device, model, T, window, dtype, rng):
    hq, hkv, d = HEADS[model]
    q, k, v = qkv(rng, T, hq, hkv, d, dtype)
    out = poisoned(q.shape, dtype, device)
    K.attention_prefill(q, k, v, window=window, device=device, out=out)
    hsel, ref = prefill_ref(q, k, v, window=window)
    assert_close(np.asarray(out, dtype=np.float64)[:, hsel], ref, dtype, f"{model} T={T} window={window}")


@pytest.mark.parametrize("device", ["cpu", cuda_param("cuda")])
@pytest.mark.parametrize("T,window", [(1, None), (70, None), (130, 40)])
def test_prefill_non_causal_matches_reference(device, T, window, rng):
    hq, hkv, d = HEADS["llama3-8b"]
    q, k, v = qkv(rng, T, hq, hkv, d, "float16")
    out = poisoned(q.shape, "float16", device)
    K.attention_prefill(q, k, v, causal=False, window=window, device=device, out=out)
    ref = R.attention_prefill(q, k, v, causal=False, window=window)
    assert_close(out, ref, "float16", f"non-causal T={T}")


@pytest.mark.parametrize("device,T,dtype", [("cpu", 97, "float16"), cuda_param("cuda", 300, "float16"),
                                            cuda_param("cuda", 1025, "bfloat16")])
def test_causal_and_window_masks_are_exact(device, T, dtype, rng):
    """Rows must not change at all when keys/values they cannot see change (to huge values)."""
    hq, hkv, d = HEADS["smollm2-135m"]
    q, k, v = qkv(rng, T, hq, hkv, d, dtype)
    base = np.asarray(K.attention_prefill(q, k, v, device=device), dtype=np.float64)
    cut = T // 2 + 3
    k2, v2 = k.copy(), v.copy()
    k2[cut:] = 60
    v2[cut:] = rand(rng, v2[cut:].shape, dtype, 1000.0)
    got = np.asarray(K.attention_prefill(q, k2, v2, device=device), dtype=np.float64)
    np.testing.assert_array_equal(got[:cut], base[:cut], err_msg="causal mask leaks future keys")
    assert np.abs(got[cut:] - base[cut:]).max() > 1, "changing visible keys must change the output"

    window = 20
    basew = np.asarray(K.attention_prefill(q, k, v, window=window, device=device), dtype=np.float64)
    k3, v3 = k.copy(), v.copy()
    k3[: cut - window + 1] = 60  # keys <= cut - window are outside the window of rows >= cut
    v3[: cut - window + 1] = rand(rng, v3[: cut - window + 1].shape, dtype, 1000.0)
    got = np.asarray(K.attention_prefill(q, k3, v3, window=window, device=device), dtype=np.float64)
    np.testing.assert_array_equal(got[cut:], basew[cut:], err_msg="window mask leaks old keys")
    assert_close(basew, R.attention_prefill(q, k, v, window=window), dtype, "window")


# ------------------------------------------------------------------------------------- chunked prefill

def _chunk_cases():
    cases = []
    for model, chunks in [("qwen2.5-0.5b", [1, 96, 7, 300]), ("llama3-8b", [64, 64, 1]),
                          ("phi3-mini-4k", [33, 1, 63]), ("hd80-gqa2", [100, 100, 57])]:
        cases.append(pytest.param("cpu", model, chunks))
        cases.append(cuda_param("cuda", model, chunks))
    cases.append(cuda_param("cuda", "llama3-8b", [1, 1023, 1, 512, 1000]))
    cases.append(cuda_param("cuda", "smollm2-135m", [4096]))
    return cases


@pytest.mark.parametrize("device,model,chunks", _chunk_cases())
@pytest.mark.parametrize("window", [None, 50])
def test_chunked_prefill_equals_one_shot(device, model, chunks, window, rng):
    hq, hkv, d = HEADS[model]
    dtype = "float16"
    T = sum(chunks)
    q, k, v = qkv(rng, T, hq, hkv, d, dtype)
    cache = K.KVCache(2, hkv, d, T + 5, dtype="f16", device=device, n_seqs=2)
    for layer in range(2):
        cache.k(layer).copy_(np.full(cache.k(layer).shape, np.nan, np.float16))
        cache.v(layer).copy_(np.full(cache.v(layer).shape, np.nan, np.float16))
    pieces, start = [], 0
    for n in chunks:
        out = poisoned((n, hq, d), dtype, device)
        K.attention_prefill(q[start:start + n], k[start:start + n], v[start:start + n], window=window, cache=cache,
                            layer=1, seq=1, start_pos=start, out=out)
        pieces.append(np.asarray(out, dtype=np.float64))
        start += n
    chunked = np.concatenate(pieces)
    one_shot = np.asarray(K.attention_prefill(q, k, v, window=window, device=device), dtype=np.float64)
    assert_close(chunked, one_shot, dtype, "chunked vs one-shot kernel")
    hsel, ref = prefill_ref(q, k, v, window=window)
    assert_close(chunked[:, hsel], ref, dtype, "chunked vs reference")
    # The store wrote exactly the prompt into layer 1 / slot 1 and nothing else.
    kc = np.asarray(cache.k(1))
    np.testing.assert_array_equal(kc[1, :, :T, :], k.transpose(1, 0, 2))
    assert np.isnan(kc[1, :, T:, :]).all() and np.isnan(kc[0]).all()
    assert np.isnan(np.asarray(cache.v(0))).all()


# ------------------------------------------------------------------------------------------- decode

def _decode_cases():
    cases = []
    for model in HEADS:
        cases.append(pytest.param("cpu", model, [1, 2, 512]))                      # n_past 0, 1, 511
        cases.append(cuda_param("cuda", model, [4096, 1, 2, 512]))                 # n_past 4095 .. 0, ragged
        cases.append(cuda_param("cuda", model, [1]))
    for model in ("qwen2.5-0.5b", "llama3-8b", "smollm2-135m"):
        cases.append(cuda_param("cuda", model, [16384, 1, 4096, 2, 512]))          # n_past 16383 .. 0
    cases.append(cuda_param("cuda", "phi3-mini-4k", [16384, 3]))
    cases.append(cuda_param("cuda", "gpt2", [16384]))
    cases.append(pytest.param("cpu", "llama3-8b", [4096, 1]))
    cases.append(pytest.param("cpu", "qwen2.5-0.5b", [16384, 512, 4096]))
    cases.append(pytest.param("cpu", "smollm2-135m", [2, 16384]))
    return cases


def fill_cache(rng, cache, ref_cache, lens, layer, dtype, ref_layer=0):
    """Random K/V for positions < lens[b] of slot b (layer `layer` of cache, `ref_layer` of ref_cache);
    everything else in that layer of cache is NaN."""
    for c in (cache.k(layer), cache.v(layer)):
        c.copy_(np.full(c.shape, np.nan, dtype=np_dtype(dtype)))
    for b, n in enumerate(lens):
        if n == 0:
            continue
        k = rand(rng, (n, cache.n_kv_heads, cache.head_dim), dtype)
        v = rand(rng, (n, cache.n_kv_heads, cache.head_dim), dtype)
        K.kv_cache_store(cache, k, v, layer=layer, seq=b, start_pos=0)
        R.kv_cache_store(ref_cache, k, v, layer=ref_layer, seq=b, start_pos=0)


@pytest.mark.parametrize("device,model,lens", _decode_cases())
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_decode_matches_reference(device, model, lens, dtype, rng):
    hq, hkv, d = HEADS[model]
    B = len(lens)
    max_tokens = max(lens) + 3
    cache = K.KVCache(2, hkv, d, max_tokens, dtype=dtype, device=device, n_seqs=B + 1)  # slot B stays unused
    ref_cache = R.KVCache(1, hkv, d, max_tokens, dtype=dtype, n_seqs=B)
    fill_cache(rng, cache, ref_cache, lens, 1, dtype)
    q = rand(rng, (B, hq, d), dtype, 1.5)
    out = poisoned((B, hq, d), dtype, device)
    K.attention_decode(q, cache, np.array(lens, np.int32), layer=1, out=out)
    ref = R.attention_decode(q, ref_cache, lens, layer=0)
    assert_close(out, ref, dtype, f"{model} lens={lens}")


@pytest.mark.parametrize("device,model,lens,window", [
    ("cpu", "qwen2.5-0.5b", [1, 100, 300], 64),
    ("cpu", "llama3-8b", [5, 129], 128),
    cuda_param("cuda", "qwen2.5-0.5b", [1, 100, 300, 16384], 64),
    cuda_param("cuda", "llama3-8b", [5, 129, 4096, 10000], 4000),
    cuda_param("cuda", "phi3-mini-4k", [2047, 2048, 2049], 2047),
])
def test_decode_sliding_window(device, model, lens, window, rng):
    hq, hkv, d = HEADS[model]
    dtype = "float16"
    cache = K.KVCache(1, hkv, d, max(lens), dtype=dtype, device=device, n_seqs=len(lens))
    ref_cache = R.KVCache(1, hkv, d, max(lens), dtype=dtype, n_seqs=len(lens))
    fill_cache(rng, cache, ref_cache, lens, 0, dtype)
    q = rand(rng, (len(lens), hq, d), dtype, 1.5)
    out = poisoned(q.shape, dtype, device)
    K.attention_decode(q, cache, lens, window=window, out=out)
    assert_close(out, R.attention_decode(q, ref_cache, lens, window=window), dtype, f"window={window}")


@pytest.mark.parametrize("device", ["cpu", cuda_param("cuda")])
def test_decode_empty_slot_gives_zeros_and_lengths_can_change(device, rng):
    hq, hkv, d = HEADS["llama3-8b"]
    cache = K.KVCache(1, hkv, d, 700, device=device, n_seqs=3)
    ref_cache = R.KVCache(1, hkv, d, 700, n_seqs=3)
    fill_cache(rng, cache, ref_cache, [700, 0, 65], 0, "float16")
    q = rand(rng, (3, hq, d), "float16")
    for lens in ([700, 0, 65], [1, 0, 64], [699, 0, 2]):  # same launch shape, new lengths
        out = poisoned(q.shape, "float16", device)
        K.attention_decode(q, cache, np.array(lens, np.int32), out=out)
        got = np.asarray(out, dtype=np.float64)
        assert (got[1] == 0).all()
        assert_close(got, R.attention_decode(q, ref_cache, lens), "float16", f"lens={lens}")


@pytest.mark.parametrize("device", ["cpu", cuda_param("cuda")])
@pytest.mark.parametrize("model", ["qwen2.5-0.5b", "phi3-mini-4k"])
def test_decode_continues_prefill(device, model, rng):
    """Prefill a prompt into the cache, then decode token by token: each step equals the one-shot row."""
    hq, hkv, d = HEADS[model]
    T, P = 140, 130
    q, k, v = qkv(rng, T, hq, hkv, d, "float16")
    cache = K.KVCache(1, hkv, d, 256, device=device)
    K.attention_prefill(q[:P], k[:P], v[:P], cache=cache)
    full = np.asarray(K.attention_prefill(q, k, v, device=device), dtype=np.float64)
    for t in range(P, T):
        K.kv_cache_store(cache, k[t:t + 1], v[t:t + 1], start_pos=t)
        got = K.attention_decode(q[t:t + 1], cache, [t + 1])
        assert_close(got, full[t:t + 1], "float16", f"step {t}")


# ------------------------------------------------------------------------------------------ KV cache

@pytest.mark.parametrize("device,dtype,in_dtype", [
    ("cpu", "f16", "float32"), ("cpu", "bf16", "float16"), ("cpu", "f32", "bfloat16"), ("cpu", "f16", "float16"),
    cuda_param("cuda", "f16", "float32"), cuda_param("cuda", "bf16", "bfloat16"),
    cuda_param("cuda", "f16", "bfloat16"),
])
def test_kv_cache_store_exact_and_scattered(device, dtype, in_dtype, rng):
    hkv, d, max_tokens = 3, 96, 50
    cache = K.KVCache(2, hkv, d, max_tokens, dtype=dtype, device=device, n_seqs=4)
    cdt = cache.dtype
    for layer in range(2):
        cache.k(layer).copy_(np.full(cache.k(layer).shape, np.nan, cdt))
        cache.v(layer).copy_(np.full(cache.v(layer).shape, np.nan, cdt))
    T = 9
    k = rand(rng, (T, hkv, d), in_dtype)
    v = rand(rng, (T, hkv, d), in_dtype)
    slots = np.array([3, 0, 0, 2, 3, 1, 0, 2, 3], np.int32)
    pos = np.array([0, 49, 7, 1, 48, 0, 8, 2, 1], np.int32)
    K.kv_cache_store(cache, k, v, layer=1, seq_slots=slots, positions=pos)
    kc, vc = np.asarray(cache.k(1)), np.asarray(cache.v(1))
    written = np.zeros(kc.shape[:1] + kc.shape[2:3], bool)  # [n_seqs, max_tokens]
    for t in range(T):
        np.testing.assert_array_equal(kc[slots[t], :, pos[t]], k[t].astype(np.float64).astype(cdt))
        np.testing.assert_array_equal(vc[slots[t], :, pos[t]], v[t].astype(np.float64).astype(cdt))
        written[slots[t], pos[t]] = True
    assert np.isnan(kc.transpose(0, 2, 1, 3)[~written]).all() and np.isnan(vc.transpose(0, 2, 1, 3)[~written]).all()
    assert np.isnan(np.asarray(cache.k(0))).all(), "another layer was written"


@pytest.mark.parametrize("device", ["cpu", cuda_param("cuda")])
def test_kv_cache_layout_and_memory_bytes(device):
    cache = K.KVCache(3, 8, 128, 100, device=device, n_seqs=2)
    assert cache.memory_bytes() == 2 * 3 * 2 * 8 * 100 * 128 * 2
    assert K.KVCache.bytes_needed(3, 8, 128, 100, dtype="f32", n_seqs=2) == 2 * 3 * 2 * 8 * 100 * 128 * 4
    assert cache.k(2).shape == (2, 8, 100, 128) and cache.v(0).shape == (2, 8, 100, 128)
    assert cache.k(0).dtype == np.float16 and cache.device == device
    assert (np.asarray(cache.k(1)) == 0).all()
    assert "[n_seqs, n_kv_heads, max_tokens, head_dim]" in K.KVCache.__doc__
    assert inferlab.KVCache is K.KVCache
    assert K.KVCache(1, 2, 64, 10, dtype="bf16").dtype.name == "bfloat16"


@pytest.mark.parametrize("device", ["cpu", cuda_param("cuda")])
def test_kv_cache_too_large_raises_before_allocating(device):
    with pytest.raises(inferlab.DeviceMemoryError, match=r"needs .* MiB.* free|needs .* available"):
        K.KVCache(4000, 64, 128, 1 << 20, device=device, n_seqs=8)
    K.KVCache(1, 1, 64, 16, device=device)  # and a small one still fits afterwards


# -------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("device", ["cpu", cuda_param("cuda")])
def test_bad_inputs_raise_clear_errors(device, rng):
    f16 = "float16"
    q, k, v = qkv(rng, 5, 6, 4, 64, f16)
    with pytest.raises(ValueError, match="multiple"):
        K.attention_prefill(q, k, v, device=device)                       # Hq % Hkv != 0
    q, k, v = qkv(rng, 5, 4, 2, 32, f16)
    with pytest.raises(ValueError, match="head_dim"):
        K.attention_prefill(q, k, v, device=device)                       # D not supported
    q, k, v = qkv(rng, 5, 4, 2, 64, f16)
    with pytest.raises(ValueError, match="k must have shape"):
        K.attention_prefill(q, k[:4], v, device=device)
    with pytest.raises(ValueError, match="window"):
        K.attention_prefill(q, k, v, window=-1, device=device)
    with pytest.raises(ValueError, match="scale"):
        K.attention_prefill(q, k, v, scale=0.0, device=device)
    with pytest.raises(ValueError, match="dtype"):
        K.attention_prefill(q.astype(np.int32), k, v, device=device)

    cache = K.KVCache(2, 2, 64, 32, device=device, n_seqs=2)
    with pytest.raises(ValueError, match="seq_lens"):
        K.attention_decode(q[:2], cache, [33, 1])                         # longer than max_tokens
    with pytest.raises(ValueError, match="seq_lens"):
        K.attention_decode(q[:2], cache, [3])                             # wrong length
    with pytest.raises(ValueError, match="layer"):
        K.attention_decode(q[:2], cache, [3, 1], layer=2)
    with pytest.raises(ValueError, match="layer"):
        K.attention_prefill(q, k, v, cache=cache, layer=-1)
    with pytest.raises(ValueError, match="slots"):
        K.attention_decode(q[:3], cache, [1, 1, 1])                       # more rows than slots
    with pytest.raises(ValueError, match="max_tokens"):
        K.attention_prefill(q, k, v, cache=cache, start_pos=30)           # 30 + 5 > 32
    with pytest.raises(ValueError, match="slot"):
        K.attention_prefill(q, k, v, cache=cache, seq=2)
    with pytest.raises(ValueError, match="head_dim"):
        K.attention_decode(rand(rng, (2, 4, 128), f16), cache, [1, 1])
    with pytest.raises(ValueError, match="multiple"):
        K.attention_decode(rand(rng, (2, 3, 64), f16), cache, [1, 1])
    with pytest.raises(ValueError, match="causal"):
        K.attention_prefill(q, k, v, cache=cache, causal=False)
    with pytest.raises(ValueError, match="position"):
        K.kv_cache_store(cache, k, v, start_pos=28)
    with pytest.raises(ValueError, match="n_kv_heads|head_dim"):
        K.KVCache(1, 2, 100, 16, device=device)
    with pytest.raises(ValueError, match="max_tokens"):
        K.KVCache(1, 2, 64, 0, device=device)
    with pytest.raises(ValueError, match="dtype"):
        K.KVCache(1, 2, 64, 8, dtype="int8", device=device)


def test_bad_inputs_core_level_cpu(rng):
    """The C++ entry points check what the Python layer would otherwise catch first."""
    A = inferlab._core.attention
    cache = K.KVCache(1, 2, 64, 8, n_seqs=2)
    q = DeviceArray.from_numpy(rand(rng, (2, 4, 64), "float16"), "cpu")
    out = poisoned((2, 4, 64), "float16", "cpu")
    lens = DeviceArray.from_numpy(np.array([9, 1], np.int32), "cpu")
    with pytest.raises(ValueError, match=r"seq_lens\[0\] = 9"):
        A.attention_decode(q, cache._c, 0, lens, out, 0.125, 0)
    kk = DeviceArray.from_numpy(rand(rng, (1, 2, 64), "float16"), "cpu")
    slots = DeviceArray.from_numpy(np.array([2], np.int32), "cpu")
    pos = DeviceArray.from_numpy(np.array([0], np.int32), "cpu")
    with pytest.raises(ValueError, match=r"seq_slots\[0\] = 2"):
        A.kv_cache_store(cache._c, 0, kk, kk, slots, pos)


@pytest.mark.cuda
def test_device_mismatch_and_cuda_dtype_rules(rng):
    q, k, v = qkv(rng, 5, 4, 2, 64, "float16")
    cpu_cache = K.KVCache(1, 2, 64, 32, device="cpu")
    with pytest.raises(ValueError, match="cpu"):
        K.attention_prefill(q, k, v, cache=cpu_cache, device="cuda")      # cache on another device
    qd = DeviceArray.from_numpy(q, "cuda")
    with pytest.raises(ValueError, match="q is on cuda"):
        K.attention_decode(qd, cpu_cache, [1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="float16 and bfloat16"):
        K.attention_prefill(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32), device="cuda")
    with pytest.raises(ValueError, match="CPU-only"):
        K.KVCache(1, 2, 64, 8, dtype="f32", device="cuda")
    cuda_cache = K.KVCache(1, 2, 64, 32, dtype="bf16", device="cuda")
    with pytest.raises(ValueError, match="one dtype"):
        K.attention_decode(q[:1], cuda_cache, [1])                         # f16 q, bf16 cache
