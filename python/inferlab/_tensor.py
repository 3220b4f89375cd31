"""NumPy conveniences for ``inferlab.DeviceArray`` (the C++ tensor type)."""
from __future__ import annotations

import numpy as np

from ._core_loader import core

DeviceArray = core.DeviceArray

_FLOAT_NAMES = ("float32", "float16", "bfloat16")


def np_dtype(name: str) -> np.dtype:
    """NumPy dtype for an inferlab dtype name (bfloat16 comes from ml_dtypes)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def dtype_name(dt) -> str:
    return np.dtype(dt).name


def _from_numpy(arr, device: str = "cuda") -> "DeviceArray":
    """Copy (GPU) or wrap without copying (CPU) a NumPy array."""
    a = np.ascontiguousarray(arr)
    return DeviceArray._from_buffer(a, dtype_name(a.dtype), device)


def _numpy(self) -> np.ndarray:
    """The data as a NumPy array (a copy for GPU arrays, a view for CPU arrays)."""
    return self._to_bytes_array().view(np_dtype(self.dtype_name)).reshape(self.shape)


def _array(self, dtype=None, copy=None):
    a = _numpy(self)
    return a.astype(dtype) if dtype is not None else a


def _copy_(self, src) -> None:
    """Overwrite this array's contents with ``src`` (a NumPy array or DeviceArray of equal size and dtype)."""
    if not isinstance(src, DeviceArray):
        src = _from_numpy(np.asarray(src, dtype=np_dtype(self.dtype_name)), "cpu")
    self._copy_from(src)


DeviceArray.from_numpy = staticmethod(_from_numpy)
DeviceArray.numpy = _numpy
DeviceArray.__array__ = _array
DeviceArray.copy_ = _copy_
DeviceArray.dtype = property(lambda self: np_dtype(self.dtype_name))


def as_device_array(x, device: str, arg: str, dtypes=_FLOAT_NAMES) -> "DeviceArray":
    """Validate ``x`` (NumPy array or DeviceArray) and return it as a DeviceArray on ``device``.

    Raises ValueError naming ``arg`` when the dtype is not in ``dtypes`` or the array lives elsewhere.
    """
    if isinstance(x, DeviceArray):
        if x.device != device:
            raise ValueError(f"{arg} is on {x.device} but device={device!r}")
        name = x.dtype_name
    else:
        x = np.asarray(x)
        name = dtype_name(x.dtype)
        if name not in dtypes:
            raise ValueError(f"{arg} has dtype {name}; expected one of {', '.join(dtypes)}")
        return _from_numpy(x, device)
    if name not in dtypes:
        raise ValueError(f"{arg} has dtype {name}; expected one of {', '.join(dtypes)}")
    return x
