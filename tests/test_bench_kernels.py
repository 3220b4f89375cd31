"""benchmarks/kernels.py keeps working: a CPU smoke run of the harness (the GPU numbers come from the lead's runs)."""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_kernel_benchmark_cpu_smoke(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("kernels", None)
    import kernels  # benchmarks/kernels.py

    out = tmp_path / "bench.json"
    assert kernels.main(["--cpu-smoke", "--only", "basic", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["ceiling_gbps"] > 0
    ops = {r["op"] for r in data["results"]}
    for op in ["rms_norm", "add_rms_norm", "layer_norm", "rope neox", "add", "swiglu", "swiglu_fused", "gelu",
               "softmax", "embedding", "embedding_q", "sample greedy"]:
        assert op in ops
    assert all(r["ms"] > 0 and r["gbps"] > 0 for r in data["results"])


def test_decode_fit_recovers_cost_and_rate(monkeypatch):
    """benchmarks/decode_fit.py's fit: times made from a known per-call cost and rate give them back."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("decode_fit", None)
    import decode_fit

    k, ns, t0_us, rate = 4096, [2112, 4224, 8448, 16896], 3.25, 850.0  # us, weights per ns
    ms = [(t0_us + n * k / rate / 1e3) / 1e3 for n in ns]
    t0, r = decode_fit.fit(ns, k, ms)
    assert abs(t0 - t0_us) < 1e-6 and abs(r - rate) / rate < 1e-9


def test_trace_decode_parses_kernel_traces(monkeypatch):
    """benchmarks/trace_decode.py's parser: a traced build's printout gives each block's phases and per-chunk
    compute / wait cycles."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("trace_decode", None)
    import trace_decode

    log = "\n".join([
        "=== Q8_0 fold 0 n 16 k 96 call 2",
        "TRACE blk 0 nchunks 3 S 2: issued 100 pdl 120 staged 500 end 2000",
        "TRACE blk 0 chunk 0 ready 600 done 900",
        "TRACE blk 0 chunk 1 ready 1000 done 1400",
        "TRACE blk 0 chunk 2 ready 1600 done 1900",
        "noise",
    ])
    (r,) = trace_decode.parse(log)
    assert (r["case"], r["call"], r["block"], r["chunks"], r["stages"]) == ("Q8_0 fold 0 n 16 k 96", 2, 0, 3, 2)
    assert (r["issued"], r["pdl"], r["staged"], r["end"]) == (100, 120, 500, 2000)
    assert r["compute"] == (300 + 400 + 300) / 3 and r["wait"] == (100 + 200) / 2
