"""The model cache: default references, alias moves, checksums, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.models import ModelCache, ModelLoadError
from serving.testing import demo_files, demo_frame, register_demo
from storage.errors import NotFoundError, ValidationError
from storage.registry.core import Registry
from storage.registry.model_format import signature_for


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def reg(registry: Registry) -> Registry:
    for _ in range(3):
        register_demo(registry, "fraud", "sklearn")
    return registry


def test_default_is_champion_then_production_then_latest(reg: Registry) -> None:
    cache = ModelCache(reg, refresh_s=0)
    assert cache.get("fraud").version == 3
    reg.transition_stage("fraud", 1, "staging")
    reg.transition_stage("fraud", 1, "production")
    assert cache.get("fraud").version == 1
    reg.set_alias("fraud", "champion", 2)
    assert cache.get("fraud").version == 2
    assert cache.get("fraud", "@champion").version == 2 and cache.get("fraud", "production").version == 1
    assert cache.get("fraud", 3).version == 3 and cache.get("fraud", "3").version == 3


def test_alias_move_is_seen_after_refresh(reg: Registry) -> None:
    clock = Clock()
    loads: list[int] = []
    cache = ModelCache(reg, refresh_s=5, clock=clock, on_load=lambda m: loads.append(m.version))
    reg.set_alias("fraud", "champion", 1)
    first = cache.get("fraud", "@champion")
    assert first.version == 1 and cache.peek("fraud", "@champion") is first
    reg.set_alias("fraud", "champion", 2)
    clock.now = 4.9
    assert cache.get("fraud", "@champion").version == 1  # within refresh_s: not re-resolved
    clock.now = 5.1
    assert cache.peek("fraud", "@champion") is None  # expired: the next get re-resolves
    assert cache.get("fraud", "@champion").version == 2
    assert cache.get("fraud", 1) is first  # still loaded, not loaded again
    assert loads == [1, 2]


def test_unknown_model_and_version(reg: Registry) -> None:
    cache = ModelCache(reg)
    with pytest.raises(NotFoundError, match="model 'nope' does not exist"):
        cache.get("nope")
    with pytest.raises(NotFoundError, match="has no version 9"):
        cache.get("fraud", 9)
    with pytest.raises(NotFoundError, match="no alias 'gone'"):
        cache.get("fraud", "@gone")
    with pytest.raises(ValidationError, match="malformed"):
        cache.get("fraud", "1.2")
    reg.create_model("empty")
    with pytest.raises(NotFoundError, match="model 'empty' has no versions"):
        cache.get("empty")


def test_changed_artifact_bytes_are_refused(reg: Registry) -> None:
    mv = reg.get_version("fraud", 3)
    sha = mv.artifacts[0].sha256
    stored = Path(reg.artifacts.path_of(sha))
    stored.chmod(0o644)
    stored.write_bytes(b"tampered")
    with pytest.raises(ModelLoadError, match="fraud version 3 cannot be served"):
        ModelCache(reg).get("fraud", 3)


def test_unservable_versions_are_load_errors(reg: Registry) -> None:
    frame_sig = signature_for(demo_frame(2), "classification", [0, 1])
    reg.create_version("fraud", framework="custom", artifacts={"model.pkl": b"x"}, signature=frame_sig)
    reg.create_version("fraud", framework="sklearn", artifacts=demo_files("sklearn"))  # no signature
    cache = ModelCache(reg)
    with pytest.raises(ModelLoadError, match="explicit trust flag"):
        cache.get("fraud", 4)
    with pytest.raises(ModelLoadError, match="no input signature"):
        cache.get("fraud", 5)
    with pytest.raises(ModelLoadError, match="explicit trust flag"):  # remembered, not reloaded
        cache.get("fraud", 4)
