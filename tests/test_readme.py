"""The README's set-up commands are what CI runs and what users type."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _block(text, tag):
    m = re.search(rf"<!-- {tag} -->\s*```\n(.*?)\n```\s*<!-- /{tag} -->", text, re.S)
    assert m, f"README lacks the {tag} block"
    return m.group(1).strip()


def test_readme_has_the_two_commands():
    text = (ROOT / "README.md").read_text()
    main = _block(text, "main-command")
    test = _block(text, "test-command")
    assert 'inferlab generate "Write a haiku about GPUs."' in main
    assert "pytest" in test
    # .ci/run extracts and runs exactly the test block
    assert "test-command" in (ROOT / ".ci" / "run").read_text()
