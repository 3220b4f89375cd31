"""Shared fixtures: the shared data folder, devices, and random generators."""
from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

import inferlab

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("INFERLAB_SHARED", ROOT.parent / "shared"))
TOKENIZER_DIR = SHARED / "conformance" / "tokenizers"

CUDA = inferlab.cuda_available()
NO_CUDA_REASON = (
    "no usable CUDA GPU on this machine" if inferlab.built_with_cuda() else "inferlab was built without CUDA"
)

# Named real shapes, used to parametrize kernel tests.
MODEL_SHAPES = {
    #                 hidden, heads, kv_heads, head_dim, ffn,   vocab
    "qwen2.5-0.5b": dict(d=896, hq=14, hkv=2, hd=64, ffn=4864, vocab=151936),
    "phi3-mini-4k": dict(d=3072, hq=32, hkv=32, hd=96, ffn=8192, vocab=32064),
    "gpt2": dict(d=768, hq=12, hkv=12, hd=64, ffn=3072, vocab=50257),
    "smollm2-135m": dict(d=576, hq=9, hkv=3, hd=64, ffn=1536, vocab=49152),
    "llama3-8b": dict(d=4096, hq=32, hkv=8, hd=128, ffn=14336, vocab=128256),
}


def pytest_collection_modifyitems(config, items):
    if CUDA:
        # cudaMemGetInfo is device-wide: other test processes on the same GPU move it. Under xdist these tests
        # cannot measure anything; scripts/gpu_check.sh runs them in a serial pass of their own.
        if os.environ.get("PYTEST_XDIST_WORKER"):
            serial = pytest.mark.skip(reason="measures device-wide free memory, so it needs the GPU to itself: "
                                             "run without xdist (scripts/gpu_check.sh does, in a serial pass)")
            for item in items:
                if "exclusive_gpu" in item.keywords:
                    item.add_marker(serial)
        return
    skip = pytest.mark.skip(reason=NO_CUDA_REASON)
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


# Use as @pytest.mark.parametrize("device", DEVICES): cpu always, cuda marked (skipped without a GPU).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from entropy; the seed is printed on failure."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"rng seed: {seed}")
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED} (set INFERLAB_SHARED)")
    return SHARED
