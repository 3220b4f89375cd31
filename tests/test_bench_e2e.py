"""benchmarks/e2e.py end to end on a tiny random model on the CPU (a smoke run of the GPU benchmark)."""
from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _e2e():
    spec = importlib.util.spec_from_file_location("bench_e2e", ROOT / "benchmarks" / "e2e.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_e2e_smoke_cpu(tmp_path, capsys):
    pytest.importorskip("gguf", reason="the gguf package (needed to write the random-weight files) is missing")
    e2e = _e2e()
    out = tmp_path / "e2e.json"
    rc = e2e.main(["--device", "cpu", "--quick", "--models", "tiny-qwen2,tiny-phi3", "--qtypes", "Q8_0,Q4_K_M",
                   "--pp", "32", "--tg", "8", "--reps", "2", "--no-hf", "--tmpdir", str(tmp_path),
                   "--json", str(out)])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["settings"]["pp"] == 32 and rep["settings"]["tg"] == 8
    assert rep["copy_ceiling"]["gb_s"] > 0
    assert [(r["model"], r["qtype"]) for r in rep["results"]] == [
        ("tiny-qwen2", "Q8_0"), ("tiny-qwen2", "Q4_K_M"), ("tiny-phi3", "Q8_0"), ("tiny-phi3", "Q4_K_M")]
    for r in rep["results"]:
        assert "error" not in r and "skipped" not in r, r
        il = r["inferlab"]
        assert il["pp_tok_s"] > 0 and il["tg_tok_s"] > 0 and len(il["tg_samples"]) >= 1
        assert r["weight_bytes_per_token"] > 0
        assert r["bandwidth"]["achieved_gb_s"] == pytest.approx(r["weight_bytes_per_token"] * il["tg_tok_s"] / 1e9)
    assert not list(tmp_path.glob("*.gguf")), "the benchmark must delete its files"
    table = capsys.readouterr().out
    assert "tiny qwen2 Q8_0" in table and "pp32 inferlab" in table


def test_e2e_rejects_bad_arguments():
    e2e = _e2e()
    with pytest.raises(SystemExit):
        e2e.parse_args(["--models", "gpt5"])
    with pytest.raises(SystemExit):
        e2e.parse_args(["--pp", "0", "--tg", "0"])


def test_e2e_weight_bytes_per_token(tmp_path):
    """Untied embeddings count one row per token; tied ones are read whole by the LM head."""
    pytest.importorskip("gguf", reason="the gguf package is missing")
    from inferlab import GGUFFile
    from inferlab.testing import write_random_gguf

    e2e = _e2e()
    for arch in ("qwen2", "phi3"):  # qwen2 tiny is tied, phi3 tiny is not
        p = write_random_gguf(tmp_path / f"{arch}.gguf", arch, "tiny", qtype="F16")
        with GGUFFile(p) as f:
            ts = {t.name: t for t in f.tensors}
        total = sum(t.nbytes for t in ts.values())
        got, size = e2e.weight_bytes_per_token(p)
        assert size >= total
        if "output.weight" in ts:
            emb = ts["token_embd.weight"]
            assert got == total - emb.nbytes + emb.nbytes // emb.shape[1]
        else:
            assert got == total
