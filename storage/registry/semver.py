"""Semantic versions of model versions (``MAJOR.MINOR.PATCH[-PRE]``).

Example:
    >>> from storage.registry.semver import SemVer
    >>> SemVer.parse("1.4.2").bump("minor")
    SemVer(major=1, minor=5, patch=0, pre='')
    >>> str(SemVer.parse("v2.0.0-rc.1"))
    '2.0.0-rc.1'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from storage.errors import ValidationError

Bump = Literal["major", "minor", "patch"]
BUMPS: tuple[Bump, ...] = ("major", "minor", "patch")

_PATTERN = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?$"
)


@dataclass(frozen=True, order=True)
class SemVer:
    """A parsed semantic version; ``pre`` is the pre-release label or ''."""

    major: int
    minor: int
    patch: int
    pre: str = ""

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """Parse ``1.2.3`` / ``v1.2.3`` / ``1.2.3-rc.1``; raise ValidationError otherwise."""
        match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValidationError(
                f"semantic version {text!r} is malformed: expected MAJOR.MINOR.PATCH, e.g. 1.4.0"
            )
        major, minor, patch, pre = match.groups()
        return cls(int(major), int(minor), int(patch), pre or "")

    def bump(self, part: Bump) -> SemVer:
        """The next version after bumping ``part`` (pre-release dropped)."""
        if part == "major":
            return SemVer(self.major + 1, 0, 0)
        if part == "minor":
            return SemVer(self.major, self.minor + 1, 0)
        if part == "patch":
            return SemVer(self.major, self.minor, self.patch + 1)
        raise ValidationError(f"bump {part!r} is not one of {', '.join(BUMPS)}")

    def sort_key(self) -> tuple[int, int, int, int, str]:
        """Orders pre-releases before their release, as SemVer 2.0 says."""
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, self.pre)

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return f"{base}-{self.pre}" if self.pre else base
