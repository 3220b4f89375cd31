"""Short bounded libFuzzer run of the GGUF parser (fuzz/fuzz_gguf.cpp), plus the regression corpus.

The fuzzer needs clang with libFuzzer (Debian: clang + libclang-rt-dev); the test skips with the
reason when they are missing. Longer runs by hand:
    fuzz/build.sh build/fuzz && python3 fuzz/make_seed_corpus.py build/fuzz/seeds
    build/fuzz/fuzz_gguf -dict=fuzz/gguf.dict -max_total_time=600 build/fuzz/corpus build/fuzz/seeds
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FUZZ_SECONDS = int(os.environ.get("INFERLAB_FUZZ_SECONDS", "30"))
REGRESSIONS = ROOT / "fuzz" / "regressions"


def _build(tmp_dir: pathlib.Path) -> pathlib.Path:
    if shutil.which(os.environ.get("CXX_FUZZ", "clang++")) is None:
        pytest.skip("clang++ not found: the libFuzzer target needs clang (apt-get install clang)")
    out = ROOT / "build" / "fuzz"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError:
        out = tmp_dir
    p = subprocess.run(["bash", str(ROOT / "fuzz" / "build.sh"), str(out)], capture_output=True, text=True,
                       timeout=600)
    if p.returncode != 0:
        if "fuzzer" in p.stderr and ("cannot find" in p.stderr or "not found" in p.stderr):
            pytest.skip("clang has no libFuzzer runtime (apt-get install libclang-rt-dev): " + p.stderr[-300:])
        pytest.fail(f"building the fuzzer failed:\n{p.stdout}\n{p.stderr[-4000:]}")
    return out / "fuzz_gguf"


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("fuzzbuild"))


def test_fuzz_short_run(fuzzer, tmp_path):
    seeds = tmp_path / "seeds"
    subprocess.run([sys.executable, str(ROOT / "fuzz" / "make_seed_corpus.py"), str(seeds)], check=True,
                   capture_output=True)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    dirs = [str(corpus), str(seeds)] + ([str(REGRESSIONS)] if REGRESSIONS.is_dir() else [])
    p = subprocess.run([str(fuzzer), f"-dict={ROOT / 'fuzz' / 'gguf.dict'}", f"-max_total_time={FUZZ_SECONDS}",
                        "-max_len=4096", "-rss_limit_mb=2048", "-timeout=10", "-print_final_stats=1",
                        f"-artifact_prefix={tmp_path}/", *dirs],
                       capture_output=True, text=True, timeout=FUZZ_SECONDS + 300)
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", p.stderr)
    print(f"fuzz_gguf: {runs.group(1) if runs else '?'} executions in {FUZZ_SECONDS} s")
    crashes = sorted(str(x) for x in tmp_path.glob("crash-*")) + sorted(str(x) for x in tmp_path.glob("leak-*")) \
        + sorted(str(x) for x in tmp_path.glob("oom-*")) + sorted(str(x) for x in tmp_path.glob("timeout-*"))
    assert p.returncode == 0 and not crashes, f"fuzzer found a problem: {crashes}\n{p.stderr[-6000:]}"
    assert runs and int(runs.group(1)) > 1000


def test_fuzz_regressions_replay(fuzzer, tmp_path):
    """The malformed corpus and fuzz/regressions (inputs that once crashed) run cleanly under ASan/UBSan."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_gguf_malformed import CASES

    files = sorted(x for x in REGRESSIONS.glob("*") if x.suffix != ".md") if REGRESSIONS.is_dir() else []
    for name, (data, _) in CASES.items():
        f = tmp_path / f"{name}.gguf"
        f.write_bytes(data)
        files.append(f)
    p = subprocess.run([str(fuzzer), *map(str, files)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-6000:]
    assert p.stderr.count("Executed") >= len(files), p.stderr[-2000:]
