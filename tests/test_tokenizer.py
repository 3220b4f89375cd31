"""Tokenizers: llama.cpp conformance vectors, the Python API, metadata validation, streaming decode."""
from __future__ import annotations

import json
import pathlib

import pytest

import inferlab
from inferlab import Tokenizer

from conftest import TOKENIZER_DIR

try:
    import gguf  # the writer, for the qwen2 vocab GGUF and the malformed files
except ImportError:
    gguf = None
needs_gguf = pytest.mark.skipif(gguf is None, reason="the gguf package (a test dependency) is not installed")

HF_DIR = TOKENIZER_DIR / "hf"
pytestmark = pytest.mark.skipif(not TOKENIZER_DIR.is_dir(), reason=f"conformance data not found at {TOKENIZER_DIR}")


def load_vectors(name: str):
    """Texts and ids of llama.cpp's ggml-vocab-<name>.gguf.inp/.out."""
    inp = (TOKENIZER_DIR / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8")
    texts = inp.split("\n__ggml_vocab_test__\n")
    assert texts[-1] == ""
    texts = texts[:-1]
    lines = (TOKENIZER_DIR / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").split("\n")
    ids = [[int(x) for x in line.split()] for line in lines[: len(texts)]]
    assert len(ids) == len(texts)
    return list(zip(texts, ids))


def write_qwen2_gguf(path: pathlib.Path, json_path: pathlib.Path = HF_DIR / "qwen2.5" / "tokenizer.json"):
    """A vocab-only GGUF as convert_hf_to_gguf.py writes it for Qwen2.5 (gpt2 model, qwen2 pre)."""
    j = json.loads(json_path.read_text(encoding="utf-8"))
    vocab = j["model"]["vocab"]
    added = {a["id"]: a for a in j["added_tokens"]}
    n = max(max(vocab.values()), max(added)) + 1
    tokens = [None] * n
    types = [1] * n
    for piece, i in vocab.items():
        tokens[i] = piece
    for i, a in added.items():
        tokens[i] = a["content"]
        types[i] = 3 if a["special"] else 4
    assert all(t is not None for t in tokens)
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    cfg = json.loads((json_path.parent / "tokenizer_config.json").read_text(encoding="utf-8"))
    w = gguf.GGUFWriter(str(path), arch="qwen2")
    w.add_name("Qwen2.5 vocab")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(151643)
    w.add_eos_token_id(151645)
    w.add_pad_token_id(151643)
    w.add_add_bos_token(False)
    w.add_chat_template(cfg["chat_template"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="session")
def qwen2_gguf(tmp_path_factory):
    if gguf is None:
        pytest.skip("the gguf package (a test dependency) is not installed")
    return write_qwen2_gguf(tmp_path_factory.mktemp("qwen2") / "ggml-vocab-qwen2.gguf")


def gguf_tok(name):
    return Tokenizer.from_gguf(TOKENIZER_DIR / f"ggml-vocab-{name}.gguf")


# ------------------------------------------------------------------ conformance (100%)
@pytest.mark.parametrize("name", ["gpt-2", "llama-spm", "phi-3"])
def test_llama_cpp_vectors_gguf(name):
    tok = gguf_tok(name)
    vectors = load_vectors(name)
    bad = [(t, tok.encode(t), ids) for t, ids in vectors if tok.encode(t) != ids]
    assert not bad, f"{len(bad)}/{len(vectors)} mismatches, first: {bad[0]!r}"


def test_llama_cpp_vectors_qwen2_gguf(qwen2_gguf):
    tok = Tokenizer.from_gguf(qwen2_gguf)
    vectors = load_vectors("qwen2")
    bad = [(t, tok.encode(t), ids) for t, ids in vectors if tok.encode(t) != ids]
    assert not bad, f"{len(bad)}/{len(vectors)} mismatches, first: {bad[0]!r}"


def test_llama_cpp_vectors_qwen2_json():
    tok = Tokenizer.from_json(HF_DIR / "qwen2.5" / "tokenizer.json")
    vectors = load_vectors("qwen2")
    bad = [(t, tok.encode(t), ids) for t, ids in vectors if tok.encode(t) != ids]
    assert not bad, f"{len(bad)}/{len(vectors)} mismatches, first: {bad[0]!r}"


@pytest.mark.parametrize("name", ["gpt-2", "llama-spm", "phi-3", "qwen2"])
def test_vectors_decode_round_trip(name, request):
    tok = Tokenizer.from_gguf(request.getfixturevalue("qwen2_gguf")) if name == "qwen2" else gguf_tok(name)
    for text, ids in load_vectors(name):
        assert tok.decode(ids) == text, repr(text)


# ------------------------------------------------------------------ metadata and API
def test_qwen2_gguf_metadata(qwen2_gguf):
    tok = Tokenizer.from_gguf(qwen2_gguf)
    assert tok.vocab_size == 151665
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (151643, 151645, 151643)
    assert not tok.add_bos and not tok.add_eos
    im_end, eot = tok.piece_to_id("<|im_end|>"), tok.piece_to_id("<|endoftext|>")
    assert (im_end, eot) == (151645, 151643)
    assert {im_end, eot} <= set(tok.eot_ids)
    assert tok.piece_to_id("<|im_start|>") not in tok.eot_ids
    assert "im_start" in tok.chat_template
    assert tok.encode("hi", add_special=True) == tok.encode("hi")  # Qwen adds no BOS
    assert tok.id_to_piece(9707) == "Hello" and tok.piece_to_id("ĠHello") == 21927
    assert tok.piece_to_id("no such piece at all") is None


def test_qwen2_gguf_equals_json(qwen2_gguf):
    """from_gguf and from_json agree (same vocabulary, two loaders)."""
    import random

    from tokenizer_corpus import corpus

    a = Tokenizer.from_gguf(qwen2_gguf)
    b = Tokenizer.from_json(HF_DIR / "qwen2.5" / "tokenizer.json")
    assert a.vocab_size == b.vocab_size and a.eos_id == b.eos_id
    seed = random.randrange(1 << 30)
    for ps in (False, True):
        for s in corpus(seed, 300):
            assert a.encode(s, parse_special=ps) == b.encode(s, parse_special=ps), (seed, s)


def test_llama_spm_metadata_and_add_special():
    tok = gguf_tok("llama-spm")
    assert tok.vocab_size == 32000
    assert (tok.bos_id, tok.eos_id, tok.unk_id) == (1, 2, 0)
    assert tok.add_bos and not tok.add_eos
    assert tok.eot_ids == [2]
    ids = tok.encode("Hello world")
    assert tok.encode("Hello world", add_special=True) == [1] + ids
    assert tok.encode("") == [] and tok.encode("", add_special=True) == [1]
    assert tok.decode([1] + ids) == "<s> Hello world"  # as HF: the leading space stays after <s>
    assert tok.decode([1] + ids, skip_special=True) == "Hello world"
    assert tok.id_to_piece(29871) == "\u2581" and tok.token_type(13) == 6  # <0x0A>
    assert tok.decode([13]) == "\n"
    # special tokens: parse_special matches <s>, </s> written in the text
    assert tok.encode("<s>hi</s>", parse_special=True) == [1, 7251, 2]
    assert 1 not in tok.encode("<s>hi</s>")


def test_phi3_metadata_and_rstrip():
    tok = gguf_tok("phi-3")
    assert (tok.bos_id, tok.eos_id) == (1, 32000)
    end = tok.piece_to_id("<|end|>")
    assert end == 32007 and end in tok.eot_ids and 32000 in tok.eot_ids
    user, asst = tok.piece_to_id("<|user|>"), tok.piece_to_id("<|assistant|>")
    ids = tok.encode("<|user|>\nHi<|end|>\n<|assistant|>\n", parse_special=True)
    # llama.cpp's Phi-3 attributes: whitespace after these special tokens is stripped
    assert ids[0] == user and ids[-1] == asst and end in ids
    assert ids == [user] + tok.encode("Hi") + [end, asst]
    assert tok.decode(ids, skip_special=True) == "Hi"


def test_gpt2_metadata():
    tok = gguf_tok("gpt-2")
    assert tok.vocab_size == 50257
    assert tok.bos_id == tok.eos_id == 50256 and tok.eot_ids == [50256]
    assert tok.encode("<|endoftext|>", parse_special=True) == [50256]
    assert tok.encode("<|endoftext|>") != [50256]
    assert tok.decode([50256]) == "<|endoftext|>" and tok.decode([50256], skip_special=True) == ""


def test_lone_surrogates_become_replacement_char():
    tok = gguf_tok("gpt-2")
    for s in ["\ud800", "a\udfffb", "\ud83d\ude00", "x\ud800\ud800y"]:
        expect = s.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        want = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in s)
        assert tok.encode(s) == tok.encode(want), s
        assert tok.decode(tok.encode(s)) == want
        assert expect  # (Python's own surrogatepass/replace gives a different count: we use one per unit)


def test_argument_errors():
    tok = gguf_tok("gpt-2")
    with pytest.raises(TypeError):
        tok.encode(b"bytes")
    with pytest.raises(TypeError):
        tok.encode(None)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([1, 50257])
    with pytest.raises(ValueError, match="not a token id"):
        tok.decode([-1])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.id_to_piece(10**6)
    with pytest.raises(ValueError):
        tok.stream_decoder().push(50257)
    with pytest.raises(TypeError):
        tok.decode("abc")
    with pytest.raises(FileNotFoundError):
        Tokenizer.from_gguf(TOKENIZER_DIR / "no-such-file.gguf")


def test_decode_accepts_numpy():
    np = pytest.importorskip("numpy")
    tok = gguf_tok("gpt-2")
    ids = tok.encode("Hello world")
    assert tok.decode(np.array(ids, dtype=np.int64)) == "Hello world"
    assert tok.decode(tuple(ids)) == "Hello world"


# ------------------------------------------------------------------ malformed metadata
def write_vocab(path, *, model="gpt2", pre="gpt-2", tokens=None, types="ok", merges=None, scores=None, extra=None):
    base = [chr(c) for c in range(0x21, 0x7F)] + [chr(c) for c in range(0xA1, 0xAD)] + [chr(c) for c in range(0xAE, 0x100)]
    base += [chr(0x100 + i) for i in range(68)]
    tokens = tokens if tokens is not None else base + ["ab", "<|endoftext|>"]
    w = gguf.GGUFWriter(str(path), arch="gpt2")
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    if types == "ok":
        w.add_token_types([1] * (len(tokens) - 1) + [3])
    elif types is not None:
        w.add_array("tokenizer.ggml.token_type", types)
    if model == "gpt2":
        w.add_token_merges(merges if merges is not None else ["a b"])
    if scores is not None:
        w.add_array("tokenizer.ggml.scores", scores)
    for k, v in (extra or {}).items():
        if isinstance(v, bool):
            w.add_bool(k, v)
        elif isinstance(v, int):
            w.add_uint32(k, v)
        elif isinstance(v, float):
            w.add_float32(k, v)
        else:
            w.add_string(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@needs_gguf
def test_small_vocab_works(tmp_path):
    tok = Tokenizer.from_gguf(write_vocab(tmp_path / "v.gguf", extra={"tokenizer.ggml.eos_token_id": 257}))
    assert tok.vocab_size == 258
    assert tok.encode("ab ab") == [256, tok.piece_to_id("Ġ"), 256]
    assert tok.decode(tok.encode("héllo wörld")) == "héllo wörld"
    assert tok.eot_ids == [257]


@needs_gguf
@pytest.mark.parametrize("case, err", [
    (dict(types=[1, 1, 1]), "token_type has 3 entries"),
    (dict(types=[1.0] * 258), "token_type"),
    (dict(types=[9] * 258), "not a token type"),
    (dict(extra={"tokenizer.ggml.eos_token_id": 258}), "outside the vocabulary"),
    (dict(extra={"tokenizer.ggml.bos_token_id": 100000}), "outside the vocabulary"),
    (dict(extra={"tokenizer.ggml.eos_token_id": "x"}), "eos_token_id"),
    (dict(merges=["a zz"]), "not in the vocabulary"),
    (dict(merges=["ab"]), "not of the form"),
    (dict(tokens=["a", "b", "a"], types=None), "duplicate token"),
    (dict(tokens=[], types=None), "tokenizer.ggml.tokens"),
    (dict(tokens=["a", "b"], types=None), "not a byte-level vocabulary"),
    (dict(extra={"tokenizer.ggml.add_bos_token": True}), "no BOS"),
    (dict(model="llama", pre=None), "scores is missing"),
    (dict(model="llama", pre=None, scores=[0.0, 1.0]), "scores has 2 entries"),
])
def test_malformed_metadata(tmp_path, case, err):
    path = write_vocab(tmp_path / "bad.gguf", **case)
    with pytest.raises(ValueError, match=err):
        Tokenizer.from_gguf(path)
    with pytest.raises(ValueError):
        Tokenizer.from_gguf(path)


@needs_gguf
def test_malformed_errors_are_gguf_errors(tmp_path):
    path = write_vocab(tmp_path / "bad.gguf", types=[1, 1])
    with pytest.raises(inferlab.GGUFError):
        Tokenizer.from_gguf(path)


@needs_gguf
@pytest.mark.parametrize("case", [dict(model="bert"), dict(pre="no-such-pre-tokenizer")])
def test_unsupported_metadata(tmp_path, case):
    with pytest.raises(NotImplementedError, match="not supported"):
        Tokenizer.from_gguf(write_vocab(tmp_path / "u.gguf", **case))


@needs_gguf
def test_missing_tokenizer_keys(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "none.gguf"), arch="llama")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(inferlab.GGUFError, match="tokenizer.ggml.model"):
        Tokenizer.from_gguf(tmp_path / "none.gguf")


def test_from_json_errors(tmp_path):
    p = tmp_path / "tokenizer.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Tokenizer.from_json(p)
    j = json.loads((HF_DIR / "gpt2" / "tokenizer.json").read_text(encoding="utf-8"))
    j["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": False}
    p.write_text(json.dumps(j))
    with pytest.raises(NotImplementedError, match="no hand-written matcher"):
        Tokenizer.from_json(p)
    j["pre_tokenizer"] = None
    j["model"]["type"] = "WordPiece"
    p.write_text(json.dumps(j))
    with pytest.raises(NotImplementedError, match="WordPiece"):
        Tokenizer.from_json(p)
    j["model"]["type"] = "BPE"
    j["model"]["merges"] = ["Ġ nosuchtoken"]
    p.write_text(json.dumps(j))
    with pytest.raises(ValueError, match="not in the vocabulary"):
        Tokenizer.from_json(p)


# ------------------------------------------------------------------ streaming
@pytest.mark.parametrize("name", ["gpt-2", "llama-spm", "phi-3"])
def test_stream_decoder_matches_decode(name):
    tok = gguf_tok(name)
    for text, ids in load_vectors(name):
        for skip in (False, True):
            d = tok.stream_decoder(skip_special=skip)
            parts = [d.push(i) for i in ids]
            parts.append(d.flush())
            assert "".join(parts) == tok.decode(ids, skip_special=skip), repr(text)
            for p in parts:
                assert "\ufffd" not in p or "\ufffd" in text


def test_stream_decoder_never_splits_code_points():
    tok = gguf_tok("gpt-2")
    ids = tok.encode("🦙 é 中")
    d = tok.stream_decoder()
    out = []
    for i in ids:
        piece = d.push(i)
        piece.encode("utf-8")  # complete code points only
        out.append(piece)
    out.append(d.flush())
    assert "".join(out) == "🦙 é 中"
    # a byte-level token that holds half of a code point emits nothing until the rest arrives
    half = [tok.piece_to_id("ð"), tok.piece_to_id("Ł")]  # F0 9F ...
    d = tok.stream_decoder()
    assert d.push(half[0]) == "" and d.push(half[1]) == ""
    assert d.flush() == "\ufffd"
    # invalid bytes become U+FFFD, once, at the point they are known to be invalid
    d = tok.stream_decoder()
    assert d.push(tok.piece_to_id("ð")) == ""
    assert d.push(tok.piece_to_id("a")) == "\ufffda"
    assert d.flush() == ""


def test_concurrent_encode_is_consistent():
    """encode releases the GIL; threads share one tokenizer (and its word cache) safely."""
    import threading

    from tokenizer_corpus import corpus

    tok = Tokenizer.from_json(HF_DIR / "qwen2.5" / "tokenizer.json")
    texts = corpus(11, 300)
    want = [tok.encode(s) for s in texts]
    errors = []

    def work():
        for s, w in zip(texts, want):
            if tok.encode(s) != w:
                errors.append(s)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors

