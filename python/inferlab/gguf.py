"""GGUF files: a validated, memory-mapped reader and the ``inferlab info`` command.

    >>> with inferlab.GGUFFile("model.gguf") as f:
    ...     f.architecture, f.metadata["llama.block_count"]
    ...     f.tensors[0]                    # TensorInfo(name, shape (ggml order), type, offset, nbytes)
    ...     w = f.dequantize("token_embd.weight")   # float32, NumPy order
    ...     b = f.raw("token_embd.weight")          # zero-copy read-only uint8 view

Parsing and dequantization run in C++ (``inferlab._core.gguf``). A malformed file raises
:class:`inferlab.GGUFError` (a ``ValueError``) naming the problem.
"""
from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np

from ._core_loader import core as _core

_g = _core.gguf

__all__ = ["GGUFFile", "TensorInfo", "dequantize_bytes", "add_info_command"]


class TensorInfo(NamedTuple):
    """One tensor of a GGUF file. ``shape`` is in ggml order (``shape[0]`` is the row length)."""

    name: str
    shape: tuple
    type: str
    offset: int  # relative to the start of the data section
    nbytes: int

    @property
    def numpy_shape(self) -> tuple:
        """The shape of :meth:`GGUFFile.dequantize`'s result (reversed ggml order)."""
        return tuple(reversed(self.shape))

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def _info(t) -> TensorInfo:
    name, shape, typ, offset, nbytes = t
    return TensorInfo(name, tuple(shape), typ, offset, nbytes)


class GGUFFile:
    """A GGUF file (versions 2 and 3), memory-mapped and validated on open.

    Attributes: ``version``, ``alignment``, ``data_offset``, ``architecture``, ``metadata`` (dict of
    Python values; arrays become lists), ``tensors`` (list of :class:`TensorInfo` in file order).
    Use as a context manager or call :meth:`close`; arrays from :meth:`raw` stay valid after closing
    (they keep the mapping alive).
    """

    def __init__(self, path: str | os.PathLike):
        self._path = os.fspath(path)
        self._f = _g.GGUFFile(self._path)
        self._metadata: dict | None = None
        self._tensors: list | None = None
        self._index: dict | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> "GGUFFile":
        """Parses a GGUF image held in memory (used by tests and the fuzz regression corpus)."""
        self = cls.__new__(cls)
        self._path = "<memory>"
        self._f = _g.GGUFFile.from_bytes(bytes(data))
        self._metadata = self._tensors = self._index = None
        return self

    # -- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        """Releases this handle. The mapping is unmapped once no :meth:`raw` view uses it."""
        self._f = None

    @property
    def closed(self) -> bool:
        return self._f is None

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _core(self):
        if self._f is None:
            raise ValueError(f"GGUF file {self._path!r} is closed")
        return self._f

    def __repr__(self) -> str:
        if self._f is None:
            return f"<GGUFFile {self._path!r} (closed)>"
        return (f"<GGUFFile {self._path!r} v{self.version} arch={self.architecture!r} "
                f"{len(self.tensors)} tensors>")

    # -- header -----------------------------------------------------------------------------
    @property
    def path(self) -> str:
        return self._path

    @property
    def version(self) -> int:
        return self._core().version

    @property
    def alignment(self) -> int:
        return self._core().alignment

    @property
    def data_offset(self) -> int:
        """Byte offset of the tensor data section in the file."""
        return self._core().data_offset

    @property
    def file_size(self) -> int:
        return self._core().file_size

    @property
    def architecture(self) -> str:
        """``general.architecture`` ("" when absent)."""
        return self._core().architecture

    # -- metadata ---------------------------------------------------------------------------
    @property
    def metadata(self) -> dict:
        """All key/value pairs in file order. Built once, on first use."""
        if self._metadata is None:
            self._metadata = self._core().metadata()
        return self._metadata

    def get(self, key: str, default: Any = None) -> Any:
        """One metadata value, or ``default`` when the key is absent."""
        f = self._core()
        return f.get(key) if f.has(key) else default

    def value_type(self, key: str) -> str:
        """The GGUF type of a value: ``"uint32"``, ``"string"``, ``"array[float32]"``..."""
        return self._core().value_type(key)

    def __contains__(self, key: str) -> bool:
        return self._core().has(key)

    # -- tensors ----------------------------------------------------------------------------
    @property
    def tensors(self) -> list:
        if self._tensors is None:
            self._tensors = [_info(t) for t in self._core().tensors()]
            self._index = {t.name: t for t in self._tensors}
        return self._tensors

    def tensor_info(self, name: str) -> TensorInfo:
        """The :class:`TensorInfo` of ``name``; raises GGUFError if there is none."""
        return _info(self._core().tensor_info(name))

    def raw(self, name: str) -> np.ndarray:
        """Zero-copy, read-only uint8 view of a tensor's bytes.

        Shaped ``(ne[n-1], ..., ne[1], bytes_per_row)``, which is what ``gguf.quants.dequantize`` takes.
        """
        return self._core().raw(name)

    def dequantize(self, name: str) -> np.ndarray:
        """The tensor as float32 in NumPy order (reversed ggml shape), dequantized in C++.

        Supports F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K;
        other types raise NotImplementedError.
        """
        return self._core().dequantize(name)


def dequantize_bytes(data, type: str, n: int | None = None) -> np.ndarray:
    """Dequantizes raw GGML blocks (a uint8 buffer) of type ``type`` to a flat float32 array."""
    buf = np.ascontiguousarray(np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8))
    if n is None:
        if type not in _BLOCKS:
            raise ValueError(f"type: inferlab cannot dequantize {type!r}; supported: {', '.join(_BLOCKS)}")
        block, size = _BLOCKS[type]
        if buf.size % size:
            raise ValueError(f"data: {buf.size} bytes is not a whole number of {type} blocks ({size} bytes)")
        n = buf.size // size * block
    return _g.dequantize_bytes(buf, type, int(n))


# (elements per block, bytes per block) of the types inferlab dequantizes.
_BLOCKS = {
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2),
    "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34),
    "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210),
}


# ---------------------------------------------------------------------------------------------
# inferlab info FILE
# ---------------------------------------------------------------------------------------------

# (label, key suffix after "<arch>.")
_HPARAMS = [
    ("context length", "context_length"),
    ("embedding length", "embedding_length"),
    ("block count", "block_count"),
    ("feed-forward length", "feed_forward_length"),
    ("attention heads", "attention.head_count"),
    ("attention KV heads", "attention.head_count_kv"),
    ("key length", "attention.key_length"),
    ("value length", "attention.value_length"),
    ("RMS norm epsilon", "attention.layer_norm_rms_epsilon"),
    ("layer norm epsilon", "attention.layer_norm_epsilon"),
    ("RoPE dimensions", "rope.dimension_count"),
    ("RoPE theta", "rope.freq_base"),
    ("RoPE scaling", "rope.scaling.type"),
    ("RoPE scaling factor", "rope.scaling.factor"),
    ("vocab size", "vocab_size"),
]


def _fmt_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return f"[{len(v)} items]"
    return str(v)


def format_info(f: GGUFFile) -> str:
    """The text ``inferlab info`` prints."""
    lines = []
    arch = f.architecture or "(none)"
    lines.append(f"file:          {f.path}")
    lines.append(f"GGUF version:  {f.version}   alignment: {f.alignment}   file size: {_fmt_size(f.file_size)}")
    lines.append(f"architecture:  {arch}")
    name = f.get("general.name")
    if name is not None:
        lines.append(f"name:          {name}")
    ftype = f.get("general.file_type")
    if ftype is not None:
        lines.append(f"file type:     {ftype}")
    lines.append("")
    lines.append("hyperparameters:")
    found = False
    for label, suffix in _HPARAMS:
        v = f.get(f"{f.architecture}.{suffix}") if f.architecture else None
        if v is not None:
            lines.append(f"  {label + ':':<22}{_fmt_value(v)}")
            found = True
    if not found:
        lines.append("  (none found)")
    lines.append("")
    lines.append("tokenizer:")
    model = f.get("tokenizer.ggml.model")
    pre = f.get("tokenizer.ggml.pre")
    tokens = f.get("tokenizer.ggml.tokens")
    if model is None and tokens is None:
        lines.append("  (none)")
    else:
        lines.append(f"  {'model:':<22}{model if model is not None else '(unset)'}")
        if pre is not None:
            lines.append(f"  {'pre-tokenizer:':<22}{pre}")
        if tokens is not None:
            lines.append(f"  {'vocab size:':<22}{len(tokens)}")
        merges = f.get("tokenizer.ggml.merges")
        if merges is not None:
            lines.append(f"  {'merges:':<22}{len(merges)}")
        for label, key in (("BOS id", "bos_token_id"), ("EOS id", "eos_token_id"), ("PAD id", "padding_token_id")):
            v = f.get(f"tokenizer.ggml.{key}")
            if v is not None:
                lines.append(f"  {label + ':':<22}{v}")
        if f.get("tokenizer.chat_template") is not None:
            lines.append(f"  {'chat template:':<22}yes")
    lines.append("")
    tensors = f.tensors
    total = sum(t.nbytes for t in tensors)
    n_params = sum(t.n_elements for t in tensors)
    lines.append(f"tensors: {len(tensors)}")
    if tensors:
        w = max(len("name"), max(len(t.name) for t in tensors))
        lines.append(f"  {'name':<{w}}  {'type':<6}  {'shape (ggml order)':<24}  size")
        for t in tensors:
            shape = "x".join(str(d) for d in t.shape) or "scalar"
            lines.append(f"  {t.name:<{w}}  {t.type:<6}  {shape:<24}  {_fmt_size(t.nbytes)}")
        types: dict = {}
        for t in tensors:
            types[t.type] = types.get(t.type, 0) + 1
        lines.append("")
        lines.append("types:         " + ", ".join(f"{k} x{v}" for k, v in sorted(types.items())))
    lines.append(f"total size:    {_fmt_size(total)} ({total} bytes) in {len(tensors)} tensors, "
                 f"{n_params:,} parameters")
    return "\n".join(lines)


def _run_info(args) -> int:
    with GGUFFile(args.file) as f:
        print(format_info(f))
    return 0


def add_info_command(subparsers) -> None:
    """Registers ``inferlab info FILE``."""
    p = subparsers.add_parser("info", help="print a GGUF file's architecture, hyperparameters, tokenizer and tensors",
                              description="Print a GGUF file's architecture, key hyperparameters, tokenizer kind, "
                                          "tensor table and total size.")
    p.add_argument("file", help="path to a .gguf file")
    p.set_defaults(func=_run_info)
