"""Random-weight GGUF models for tests and benchmarks.

    from inferlab.testing import write_random_gguf, dequantized_state
    path = write_random_gguf("tiny.gguf", "llama")                               # CI-sized
    path = write_random_gguf("q.gguf", "qwen2", "qwen2.5-0.5b", qtype="Q4_K_M")    # real shapes

The files follow llama.cpp's conventions exactly (tensor names, ggml shapes, metadata keys), so
they load in llama.cpp as well as in inferlab. Weights are normal with std 0.02 (norm weights
1 + small noise), small enough that real-depth networks stay finite. The same ``seed`` gives the
same underlying float weights whatever ``qtype`` is, so files of different types are comparable.

This module needs the ``gguf`` package (``pip install gguf``); nothing else in inferlab does.
"""
from __future__ import annotations

import copy
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["write_random_gguf", "dequantized_state", "tensor_plan", "preset_config", "PRESETS", "ARCHS", "QTYPES"]


def _gguf():
    try:
        import gguf  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "inferlab.testing needs the 'gguf' package to write GGUF files: pip install gguf"
        ) from e
    return gguf


ARCHS = ("llama", "qwen2", "phi3", "gpt2")

# Tensor types a file can be written in. Single types are "pure" (every 2-D weight in that type,
# with llama.cpp's fallback where a row length is not a multiple of 256 for K-quants); "Q4_K_M"
# is llama.cpp's mixed recipe.
QTYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
          "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M")

# general.file_type values (llama_ftype) for each qtype.
_FILE_TYPE = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10,
    "Q3_K": 11, "Q4_K": 14, "Q5_K": 16, "Q6_K": 18, "Q4_K_M": 15, "BF16": 32,
}

# llama.cpp's replacements when a row length is not a multiple of QK_K (llama-quant.cpp). Upstream
# maps Q2_K/Q3_K to IQ4_NL; Q4_0 (what older llama.cpp used) is taken here instead.
_K_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
_BLOCK = {"F32": 1, "F16": 1, "BF16": 1, "Q8_0": 32, "Q4_0": 32, "Q4_1": 32, "Q5_0": 32, "Q5_1": 32,
          "Q2_K": 256, "Q3_K": 256, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256}

# Model shapes. Keys: n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx, rope_theta, eps,
# plus tied (no output.weight: the head reuses token_embd) and sliding_window (phi3).
PRESETS = {
    "llama": {
        "tiny": dict(n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=512, n_vocab=320, n_ctx=256,
                     rope_theta=10000.0, eps=1e-5, tied=False),
        "smollm2-135m": dict(n_embd=576, n_layer=30, n_head=9, n_head_kv=3, n_ff=1536, n_vocab=49152,
                             n_ctx=8192, rope_theta=100000.0, eps=1e-5, tied=True),
    },
    "qwen2": {
        "tiny": dict(n_embd=256, n_layer=2, n_head=4, n_head_kv=1, n_ff=512, n_vocab=320, n_ctx=256,
                     rope_theta=1000000.0, eps=1e-6, tied=True),
        "qwen2.5-0.5b": dict(n_embd=896, n_layer=24, n_head=14, n_head_kv=2, n_ff=4864, n_vocab=151936,
                             n_ctx=32768, rope_theta=1000000.0, eps=1e-6, tied=True),
    },
    "phi3": {
        # The tiny window (64) is smaller than the context so that sliding-window attention is exercised.
        "tiny": dict(n_embd=256, n_layer=2, n_head=4, n_head_kv=4, n_ff=512, n_vocab=320, n_ctx=256,
                     rope_theta=10000.0, eps=1e-5, tied=False, sliding_window=64),
        "phi3-mini-4k": dict(n_embd=3072, n_layer=32, n_head=32, n_head_kv=32, n_ff=8192, n_vocab=32064,
                             n_ctx=4096, rope_theta=10000.0, eps=1e-5, tied=False, sliding_window=2047),
    },
    "gpt2": {
        "tiny": dict(n_embd=256, n_layer=2, n_head=4, n_head_kv=4, n_ff=1024, n_vocab=320, n_ctx=256,
                     eps=1e-5, tied=False),
        "gpt2-124m": dict(n_embd=768, n_layer=12, n_head=12, n_head_kv=12, n_ff=3072, n_vocab=50257,
                          n_ctx=1024, eps=1e-5, tied=False),
    },
}

WEIGHT_STD = 0.02   # std of every weight matrix, embedding and bias
NORM_STD = 0.02     # norm weights are 1 + NORM_STD * N(0, 1)
# Rows of the output head (output.weight, or token_embd when it is tied) are scaled by exp(HEAD_ROW_LOGSTD * N(0, 1)).
# With plain i.i.d. rows the logits are a Gaussian cloud whose top two values are nearly tied (gap ~ 0.2 std for a
# 50k vocabulary), so any rounding flips the argmax; varied row norms give a clear top-1, as trained models have,
# and make top-1 agreement between two implementations a meaningful test.
HEAD_ROW_LOGSTD = 0.5

_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# A few byte-level BPE merges (GPT-2 alphabet, 'Ġ' is a space) so the tokenizer merges something.
_MERGES = [
    "Ġ t", "Ġ a", "h e", "i n", "r e", "o n", "Ġt he", "e r", "Ġ s", "a t", "Ġ w", "Ġ o", "e n",
    "Ġ c", "i t", "i s", "a n", "o r", "e s", "Ġ b", "e d", "Ġ f", "in g", "Ġ p", "o u", "Ġa n",
    "a l", "a r", "Ġt o", "Ġ m", "Ġo f", "Ġ in", "Ġ d", "Ġ h", "Ġan d", "l l", "l e", "Ġ G", "P U",
    "Ġ H", "Ġ l", "Ġ n", "o w", "Ġ y", "u r", "o ur",
]


def _bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


@dataclass
class _Spec:
    name: str
    shape: tuple          # NumPy order: (rows, cols); ggml ne is reversed
    kind: str             # "weight" | "norm" | "bias"
    seed_name: str = ""   # tensors with the same seed_name get identical values (GPT-2's tied head)
    head: bool = False    # rows get HEAD_ROW_LOGSTD scales (the output head)


def preset_config(arch, preset="tiny", n_ctx=None, vocab=None, overrides=None):
    """The shape config a preset writes: a dict (see PRESETS), with overrides applied and checked."""
    if arch not in PRESETS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    if preset not in PRESETS[arch]:
        owner = [a for a in PRESETS if preset in PRESETS[a]]
        hint = f" (preset {preset!r} is for arch {owner[0]!r})" if owner else ""
        raise ValueError(f"preset for arch {arch!r} must be one of {sorted(PRESETS[arch])}; got {preset!r}{hint}")
    cfg = copy.deepcopy(PRESETS[arch][preset])
    cfg.setdefault("sliding_window", 0)
    for k, v in (overrides or {}).items():
        if k not in cfg and k != "head_dim":
            raise ValueError(f"overrides: unknown key {k!r}; known: {sorted(cfg)}")
        cfg[k] = v
    if n_ctx is not None:
        cfg["n_ctx"] = int(n_ctx)
    if vocab is not None:
        cfg["n_vocab"] = int(vocab)
    cfg.setdefault("head_dim", cfg["n_embd"] // cfg["n_head"])
    for k in ("n_embd", "n_layer", "n_head", "n_head_kv", "n_ff", "n_vocab", "n_ctx", "head_dim"):
        if not isinstance(cfg[k], (int, np.integer)) or cfg[k] <= 0:
            raise ValueError(f"{k} must be a positive integer; got {cfg[k]!r}")
    if cfg["n_head"] % cfg["n_head_kv"]:
        raise ValueError(f"n_head ({cfg['n_head']}) must be a multiple of n_head_kv ({cfg['n_head_kv']})")
    if arch in ("phi3", "gpt2") and cfg["head_dim"] * cfg["n_head"] != cfg["n_embd"]:
        raise ValueError(f"{arch}: head_dim * n_head must equal n_embd")
    if arch == "gpt2" and cfg["n_head_kv"] != cfg["n_head"]:
        raise ValueError("gpt2 has no grouped-query attention: n_head_kv must equal n_head")
    if cfg["head_dim"] % 2:
        raise ValueError(f"head_dim must be even for rope; got {cfg['head_dim']}")
    n_min = 256 + len(_MERGES) + 3
    if cfg["n_vocab"] < n_min:
        raise ValueError(f"vocab must be at least {n_min} (256 byte tokens, merges, special tokens); got {cfg['n_vocab']}")
    return cfg


def _tensor_specs(arch, cfg):
    D, F, V, L = cfg["n_embd"], cfg["n_ff"], cfg["n_vocab"], cfg["n_layer"]
    hd, hq, hkv = cfg["head_dim"], cfg["n_head"], cfg["n_head_kv"]
    head_tied = arch != "gpt2" and cfg["tied"]
    specs = [_Spec("token_embd.weight", (V, D), "weight", head=head_tied or arch == "gpt2")]
    if arch == "gpt2":
        specs.append(_Spec("position_embd.weight", (cfg["n_ctx"], D), "weight"))
    for i in range(L):
        b = f"blk.{i}."
        specs.append(_Spec(b + "attn_norm.weight", (D,), "norm"))
        if arch == "gpt2":
            specs += [
                _Spec(b + "attn_norm.bias", (D,), "bias"),
                _Spec(b + "attn_qkv.weight", (3 * D, D), "weight"),
                _Spec(b + "attn_qkv.bias", (3 * D,), "bias"),
                _Spec(b + "attn_output.weight", (D, D), "weight"),
                _Spec(b + "attn_output.bias", (D,), "bias"),
                _Spec(b + "ffn_norm.weight", (D,), "norm"),
                _Spec(b + "ffn_norm.bias", (D,), "bias"),
                _Spec(b + "ffn_up.weight", (F, D), "weight"),
                _Spec(b + "ffn_up.bias", (F,), "bias"),
                _Spec(b + "ffn_down.weight", (D, F), "weight"),
                _Spec(b + "ffn_down.bias", (D,), "bias"),
            ]
            continue
        if arch == "phi3":
            specs.append(_Spec(b + "attn_qkv.weight", ((hq + 2 * hkv) * hd, D), "weight"))
        else:
            specs += [
                _Spec(b + "attn_q.weight", (hq * hd, D), "weight"),
                _Spec(b + "attn_k.weight", (hkv * hd, D), "weight"),
                _Spec(b + "attn_v.weight", (hkv * hd, D), "weight"),
            ]
            if arch == "qwen2":
                specs += [
                    _Spec(b + "attn_q.bias", (hq * hd,), "bias"),
                    _Spec(b + "attn_k.bias", (hkv * hd,), "bias"),
                    _Spec(b + "attn_v.bias", (hkv * hd,), "bias"),
                ]
        specs.append(_Spec(b + "attn_output.weight", (D, hq * hd), "weight"))
        specs.append(_Spec(b + "ffn_norm.weight", (D,), "norm"))
        if arch == "phi3":
            specs.append(_Spec(b + "ffn_up.weight", (2 * F, D), "weight"))   # [gate; up] fused
        else:
            specs += [_Spec(b + "ffn_gate.weight", (F, D), "weight"), _Spec(b + "ffn_up.weight", (F, D), "weight")]
        specs.append(_Spec(b + "ffn_down.weight", (D, F), "weight"))
    specs.append(_Spec("output_norm.weight", (D,), "norm"))
    if arch == "gpt2":
        specs.append(_Spec("output_norm.bias", (D,), "bias"))
        # llama.cpp's GPT-2 converter writes the tied head as its own copy of token_embd.
        specs.append(_Spec("output.weight", (V, D), "weight", seed_name="token_embd.weight", head=True))
    elif not cfg["tied"]:
        specs.append(_Spec("output.weight", (V, D), "weight", head=True))
    return specs


def _use_more_bits(i, n):
    """llama.cpp's layer selection for the extra-precision tensors of the _M recipes."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _pick_type(spec, arch, qtype, cfg):
    """The ggml type a tensor is stored in for a requested qtype, following llama.cpp."""
    if spec.kind != "weight":
        return "F32"                                   # norms and biases stay F32
    if qtype in ("F32", "F16", "BF16"):
        t = qtype
    elif qtype != "Q4_K_M":
        t = qtype                                      # pure: every 2-D weight in that type
    else:
        name, n_layer = spec.name, cfg["n_layer"]
        layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
        is_head = name == "output.weight" or (cfg["tied"] and arch != "gpt2" and name == "token_embd.weight")
        if is_head:
            t = "Q6_K" if spec.shape[1] % 256 == 0 else "Q8_0"
        elif name.endswith("attn_v.weight") or name.endswith("ffn_down.weight"):
            t = "Q6_K" if _use_more_bits(layer, n_layer) else "Q4_K"
        elif name.endswith("attn_qkv.weight"):
            t = "Q5_K"
        else:
            t = "Q4_K"
    if t in _K_FALLBACK and spec.shape[-1] % 256:
        t = _K_FALLBACK[t]
    if spec.shape[-1] % _BLOCK[t]:
        raise ValueError(f"{spec.name}: row length {spec.shape[-1]} is not a multiple of the {t} block size {_BLOCK[t]}")
    return t


def _vocab(arch, cfg):
    """A synthetic byte-level BPE vocabulary of exactly n_vocab tokens."""
    V = cfg["n_vocab"]
    b2u = _bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    types = [1] * 256                                  # NORMAL
    have = set(tokens)
    for m in _MERGES:
        a, b = m.split(" ")
        assert a in have and b in have, m
        tokens.append(a + b)
        have.add(a + b)
        types.append(1)
    if arch == "gpt2":
        specials = ["<|endoftext|>"]
    else:
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    n_fill = V - len(tokens) - len(specials)
    # Real vocabularies keep their special tokens at the end (Qwen2 151643+, GPT-2 50256).
    tokens += [f"<t{i}>" for i in range(len(tokens), len(tokens) + n_fill)]
    types += [1] * n_fill
    first_special = len(tokens)
    tokens += specials
    types += [3] * len(specials)                       # CONTROL
    assert len(tokens) == V
    ids = {s: first_special + i for i, s in enumerate(specials)}
    return tokens, types, list(_MERGES), ids


def _add_metadata(w, arch, preset, cfg, qtype):
    g = _gguf()
    w.add_name(f"inferlab random {arch} {preset}")
    w.add_type("model")
    w.add_context_length(cfg["n_ctx"])
    w.add_embedding_length(cfg["n_embd"])
    w.add_block_count(cfg["n_layer"])
    w.add_feed_forward_length(cfg["n_ff"])
    w.add_head_count(cfg["n_head"])
    if arch != "gpt2":                                 # llama.cpp's GPT-2 converter writes no head_count_kv
        w.add_head_count_kv(cfg["n_head_kv"])
    if arch == "gpt2":
        w.add_layer_norm_eps(cfg["eps"])
    else:
        w.add_layer_norm_rms_eps(cfg["eps"])
        w.add_rope_freq_base(cfg["rope_theta"])
    if cfg["head_dim"] * cfg["n_head"] != cfg["n_embd"]:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    if arch == "llama":
        w.add_vocab_size(cfg["n_vocab"])
        w.add_rope_dimension_count(cfg["head_dim"])
    if arch == "phi3":
        w.add_rope_scaling_orig_ctx_len(cfg["n_ctx"])
        w.add_rope_dimension_count(cfg["head_dim"])
        w.add_sliding_window(cfg["sliding_window"])
    w.add_file_type(_FILE_TYPE[qtype])
    if qtype not in ("F32", "F16", "BF16"):
        w.add_quantization_version(g.GGML_QUANT_VERSION)

    tokens, types, merges, ids = _vocab(arch, cfg)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre({"llama": "smollm", "qwen2": "qwen2", "phi3": "gpt-2", "gpt2": "gpt-2"}[arch])
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    if arch == "gpt2":
        eot = ids["<|endoftext|>"]
        w.add_bos_token_id(eot)
        w.add_eos_token_id(eot)
    else:
        w.add_bos_token_id(ids["<|endoftext|>"])
        w.add_eos_token_id(ids["<|im_end|>"])
        w.add_pad_token_id(ids["<|endoftext|>"])
        w.add_chat_template(_CHATML)
    w.add_add_bos_token(False)


_CHUNK = 1 << 22    # elements per independently seeded chunk (fixed: the values never depend on threads)


def _chunk_rows(shape):
    cols = shape[-1] if len(shape) > 1 else shape[0]
    rows = shape[0] if len(shape) > 1 else 1
    per = max(1, _CHUNK // cols)
    return rows, cols, [(r, min(rows, r + per)) for r in range(0, rows, per)]


def _make_tensor(spec, gtype, seed, pool, given=None):
    """Generate the tensor's float values chunk by chunk, quantize each chunk, return the stored array."""
    from ._quant_np import quantize_rows

    if given is not None:                              # caller-supplied values instead of random ones
        x = np.asarray(given, dtype=np.float32).reshape(spec.shape[0] if len(spec.shape) > 1 else 1, -1)
        out = quantize_rows(x, gtype)
        return out.reshape(-1) if len(spec.shape) == 1 else out
    key = zlib.crc32((spec.seed_name or spec.name).encode())
    rows, cols, chunks = _chunk_rows(spec.shape)
    row_scale = None
    if spec.head and HEAD_ROW_LOGSTD:
        r = np.random.default_rng(np.random.SeedSequence([seed, key, 1 << 30]))
        row_scale = np.exp(HEAD_ROW_LOGSTD * r.standard_normal(rows)).astype(np.float32)[:, None]

    def one(ic):
        i, (r0, r1) = ic
        rng = np.random.default_rng(np.random.SeedSequence([seed, key, i]))
        x = rng.standard_normal((r1 - r0, cols), dtype=np.float32)
        if spec.kind == "norm":
            x = 1.0 + np.float32(NORM_STD) * x
        else:
            x *= np.float32(WEIGHT_STD)
        if row_scale is not None:
            x *= row_scale[r0:r1]
        return quantize_rows(x, gtype)

    parts = list(pool.map(one, enumerate(chunks))) if len(chunks) > 1 else [one((0, chunks[0]))]
    out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    if len(spec.shape) == 1:
        out = out.reshape(-1)
    return out


def tensor_plan(arch, preset="tiny", qtype="F32", n_ctx=None, vocab=None, overrides=None):
    """What write_random_gguf would write: a list of (name, NumPy shape, ggml type name)."""
    if qtype not in QTYPES:
        raise ValueError(f"qtype must be one of {', '.join(QTYPES)}; got {qtype!r}")
    cfg = preset_config(arch, preset, n_ctx=n_ctx, vocab=vocab, overrides=overrides)
    return [(s.name, s.shape, _pick_type(s, arch, qtype, cfg)) for s in _tensor_specs(arch, cfg)]


def write_random_gguf(path, arch, preset="tiny", qtype="F32", seed=0, n_ctx=None, vocab=None,
                      overrides=None, tensors=None, threads=None):
    """Write a random-weight GGUF model and return its path.

    path: output file (overwritten). arch: "llama" | "qwen2" | "phi3" | "gpt2".
    preset: "tiny" (any arch, CI-sized) or a real shape: "smollm2-135m" (llama), "qwen2.5-0.5b" (qwen2),
        "phi3-mini-4k" (phi3), "gpt2-124m" (gpt2).
    qtype: one of QTYPES. Norms and biases are always F32.
    seed: weights are a pure function of (seed, tensor name, shape), independent of qtype.
    n_ctx: the context length written (GPT-2's position_embd has this many rows). vocab: vocabulary size.
    overrides: dict of config keys to change (n_embd, n_layer, n_head, n_head_kv, n_ff, head_dim,
        rope_theta, eps, tied, sliding_window, ...), e.g. {"n_layer": 1, "n_head_kv": 4}.
    tensors: optional {name: float array in NumPy order} used instead of random values (quantized to
        the tensor's type like the rest), e.g. to write a model equivalent to another one.
    threads: worker threads for generation/quantization (default: CPU count, at most 16).
    """
    g = _gguf()
    if qtype not in QTYPES:
        raise ValueError(f"qtype must be one of {', '.join(QTYPES)}; got {qtype!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    cfg = preset_config(arch, preset, n_ctx=n_ctx, vocab=vocab, overrides=overrides)
    specs = _tensor_specs(arch, cfg)
    types = [_pick_type(s, arch, qtype, cfg) for s in specs]
    tensors = dict(tensors or {})
    by_name = {s.name: s for s in specs}
    for name, arr in tensors.items():
        if name not in by_name:
            raise ValueError(f"tensors: {name!r} is not a tensor of this model; known: {sorted(by_name)}")
        if tuple(np.shape(arr)) != by_name[name].shape:
            raise ValueError(f"tensors: {name!r} has shape {tuple(np.shape(arr))}, expected {by_name[name].shape}")

    path = os.fspath(path)
    tmp = path + ".tmp"
    w = g.GGUFWriter(tmp, arch)
    try:
        _add_metadata(w, arch, preset, cfg, qtype)
        for s, t in zip(specs, types):
            gt = g.GGMLQuantizationType[t]
            block, type_size = g.GGML_QUANT_SIZES[gt]
            n_el = int(np.prod(s.shape))
            w.add_tensor_info(s.name, s.shape, np.dtype(np.float32), n_el // block * type_size, raw_dtype=gt)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        n_threads = threads or min(16, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            for s, t in zip(specs, types):
                w.write_tensor_data(_make_tensor(s, t, int(seed), pool, tensors.get(s.name)))
        w.close()
        os.replace(tmp, path)
    except BaseException:
        try:
            w.close()
        except Exception:
            pass
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def dequantized_state(path, dtype=np.float32):
    """Every tensor of a GGUF file, dequantized: {name: array in NumPy order (ggml ne reversed)}."""
    from . import reference

    return reference.load_state(path, dtype=dtype)


# ---- the same weights in Hugging Face transformers ------------------------------------------------------

def _unpermute_qk(w, n_head):
    """Undo llama.cpp's q/k row permutation for llama GGUFs (interleaved rope pairs -> HF rotate-half)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_state_dict_from_gguf(path):
    """(architecture class name, config kwargs, state dict of float32 NumPy arrays) for transformers.

    Mapping: llama -> LlamaForCausalLM (q/k rows un-permuted), qwen2 -> Qwen2ForCausalLM,
    phi3 -> Phi3ForCausalLM (fused qkv_proj and gate_up_proj as in the GGUF),
    gpt2 -> GPT2LMHeadModel (Conv1D weights are the GGUF weights transposed).
    """
    from .reference import _Config, _GGUFSource

    src = _GGUFSource(path)
    c = _Config(src.meta, src.shapes, src.path)

    def get(n):
        return np.array(src.get(n, np.float32), dtype=np.float32, order="C", copy=True)

    sd = {}
    L = c.n_layer
    if c.arch == "gpt2":
        kw = dict(vocab_size=c.n_vocab, n_positions=src.shapes["position_embd.weight"][0], n_embd=c.n_embd,
                  n_layer=L, n_head=c.n_head, n_inner=c.n_ff, activation_function="gelu_new",
                  layer_norm_epsilon=c.eps, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                  tie_word_embeddings=False, bos_token_id=None, eos_token_id=None)
        sd["transformer.wte.weight"] = get("token_embd.weight")
        sd["transformer.wpe.weight"] = get("position_embd.weight")
        for i in range(L):
            b, h = f"blk.{i}.", f"transformer.h.{i}."
            for g, hf in (("attn_norm", "ln_1"), ("ffn_norm", "ln_2")):
                sd[h + hf + ".weight"], sd[h + hf + ".bias"] = get(b + g + ".weight"), get(b + g + ".bias")
            for g, hf in (("attn_qkv", "attn.c_attn"), ("attn_output", "attn.c_proj"),
                          ("ffn_up", "mlp.c_fc"), ("ffn_down", "mlp.c_proj")):
                sd[h + hf + ".weight"] = np.ascontiguousarray(get(b + g + ".weight").T)
                sd[h + hf + ".bias"] = get(b + g + ".bias")
        sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"] = get("output_norm.weight"), get("output_norm.bias")
        sd["lm_head.weight"] = get("output.weight") if src.has("output.weight") else sd["transformer.wte.weight"]
        return "GPT2LMHeadModel", kw, sd

    tied = not src.has("output.weight")
    kw = dict(vocab_size=c.n_vocab, hidden_size=c.n_embd, intermediate_size=c.n_ff, num_hidden_layers=L,
              num_attention_heads=c.n_head, num_key_value_heads=c.n_head_kv, rms_norm_eps=c.eps,
              rope_theta=c.rope_theta, max_position_embeddings=max(c.n_ctx, 1), tie_word_embeddings=tied,
              bos_token_id=None, eos_token_id=None, pad_token_id=None, attention_dropout=0.0)
    sd["model.embed_tokens.weight"] = get("token_embd.weight")
    for i in range(L):
        b, h = f"blk.{i}.", f"model.layers.{i}."
        sd[h + "input_layernorm.weight"] = get(b + "attn_norm.weight")
        sd[h + "post_attention_layernorm.weight"] = get(b + "ffn_norm.weight")
        sd[h + "self_attn.o_proj.weight"] = get(b + "attn_output.weight")
        sd[h + "mlp.down_proj.weight"] = get(b + "ffn_down.weight")
        if c.arch == "phi3":
            sd[h + "self_attn.qkv_proj.weight"] = get(b + "attn_qkv.weight")
            sd[h + "mlp.gate_up_proj.weight"] = get(b + "ffn_up.weight")
            continue
        q, k = get(b + "attn_q.weight"), get(b + "attn_k.weight")
        if c.arch == "llama":
            q, k = _unpermute_qk(q, c.n_head), _unpermute_qk(k, c.n_head_kv)
        sd[h + "self_attn.q_proj.weight"], sd[h + "self_attn.k_proj.weight"] = q, k
        sd[h + "self_attn.v_proj.weight"] = get(b + "attn_v.weight")
        if c.arch == "qwen2":
            for x in "qkv":
                sd[h + f"self_attn.{x}_proj.bias"] = get(b + f"attn_{x}.bias")
        sd[h + "mlp.gate_proj.weight"] = get(b + "ffn_gate.weight")
        sd[h + "mlp.up_proj.weight"] = get(b + "ffn_up.weight")
    sd["model.norm.weight"] = get("output_norm.weight")
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"] if tied else get("output.weight")
    if c.arch == "llama":
        kw.update(head_dim=c.head_dim, attention_bias=False, mlp_bias=False)
        return "LlamaForCausalLM", kw, sd
    if c.arch == "qwen2":
        kw.update(use_sliding_window=False)
        return "Qwen2ForCausalLM", kw, sd
    kw.update(original_max_position_embeddings=max(c.n_ctx, 1), sliding_window=c.sliding_window or None,
              rope_scaling=None, resid_pdrop=0.0, embd_pdrop=0.0)
    return "Phi3ForCausalLM", kw, sd


def hf_model_from_gguf(path, dtype="float32", device="cpu", attn_implementation="eager"):
    """A transformers model holding exactly the GGUF's (dequantized) weights, in eval mode.

    dtype: a torch dtype or its name ("float32", "bfloat16", "float64"). Needs torch and transformers.
    """
    try:
        import torch
        import transformers
    except ImportError as e:  # pragma: no cover
        raise ImportError("hf_model_from_gguf needs torch and transformers: pip install torch transformers") from e
    cls_name, kw, sd = hf_state_dict_from_gguf(path)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    cfg_cls = {"GPT2LMHeadModel": transformers.GPT2Config, "LlamaForCausalLM": transformers.LlamaConfig,
               "Qwen2ForCausalLM": transformers.Qwen2Config, "Phi3ForCausalLM": transformers.Phi3Config}[cls_name]
    cfg = cfg_cls(**kw)
    cfg._attn_implementation = attn_implementation
    rope_theta = kw.get("rope_theta")
    if rope_theta is not None and isinstance(getattr(cfg, "rope_parameters", None), dict):
        cfg.rope_parameters["rope_theta"] = rope_theta       # transformers >= 5 keeps it here
    try:
        from transformers.modeling_utils import no_init_weights
    except ImportError:  # pragma: no cover
        import contextlib

        no_init_weights = contextlib.nullcontext
    with no_init_weights():
        model = getattr(transformers, cls_name)(cfg)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
    if unexpected:
        raise RuntimeError(f"transformers {transformers.__version__}: unexpected weights {unexpected[:5]}")
    real_missing = [k for k in missing if not (k.endswith(".attn.bias") or k.endswith(".attn.masked_bias"))]
    if real_missing:
        raise RuntimeError(f"transformers {transformers.__version__}: weights not set {real_missing[:5]}")
    if cls_name != "GPT2LMHeadModel":
        # Set the rope frequencies explicitly, whatever this transformers version does with rope_theta.
        hd = kw.get("head_dim") or kw["hidden_size"] // kw["num_attention_heads"]
        inv = 1.0 / (rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        for mod in model.modules():
            if hasattr(mod, "inv_freq") and isinstance(mod.inv_freq, torch.Tensor):
                mod.inv_freq = inv.to(mod.inv_freq.dtype).clone()
                if hasattr(mod, "original_inv_freq"):
                    mod.original_inv_freq = mod.inv_freq
                if hasattr(mod, "attention_scaling"):
                    mod.attention_scaling = 1.0
    return model.to(device=device, dtype=dtype).eval()
