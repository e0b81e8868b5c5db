"""The README's API tour runs as written (its first ```python block)."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_tour_runs(capsys):
    if not README.exists():  # pragma: no cover - tests run from an sdist without the README
        pytest.skip("README.md is not beside the tests")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md has no python block"
    exec(compile(blocks[0], str(README), "exec"), {"__name__": "readme_tour"})
    assert "simd path" in capsys.readouterr().out
