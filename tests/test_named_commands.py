"""Every ``mlops`` command the guides and the compliance remedies name exists, and parses as written.

A shell line in a guide's code block, or an inline `` `mlops ...` ``, is parsed
by the real command (its arguments and options checked, nothing run); one
holding a placeholder (``...``, ``<id>``, ``$VAR``, ``MODEL``, ``a / b``) must
name an existing command whose ``--help`` works. Every ``mlops ...`` a
compliance remedy names gets the same ``--help`` check, so a remedy never
tells people to run a command that does not exist. (Blocks marked
``<!-- test: run -->`` are also run in full by tests/test_readme.py.)
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from mlops.cli import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RULES = sorted((ROOT / "tasks" / "governance" / "compliance_rules").glob("*.yaml"))
_FENCE = re.compile(r"```(bash|sh|shell|console)\n(.*?)```", re.S)
_INLINE = re.compile(r"`(mlops [a-z][^`]*)`")
_MENTION = re.compile(r"\bmlops((?: [a-z][a-z0-9-]*)+)")
ROOT_COMMAND: Any = get_command(app)


def is_group(command: Any) -> bool:
    """A command with sub-commands (typer carries its own click, so no isinstance on click's classes)."""
    return hasattr(command, "list_commands")


def _context() -> Any:
    return ROOT_COMMAND.context_class(ROOT_COMMAND, info_name="mlops")


def resolve(words: list[str]) -> tuple[list[str], list[str]]:
    """The command path at the start of ``words`` and what follows it."""
    ctx = _context()
    command: Any = ROOT_COMMAND
    path: list[str] = []
    rest = list(words)
    while rest and is_group(command):
        found = command.get_command(ctx, rest[0])
        if found is None:
            break
        command = found
        path.append(rest.pop(0))
    return path, rest


def leaf(path: list[str]) -> Any:
    ctx = _context()
    command: Any = ROOT_COMMAND
    for word in path:
        command = command.get_command(ctx, word)
    return command


def shell_lines(text: str) -> list[str]:
    """``mlops`` command lines of a guide's shell blocks (continuations joined, prompts dropped)."""
    found = []
    for _lang, body in _FENCE.findall(text):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ").strip()
            if line.startswith("mlops "):
                found.append(line)
    return found


def _cases() -> list[Any]:
    cases = []
    for page in PAGES:
        text = page.read_text()
        for i, line in enumerate(shell_lines(text)):
            cases.append(pytest.param(line, True, id=f"{page.name}-block-{i}"))
        for i, span in enumerate(_INLINE.findall(text)):
            cases.append(pytest.param(span, False, id=f"{page.name}-inline-{i}"))
    return cases


def _help(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, f"mlops {' '.join(path)} --help: {result.output}"


_SHELL_OPERATORS = {"|", "||", "&&", "&", ";", ">", ">>", "2>&1", "<"}
_UPPER = re.compile(r"^[A-Z][A-Z0-9_]*$")


def is_placeholder(word: str) -> bool:
    """``...``, ``<id>``, ``$VAR``, ``MODEL``, ``a / b`` alternatives: words a reader fills in."""
    return "..." in word or word.startswith("<") or "$" in word or word == "/" or bool(_UPPER.match(word))


def command_words(command: str) -> list[str]:
    """The words after ``mlops``, up to the first shell operator (a pipe, a redirection, ``&``)."""
    words = []
    for word in shlex.split(command, comments=True)[1:]:
        if word in _SHELL_OPERATORS or word.startswith((">", "2>")):
            break
        words.append(word)
    return words


def option_names(command: Any) -> set[str]:
    names = [n for p in command.params for n in (*getattr(p, "opts", []), *getattr(p, "secondary_opts", []))]
    return {name for name in names if name.startswith("-")}


@pytest.mark.parametrize(("command", "in_block"), _cases())
def test_guide_commands_exist_and_parse(command: str, in_block: bool) -> None:
    path, rest = resolve(command_words(command))
    assert path, f"`{command}` names no mlops command"
    _help(path)
    if is_group(leaf(path)):
        return
    named = {w.split("=")[0] for w in rest if w.startswith("--") and w != "--help"}
    unknown = named - option_names(leaf(path))
    assert not unknown, f"`{command}`: mlops {' '.join(path)} has no option {', '.join(sorted(unknown))}"
    # An inline mention names a command or an option (`mlops approve`, `--reviewer`); one that gives an
    # option its value reads as an invocation, and must parse like a line of a code block.
    valued = any(
        w.startswith("--") and i + 1 < len(rest) and not rest[i + 1].startswith("-")
        for i, w in enumerate(rest)
    )
    if not (in_block or valued) or "--help" in rest or any(is_placeholder(w) for w in rest):
        return
    try:  # parse the arguments and options as the command would; nothing runs
        leaf(path).make_context(" ".join(["mlops", *path]), list(rest))
    except Exception as exc:  # typer's click raises its own UsageError subclasses
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        pytest.fail(f"`{command}` does not parse: {message}")


def remedies() -> list[Any]:
    found = []
    for path in RULES:
        for rule in yaml.safe_load(path.read_text())["rules"]:
            for mention in _MENTION.findall(rule.get("remedy", "")):
                found.append(pytest.param(mention.split(), id=f"{rule['id']}:{mention.strip()}"))
    return found


def test_remedies_name_commands() -> None:
    assert len(remedies()) >= 10


@pytest.mark.parametrize("words", remedies())
def test_every_remedy_names_a_command_that_exists(words: list[str]) -> None:
    path, _rest = resolve(words)
    assert path and not is_group(leaf(path)), f"mlops {' '.join(words)}: no such command"
    _help(path)


def test_the_risk_remedy_runs_as_written(tmp_path: Path) -> None:
    """The EU AI Act remedy, followed literally, declares the risk level."""
    runner = CliRunner()
    assert runner.invoke(app, ["registry", "create", "m"]).exit_code == 0
    args = ["registry", "tag", "m", "domain=health", "use_case=patient triage"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, ["risk", "m", "--json"])
    assert result.exit_code == 0 and '"high"' in result.stdout
