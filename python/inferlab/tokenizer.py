"""Tokenizers: byte-level BPE (GPT-2, Qwen2, Llama 3, SmolLM) and SentencePiece BPE (Llama 2, Phi-3, TinyLlama).

The work is done in C++ (``inferlab._core.tokenizer``); this module loads vocabularies and wraps the core.

    tok = Tokenizer.from_gguf("model.gguf")          # tokenizer.ggml.* metadata
    tok = Tokenizer.from_json("tokenizer.json")      # Hugging Face tokenizer.json
    ids = tok.encode("Hello", add_special=True)      # BOS/EOS as the metadata asks
    tok.decode(ids)
    dec = tok.stream_decoder()                        # for generation: complete UTF-8 text only
    text = "".join(dec.push(i) for i in ids) + dec.flush()
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Optional

from ._core_loader import core as _core

_tk = _core.tokenizer

# token types (GGUF tokenizer.ggml.token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# spec enums (csrc/tokenizer/tokenizer.h)
_ALGO_MERGES, _ALGO_SPM = 0, 1
_PRE_NONE, _PRE_GPT2, _PRE_LLAMA3, _PRE_QWEN2, _PRE_STARCODER, _PRE_METASPACE_SPLIT = range(6)
_PREFIX_NONE, _PREFIX_ALWAYS, _PREFIX_META_ALWAYS, _PREFIX_META_FIRST = range(4)
_META = "\u2581"


class StreamDecoder:
    """Incremental detokenizer: ``push(id)`` returns only complete UTF-8 text, ``flush()`` the rest.

    Bytes that cannot become valid UTF-8 turn into U+FFFD. ``"".join(push(i) for i in ids) + flush()``
    equals ``Tokenizer.decode(ids)``.
    """

    def __init__(self, core_decoder):
        self._d = core_decoder

    def push(self, id: int) -> str:
        return self._d.push(int(id))

    def flush(self) -> str:
        return self._d.flush()


class Tokenizer:
    """A tokenizer built from GGUF metadata or a Hugging Face tokenizer.json."""

    def __init__(self, core_tokenizer, chat_template: Optional[str] = None):
        self._t = core_tokenizer
        spec = core_tokenizer.spec
        self._bos = spec.bos_id if spec.bos_id >= 0 else None
        self._eos = spec.eos_id if spec.eos_id >= 0 else None
        self._unk = spec.unk_id if spec.unk_id >= 0 else None
        self._pad = spec.pad_id if spec.pad_id >= 0 else None
        self._eot = list(spec.eog_ids)
        self._add_bos = bool(spec.add_bos)
        self._add_eos = bool(spec.add_eos)
        self._chat_template = chat_template if chat_template is not None else (spec.chat_template or None)
        self._name = spec.name

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_gguf(cls, path) -> "Tokenizer":
        """Reads ``tokenizer.ggml.*`` from a GGUF file (only the metadata is read)."""
        return cls(_tk.Tokenizer.from_gguf(os.fspath(path)))

    @classmethod
    def from_json(cls, path) -> "Tokenizer":
        """Reads a Hugging Face ``tokenizer.json`` (and ``tokenizer_config.json`` beside it, if present)."""
        path = os.fspath(path)
        with open(path, encoding="utf-8") as f:
            try:
                j = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not valid JSON: {e}") from None
        config = {}
        cfg_path = os.path.join(os.path.dirname(path), "tokenizer_config.json")
        if os.path.exists(cfg_path):
            with open(cfg_path, encoding="utf-8") as f:
                config = json.load(f)
        spec = _spec_from_hf(j, config, path)
        return cls(_tk.Tokenizer(spec))

    @classmethod
    def from_spec(cls, spec) -> "Tokenizer":
        """From a filled-in ``inferlab._core.tokenizer.TokenizerSpec``."""
        return cls(_tk.Tokenizer(spec))

    # ---------------------------------------------------------------- encode / decode
    def encode(self, text: str, add_special: bool = False, parse_special: bool = False) -> list:
        """Token ids of ``text``.

        add_special: add BOS/EOS as the tokenizer's metadata asks.
        parse_special: recognize special tokens written in the text (e.g. ``<|im_end|>``); added
        tokens that are not special (user-defined) are always recognized, as Hugging Face does.
        Lone surrogates in ``text`` are encoded as U+FFFD.
        """
        return self._t.encode(text, bool(add_special), bool(parse_special))

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of ``ids``; invalid UTF-8 becomes U+FFFD. skip_special drops special tokens."""
        return self._t.decode(_as_ids(ids), bool(skip_special))

    def decode_bytes(self, ids: Iterable[int], skip_special: bool = False) -> bytes:
        """Raw bytes of ``ids`` (before UTF-8 validation)."""
        return self._t.decode_bytes(_as_ids(ids), bool(skip_special))

    def stream_decoder(self, skip_special: bool = False) -> StreamDecoder:
        """A fresh incremental decoder (see StreamDecoder)."""
        return StreamDecoder(self._t.stream_decoder(bool(skip_special)))

    # ---------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        return self._t.vocab_size

    @property
    def bos_id(self) -> Optional[int]:
        return self._bos

    @property
    def eos_id(self) -> Optional[int]:
        return self._eos

    @property
    def unk_id(self) -> Optional[int]:
        return self._unk

    @property
    def pad_id(self) -> Optional[int]:
        return self._pad

    @property
    def eot_ids(self) -> list:
        """Ids that end generation: EOS, EOT/EOM and tokens such as <|im_end|>, <|endoftext|>, <|end|>, <|eot_id|>."""
        return list(self._eot)

    @property
    def add_bos(self) -> bool:
        return self._add_bos

    @property
    def add_eos(self) -> bool:
        return self._add_eos

    @property
    def chat_template(self) -> Optional[str]:
        return self._chat_template

    def id_to_piece(self, id: int) -> str:
        """The vocabulary entry for ``id`` as stored (byte-level characters, or U+2581 for spaces)."""
        return self._t.id_to_piece(int(id))

    def piece_to_id(self, piece: str) -> Optional[int]:
        """The id of a vocabulary entry, or None."""
        return self._t.piece_to_id(piece)

    def token_type(self, id: int) -> int:
        """GGUF token type of ``id`` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte)."""
        return self._t.token_type(int(id))

    def is_special(self, id: int) -> bool:
        """True for tokens that decode(skip_special=True) drops."""
        return self._t.is_special(int(id))

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer({self._name!r}, vocab_size={self.vocab_size})"


def _as_ids(ids):
    if isinstance(ids, (str, bytes)):
        raise TypeError("ids must be a sequence of token ids")
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    return ids if isinstance(ids, (list, tuple)) else list(ids)


# -------------------------------------------------------------------- tokenizer.json
def _unsupported(path, what):
    return NotImplementedError(f"{path}: {what} is not supported")


def _flatten(node, key):
    """Flattens HF Sequence components into a list of dicts."""
    if node is None:
        return []
    if node.get("type") == "Sequence":
        out = []
        for n in node.get(key, []):
            out += _flatten(n, key)
        return out
    return [node]


def _token_content(v):
    if v is None:
        return None
    if isinstance(v, dict):
        return v.get("content")
    return str(v)


def _spec_from_hf(j: dict, config: dict, path: str):
    spec = _tk.TokenizerSpec()
    spec.name = path
    model = j.get("model") or {}
    if model.get("type", "BPE") != "BPE":
        raise _unsupported(path, f"model type {model.get('type')!r} (only BPE)")
    if model.get("dropout") not in (None, 0, 0.0):
        raise _unsupported(path, "BPE dropout")
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise _unsupported(path, "continuing_subword_prefix / end_of_word_suffix")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not vocab:
        raise ValueError(f"{path}: model.vocab must be a non-empty object")
    added = j.get("added_tokens") or []
    n = 0
    for piece, i in vocab.items():
        if not isinstance(i, int) or i < 0:
            raise ValueError(f"{path}: vocab entry {piece!r} has invalid id {i!r}")
        n = max(n, i + 1)
    for a in added:
        if not isinstance(a.get("id"), int) or a["id"] < 0 or not a.get("content"):
            raise ValueError(f"{path}: invalid added token {a!r}")
        n = max(n, a["id"] + 1)
    tokens = [None] * n
    types = [NORMAL] * n
    for piece, i in vocab.items():
        if tokens[i] is not None:
            raise ValueError(f"{path}: ids {i} is used by both {tokens[i]!r} and {piece!r}")
        tokens[i] = piece
    added_specs = []
    for a in added:
        i = a["id"]
        if tokens[i] is None:
            tokens[i] = a["content"]
        types[i] = CONTROL if a.get("special") else USER_DEFINED
        t = _tk.AddedToken()
        t.id, t.content = i, a["content"]
        t.special = bool(a.get("special"))
        t.lstrip, t.rstrip = bool(a.get("lstrip")), bool(a.get("rstrip"))
        t.single_word, t.normalized = bool(a.get("single_word")), bool(a.get("normalized"))
        added_specs.append(t)
    for i, t in enumerate(tokens):
        if t is None:  # a hole in the id space: a token that nothing can produce
            tokens[i] = f"\x00<unused {i}>"
            types[i] = UNUSED
    merges = []
    for m in model.get("merges") or []:
        if isinstance(m, str):
            merges.append(m)
        elif isinstance(m, (list, tuple)) and len(m) == 2:
            merges.append(f"{m[0]} {m[1]}")
        else:
            raise ValueError(f"{path}: invalid merge {m!r}")
    spec.tokens, spec.token_types, spec.merges = tokens, types, merges
    spec.added = added_specs
    spec.algo = _ALGO_MERGES
    spec.byte_fallback = bool(model.get("byte_fallback"))
    spec.ignore_merges = bool(model.get("ignore_merges"))
    spec.fuse_unk = bool(model.get("fuse_unk"))
    unk = model.get("unk_token")
    spec.unk_id = vocab.get(unk, -1) if unk is not None else -1
    if spec.byte_fallback:
        for i, t in enumerate(tokens):
            if len(t) == 6 and t.startswith("<0x") and t.endswith(">") and types[i] == NORMAL:
                types[i] = BYTE
        spec.token_types = types

    # normalizer
    prepend = replace_space = False
    for n_ in _flatten(j.get("normalizer"), "normalizers"):
        ty = n_.get("type")
        if ty == "NFC":
            spec.nfc = True
        elif ty == "Prepend" and n_.get("prepend") == _META:
            prepend = True
        elif ty == "Replace" and (n_.get("pattern") or {}).get("String") == " " and n_.get("content") == _META:
            replace_space = True
        else:
            raise _unsupported(path, f"normalizer {json.dumps(n_)[:200]}")
    if prepend and not replace_space:
        raise _unsupported(path, "a Prepend normalizer without Replace(' ', '\u2581')")
    spec.escape_spaces = replace_space
    spec.space_prefix = _PREFIX_ALWAYS if prepend else _PREFIX_NONE

    # pre-tokenizer
    byte_level = False
    pretok = None
    digits = False
    for p in _flatten(j.get("pre_tokenizer"), "pretokenizers"):
        ty = p.get("type")
        if ty == "ByteLevel":
            byte_level = True
            spec.bytelevel_prefix_space = bool(p.get("add_prefix_space"))
            if p.get("use_regex", True):
                if pretok is not None:
                    raise _unsupported(path, "ByteLevel(use_regex=true) after a Split pre-tokenizer")
                pretok = _PRE_STARCODER if digits else _PRE_GPT2
        elif ty == "Split":
            pat = (p.get("pattern") or {}).get("Regex")
            kind = _tk.pretok_from_regex(pat) if pat is not None else None
            if kind is None or p.get("behavior") != "Isolated" or p.get("invert"):
                raise _unsupported(path, f"Split pre-tokenizer {json.dumps(p)[:300]} (no hand-written matcher)")
            if pretok is not None or digits:
                raise _unsupported(path, "several regex pre-tokenizers in sequence")
            pretok = kind
        elif ty == "Digits" and p.get("individual_digits"):
            if pretok is not None:
                raise _unsupported(path, "Digits after a regex pre-tokenizer")
            digits = True
        elif ty == "Metaspace":
            if p.get("replacement", _META) != _META:
                raise _unsupported(path, "a Metaspace replacement other than U+2581")
            spec.escape_spaces = True
            scheme = p.get("prepend_scheme")
            if scheme is None:
                scheme = "always" if p.get("add_prefix_space", True) else "never"
            spec.space_prefix = {"always": _PREFIX_META_ALWAYS, "first": _PREFIX_META_FIRST,
                                 "never": _PREFIX_NONE}[scheme]
            pretok = _PRE_METASPACE_SPLIT if p.get("split", True) else _PRE_NONE
        else:
            raise _unsupported(path, f"pre-tokenizer {json.dumps(p)[:200]}")
    if digits and pretok != _PRE_STARCODER:
        raise _unsupported(path, "a Digits pre-tokenizer not followed by ByteLevel(use_regex=true)")
    spec.byte_level = byte_level
    spec.pretok = pretok if pretok is not None else _PRE_NONE

    # decoder
    strip = False
    for d in _flatten(j.get("decoder"), "decoders"):
        ty = d.get("type")
        if ty == "Strip":
            if d.get("content") != " " or d.get("stop", 0) != 0 or d.get("start", 0) > 1:
                raise _unsupported(path, f"decoder {json.dumps(d)}")
            strip = d.get("start", 0) == 1
        elif ty == "Metaspace":
            scheme = d.get("prepend_scheme") or ("always" if d.get("add_prefix_space", True) else "never")
            strip = scheme != "never"
        elif ty in ("ByteLevel", "ByteFallback", "Fuse"):
            pass
        elif ty == "Replace" and (d.get("pattern") or {}).get("String") == _META and d.get("content") == " ":
            pass
        else:
            raise _unsupported(path, f"decoder {json.dumps(d)[:200]}")
    spec.decode_strip_space = strip

    # post-processor: ids that add_special puts around the text
    prefix, suffix = [], []
    for pp in _flatten(j.get("post_processor"), "processors"):
        ty = pp.get("type")
        if ty == "TemplateProcessing":
            specials = pp.get("special_tokens") or {}
            seen_seq = False
            for item in pp.get("single") or []:
                if "Sequence" in item:
                    seen_seq = True
                elif "SpecialToken" in item:
                    ids = (specials.get(item["SpecialToken"]["id"]) or {}).get("ids")
                    if not ids:
                        raise ValueError(f"{path}: post-processor names unknown special token {item!r}")
                    (suffix if seen_seq else prefix).extend(ids)
        elif ty == "ByteLevel":
            pass
        else:
            raise _unsupported(path, f"post-processor {ty!r}")
    spec.prefix_ids, spec.suffix_ids = prefix, suffix

    # special ids (tokenizer_config.json), then the end-of-generation set
    def tid(key):
        c = _token_content(config.get(key))
        if c is None:
            return -1
        if c in vocab:
            return vocab[c]
        for a in added:
            if a["content"] == c:
                return a["id"]
        return -1

    spec.bos_id, spec.eos_id, spec.pad_id = tid("bos_token"), tid("eos_token"), tid("pad_token")
    if spec.unk_id < 0:
        spec.unk_id = tid("unk_token")
    if spec.bos_id < 0 and prefix:
        spec.bos_id = prefix[0]
    spec.add_bos = bool(prefix) and spec.bos_id in prefix
    spec.add_eos = bool(suffix) and spec.eos_id in suffix
    spec.eog_ids = _tk.find_eog_ids(tokens, [spec.eos_id])
    spec.chat_template = config.get("chat_template") if isinstance(config.get("chat_template"), str) else ""
    return spec
