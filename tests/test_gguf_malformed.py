"""Malformed GGUF corpus: every case must be refused with a GGUFError naming the problem.

Each case is opened in a fresh subprocess, so a crash (segfault, abort, sanitizer report) shows up
as a failed test with its output rather than as a lost test run.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from gguf_builder import (  # noqa: E402
    ARRAY, BOOL, FLOAT32, INT32, STRING, UINT8, UINT32, UINT64, GGUFBuilder, valid_example,
)

# Runs in the subprocess: opens each path (or each prefix of a file) and prints one JSON line per attempt.
RUNNER = textwrap.dedent(r"""
    import json, sys
    import inferlab
    def attempt(fn):
        try:
            f = fn()
            # touch everything a consumer would
            f.metadata; [f.raw(t.name) for t in f.tensors]
            return {"ok": True}
        except inferlab.GGUFError as e:
            return {"ok": False, "exc": "GGUFError", "msg": str(e)}
        except Exception as e:
            return {"ok": False, "exc": type(e).__name__, "msg": str(e)}
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "open":
        print(json.dumps(attempt(lambda: inferlab.GGUFFile(path))))
    elif mode == "prefixes":
        data = open(path, "rb").read()
        for n in range(len(data)):
            r = attempt(lambda: inferlab.GGUFFile.from_bytes(data[:n]))
            r["n"] = n
            print(json.dumps(r))
    elif mode == "mutate":
        data = bytearray(open(path, "rb").read())
        for i in range(len(data)):
            for v in (0x00, 0xFF, 0x7F, 0x80, data[i] ^ 1):
                m = bytearray(data); m[i] = v
                r = attempt(lambda: inferlab.GGUFFile.from_bytes(bytes(m)))
                r["i"] = i
                print(json.dumps(r))
""")


def run_case(tmp_path, data: bytes, mode="open"):
    path = tmp_path / "case.gguf"
    path.write_bytes(data)
    p = subprocess.run([sys.executable, "-c", RUNNER, mode, str(path)], capture_output=True, text=True, timeout=300,
                       env=os.environ.copy())
    assert p.returncode == 0, f"subprocess crashed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def header(version=3, n_tensors=0, n_kv=0, magic=b"GGUF") -> bytes:
    return magic + struct.pack("<IQQ", version, n_tensors, n_kv)


def kv_raw(key: bytes, vtype: int, payload: bytes) -> bytes:
    return struct.pack("<Q", len(key)) + key + struct.pack("<I", vtype) + payload


def with_kv(*entries):
    b = GGUFBuilder()
    for key, vtype, value in entries:
        b.add(key, vtype, value)
    return b


def one_tensor(name="t", dims=(32,), ttype="F32", offset=None, data=None, **kw):
    b = GGUFBuilder(**kw)
    b.add("general.architecture", STRING, "llama")
    b.add_tensor(name, list(dims), ttype, data=data, offset=offset)
    return b


def two_tensors(second_offset):
    b = GGUFBuilder()
    b.add_tensor("a", [64], "F32")
    b.add_tensor("b", [64], "F32", offset=second_offset)
    return b


def _alignment(vtype, value):
    b = GGUFBuilder()
    b.add("general.alignment", vtype, value)
    b.add_tensor("t", [8], "F32")
    return b.build()


# id -> (file bytes, phrase the GGUFError message must contain)
CASES = {
    # header
    "empty-file": (b"", "truncated"),
    "bad-magic": (b"GGML" + header()[4:], "bad magic"),
    "bad-magic-zeros": (b"\0" * 64, "bad magic"),
    "version-0": (header(version=0), "unsupported GGUF version 0"),
    "version-1": (header(version=1), "version 1 is not supported"),
    "version-4": (header(version=4), "unsupported GGUF version 4"),
    "version-huge": (header(version=0xFFFFFFFF), "unsupported GGUF version"),
    "big-endian-v3": (valid_example(endian=">").build(), "big-endian"),
    "big-endian-v2": (b"GGUF" + struct.pack(">IQQ", 2, 0, 0), "big-endian"),
    "big-endian-magic": (b"FUGG" + struct.pack(">IQQ", 3, 0, 0), "big-endian"),
    "header-truncated": (header()[:20], "truncated"),
    # counts
    "n_tensors-huge": (header(n_tensors=2**63), "n_tensors"),
    "n_tensors-max": (header(n_tensors=2**64 - 1), "n_tensors"),
    "n_tensors-too-many": (header(n_tensors=3) + b"\0" * 60, "n_tensors"),
    "n_kv-huge": (header(n_kv=2**62), "n_kv"),
    "n_kv-too-many": (header(n_kv=10) + b"\0" * 100, "n_kv"),
    "n_kv-one-more": (GGUFBuilder(n_kv=4, kv=valid_example().kv[:3]).build(), "metadata key #3"),
    # strings
    "key-length-wraps": (header(n_kv=1) + struct.pack("<Q", 2**64 - 1) + b"k" * 16, "string length"),
    "key-length-past-end": (header(n_kv=1) + struct.pack("<Q", 17) + b"k" * 16, "runs past the end"),
    "value-string-wraps": (header(n_kv=1) + kv_raw(b"k", STRING, struct.pack("<Q", 2**64 - 8) + b"abc"),
                           "string length"),
    "value-string-past-end": (header(n_kv=1) + kv_raw(b"k", STRING, struct.pack("<Q", 4) + b"abc"),
                              "runs past the end"),
    "array-string-past-end": (header(n_kv=1) + kv_raw(b"k", ARRAY, struct.pack("<IQQ", STRING, 1, 100) + b"x"),
                              "runs past the end"),
    "tensor-name-wraps": (header(n_tensors=1) + struct.pack("<Q", 2**63) + b"\0" * 40, "string length"),
    # keys
    "empty-key": (with_kv(("", UINT32, 1)).build(), "is empty"),
    "duplicate-key": (with_kv(("a.b", UINT32, 1), ("a.b", STRING, "x")).build(), "duplicate metadata key 'a.b'"),
    # value types
    "value-type-13": (header(n_kv=1) + kv_raw(b"k", 13, b"\0" * 16), "invalid value type 13"),
    "value-type-huge": (header(n_kv=1) + kv_raw(b"k", 0xFFFFFFFF, b"\0" * 16), "invalid value type 4294967295"),
    "array-elem-type-13": (header(n_kv=1) + kv_raw(b"k", ARRAY, struct.pack("<IQ", 13, 1) + b"\0" * 16),
                           "invalid array element type 13"),
    "value-truncated": (header(n_kv=1) + kv_raw(b"k", UINT64, b"\0" * 4), "truncated"),
    # arrays
    "array-count-exceeds": (header(n_kv=1) + kv_raw(b"k", ARRAY, struct.pack("<IQ", UINT32, 5) + b"\0" * 16),
                            "exceeds"),
    "array-count-times-size-wraps": (header(n_kv=1) + kv_raw(b"k", ARRAY, struct.pack("<IQ", UINT64, 2**61) + b"\0" * 16),
                                     "exceeds"),
    "array-count-max": (header(n_kv=1) + kv_raw(b"k", ARRAY, struct.pack("<IQ", UINT8, 2**64 - 1) + b"\0" * 16),
                        "exceeds"),
    "string-array-count-huge": (header(n_kv=1) + kv_raw(b"k", ARRAY, struct.pack("<IQ", STRING, 2**60) + b"\0" * 64),
                                "larger than"),
    "nested-array-count-huge": (header(n_kv=1) + kv_raw(b"k", ARRAY, struct.pack("<IQ", ARRAY, 2**40) + b"\0" * 64),
                                "larger than"),
    "nested-too-deep": (header(n_kv=1) + kv_raw(b"k", ARRAY, struct.pack("<IQ", ARRAY, 1) * 9 + struct.pack("<IQ", UINT8, 0)),
                        "nested more than"),
    # general.alignment
    "alignment-uint64": (_alignment(UINT64, 32), "general.alignment must be of type uint32, got uint64"),
    "alignment-int32": (_alignment(INT32, 32), "must be of type uint32, got int32"),
    "alignment-string": (_alignment(STRING, "32"), "must be of type uint32, got string"),
    "alignment-array": (_alignment(ARRAY, (UINT32, [32])), "must be of type uint32, got array"),
    "alignment-zero": (_alignment(UINT32, 0), "general.alignment is 0"),
    "alignment-not-pow2": (_alignment(UINT32, 48), "48, which is not a power of two"),
    "alignment-not-pow2-max": (_alignment(UINT32, 0xFFFFFFFF), "not a power of two"),
    # tensor names
    "tensor-name-empty": (one_tensor(name="").build(), "empty name"),
    "tensor-name-65": (one_tensor(name="n" * 65).build(), "65 bytes long; at most 64"),
    "tensor-name-duplicate": (GGUFBuilder().add_tensor("w", [32], "F32").add_tensor("w", [32], "F32").build(),
                              "duplicate tensor name 'w'"),
    # dims
    "n_dims-5": (one_tensor(dims=(32, 1, 1, 1, 1)).build(), "n_dims = 5"),
    "n_dims-huge": (one_tensor(dims=(32,)).build().replace(b"\x01\x00\x00\x00\x20\x00", b"\xff\xff\xff\xff\x20\x00"),
                    "n_dims = 4294967295"),
    "dim-negative": (one_tensor(dims=(32, -1)).build(), "negative dimension"),
    "dims-product-overflows": (one_tensor(dims=(2**32, 2**32), data=b"").build(), "product of its dimensions overflows"),
    "dims-product-overflows-4d": (one_tensor(dims=(2**16, 2**16, 2**16, 2**16), data=b"").build(),
                                  "product of its dimensions overflows"),
    "nbytes-overflows": (one_tensor(dims=(2**61, 2), data=b"").build(), "overflows"),
    "nbytes-overflows-f32": (one_tensor(dims=(2**62,), data=b"").build(), "overflows"),
    # ggml types
    "ggml-type-unknown": (one_tensor(ttype=99, data=b"\0" * 128).build(), "unknown ggml type 99"),
    "ggml-type-negative": (one_tensor(ttype=-1, data=b"\0" * 128).build(), "unknown ggml type -1"),
    "ggml-type-removed-q4_2": (one_tensor(ttype=4, data=b"\0" * 128).build(), "(Q4_2), which was removed"),
    "ggml-type-removed-q4_0_4_4": (one_tensor(ttype=31, data=b"\0" * 128).build(), "(Q4_0_4_4), which was removed"),
    "row-not-multiple-q4_0": (one_tensor(dims=(33, 2), ttype=2, data=b"\0" * 64).build(),
                              "row length ne[0] = 33 is not a multiple of the Q4_0 block size 32"),
    "row-not-multiple-q4_k": (one_tensor(dims=(512 + 32,), ttype=12, data=b"\0" * 512).build(),
                              "not a multiple of the Q4_K block size 256"),
    # tensor offsets
    "offset-misaligned": (one_tensor(offset=4).build(), "is not a multiple of the alignment 32"),
    "offset-overlap": (two_tensors(second_offset=128).build(), "overlaps"),
    "offset-overlap-same": (two_tensors(second_offset=0).build(), "overlaps"),
    "offset-wraps": (one_tensor(offset=2**64 - 32, dims=(64,)).build(), "wraps"),
    "offset-past-end": (one_tensor(offset=1 << 20).build(), "runs past the end"),
    "data-truncated": (one_tensor(dims=(64,)).build()[:-1], "runs past the end"),
    "data-section-missing": (one_tensor(dims=(64,)).build()[:-260], "truncated"),
}


def test_corpus_covers_each_issue_item():
    # The issue's list, each mapped to a case id prefix above.
    required = ["bad-magic", "version-0", "version-1", "version-4", "big-endian", "n_tensors", "n_kv",
                "key-length-wraps", "value-string-past-end", "empty-key", "duplicate-key", "value-type-13",
                "array-count-exceeds", "alignment-uint64", "alignment-zero", "alignment-not-pow2",
                "tensor-name-empty", "tensor-name-65", "tensor-name-duplicate", "n_dims-5", "dims-product-overflows",
                "ggml-type-unknown", "ggml-type-removed", "row-not-multiple", "offset-misaligned", "offset-overlap",
                "offset-wraps", "offset-past-end"]
    for r in required:
        assert any(c.startswith(r) for c in CASES), r


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_refused(tmp_path, case):
    data, phrase = CASES[case]
    (r,) = run_case(tmp_path, data)
    assert not r["ok"], f"{case}: the malformed file was accepted"
    assert r["exc"] == "GGUFError", f"{case}: raised {r['exc']}: {r['msg']}"
    assert phrase in r["msg"], f"{case}: message {r['msg']!r} does not say {phrase!r}"
    assert str(tmp_path / "case.gguf") in r["msg"], "the message names the file"


def test_every_truncation_refused(tmp_path):
    data = valid_example().build()
    results = run_case(tmp_path, data, mode="prefixes")
    assert len(results) == len(data)
    for r in results:
        assert not r["ok"], f"prefix of {r['n']} bytes (of {len(data)}) was accepted"
        assert r["exc"] == "GGUFError", f"prefix {r['n']}: {r['exc']}: {r['msg']}"
        assert any(p in r["msg"] for p in ("truncated", "past the end", "larger than", "exceeds")), r


def test_single_byte_mutations_never_crash(tmp_path):
    """Every byte set to a few values: the file opens or raises GGUFError."""
    results = run_case(tmp_path, valid_example().build(), mode="mutate")
    assert results
    bad = [r for r in results if not r["ok"] and r["exc"] != "GGUFError"]
    assert not bad, bad[:5]


# ----- valid edge cases: these must open -----

def _opens(tmp_path, data):
    (r,) = run_case(tmp_path, data)
    assert r["ok"], r


@pytest.mark.parametrize("name,data", [
    ("header-only", header()),
    ("version-2", GGUFBuilder(version=2).add("a", UINT8, 1).add_tensor("t", [32], "Q8_0").build()),
    ("tensor-name-64", one_tensor(name="n" * 64).build()),
    ("zero-size-tensor", GGUFBuilder().add_tensor("e", [0, 4], "Q4_K", data=b"").add_tensor("t", [32], "F32").build()),
    ("scalar-tensor", GGUFBuilder().add_tensor("s", [], "F32", data=b"\0\0\x80\x3f").build()),
    ("empty-arrays", with_kv(("a", ARRAY, (UINT32, [])), ("b", ARRAY, (STRING, [])), ("c", ARRAY, (ARRAY, []))).build()),
    ("alignment-1", GGUFBuilder(alignment=1).add("general.alignment", UINT32, 1).add_tensor("t", [3], "F16").build()),
    ("alignment-4096", GGUFBuilder(alignment=4096).add("general.alignment", UINT32, 4096)
     .add_tensor("t", [32], "F32").add_tensor("u", [32], "F32").build()),
    ("nested-8-deep", header(n_kv=1) + kv_raw(b"k", ARRAY, struct.pack("<IQ", ARRAY, 1) * 7 + struct.pack("<IQ", UINT8, 0))),
    ("bool-2", header(n_kv=1) + kv_raw(b"k", BOOL, b"\x02")),
    ("non-utf8-string", header(n_kv=1) + kv_raw(b"k", STRING, struct.pack("<Q", 2) + b"\xff\xfe")),
    ("trailing-padding", valid_example(trailing_padding=True).build()),
])
def test_valid_edge_cases_open(tmp_path, name, data):
    _opens(tmp_path, data)


def test_edge_case_values(tmp_path):
    import inferlab

    p = tmp_path / "e.gguf"
    p.write_bytes(GGUFBuilder().add("s", STRING, b"\xff\xfeok").add("b", BOOL, True)
                  .add("nested", ARRAY, (ARRAY, [(INT32, [1, -2]), (STRING, ["x", ""]), (ARRAY, [])]))
                  .add_tensor("s", [], "F32", data=struct.pack("<f", 1.5))
                  .add_tensor("z", [0, 4], "Q4_K", data=b"").build())
    with inferlab.GGUFFile(p) as f:
        assert f.metadata["s"] == "\ufffd\ufffdok"  # undecodable bytes become U+FFFD
        assert f.metadata["nested"] == [[1, -2], ["x", ""], []]
        assert f.value_type("nested") == "array[array]"
        assert f.tensor_info("s").shape == ()
        assert f.dequantize("s").tolist() == 1.5
        assert f.dequantize("z").shape == (4, 0)
        assert f.raw("z").size == 0


def test_typed_getters_check_types(tmp_path):
    import inferlab

    p = tmp_path / "g.gguf"
    p.write_bytes(GGUFBuilder().add("u", UINT32, 7).add("big", UINT64, 2**64 - 1).add("s", STRING, "x")
                  .add("f", FLOAT32, 0.5).add("ints", ARRAY, (UINT64, [1, 2**40])).add("i8s", ARRAY, (INT32, [-3, 4]))
                  .add("strs", ARRAY, (STRING, ["a"])).add("fl", ARRAY, (FLOAT32, [1.0])).add("b", BOOL, False).build())
    f = inferlab.GGUFFile(p)._core()
    assert f.get_int("u") == 7 and f.get_float("u") == 7.0 and f.get_float("f") == 0.5
    assert f.get_str("s") == "x" and f.get_str_array("strs") == ["a"] and f.get_f32_array("fl") == [1.0]
    assert f.get_i32_array("i8s") == [-3, 4] and f.get_bool("b", True) is False and f.get_bool("nope", True) is True
    for call, phrase in [
        (lambda: f.get_int("s"), "metadata key 's' has type string, expected an integer"),
        (lambda: f.get_int("f"), "'f' has type float32, expected an integer"),
        (lambda: f.get_int("big"), "'big' value 18446744073709551615 does not fit in int64"),
        (lambda: f.get_int("missing"), "metadata key 'missing' is missing"),
        (lambda: f.get_str("u"), "'u' has type uint32, expected string"),
        (lambda: f.get_float("s"), "'s' has type string, expected a number"),
        (lambda: f.get_bool("u", False), "'u' has type uint32, expected bool"),
        (lambda: f.get_str_array("ints"), "'ints' has type array of uint64, expected array of string"),
        (lambda: f.get_f32_array("i8s"), "expected array of float32"),
        (lambda: f.get_i32_array("ints"), "'ints' element 1 (1099511627776) does not fit in int32"),
        (lambda: f.get_i32_array("strs"), "expected array of integers"),
    ]:
        with pytest.raises(inferlab.GGUFError, match=None) as ei:
            call()
        assert phrase in str(ei.value), (phrase, str(ei.value))
