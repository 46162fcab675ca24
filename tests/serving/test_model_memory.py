"""The model cache bounded by memory: LRU eviction, size estimates, oversize, settings, CLI, metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
from typer.testing import CliRunner

from mlops.cli import app as cli
from serving.app import create_app
from serving.config import ServeSettings, parse_size
from serving.models import MEMORY_FACTORS, OTHER_MEMORY_FACTOR, ModelCache, estimate_bytes
from serving.server import running_server
from serving.testing import demo_frame, register_demo
from storage.errors import ValidationError
from storage.registry.core import Registry

NAMES = ("a", "b", "c", "d")


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    registry = Registry.open(f"sqlite:///{tmp_path}/m.db", str(tmp_path / "artifacts"))
    for name in NAMES:
        register_demo(registry, name, "onnx")
    return registry


def file_bytes(reg: Registry, name: str, version: int = 1) -> int:
    return sum(a.size for a in reg.get_version(name, version).artifacts)


def one_size(reg: Registry) -> int:
    size = estimate_bytes("onnx", file_bytes(reg, "a"))
    assert all(estimate_bytes("onnx", file_bytes(reg, n)) == size for n in NAMES)  # equal sizes below
    return size


def names(cache: ModelCache) -> list[str]:
    return [m.model for m in cache.loaded()]


def test_least_recently_used_versions_are_evicted_beyond_the_bound(reg: Registry) -> None:
    size = one_size(reg)
    cache = ModelCache(reg, max_memory_bytes=2 * size + size // 2)  # room for two
    first = cache.get("a")
    cache.get("b")
    assert cache.get("a") is first  # a hit: a is now the most recently used
    cache.get("c")
    assert names(cache) == ["a", "c"]  # b, the least recently used, went; not a, loaded first
    stats = cache.stats()
    assert (stats.versions, stats.bytes, stats.loads, stats.evictions) == (2, 2 * size, 3, 1)
    assert cache.peek("a") is first  # peek (the serving path) also counts as a use
    cache.get("b")  # loaded again
    assert names(cache) == ["a", "b"]
    stats = cache.stats()
    assert (stats.loads, stats.evictions, stats.bytes) == (4, 2, 2 * size)
    assert stats.bytes <= stats.max_bytes  # type: ignore[operator]


def test_sizes_are_estimated_from_files_and_runtime(reg: Registry) -> None:
    register_demo(reg, "sk", "sklearn")
    cache = ModelCache(reg, max_memory_bytes=None)
    onnx, sk = cache.get("a"), cache.get("sk")
    factor, fixed = MEMORY_FACTORS["onnx"]
    assert onnx.platform == "onnx" and onnx.size_bytes == int(file_bytes(reg, "a") * factor) + fixed
    assert onnx.size_bytes > file_bytes(reg, "a")
    assert sk.platform == "sklearn"
    assert sk.size_bytes == int(file_bytes(reg, "sk") * OTHER_MEMORY_FACTOR[0]) + OTHER_MEMORY_FACTOR[1]
    assert cache.stats().bytes == onnx.size_bytes + sk.size_bytes
    assert cache.stats().evictions == 0 and cache.stats().max_bytes is None


def test_a_version_larger_than_the_bound_loads_alone_with_a_warning(
    reg: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    size = one_size(reg)
    cache = ModelCache(reg, max_memory_bytes=2 * size)
    cache.get("a")
    cache.get("b")
    assert cache.stats().evictions == 0
    register_demo(reg, "big", "onnx", n_estimators=200)
    big_size = estimate_bytes("onnx", file_bytes(reg, "big"))
    assert big_size > 2 * size
    with caplog.at_level(logging.WARNING, logger="serving.models"):
        big = cache.get("big")
    assert big.size_bytes == big_size and names(cache) == ["big"]
    assert "big version 1" in caplog.text and "larger than the model memory bound" in caplog.text
    cache.get("c")  # the next load evicts it
    assert names(cache) == ["c"] and cache.stats().evictions == 3


def test_count_bound_still_applies(reg: Registry) -> None:
    cache = ModelCache(reg, max_memory_bytes=None, max_loaded=2)
    for name in NAMES:
        cache.get(name)
    assert names(cache) == ["c", "d"] and cache.stats().evictions == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2GiB", 2 * 1024**3), ("512MB", 512 * 10**6), ("64 mi", 64 * 1024**2), ("1.5k", 1500), ("4096", 4096)],
)
def test_sizes_parse_with_units(text: str, expected: int, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_size(text) == expected
    monkeypatch.setenv("MLOPS_SERVE_MAX_MODEL_MEMORY", text)
    assert ServeSettings().max_model_memory == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [("3 furlongs", "is not a size"), ("-1GB", "is not a size"), ("0", "must be above zero")],
)
def test_bad_sizes_name_the_setting_and_value(
    text: str, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match=f"--max-model-memory '{text}' {problem}"):
        parse_size(text, "--max-model-memory")
    monkeypatch.setenv("MLOPS_SERVE_MAX_MODEL_MEMORY", text)
    with pytest.raises(pydantic.ValidationError, match=f"MLOPS_SERVE_MAX_MODEL_MEMORY '{text}' {problem}"):
        ServeSettings()


def test_cli_option_reaches_the_settings_and_bad_values_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ServeSettings] = []
    monkeypatch.setattr("serving.server.serve", seen.append)
    ok = CliRunner().invoke(cli, ["serve", "--no-log", "--max-model-memory", "512MiB"])
    assert ok.exit_code == 0, ok.output
    assert seen[0].max_model_memory == 512 * 1024**2
    bad = CliRunner().invoke(cli, ["serve", "--max-model-memory", "lots"])
    assert bad.exit_code == 2
    unboxed = " ".join(bad.output.replace("│", " ").split())  # the message is wrapped in a box
    assert "--max-model-memory 'lots' is not a size" in unboxed
    monkeypatch.setenv("MLOPS_SERVE_MAX_MODEL_MEMORY", "0")
    env = CliRunner().invoke(cli, ["serve", "--no-log"])
    assert env.exit_code == 1 and "MLOPS_SERVE_MAX_MODEL_MEMORY '0' must be above zero" in env.output
    assert len(seen) == 1


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics")


def test_server_metrics_report_the_cache(reg: Registry) -> None:
    size = one_size(reg)
    settings = ServeSettings(log_predictions=False, max_model_memory=2 * size)
    records: list[dict[str, Any]] = demo_frame(2).to_dict("records")
    with running_server(create_app(settings, registry=reg)) as url:
        for name in ("a", "b", "c"):
            r = httpx.post(f"{url}/v1/models/{name}/predict", json={"instances": records})
            assert r.status_code == 200, r.text
        text = httpx.get(f"{url}/metrics").text
    assert metric(text, "mlops_loaded_versions") == 2
    assert metric(text, "mlops_loaded_model_bytes") == 2 * size
    assert metric(text, "mlops_model_memory_limit_bytes") == 2 * size
    assert metric(text, "mlops_model_loads_total") == 3
    assert metric(text, "mlops_model_evictions_total") == 1
