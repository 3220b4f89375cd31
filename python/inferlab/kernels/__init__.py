"""Every kernel, callable on NumPy arrays or DeviceArrays: ``op(..., device="cpu" | "cuda")``.

Each op has a NumPy reference with the same signature in :mod:`inferlab.reference`.
Areas: ``_basic`` (kernel library I), ``_matmul`` and ``_attention`` (kernel library II).
"""
from ._basic import *  # noqa: F401,F403
from ._matmul import *  # noqa: F401,F403
from ._attention import *  # noqa: F401,F403
