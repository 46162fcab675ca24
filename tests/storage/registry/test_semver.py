"""Semantic version parsing and bumping."""

from __future__ import annotations

import pytest

from storage.errors import ValidationError
from storage.registry.semver import SemVer


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("1.2.3", SemVer(1, 2, 3)), ("v0.0.1", SemVer(0, 0, 1)), ("2.0.0-rc.1", SemVer(2, 0, 0, "rc.1"))],
)
def test_parse(text: str, parsed: SemVer) -> None:
    assert SemVer.parse(text) == parsed


@pytest.mark.parametrize("text", ["1.2", "1.2.3.4", "01.2.3", "a.b.c", "1.2.3-", "", "1.2.3 beta"])
def test_malformed(text: str) -> None:
    with pytest.raises(ValidationError, match="malformed"):
        SemVer.parse(text)


def test_bump_and_order() -> None:
    v = SemVer.parse("1.4.2-rc.1")
    assert (str(v.bump("major")), str(v.bump("minor")), str(v.bump("patch"))) == ("2.0.0", "1.5.0", "1.4.3")
    assert SemVer.parse("1.0.0-rc.1").sort_key() < SemVer.parse("1.0.0").sort_key()
