"""``mlops features``: every command with --json, errors as ``error: ...`` and exit code 1."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner, Result

from mlops._cli_common import ErrorReportingGroup
from mlops.cli_features import app as features_app
from storage.features.store import FeatureStore

T0 = datetime(2026, 10, 1, tzinfo=UTC)

root = typer.Typer(cls=ErrorReportingGroup, no_args_is_help=True)
root.add_typer(features_app, name="features")  # as mlops/cli.py mounts it


def run(*args: str) -> Result:
    return CliRunner().invoke(root, ["features", *args], env={"COLUMNS": "200"})


def ok_json(*args: str) -> object:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    store = FeatureStore.from_settings()
    d = store.definitions
    d.create_entity("driver", join_keys=["driver_id"])
    d.create_group("trips", entity="driver", event_time_column="ts", ttl_seconds=3600)
    d.register_feature("trips", "fare", "float", owner="ana", description="fare in EUR")
    d.register_feature("trips", "city", "string")
    store.close()
    path = tmp_path / "batch.csv"
    pd.DataFrame(
        {
            "driver_id": [1, 2, 1],
            "ts": [T0, T0, T0 + timedelta(hours=1)],
            "fare": [1.0, 2.0, 3.5],
            "city": ["a", "b", "a"],
        }
    ).to_csv(path, index=False)
    return path


def test_list_and_show(batch: Path) -> None:
    listed = ok_json("list")
    assert [f["ref"] for f in listed["features"]] == ["trips:city@1", "trips:fare@1"]  # type: ignore[index]
    shown = ok_json("show", "trips")
    assert shown["group"]["ttl_seconds"] == 3600 and shown["files"] == 0  # type: ignore[index]
    versions = ok_json("show", "trips:fare")
    assert versions["versions"][0]["owner"] == "ana"  # type: ignore[index]
    human = run("list")
    assert human.exit_code == 0 and "trips:fare@1" in human.stdout


def test_ingest_materialize_get_stats(batch: Path) -> None:
    assert ok_json("ingest", "trips", str(batch))["rows"] == 3  # type: ignore[index]
    end = (T0 + timedelta(hours=2)).isoformat()
    assert ok_json("materialize", "trips", "--end", end)["rows"] == 2  # type: ignore[index]
    got = ok_json("get", "trips:fare", "trips:city", "--entity", "driver_id=1", "--entity", "driver_id=9")
    assert got["rows"][0] == {"driver_id": 1, "fare": 3.5, "city": "a"}  # type: ignore[index]
    assert got["statuses"][1] == {"fare": "missing", "city": "missing"}  # type: ignore[index]
    stats = ok_json("stats", "trips", "--reference")
    assert stats["fare"]["count"] == 3 and stats["city"]["distinct"] == 2  # type: ignore[index]
    human = run("stats", "trips")
    assert human.exit_code == 0 and "fare" in human.stdout
    assert run("get", "trips:fare", "--entity", "driver_id=1").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "nogroup"), "feature group 'nogroup' does not exist"),
        (("get", "trips:nope", "--entity", "driver_id=1"), "feature trips:nope does not exist"),
        (("get", "trips:fare", "--entity", "id=1"), "missing join key(s) ['driver_id']"),
        (("get", "trips:fare; DROP TABLE features", "--entity", "driver_id=1"), "not a valid identifier"),
        (("materialize", "trips", "--end", "yesterday-ish"), "is not an ISO 8601 time"),
        (("ingest", "trips", "/nonexistent/batch.parquet"), "does not exist"),
    ],
)
def test_errors_are_one_line_on_stderr(batch: Path, args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_batch_names_the_column_and_rows(batch: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    pd.read_csv(batch).assign(fare=["1.0", "oops", "2"]).to_csv(bad, index=False)
    result = run("ingest", "trips", str(bad))
    assert result.exit_code == 1
    # CSV has no types: the whole column reads as text, and every row is named
    assert "column 'fare' expects float at rows 0 ('1.0'), 1 ('oops'), 2 ('2')" in result.stderr
    assert ok_json("show", "trips")["files"] == 0  # type: ignore[index]
