"""The README's code runs as written: every ```python block is a whole script whose first
line is ``# NAME.py — run: python NAME.py``; each is saved as NAME.py and run in its own
process, and what its ``print(...)  # expected`` lines promise must appear."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(# (\w+)\.py — run: [^\n]*\n.*?)```", README.read_text(), re.S)


def test_every_python_block_of_the_readme_is_runnable() -> None:
    blocks = re.findall(r"```python\n([^\n]*)", README.read_text())
    assert blocks, "the README has no ```python block"
    fragments = [first for first in blocks if not re.match(r"# \w+\.py — run: ", first)]
    assert not fragments, f"README blocks that are not runnable scripts: {fragments}"


@pytest.mark.parametrize(("code", "name"), BLOCKS, ids=[name for _, name in BLOCKS])
def test_a_readme_block_runs_as_written(code: str, name: str, tmp_path: Path) -> None:
    script = tmp_path / f"{name}.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    expected = re.findall(r"print\(.*\)\s+# (.+)", code)
    for line in expected:
        assert line in done.stdout, f"{name}.py printed {done.stdout!r}, not {line!r}"
