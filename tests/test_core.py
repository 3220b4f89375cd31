"""DeviceArray, device discovery and error mapping."""
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
