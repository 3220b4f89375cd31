#!/usr/bin/env python3
"""End-to-end throughput: inferlab beside HF transformers, with llama.cpp's numbers for reference.

    python3 benchmarks/e2e.py --json e2e.json --png e2e.png            # GPU machine, ~6-8 min on an H100
    python3 benchmarks/e2e.py --json e2e.json --quick                  # fewer repetitions
    python3 benchmarks/e2e.py --device cpu --quick --models tiny-qwen2 --pp 64 --tg 16 --json smoke.json

For each file (random weights, real shapes, written by ``inferlab.testing.write_random_gguf`` into a
temporary folder and deleted after use):
  * Qwen2.5-0.5B: F16, Q8_0, Q4_K_M
  * Phi-3-mini-4k: F16, Q8_0, Q4_K_M
it measures, as llama-bench defines them:
  * pp512: one forward pass over a 512-token prompt from an empty context; tok/s = 512 / time;
  * tg128: 128 sequential decode steps of one token (batch 1) after a one-token prompt; tok/s = 128 / time;
each after a warm-up, as the median of several repetitions. inferlab is timed through ``Model.bench`` (what
``inferlab bench`` reports). HF transformers runs the same weights (dequantized from the F16 file: its
speed does not depend on the GGUF type) in bfloat16 with eager attention, timed the same way with a
KV cache (greedy argmax per step, no ``generate()`` overhead).

The device-to-device copy bandwidth is measured in the same run (bytes read + written per second), and
the decode bandwidth achieved is reported against it: weight bytes read per token (every tensor of the
file except an untied token embedding, of which one row is read) x tg tok/s.

Output: a table on stdout, JSON (--json) and a PNG bar chart (--png, needs matplotlib). The run watches a
time budget (--budget seconds): repetitions shrink when time runs short and files that no longer fit are
skipped and listed as such.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

# llama.cpp (February 2025 build) on an H200, same random-weight files: (pp512 tok/s, tg128 tok/s).
LLAMA_CPP_H200 = {
    ("qwen2.5-0.5b", "F16"): (60600, 402),
    ("qwen2.5-0.5b", "Q8_0"): (45400, 444),
    ("qwen2.5-0.5b", "Q4_K_M"): (42300, 453),
    ("phi3-mini-4k", "F16"): (21000, 197),
    ("phi3-mini-4k", "Q8_0"): (14600, 235),
    ("phi3-mini-4k", "Q4_K_M"): (13100, 281),
}
# HF transformers, eager attention, bf16, on the same H200: (pp512 tok/s, tg128 tok/s).
HF_H200 = {"qwen2.5-0.5b": (34600, 19), "phi3-mini-4k": (28800, 18)}

# name -> (arch, testing preset, label)
MODELS = {
    "qwen2.5-0.5b": ("qwen2", "qwen2.5-0.5b", "Qwen2.5-0.5B"),
    "phi3-mini-4k": ("phi3", "phi3-mini-4k", "Phi-3-mini-4k"),
    "smollm2-135m": ("llama", "smollm2-135m", "SmolLM2-135M"),
    "gpt2-124m": ("gpt2", "gpt2-124m", "GPT-2 124M"),
    "tiny-llama": ("llama", "tiny", "tiny llama"),
    "tiny-qwen2": ("qwen2", "tiny", "tiny qwen2"),
    "tiny-phi3": ("phi3", "tiny", "tiny phi3"),
    "tiny-gpt2": ("gpt2", "tiny", "tiny gpt2"),
}
DEFAULT_MODELS = ("qwen2.5-0.5b", "phi3-mini-4k")
DEFAULT_QTYPES = ("F16", "Q8_0", "Q4_K_M")
# Approximate bits per weight, to size files before writing them (disk check, time estimates).
_BITS = {"F32": 32, "F16": 16, "BF16": 16, "Q8_0": 8.5, "Q6_K": 6.56, "Q5_K": 5.5, "Q5_0": 5.5, "Q5_1": 6,
         "Q4_K_M": 5.0, "Q4_K": 4.5, "Q4_0": 4.5, "Q4_1": 5, "Q3_K": 3.44, "Q2_K": 2.63}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Budget:
    """Wall-clock budget of the whole run."""

    def __init__(self, seconds):
        self.t0 = time.perf_counter()
        self.seconds = seconds

    def elapsed(self):
        return time.perf_counter() - self.t0

    def left(self):
        return self.seconds - self.elapsed()


# --------------------------------------------------------------------------------------------- device

def _torch():
    try:
        import torch

        return torch
    except ImportError:
        return None


def device_info(device):
    import inferlab

    info = {"device": device, "python": platform.python_version(), "numpy": np.__version__,
            "inferlab": getattr(inferlab, "__version__", "?"), "host": platform.node()}
    if device == "cuda":
        try:
            d = inferlab.devices()[0]
            info["name"] = d.get("name")
            info["total_memory"] = d.get("total_memory")
            info["compute_capability"] = d.get("compute_capability")
        except Exception as e:  # noqa: BLE001
            info["name"] = f"unknown ({e})"
    else:
        name = platform.processor() or "cpu"
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        info["name"] = f"{name} ({os.cpu_count()} threads)"
    torch = _torch()
    if torch is not None:
        info["torch"] = torch.__version__
        try:
            import transformers

            info["transformers"] = transformers.__version__
        except ImportError:
            pass
    return info


def copy_ceiling(device, nbytes=None, reps=10):
    """Device-to-device copy bandwidth in GB/s, counting bytes read and written (the decode roofline)."""
    try:  # the kernel benchmarks' harness, when it is there, so that both reports use one number
        import _bench_common as bc

        fn = getattr(bc, "copy_ceiling", None) or getattr(bc, "measure_copy_ceiling", None)
        if fn is not None and device == "cuda":
            r = fn()
            gbs = r.get("gb_s") if isinstance(r, dict) else float(r)
            if gbs:
                return {"gb_s": float(gbs), "method": "benchmarks/_bench_common copy ceiling (read + write)",
                        "detail": r if isinstance(r, dict) else None}
    except Exception:  # noqa: BLE001
        pass
    if device == "cuda":
        torch = _torch()
        if torch is None or not torch.cuda.is_available():
            return {"gb_s": None, "method": "unavailable: torch with CUDA is needed to time the copy"}
        nbytes = nbytes or (1 << 30)
        src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        src.fill_(1)
        dst = torch.empty_like(src)
        for _ in range(3):
            dst.copy_(src)
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            dst.copy_(src)
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
        del src, dst
        torch.cuda.empty_cache()
        t = statistics.median(times)
        return {"gb_s": 2 * nbytes / t / 1e9, "bytes": nbytes, "median_s": t,
                "method": "torch cudaMemcpy device-to-device, 1 GiB, median of %d (read + write)" % reps}
    nbytes = nbytes or (256 << 20)
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    times = []
    for _ in range(max(3, reps // 2)):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    return {"gb_s": 2 * nbytes / t / 1e9, "bytes": nbytes, "median_s": t,
            "method": "numpy copy in host memory, one thread (read + write)"}


# --------------------------------------------------------------------------------------------- files

def _n_params(arch, preset):
    from inferlab.testing import preset_config

    c = preset_config(arch, preset)
    D, F, L, V, hd = c["n_embd"], c["n_ff"], c["n_layer"], c["n_vocab"], c["head_dim"]
    attn = D * hd * (c["n_head"] * 2 + 2 * c["n_head_kv"])
    mlp = D * F * (2 if arch == "gpt2" else 3)
    emb = V * D * (1 if c.get("tied") else 2)
    return L * (attn + mlp) + emb


# Conservative first guesses of write_random_gguf's rate (bytes/s), before a file of the type was written
# (H200 host: F16 ~460 MB/s, Q8_0 ~155 MB/s, Q4_K_M ~22-105 MB/s).
_WRITE_RATE_GUESS = {"F32": 150e6, "F16": 150e6, "BF16": 150e6, "Q8_0": 50e6}


def estimate_file_bytes(arch, preset, qtype):
    return int(_n_params(arch, preset) * _BITS.get(qtype, 16) / 8) + (1 << 20)


def pick_tmpdir(need, preferred=None):
    """A folder with room for `need` bytes (+10%): --tmpdir, then /dev/shm (RAM), $TMPDIR, /tmp, the cwd."""
    cands = [preferred] if preferred else []
    cands += ["/dev/shm", os.environ.get("TMPDIR"), tempfile.gettempdir(), "/tmp", os.getcwd()]
    seen = []
    for d in cands:
        if not d or d in seen or not os.path.isdir(d) or not os.access(d, os.W_OK):
            continue
        seen.append(d)
        try:
            free = shutil.disk_usage(d).free
        except OSError:
            continue
        # /dev/shm lives in RAM: leave plenty for the processes themselves.
        margin = 16 << 30 if d == "/dev/shm" else 1 << 30
        if free > need * 1.1 + margin:
            return d
        if preferred and d == preferred:
            raise SystemExit(f"--tmpdir {d}: {free / 1e9:.1f} GB free, need {need / 1e9:.1f} GB")
    raise SystemExit(f"no writable folder has {need / 1e9:.1f} GB free (checked {', '.join(seen)}); use --tmpdir")


def weight_bytes_per_token(path):
    """Bytes of weights read per decoded token: every tensor except an untied token embedding (and GPT-2's
    position table), of which one row is read."""
    from inferlab import GGUFFile

    with GGUFFile(path) as f:
        ts = {t.name: t for t in f.tensors}
        total = sum(t.nbytes for t in ts.values())
        for name in ("position_embd.weight",) + (("token_embd.weight",) if "output.weight" in ts else ()):
            if name in ts:
                t = ts[name]
                total -= t.nbytes - t.nbytes // max(1, t.shape[1])
        return total, f.file_size


# --------------------------------------------------------------------------------------------- timing

def _median(xs):
    return float(statistics.median(xs)) if xs else None


def bench_inferlab(path, device, pp, tg, reps_pp, reps_tg, budget, per_item_s, int8_activations=False):
    """pp/tg tok/s samples for one file through Model.bench (each call warms up first)."""
    import inferlab

    out = {}
    t0 = time.perf_counter()
    n_ctx = max(256, pp + tg + 8)
    m = inferlab.Model(path, device=device, n_ctx=n_ctx, n_seqs=1, int8_activations=int8_activations)
    try:
        out["load_s"] = time.perf_counter() - t0
        try:
            mr = m.memory_report()
            out["memory_report"] = {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
                                    for k, v in dict(mr).items()}
        except Exception as e:  # noqa: BLE001
            out["memory_report"] = {"error": str(e)}
        deadline = time.perf_counter() + per_item_s
        if pp:
            samples = []
            for i in range(reps_pp):
                r = m.bench(n_prompt=pp, n_gen=0, reps=1)
                samples.append(float(r["prefill_tok_s"]))
                if time.perf_counter() > deadline and i >= 0:
                    break
            out["pp_tok_s"] = _median(samples)
            out["pp_samples"] = samples
        if tg:
            samples = []
            for i in range(reps_tg):
                r = m.bench(n_prompt=0, n_gen=tg, reps=1)
                samples.append(float(r["decode_tok_s"]))
                if "cuda_graphs" in r:
                    out["cuda_graphs"] = r["cuda_graphs"]
                if time.perf_counter() > deadline + per_item_s / 2:
                    break
            out["tg_tok_s"] = _median(samples)
            out["tg_samples"] = samples
    finally:
        m.close()
    return out


def bench_hf(path, device, pp, tg, reps_pp, reps_tg, per_item_s):
    """The same measurements for HF transformers (bf16 on CUDA, float32 on the CPU; eager attention)."""
    import inspect

    import torch
    from _hf import build_hf_model

    try:  # the builder the parity tests use, when inferlab.testing has one
        from inferlab.testing import build_hf_model as _shared

        builder = _shared
    except ImportError:
        builder = build_hf_model
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    t0 = time.perf_counter()
    model = builder(path, dtype=dtype, device=device)
    out = {"dtype": str(dtype).replace("torch.", ""), "attn": "eager", "build_s": time.perf_counter() - t0}
    try:
        nb = sum(p.numel() * p.element_size() for p in model.parameters())
        emb = model.get_input_embeddings().weight
        if model.get_output_embeddings() is not None and model.get_output_embeddings().weight is not emb:
            nb -= emb.numel() * emb.element_size()
        out["weight_bytes_per_token"] = int(nb)
        V = model.config.vocab_size
        kw = {}
        params = inspect.signature(model.forward).parameters
        if "logits_to_keep" in params:
            kw["logits_to_keep"] = 1
        elif "num_logits_to_keep" in params:
            kw["num_logits_to_keep"] = 1
        g = torch.Generator().manual_seed(0)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        def run_pp():
            ids = torch.randint(0, V, (1, pp), generator=g).to(device)
            sync()
            t = time.perf_counter()
            model(ids, use_cache=True, **kw)
            sync()
            return pp / (time.perf_counter() - t)

        def run_tg(n):
            ids = torch.randint(0, V, (1, 1), generator=g).to(device)
            o = model(ids, use_cache=True, **kw)
            tok = o.logits[:, -1].argmax(-1, keepdim=True)
            sync()
            t = time.perf_counter()
            for _ in range(n):
                o = model(tok, past_key_values=o.past_key_values, use_cache=True, **kw)
                tok = o.logits[:, -1].argmax(-1, keepdim=True)
            sync()
            return n / (time.perf_counter() - t)

        deadline = time.perf_counter() + per_item_s
        with torch.inference_mode():
            if pp:
                run_pp()
                s = []
                for _ in range(reps_pp):
                    s.append(run_pp())
                    if time.perf_counter() > deadline:
                        break
                out["pp_tok_s"], out["pp_samples"] = _median(s), s
            if tg:
                run_tg(min(tg, 8))
                s = []
                for _ in range(reps_tg):
                    s.append(run_tg(tg))
                    if time.perf_counter() > deadline + per_item_s / 2:
                        break
                out["tg_tok_s"], out["tg_samples"] = _median(s), s
    finally:
        del model
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


# --------------------------------------------------------------------------------------------- report

def _fmt(x, nd=0):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x:,.{nd}f}"


def print_table(report, file=sys.stdout):
    dev = report["device"].get("name", report["device"]["device"])
    ceil = report["copy_ceiling"].get("gb_s")
    pp, tg = report["settings"]["pp"], report["settings"]["tg"]
    print(f"\ninferlab end-to-end on {dev} (pp{pp} / tg{tg} tok/s; median of reps). "
          f"Copy ceiling {_fmt(ceil)} GB/s (read + write).", file=file)
    print("llama.cpp and HF reference columns: the issue's numbers, measured on an H200.", file=file)
    hdr = ["file", f"pp{pp} inferlab", "pp llama.cpp", f"pp HF", "pp HF ref",
           f"tg{tg} inferlab", "tg llama.cpp", "tg HF", "tg HF ref", "GB/tok", "GB/s", "% ceil"]
    rows = []
    for r in report["results"]:
        il = r.get("inferlab") or {}
        hf = report["hf"].get(r["model"]) or {}
        ref = r.get("llama_cpp_h200") or [None, None]
        href = HF_H200.get(r["model"], (None, None))
        bw = r.get("bandwidth") or {}
        status = r.get("error") or r.get("skipped")
        rows.append([
            f"{r['label']} {r['qtype']}",
            _fmt(il.get("pp_tok_s")) if not status else ("skipped" if r.get("skipped") else "error"),
            _fmt(ref[0]), _fmt(hf.get("pp_tok_s")), _fmt(href[0]),
            _fmt(il.get("tg_tok_s"), 1) if not status else "", _fmt(ref[1]), _fmt(hf.get("tg_tok_s"), 1),
            _fmt(href[1]),
            _fmt((r.get("weight_bytes_per_token") or 0) / 1e9, 3) if r.get("weight_bytes_per_token") else "-",
            _fmt(bw.get("achieved_gb_s")), _fmt(100 * bw["fraction_of_copy_ceiling"], 1)
            if bw.get("fraction_of_copy_ceiling") is not None else "-",
        ])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(hdr)]
    line = " | ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(hdr, widths)))
    print(line, file=file)
    print("-" * len(line), file=file)
    for row in rows:
        print(" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))),
              file=file)
    for r in report["results"]:
        if r.get("error"):
            print(f"  {r['label']} {r['qtype']}: error: {r['error']}", file=file)
        elif r.get("skipped"):
            print(f"  {r['label']} {r['qtype']}: skipped: {r['skipped']}", file=file)
    for m, hf in report["hf"].items():
        if hf and hf.get("error"):
            print(f"  HF {m}: error: {hf['error']}", file=file)
    print(f"total {report['elapsed_s']:.0f} s", file=file)


def write_png(report, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log(f"matplotlib is not installed: skipping the chart {path}")
        return False
    rows = [r for r in report["results"] if r.get("inferlab")]
    if not rows:
        log("no results to chart")
        return False
    labels = [f"{r['label']}\n{r['qtype']}" for r in rows]
    pp, tg = report["settings"]["pp"], report["settings"]["tg"]
    series = [
        ("inferlab", "#1f77b4", lambda r, k: (r.get("inferlab") or {}).get(f"{k}_tok_s")),
        ("llama.cpp (H200, issue)", "#ff7f0e",
         lambda r, k: (r.get("llama_cpp_h200") or [None, None])[0 if k == "pp" else 1]),
        ("HF transformers bf16 eager", "#2ca02c", lambda r, k: (report["hf"].get(r["model"]) or {}).get(f"{k}_tok_s")),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 2.2 * len(rows) * 2), 5))
    x = np.arange(len(rows))
    w = 0.8 / len(series)
    for ax, k, title in ((axes[0], "pp", f"prefill pp{pp} (tok/s)"), (axes[1], "tg", f"decode tg{tg} (tok/s)")):
        for j, (name, color, get) in enumerate(series):
            vals = [get(r, k) for r in rows]
            ys = [v if v is not None else 0 for v in vals]
            bars = ax.bar(x + (j - (len(series) - 1) / 2) * w, ys, w, label=name, color=color)
            for b, v in zip(bars, vals):
                if v:
                    ax.annotate(f"{v:,.0f}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                                va="bottom", fontsize=6, rotation=90)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    dev = report["device"].get("name", report["device"]["device"])
    fig.suptitle(f"inferlab vs llama.cpp vs transformers, random-weight GGUFs (inferlab/HF on {dev})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", metavar="OUT.json", help="write the results here")
    p.add_argument("--png", metavar="OUT.png", help="write a bar chart here (needs matplotlib)")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (about half the time)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help=f"comma-separated, from: {', '.join(MODELS)} (default: %(default)s)")
    p.add_argument("--qtypes", default=",".join(DEFAULT_QTYPES), help="comma-separated (default: %(default)s)")
    p.add_argument("--pp", type=int, default=512, help="prompt tokens (default 512)")
    p.add_argument("--tg", type=int, default=128, help="decode steps (default 128)")
    p.add_argument("--reps", type=int, default=None, help="repetitions per measurement (default 5, quick 3)")
    p.add_argument("--no-hf", action="store_true", help="skip HF transformers")
    p.add_argument("--int8", action="store_true",
                   help="also time decode with int8_activations=True (quantized files)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for the whole run (default 450, quick 300)")
    p.add_argument("--tmpdir", default=None, help="where to write the GGUF files (default: most suitable)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    a.models = [m.strip() for m in a.models.split(",") if m.strip()]
    for m in a.models:
        if m not in MODELS:
            p.error(f"--models: unknown model {m!r}; choose from {', '.join(MODELS)}")
    a.qtypes = [q.strip() for q in a.qtypes.split(",") if q.strip()]
    if a.pp < 0 or a.tg < 0 or (a.pp == 0 and a.tg == 0):
        p.error("--pp and --tg must be >= 0 and not both 0")
    if a.reps is not None and a.reps < 1:
        p.error("--reps must be >= 1")
    return a


def main(argv=None):
    args = parse_args(argv)
    import inferlab

    try:
        import gguf  # noqa: F401  (inferlab.testing writes the files with it)
    except ImportError:
        raise SystemExit("benchmarks/e2e.py needs the 'gguf' package to write its random-weight files: "
                         "pip install gguf (on a machine without network, carry its wheel in .whl/)")
    from inferlab import testing

    for q in args.qtypes:
        if q not in testing.QTYPES:
            raise SystemExit(f"--qtypes: unknown type {q!r}; choose from {', '.join(testing.QTYPES)}")
    device = args.device
    if device == "auto":
        device = "cuda" if inferlab.cuda_available() else "cpu"
    if device == "cuda" and not inferlab.cuda_available():
        raise SystemExit("--device cuda: no usable CUDA GPU (or inferlab was built without CUDA)")
    budget = Budget(args.budget or (300 if args.quick else 450))
    reps = args.reps or (3 if args.quick else 5)
    reps_hf_tg = 1 if args.quick else 3

    want_hf = not args.no_hf
    hf_reason = None
    if want_hf:
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
            if device == "cuda" and not torch.cuda.is_available():
                hf_reason = "torch cannot see the GPU"
        except ImportError as e:
            hf_reason = f"not installed ({e.name})"
        if hf_reason:
            log(f"HF transformers skipped: {hf_reason}")
            want_hf = False

    report = {
        "benchmark": "e2e", "device": device_info(device),
        "settings": {"pp": args.pp, "tg": args.tg, "reps": reps, "reps_hf_tg": reps_hf_tg, "quick": args.quick,
                     "seed": args.seed, "budget_s": budget.seconds, "models": args.models, "qtypes": args.qtypes},
        "definitions": {
            "pp_tok_s": f"{args.pp} / time of one forward pass over a {args.pp}-token prompt from an empty context",
            "tg_tok_s": f"{args.tg} / time of {args.tg} sequential one-token decode steps (batch 1)",
            "statistic": "median over repetitions, each after a warm-up",
            "weight_bytes_per_token": "bytes of the file's tensors read per decode step (untied token embedding "
                                      "and position table excluded: one row of each is read)",
            "bandwidth": "weight_bytes_per_token * tg_tok_s, against the device-to-device copy ceiling "
                         "(bytes read + written per second)",
        },
        "reference": {"llama_cpp_h200": {f"{m} {q}": list(v) for (m, q), v in LLAMA_CPP_H200.items()},
                      "hf_eager_bf16_h200": {m: list(v) for m, v in HF_H200.items()},
                      "note": "from the issue: llama.cpp (February 2025 build) and transformers on an H200"},
        "copy_ceiling": {}, "results": [], "hf": {}, "hf_skipped": hf_reason,
    }
    log(f"device: {report['device'].get('name')} ({device}); budget {budget.seconds:.0f} s; reps {reps}")
    t = time.perf_counter()
    report["copy_ceiling"] = copy_ceiling(device)
    log(f"copy ceiling: {_fmt(report['copy_ceiling'].get('gb_s'))} GB/s ({time.perf_counter() - t:.1f} s)")

    items = [(m, q) for m in args.models for q in args.qtypes]
    # HF once per model, from the F16 file when it is in the list (else the model's first file).
    hf_from = {}
    for m, q in items:
        if m not in hf_from or q == "F16":
            hf_from[m] = q
    # bytes/s of write_random_gguf per file type: float files are written several times faster than
    # quantized ones (random blocks are built in NumPy), so a rate measured on one type misjudges another.
    write_rate = {}
    for idx, (m, q) in enumerate(items):
        arch, preset, label = MODELS[m]
        row = {"model": m, "label": label, "arch": arch, "preset": preset, "qtype": q,
               "llama_cpp_h200": list(LLAMA_CPP_H200[(m, q)]) if (m, q) in LLAMA_CPP_H200 else None}
        report["results"].append(row)
        est = estimate_file_bytes(arch, preset, q)
        do_hf = want_hf and hf_from.get(m) == q
        # Time for this file: writing + load + measurements; leave room for the files after it.
        est_write = est / write_rate.get(q, _WRITE_RATE_GUESS.get(q, 20e6))
        n_left = len(items) - idx
        est_item = est_write + est / 2e9 + (25 if device == "cuda" else 60) + (40 if do_hf else 0)
        if budget.left() < est_item:
            row["skipped"] = f"time budget ({budget.left():.0f} s left, about {est_item:.0f} s needed)"
            log(f"[{m} {q}] {row['skipped']}")
            continue
        per_item_s = max(5.0, (budget.left() - est_item) / n_left / 2)
        tmp = pick_tmpdir(est, args.tmpdir)
        path = os.path.join(tmp, f"inferlab-e2e-{os.getpid()}-{m}-{q}.gguf")
        try:
            n_ctx_file = None
            need_ctx = args.pp + args.tg + 8
            if testing.preset_config(arch, preset)["n_ctx"] < need_ctx:
                n_ctx_file = 256 * math.ceil(need_ctx / 256)
            t = time.perf_counter()
            testing.write_random_gguf(path, arch, preset, qtype=q, seed=args.seed, n_ctx=n_ctx_file)
            row["write_s"] = time.perf_counter() - t
            size = os.path.getsize(path)
            write_rate[q] = size / max(row["write_s"], 1e-3)
            row["weight_bytes_per_token"], row["file_bytes"] = weight_bytes_per_token(path)
            log(f"[{m} {q}] wrote {size / 1e9:.2f} GB in {row['write_s']:.1f} s to {tmp}")
            try:
                t = time.perf_counter()
                row["inferlab"] = bench_inferlab(path, device, args.pp, args.tg, reps, reps, budget, per_item_s)
                if args.int8 and q != "F16" and args.tg:
                    # decode only, with the opt-in int8 activations (quantized weights)
                    r8 = bench_inferlab(path, device, 0, args.tg, reps, reps, budget, per_item_s,
                                        int8_activations=True)
                    row["inferlab"]["tg_int8_tok_s"] = r8.get("tg_tok_s")
                    log(f"[{m} {q}] int8 activations: tg{args.tg} {r8.get('tg_tok_s', float('nan')):.1f} tok/s")
                il = row["inferlab"]
                log(f"[{m} {q}] inferlab pp {_fmt(il.get('pp_tok_s'))} tok/s, tg {_fmt(il.get('tg_tok_s'), 1)} "
                    f"tok/s ({time.perf_counter() - t:.1f} s)")
                ceil = report["copy_ceiling"].get("gb_s")
                if il.get("tg_tok_s"):
                    ach = row["weight_bytes_per_token"] * il["tg_tok_s"] / 1e9
                    row["bandwidth"] = {"achieved_gb_s": ach,
                                        "fraction_of_copy_ceiling": ach / ceil if ceil else None}
            except Exception as e:  # noqa: BLE001 - report and go on with the next file
                row["error"] = f"{type(e).__name__}: {e}"
                row["traceback"] = traceback.format_exc(limit=6)
                log(f"[{m} {q}] inferlab failed: {row['error']}")
            if do_hf:
                try:
                    t = time.perf_counter()
                    hf = bench_hf(path, device, args.pp, args.tg, reps, reps_hf_tg, per_item_s)
                    hf["from_qtype"] = q
                    ceil = report["copy_ceiling"].get("gb_s")
                    if hf.get("tg_tok_s"):
                        ach = hf["weight_bytes_per_token"] * hf["tg_tok_s"] / 1e9
                        hf["bandwidth"] = {"achieved_gb_s": ach, "fraction_of_copy_ceiling": ach / ceil if ceil else None}
                    report["hf"][m] = hf
                    log(f"[{m} {q}] HF pp {_fmt(hf.get('pp_tok_s'))} tok/s, tg {_fmt(hf.get('tg_tok_s'), 1)} tok/s "
                        f"({time.perf_counter() - t:.1f} s)")
                except Exception as e:  # noqa: BLE001
                    report["hf"][m] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=6)}
                    log(f"[{m} {q}] HF failed: {report['hf'][m]['error']}")
        except Exception as e:  # noqa: BLE001 - e.g. the writer failed
            row["error"] = f"{type(e).__name__}: {e}"
            row["traceback"] = traceback.format_exc(limit=6)
            log(f"[{m} {q}] failed: {row['error']}")
        finally:
            for p in (path, path + ".tmp"):
                if os.path.exists(p):
                    os.unlink(p)
            gc.collect()
    report["elapsed_s"] = budget.elapsed()
    print_table(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
        log(f"wrote {args.json}")
    if args.png and write_png(report, args.png):
        log(f"wrote {args.png}")
    ok = any(r.get("inferlab") for r in report["results"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
