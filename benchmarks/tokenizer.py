#!/usr/bin/env python3
"""Encode throughput (MB/s of UTF-8 input) of inferlab's tokenizers beside HF `tokenizers`, in one run.

    PYTHONPATH=python python3 benchmarks/tokenizer.py [--mb 8] [--json out.json]

Corpus: tests/tokenizer_corpus.py's generated mixed text (many scripts, code, emoji/ZWJ, whitespace
runs, numbers, random code points), --mb megabytes of it. Three measurements per tokenizer, single
thread for both libraries:
  big      one encode() of the whole text (a fresh tokenizer: its word cache starts empty)
  big-2    the same text again (word cache warm)
  docs     the text cut into ~2 KB documents, encode() on each, in a Python loop
The ids are checked equal to HF's before timing counts. GGUF-only tokenizers (llama-spm, phi-3) are
measured without an HF column.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
if os.environ.get("INFERLAB_CORE_DIR"):  # developer build: use the sources beside it
    sys.path.insert(0, str(ROOT / "python"))

from tokenizer_corpus import big_text  # noqa: E402

from inferlab import Tokenizer  # noqa: E402

SHARED = pathlib.Path(os.environ.get("INFERLAB_SHARED", ROOT.parent / "shared"))
TOK_DIR = SHARED / "conformance" / "tokenizers"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def docs_of(text: str, size: int = 2000) -> list:
    out, i = [], 0
    while i < len(text):
        out.append(text[i:i + size])
        i += size
    return out


def run_one(name, make_ours, make_hf, text, docs, nbytes):
    row = {"tokenizer": name}
    ours = make_ours()
    t, ids = timed(lambda: ours.encode(text))
    row["ours_big_mb_s"] = nbytes / t / 1e6
    t, ids2 = timed(lambda: ours.encode(text))
    assert ids == ids2
    row["ours_big2_mb_s"] = nbytes / t / 1e6
    t, _ = timed(lambda: [ours.encode(d) for d in docs])
    row["ours_docs_mb_s"] = nbytes / t / 1e6
    row["tokens"] = len(ids)
    if make_hf is not None:
        hf = make_hf()
        hf.encode_special_tokens = True  # as our parse_special=False: special-token text is plain text
        t, enc = timed(lambda: hf.encode(text, add_special_tokens=False))
        row["hf_big_mb_s"] = nbytes / t / 1e6
        row["ids_equal"] = enc.ids == ids
        t, _ = timed(lambda: hf.encode(text, add_special_tokens=False))
        row["hf_big2_mb_s"] = nbytes / t / 1e6
        t, _ = timed(lambda: [hf.encode(d, add_special_tokens=False) for d in docs])
        row["hf_docs_mb_s"] = nbytes / t / 1e6
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=8.0, help="corpus size in MB (default 8)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--only", help="comma-separated tokenizer names")
    args = ap.parse_args()

    text = big_text(1234, int(args.mb * 1e6))
    nbytes = len(text.encode("utf-8"))
    docs = docs_of(text)
    try:
        import tokenizers as hf_tok
    except ImportError:
        hf_tok = None
        print("HF tokenizers not installed: measuring inferlab only")

    cases = []
    for name in ["qwen2.5", "gpt2", "llama2"]:
        p = TOK_DIR / "hf" / name / "tokenizer.json"
        cases.append((f"{name} (json)", lambda p=p: Tokenizer.from_json(p),
                      (lambda p=p: hf_tok.Tokenizer.from_file(str(p))) if hf_tok else None))
    for name in ["llama-spm", "phi-3"]:
        p = TOK_DIR / f"ggml-vocab-{name}.gguf"
        cases.append((f"{name} (gguf)", lambda p=p: Tokenizer.from_gguf(p), None))
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c[0].split(" ")[0] in keep]

    rows = []
    print(f"corpus: {nbytes / 1e6:.1f} MB UTF-8, {len(docs)} documents; single thread")
    hdr = f"{'tokenizer':18} {'ours big':>9} {'HF big':>8} {'x':>5} | {'ours warm':>9} {'HF warm':>8} {'x':>5} | " \
          f"{'ours docs':>9} {'HF docs':>8} {'x':>5}  (MB/s)"
    print(hdr)
    for name, mo, mh in cases:
        r = run_one(name, mo, mh, text, docs, nbytes)
        rows.append(r)

        def col(key):
            o, h = r[f"ours_{key}_mb_s"], r.get(f"hf_{key}_mb_s")
            return f"{o:9.2f} {h:8.2f} {o / h:5.1f}" if h else f"{o:9.2f} {'-':>8} {'-':>5}"
        eq = "" if "ids_equal" not in r else ("  ids equal" if r["ids_equal"] else "  IDS DIFFER")
        print(f"{name:18} {col('big')} | {col('big2')} | {col('docs')}{eq}")
    if args.json:
        info = {"machine": platform.machine(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
                "corpus_mb": nbytes / 1e6, "documents": len(docs)}
        if hf_tok is not None:
            info["hf_tokenizers"] = hf_tok.__version__
        pathlib.Path(args.json).write_text(json.dumps({"info": info, "results": rows}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
