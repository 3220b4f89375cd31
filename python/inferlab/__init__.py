"""inferlab: research-grade LLM inference for GGUF models on NVIDIA GPUs and the CPU.

Three ways in:
  * the pipeline:   ``inferlab.Model(path).generate("Hello")``
  * single kernels: ``inferlab.kernels.rms_norm(x, w, 1e-6, device="cuda")`` beside ``inferlab.reference``
  * inspection:     ``Model.logits(ids)``, ``Model.trace(ids)``
"""
from ._core_loader import core as _core
from ._tensor import DeviceArray

GGUFError = _core.GGUFError
DeviceMemoryError = _core.DeviceMemoryError

from .gguf import GGUFFile, TensorInfo  # noqa: E402
from .tokenizer import Tokenizer  # noqa: E402
from . import kernels, reference  # noqa: E402
from .kernels import KVCache  # noqa: E402
from .model import Model  # noqa: E402

__version__ = "0.1.0"


def cuda_available() -> bool:
    """True when this build has CUDA kernels and a usable GPU is present."""
    return bool(_core.cuda_available())


def built_with_cuda() -> bool:
    """True when the extension was compiled with CUDA kernels."""
    return bool(_core.built_with_cuda())


def devices() -> list:
    """The usable GPUs: dicts with index, name, total_memory, free_memory, compute_capability, multiprocessors."""
    return list(_core.devices())


def cpu_threads() -> int:
    """Threads the CPU kernels run on, the calling thread included: one pool shared by every CPU op.

    Set ``INFERLAB_NUM_THREADS`` (an integer in [1, 256]) before the first CPU kernel call to choose it;
    the default is the machine's hardware threads. An invalid value raises ValueError here and at the first
    parallel CPU kernel call.
    """
    return int(_core.cpu_threads())


__all__ = [
    "GGUFFile", "TensorInfo", "GGUFError", "DeviceMemoryError", "Tokenizer", "DeviceArray", "KVCache",
    "Model", "kernels", "reference", "cuda_available", "built_with_cuda", "devices",
    "cpu_threads",
]
