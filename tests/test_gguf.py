"""GGUF reader: round trip against files written by the gguf PyPI package (gguf-py)."""
from __future__ import annotations

import numpy as np
import pytest

import inferlab

gguf = pytest.importorskip("gguf", reason="the gguf package (test dependency) is not installed")
Q = gguf.GGMLQuantizationType

# Types gguf.quants can quantize from floats.
QUANTIZABLE = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
# K-quants: random bytes with sane f16 scale fields (byte offsets of the f16 fields in a block).
K_F16_FIELDS = {"Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
ALL_TYPES = QUANTIZABLE + list(K_F16_FIELDS)


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


def write_gguf(path, kv: dict, tensors: dict, arch="llama"):
    """kv: key -> (value, GGUFValueType or None); tensors: name -> (raw uint8 bytes, type name)."""
    w = gguf.GGUFWriter(str(path), arch)
    for k, (v, vt) in kv.items():
        if vt is None:
            w.add_key_value(k, v, gguf.GGUFValueType.get_type(v))
        else:
            w.add_key_value(k, v, vt)
    for name, (raw, qtype) in tensors.items():
        w.add_tensor(name, raw, raw_dtype=Q[qtype])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("qtype", ALL_TYPES)
def test_dequantize_matches_gguf_py(tmp_path, rng, qtype):
    block = gguf.GGML_QUANT_SIZES[Q[qtype]][0]
    shapes = [(3, 2 * max(block, 32)), (5, block), (2, 2, 4 * block)]
    tensors = {f"t{i}": (random_tensor_bytes(rng, qtype, s), qtype) for i, s in enumerate(shapes)}
    path = tmp_path / "q.gguf"
    write_gguf(path, {}, tensors)
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
