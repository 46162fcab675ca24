"""The README's and the guides' examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"<!-- test: run -->\s*```(\w+)\n(.*?)```", re.S)


def _blocks(language: str) -> list[pytest.ParameterSet]:
    return [
        pytest.param(page, code, id=f"{page.name}-{index}")
        for page in PAGES
        for index, (lang, code) in enumerate(_BLOCK.findall(page.read_text()))
        if lang == language
    ]


def test_readme_has_runnable_examples() -> None:
    assert _blocks("python") and _blocks("bash")
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def test_every_guide_is_linked_from_the_readme() -> None:
    text = README.read_text()
    missing = [page.name for page in PAGES[1:] if f"docs/{page.name}" not in text]
    assert not missing, f"guides not linked from README.md: {missing}"


@pytest.mark.parametrize(("page", "code"), _blocks("python"))
def test_python_examples(page: Path, code: str) -> None:
    exec(compile(code, str(page), "exec"), {"__name__": "readme"})


@pytest.mark.parametrize(("page", "code"), _blocks("bash"))
def test_shell_examples(page: Path, code: str, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{page.name}:\n{result.stdout}{result.stderr}"
    if "mlops audit verify" in code:
        assert "audit chain intact" in result.stdout
