"""The README's examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"<!-- test: run -->\s*```(\w+)\n(.*?)```", re.S)


def _blocks(language: str) -> list[str]:
    return [code for lang, code in _BLOCK.findall(README.read_text()) if lang == language]


def test_readme_has_runnable_examples() -> None:
    assert _blocks("python") and _blocks("bash")
    text = README.read_text()
    assert "make demo" in text and "make test" in text


@pytest.mark.parametrize("code", _blocks("python"))
def test_python_examples(code: str) -> None:
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})


@pytest.mark.parametrize("code", _blocks("bash"))
def test_shell_examples(code: str, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audit chain intact" in result.stdout
