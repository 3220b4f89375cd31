#!/usr/bin/env python3
"""Writes a seed corpus for fuzz_gguf: small valid GGUF files covering every value type, nested
arrays, every ggml type inferlab dequantizes, custom alignment, version 2, and a few near-misses.

    python3 fuzz/make_seed_corpus.py build/fuzz/seeds
"""
from __future__ import annotations

import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from gguf_builder import (  # noqa: E402
    ARRAY, BOOL, FLOAT32, FLOAT64, GGML_TYPES, INT8, INT16, INT32, INT64, STRING, UINT8, UINT16, UINT32, UINT64,
    GGUFBuilder, valid_example,
)


def seeds():
    yield "valid", valid_example().build()
    yield "valid-v2", valid_example(version=2).build()
    yield "header-only", GGUFBuilder().build()
    b = GGUFBuilder()
    for i, (vt, v) in enumerate([(UINT8, 200), (INT8, -3), (UINT16, 60000), (INT16, -300), (UINT32, 7),
                                 (INT32, -7), (FLOAT32, 1.5), (BOOL, True), (STRING, "héllo"), (UINT64, 2**63),
                                 (INT64, -2**40), (FLOAT64, 2.5)]):
        b.add(f"k.{i}", vt, v)
        if vt != STRING:
            b.add(f"a.{i}", ARRAY, (vt, [v, v]))
    b.add("a.str", ARRAY, (STRING, ["a", "", "ccc"]))
    b.add("a.nested", ARRAY, (ARRAY, [(UINT8, [1]), (ARRAY, [(STRING, ["x"])])]))
    yield "all-value-types", b.build()
    for name, (tid, block, size) in GGML_TYPES.items():
        ne0 = block if block > 1 else 8
        b = GGUFBuilder().add("general.architecture", STRING, "llama")
        b.add_tensor(f"w.{name}", [ne0, 2], name)
        yield f"tensor-{name}", b.build()
    b = GGUFBuilder(alignment=64).add("general.alignment", UINT32, 64)
    b.add_tensor("a", [32], "F16").add_tensor("b", [32, 2], "Q8_0").add_tensor("c", [256], "Q6_K")
    yield "alignment-64", b.build()
    b = GGUFBuilder().add("llama.block_count", UINT32, 1).add("tokenizer.ggml.tokens", ARRAY, (STRING, ["a", "b"]))
    b.add("tokenizer.ggml.token_type", ARRAY, (INT32, [1, 1])).add("tokenizer.ggml.scores", ARRAY, (FLOAT32, [0.0, 1.0]))
    b.add_tensor("token_embd.weight", [32, 2], "Q4_0").add_tensor("output.weight", [256, 2], "Q4_K")
    yield "tiny-model", b.build()
    # near-misses the fuzzer can flip into valid or invalid
    yield "bad-alignment", GGUFBuilder().add("general.alignment", UINT32, 48).build()
    yield "version-1", b"GGUF" + struct.pack("<IQQ", 1, 0, 0)
    yield "zero-tensor", GGUFBuilder().add_tensor("z", [0, 3], "Q4_K", data=b"").build()


def main(out_dir: str) -> int:
    os.makedirs(out_dir, exist_ok=True)
    n = 0
    for name, data in seeds():
        with open(os.path.join(out_dir, name + ".gguf"), "wb") as f:
            f.write(data)
        n += 1
    print(f"wrote {n} seeds to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/fuzz/seeds"))
