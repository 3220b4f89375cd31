"""A byte-level GGUF writer for tests: builds valid files and lets every field be corrupted.

Used by the malformed-file tests and by fuzz/make_seed_corpus.py. Unlike gguf-py's writer it can
write anything: wrong counts, bad types, misaligned offsets, nested arrays, big-endian headers.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

# GGUF value types
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
SCALAR_FMT = {UINT8: "B", INT8: "b", UINT16: "H", INT16: "h", UINT32: "I", INT32: "i", FLOAT32: "f",
              BOOL: "?", UINT64: "Q", INT64: "q", FLOAT64: "d"}

# (elements per block, bytes per block) of the ggml types used here
GGML_TYPES = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q5_0": (6, 32, 22),
              "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q2_K": (10, 256, 84), "Q3_K": (11, 256, 110),
              "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210), "BF16": (30, 1, 2)}


def enc_str(s, e="<") -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack(e + "Q", len(b)) + b


def enc_payload(vtype: int, value, e="<") -> bytes:
    """The bytes of a value of type vtype, without its type tag. Arrays: value = (elem_type, items)."""
    if vtype == STRING:
        return enc_str(value, e)
    if vtype == ARRAY:
        etype, items = value
        out = struct.pack(e + "IQ", etype, len(items))
        for it in items:
            out += enc_payload(etype, it, e)
        return out
    return struct.pack(e + SCALAR_FMT[vtype], value)


@dataclass
class Tensor:
    name: str | bytes
    dims: list  # ggml order
    type: int
    data: bytes = b""
    offset: int | None = None  # None: laid out automatically


@dataclass
class GGUFBuilder:
    version: int = 3
    magic: bytes = b"GGUF"
    endian: str = "<"
    kv: list = field(default_factory=list)  # (key, vtype, payload bytes)
    tensors: list = field(default_factory=list)
    n_kv: int | None = None  # override the counts in the header
    n_tensors: int | None = None
    alignment: int = 32  # used for the layout (add general.alignment yourself to change the file's)
    trailing_padding: bool = False

    def add(self, key, vtype: int, value) -> "GGUFBuilder":
        self.kv.append((key, vtype, enc_payload(vtype, value, self.endian)))
        return self

    def add_raw(self, key, vtype: int, payload: bytes) -> "GGUFBuilder":
        self.kv.append((key, vtype, payload))
        return self

    def add_tensor(self, name, dims, type_name_or_id, data: bytes | None = None, offset=None) -> "GGUFBuilder":
        if isinstance(type_name_or_id, str):
            tid, block, size = GGML_TYPES[type_name_or_id]
            if data is None:
                n = 1
                for d in dims:
                    n *= d
                data = bytes((i * 37 + 11) & 0x7F for i in range(n // block * size))  # small, finite fp16s
        else:
            tid = type_name_or_id
            data = data or b""
        self.tensors.append(Tensor(name, list(dims), tid, data, offset))
        return self

    def build(self) -> bytes:
        e = self.endian
        out = bytearray(self.magic)
        out += struct.pack(e + "I", self.version)
        out += struct.pack(e + "QQ", len(self.tensors) if self.n_tensors is None else self.n_tensors,
                           len(self.kv) if self.n_kv is None else self.n_kv)
        for key, vtype, payload in self.kv:
            out += enc_str(key, e) + struct.pack(e + "I", vtype) + payload
        # automatic layout: each tensor aligned, no gaps beyond alignment padding
        layout = []
        pos = 0
        for t in self.tensors:
            pos = -(-pos // self.alignment) * self.alignment
            layout.append(pos)
            pos += len(t.data)
        for t, auto in zip(self.tensors, layout):
            out += enc_str(t.name, e) + struct.pack(e + "I", len(t.dims))
            for d in t.dims:
                out += struct.pack(e + "q", d)
            out += struct.pack(e + "iQ", t.type, auto if t.offset is None else t.offset)
        out += b"\0" * (-len(out) % self.alignment)
        data_start = len(out)
        for t, auto in zip(self.tensors, layout):
            end = data_start + auto
            out += b"\0" * (end - len(out))
            out += t.data
        if self.trailing_padding:
            out += b"\0" * (-len(out) % self.alignment)
        return bytes(out)


def valid_example(**kw) -> GGUFBuilder:
    """A small valid file with metadata of several types and a few tensors (last one non-empty).

    kw go to GGUFBuilder (e.g. endian=">" for a big-endian file, version=2)."""
    b = GGUFBuilder(**kw)
    b.add("general.architecture", STRING, "llama")
    b.add("general.name", STRING, "tiny")
    b.add("llama.block_count", UINT32, 2)
    b.add("llama.rope.freq_base", FLOAT32, 10000.0)
    b.add("tokenizer.ggml.tokens", ARRAY, (STRING, ["<s>", "</s>", "a", "b"]))
    b.add("tokenizer.ggml.scores", ARRAY, (FLOAT32, [0.0, -1.0, -2.0, -3.0]))
    b.add("some.flag", BOOL, True)
    b.add("some.i64", INT64, -5)
    b.add("some.nested", ARRAY, (ARRAY, [(INT8, [1, -2]), (STRING, ["x"])]))
    b.add_tensor("output_norm.weight", [64], "F32")
    b.add_tensor("blk.0.attn_q.weight", [64, 2], "Q8_0")
    b.add_tensor("blk.0.ffn_up.weight", [256, 2], "Q4_K")
    return b
