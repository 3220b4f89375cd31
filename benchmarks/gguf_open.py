#!/usr/bin/env python3
"""Time opening a ~1 GB GGUF file (header, metadata and tensor table) with inferlab.GGUFFile.

The file looks like a small llama model: ~300 tensors (Q4_K, Q6_K, F32), a 50k-token vocabulary with
scores, token types and merges. Opening must take < 50 ms and copy no tensor data: the file is
memory-mapped and only the header is read, which the page-fault and RSS counts show.

    python3 benchmarks/gguf_open.py [--size-gb 1.0] [--path FILE] [--keep] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import struct
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from gguf_builder import ARRAY, FLOAT32, INT32, STRING, UINT32, GGML_TYPES, enc_payload, enc_str  # noqa: E402

LIMIT_MS = 50.0


def model_layout(target_bytes: int):
    """Tensor list [(name, dims ggml order, type)] of a llama-like model of about target_bytes."""
    d, ffn, vocab = 2048, 5632, 50304

    def nbytes(dims, t):
        _, block, size = GGML_TYPES[t]
        n = 1
        for x in dims:
            n *= x
        return n // block * size

    layer = [("attn_norm.weight", [d], "F32"), ("attn_q.weight", [d, d], "Q4_K"),
             ("attn_k.weight", [d, d // 4], "Q4_K"), ("attn_v.weight", [d, d // 4], "Q6_K"),
             ("attn_output.weight", [d, d], "Q4_K"), ("ffn_norm.weight", [d], "F32"),
             ("ffn_gate.weight", [d, ffn], "Q4_K"), ("ffn_up.weight", [d, ffn], "Q4_K"),
             ("ffn_down.weight", [ffn, d], "Q6_K")]
    fixed = [("token_embd.weight", [d, vocab], "Q6_K"), ("output_norm.weight", [d], "F32"),
             ("output.weight", [d, vocab], "Q6_K")]
    per_layer = sum(nbytes(dims, t) for _, dims, t in layer)
    n_layers = max(1, (target_bytes - sum(nbytes(dims, t) for _, dims, t in fixed)) // per_layer)
    tensors = fixed[:1]
    for i in range(n_layers):
        tensors += [(f"blk.{i}.{n}", dims, t) for n, dims, t in layer]
    tensors += fixed[1:]
    return [(n, dims, t, nbytes(dims, t)) for n, dims, t in tensors], n_layers, (d, ffn, vocab)


def write_file(path: str, target_bytes: int) -> dict:
    tensors, n_layers, (d, ffn, vocab) = model_layout(target_bytes)
    rng = np.random.default_rng(0)
    tokens = [f"tok{i}_" + "".join(chr(97 + (i * 7 + k) % 26) for k in range(i % 9)) for i in range(vocab)]
    merges = [f"{tokens[i]} {tokens[i + 1]}" for i in range(vocab - 1)]
    kv = [("general.architecture", STRING, "llama"), ("general.name", STRING, "open-benchmark"),
          ("general.alignment", UINT32, 32), ("llama.block_count", UINT32, n_layers),
          ("llama.embedding_length", UINT32, d), ("llama.feed_forward_length", UINT32, ffn),
          ("llama.attention.head_count", UINT32, 32), ("llama.attention.head_count_kv", UINT32, 8),
          ("llama.context_length", UINT32, 4096), ("llama.rope.freq_base", FLOAT32, 10000.0),
          ("llama.attention.layer_norm_rms_epsilon", FLOAT32, 1e-5),
          ("tokenizer.ggml.model", STRING, "gpt2"), ("tokenizer.ggml.pre", STRING, "default"),
          ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
          ("tokenizer.ggml.token_type", ARRAY, (INT32, [1] * vocab)),
          ("tokenizer.ggml.scores", ARRAY, (FLOAT32, [float(-i) for i in range(vocab)])),
          ("tokenizer.ggml.merges", ARRAY, (STRING, merges))]
    head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)))
    for key, vt, v in kv:
        head += enc_str(key) + struct.pack("<I", vt) + enc_payload(vt, v)
    offset = 0
    for name, dims, t, nb in tensors:
        head += enc_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<q", x) for x in dims)
        head += struct.pack("<iQ", GGML_TYPES[t][0], offset)
        offset += -(-nb // 32) * 32
    head += b"\0" * (-len(head) % 32)
    chunk = rng.integers(0, 256, size=1 << 22, dtype=np.uint8).tobytes()  # real (non-sparse) data
    with open(path, "wb") as f:
        f.write(head)
        for name, dims, t, nb in tensors:
            left = -(-nb // 32) * 32
            while left:
                n = min(left, len(chunk))
                f.write(chunk[:n])
                left -= n
    return {"n_tensors": len(tensors), "n_kv": len(kv), "header_bytes": len(head)}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def evict(path: str) -> None:
    """Drops this file's pages from the page cache (this file only), for a cold-ish open."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=1.0)
    ap.add_argument("--path", help="use (or create) this file instead of a temporary one")
    ap.add_argument("--keep", action="store_true", help="keep the generated file")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    import inferlab

    tmpdir = None
    path = args.path
    info = {}
    if path is None:
        tmpdir = tempfile.mkdtemp(prefix="inferlab-gguf-open-")
        path = os.path.join(tmpdir, "model-1gb.gguf")
    if not os.path.exists(path):
        t0 = time.perf_counter()
        info = write_file(path, int(args.size_gb * (1 << 30)))
        print(f"wrote {path} ({os.path.getsize(path) / (1 << 30):.2f} GiB) in {time.perf_counter() - t0:.1f} s")
    try:
        size = os.path.getsize(path)
        # cold-ish: this file's pages evicted first
        evict(path)
        t0 = time.perf_counter()
        f = inferlab.GGUFFile(path)
        cold_ms = (time.perf_counter() - t0) * 1e3
        del f
        # warm: repeated opens; page faults and RSS growth while the file stays open
        times = []
        faults = []
        rss = []
        keep = []
        for _ in range(args.repeat):
            r0, f0 = rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            f = inferlab.GGUFFile(path)
            times.append((time.perf_counter() - t0) * 1e3)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
            rss.append(rss_bytes() - r0)
            keep.append(f)  # keep open so a freed buffer is not reused in the next measurement
        f = keep[-1]
        info.setdefault("n_kv", len(f._core().keys()))
        t0 = time.perf_counter()
        tensors = f.tensors
        table_ms = (time.perf_counter() - t0) * 1e3
        data_bytes = sum(t.nbytes for t in tensors)
        # zero copy: a raw view points into the mapping, at its offset from another
        a, b = f.raw(tensors[0].name), f.raw(tensors[-1].name)
        zero_copy = (b.ctypes.data - a.ctypes.data) == (tensors[-1].offset - tensors[0].offset) and not a.flags.owndata
        del keep, a, b, f
        med = statistics.median(times)
        res = {
            "benchmark": "gguf_open",
            "file_bytes": size,
            "tensor_data_bytes": data_bytes,
            "n_tensors": len(tensors),
            **info,
            "open_ms_median": round(med, 3),
            "open_ms_min": round(min(times), 3),
            "open_ms_max": round(max(times), 3),
            "open_ms_cold": round(cold_ms, 3),
            "tensor_list_ms": round(table_ms, 3),
            "minor_page_faults_median": int(statistics.median(faults)),
            "rss_growth_bytes_median": int(statistics.median(rss)),
            "zero_copy_views": bool(zero_copy),
            "limit_ms": LIMIT_MS,
            "pass": bool(med < LIMIT_MS and cold_ms < LIMIT_MS and zero_copy
                         and statistics.median(rss) < 0.01 * data_bytes),
            "repeat": args.repeat,
        }
        print(f"open {size / (1 << 30):.2f} GiB GGUF ({len(tensors)} tensors, {res.get('n_kv', '?')} keys): "
              f"median {med:.2f} ms, min {min(times):.2f} ms, cold {cold_ms:.2f} ms (limit {LIMIT_MS:.0f} ms)")
        print(f"  page faults per open: {res['minor_page_faults_median']} "
              f"(~{res['minor_page_faults_median'] * 4} KiB touched of {size >> 20} MiB); "
              f"RSS growth {res['rss_growth_bytes_median'] / (1 << 20):.1f} MiB; zero-copy views: {zero_copy}")
        print("PASS" if res["pass"] else "FAIL")
        if args.json:
            with open(args.json, "w") as fo:
                json.dump(res, fo, indent=2)
        return 0 if res["pass"] else 1
    finally:
        if tmpdir is not None and not args.keep:
            os.remove(path)
            os.rmdir(tmpdir)


if __name__ == "__main__":
    sys.exit(main())
