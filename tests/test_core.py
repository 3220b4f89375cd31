"""DeviceArray, device discovery and error mapping."""
import os
import numpy as np
import pytest

import inferlab
from inferlab import DeviceArray

from conftest import CUDA, DEVICES

ml_dtypes = pytest.importorskip("ml_dtypes")

DTYPES = [np.float32, np.float16, ml_dtypes.bfloat16, np.int32, np.int64, np.uint8, np.int8]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(1,), (97,), (3, 5), (2, 3, 7), (2, 1, 3, 4)])
def test_roundtrip(device, dtype, shape, rng):
    a = (rng.standard_normal(shape) * 50).astype(dtype)
    d = DeviceArray.from_numpy(a, device)
    assert d.shape == shape
    assert d.device == device
    assert d.dtype == np.dtype(dtype)
    assert d.nbytes == a.nbytes
    b = d.numpy()
    assert b.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(b.view(np.uint8), a.view(np.uint8))
    np.testing.assert_array_equal(np.asarray(d).view(np.uint8), a.view(np.uint8))


def test_cpu_wrap_is_zero_copy(rng):
    a = rng.standard_normal((4, 4)).astype(np.float32)
    d = DeviceArray.from_numpy(a, "cpu")
    a[0, 0] = 123.0
    assert d.numpy()[0, 0] == 123.0
    del a  # the DeviceArray keeps the buffer alive
    assert d.numpy()[0, 0] == 123.0


def test_non_contiguous_input_is_copied(rng):
    a = rng.standard_normal((6, 8)).astype(np.float32)
    d = DeviceArray.from_numpy(a[:, ::2], "cpu")
    np.testing.assert_array_equal(d.numpy(), a[:, ::2])


@pytest.mark.parametrize("device", DEVICES)
def test_empty_reshape_copy(device, rng):
    d = DeviceArray.empty((3, 4), "float16", device)
    assert d.shape == (3, 4) and d.dtype == np.float16
    src = rng.standard_normal((3, 4)).astype(np.float16)
    d.copy_(src)
    np.testing.assert_array_equal(d.numpy(), src)
    r = d.reshape((12,))
    np.testing.assert_array_equal(r.numpy(), src.reshape(12))
    with pytest.raises(ValueError, match="cannot view"):
        d.reshape((5,))
    host = d.to("cpu")
    assert host.device == "cpu"
    np.testing.assert_array_equal(host.numpy(), src)


def test_bad_dtype_and_device():
    with pytest.raises(ValueError, match="float64"):
        DeviceArray.from_numpy(np.ones(3), "cpu")
    with pytest.raises(ValueError, match="device"):
        DeviceArray.empty((2,), "float32", "tpu")
    with pytest.raises(ValueError, match="dtype"):
        DeviceArray.empty((2,), "complex64", "cpu")
    with pytest.raises(ValueError, match="negative"):
        DeviceArray.empty((2, -1), "float32", "cpu")


@pytest.mark.skipif(CUDA, reason="checks the error raised without a usable GPU")
def test_cuda_unavailable_is_a_clear_error():
    with pytest.raises(NotImplementedError, match="CUDA"):
        DeviceArray.empty((2,), "float32", "cuda")


def test_exception_hierarchy():
    assert issubclass(inferlab.GGUFError, ValueError)
    assert issubclass(inferlab.DeviceMemoryError, MemoryError)


def test_devices_listing():
    devs = inferlab.devices()
    assert isinstance(devs, list)
    assert inferlab.cuda_available() == (len(devs) > 0)
    for d in devs:
        assert d["total_memory"] > 0 and 0 < d["free_memory"] <= d["total_memory"]
        assert len(d["compute_capability"]) == 2 and d["compute_capability"][0] >= 5
        assert isinstance(d["name"], str) and d["name"]


def test_dlpack_cpu_to_numpy(rng):
    a = rng.standard_normal((5, 3)).astype(np.float32)
    d = DeviceArray.from_numpy(a, "cpu")
    b = np.from_dlpack(d)
    np.testing.assert_array_equal(b, a)


@pytest.mark.cuda
def test_dlpack_cuda_to_torch(rng):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((7, 9)).astype(np.float16)
    d = DeviceArray.from_numpy(a, "cuda")
    t = torch.from_dlpack(d)
    assert t.is_cuda and t.dtype == torch.float16 and tuple(t.shape) == (7, 9)
    np.testing.assert_array_equal(t.cpu().numpy(), a)
    # zero-copy: writes through torch show up in the DeviceArray
    t.fill_(2.0)
    torch.cuda.synchronize()
    assert np.all(d.numpy() == 2.0)


@pytest.mark.cuda
def test_device_oom_is_memory_error():
    free, total = inferlab._core.mem_get_info()
    with pytest.raises(inferlab.DeviceMemoryError, match="MiB free"):
        DeviceArray.empty((total * 4,), "uint8", "cuda")


# ---- the CPU kernels' worker pool (INFERLAB_NUM_THREADS) ----------------------------------------------

_THREADS_PROBE = r"""
import hashlib, sys
import numpy as np
import inferlab
from inferlab import kernels
print("threads", inferlab.cpu_threads())
rng = np.random.default_rng(7)
h = hashlib.sha256()
# Big enough that every op splits its work over the pool (parallel_rows: >= 2^17 elements per thread).
x = rng.standard_normal((512, 1024)).astype(np.float32)
h.update(kernels.rms_norm(x, rng.standard_normal(1024).astype(np.float32), 1e-6, device="cpu").tobytes())
h.update(kernels.softmax(x, device="cpu").tobytes())
w = rng.standard_normal((768, 1024)).astype(np.float32)
qw = kernels.QWeight.from_bytes(w.view(np.uint8).ravel(), "F32", 768, 1024, device="cpu")
h.update(kernels.matmul(x[:37], qw, device="cpu").tobytes())
q = rng.standard_normal((300, 8, 64)).astype(np.float16)
k = rng.standard_normal((300, 2, 64)).astype(np.float16)
v = rng.standard_normal((300, 2, 64)).astype(np.float16)
h.update(np.asarray(kernels.attention_prefill(q, k, v, device="cpu"), dtype=np.float32).tobytes())
print("digest", h.hexdigest())
"""


def _run_with_threads(value, code=_THREADS_PROBE):
    import subprocess
    import sys

    env = dict(os.environ)
    env.pop("INFERLAB_NUM_THREADS", None)
    if value is not None:
        env["INFERLAB_NUM_THREADS"] = value
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_cpu_threads_setting_and_results_independent_of_it():
    """INFERLAB_NUM_THREADS sizes the one pool that every CPU kernel runs on, and the results do not depend
    on it: each op splits rows (or attention's query blocks) between threads, never a row's sums."""
    runs = {}
    for value in (None, "1", "3", ""):  # (empty: as unset)
        r = _run_with_threads(value)
        assert r.returncode == 0, r.stderr
        lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
        runs[value] = lines
    assert int(runs["1"]["threads"]) == 1 and int(runs["3"]["threads"]) == 3
    assert int(runs[None]["threads"]) == int(runs[""]["threads"]) == min(os.cpu_count() or 1, 256)
    assert runs["1"]["digest"] == runs["3"]["digest"] == runs[None]["digest"]


@pytest.mark.parametrize("value", ["0", "-2", "abc", "3x", " 4", "257", "99999999999999999999"])
def test_cpu_threads_invalid_setting_is_a_value_error(value):
    code = ("import inferlab\ntry:\n    inferlab.cpu_threads()\nexcept ValueError as e:\n    print('ValueError', e)\n"
            "import numpy as np\nfrom inferlab import kernels\nx = np.ones((4096, 1024), np.float32)\n"
            "try:\n    kernels.softmax(x, device='cpu')\nexcept ValueError as e:\n    print('ValueError', e)\n")
    r = _run_with_threads(value, code)
    assert r.returncode == 0, r.stderr
    errors = [line for line in r.stdout.splitlines() if line.startswith("ValueError")]
    assert len(errors) == 2, r.stdout
    for line in errors:
        assert "INFERLAB_NUM_THREADS" in line and repr(value)[1:-1] in line
