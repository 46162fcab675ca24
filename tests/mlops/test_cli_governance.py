"""``mlops lineage`` and ``mlops erase``, driven through a small Typer app built like mlops.cli's."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import typer
from typer.testing import CliRunner, Result

from mlops._cli_common import ErrorReportingGroup
from mlops.cli_governance import erase, lineage_app
from storage.audit import AuditLog
from storage.features.store import FeatureStore
from storage.monitoring.prediction_log import PredictionLog
from storage.registry.core import Registry

app = typer.Typer(cls=ErrorReportingGroup, no_args_is_help=True)
app.add_typer(lineage_app, name="lineage")
app.command("erase")(erase)

T0 = datetime(2026, 9, 1, tzinfo=UTC)
REGISTER = ["lineage", "register", "transactions", "--uri", "s3://raw/tx.parquet", "--source", "core-banking"]


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, f"{args} failed: {result.output}"
    return result


def ok_json(*args: str) -> Any:
    result = ok(*args, "--json")
    assert result.stderr == ""
    return json.loads(result.stdout)


def test_register_list_and_show_a_dataset() -> None:
    asset = ok_json(
        *REGISTER, "--owner", "data-eng", "--pii", "--retention-days", "365",
        "--transformation", "dedupe", "--transformation", "mask-pan",
    )  # fmt: skip
    assert (asset["contains_pii"], asset["retention_days"], asset["created_by"]) == (True, 365, "tester")
    assert asset["transformations"] == ["dedupe", "mask-pan"]
    assert [d["name"] for d in ok_json("lineage", "datasets")] == ["transactions"]
    assert "transactions" in ok("lineage", "datasets").stdout
    registry = Registry.from_settings()
    registry.create_model("fraud")
    registry.create_version("fraud", framework="sklearn", dataset_uri="s3://raw/tx.parquet", dataset_hash="h")
    shown = ok_json("lineage", "dataset", "transactions")
    assert shown["model_versions"] == [{"name": "fraud/1", "relation": "dataset_uri"}]
    human = ok("lineage", "dataset", "transactions").stdout
    assert "dedupe → mask-pan" in human and "fraud/1 (dataset_uri)" in human and "365 days" in human


def test_model_lineage_command() -> None:
    ok(*REGISTER, "--owner", "data-eng", "--no-pii")
    registry = Registry.from_settings()
    registry.create_model("fraud")
    registry.create_version("fraud", framework="sklearn", dataset_uri="s3://raw/tx.parquet", dataset_hash="h")
    found = ok_json("lineage", "model", "fraud")
    assert found["versions"][0]["datasets"][0]["contains_pii"] is False
    human = ok("lineage", "model", "fraud").stdout
    assert "version 1 (0.1.0, development)" in human and "transactions (no PII, no retention limit" in human


def test_errors_are_one_line_and_exit_1() -> None:
    ok(*REGISTER, "--owner", "o", "--pii")
    for args, message in [
        ((*REGISTER, "--owner", "o", "--pii"), "error: dataset 'transactions' already exists"),
        (("lineage", "dataset", "nope"), "error: dataset 'nope' is not registered"),
        (("lineage", "model", "nope"), "error: model 'nope' does not exist"),
        (("erase", "--entity", "card_id", "--reason", "x"), "error: entity key 'card_id' is malformed"),
    ]:
        result = run(*args)
        assert result.exit_code == 1 and result.stderr.startswith(message), result.output
    missing_pii = run(*REGISTER, "--owner", "o")  # the PII flag must be declared
    assert missing_pii.exit_code == 2 and "--pii" in missing_pii.stderr


def test_erase_command_removes_and_verifies() -> None:
    store = FeatureStore.from_settings()
    store.definitions.create_entity("card", join_keys=["card_id"])
    store.definitions.create_group("card_stats", entity="card", event_time_column="ts")
    store.definitions.register_feature("card_stats", "spend", "float")
    store.ingest("card_stats", pd.DataFrame({"card_id": [1, 2], "ts": [T0, T0], "spend": [1.0, 2.0]}))
    store.materialize("card_stats", end=datetime(2026, 9, 2, tzinfo=UTC))
    PredictionLog.from_settings().append(
        [
            {
                "request_id": "r",
                "model": "fraud",
                "version": 1,
                "ts": T0,
                "prediction": 1,
                "entity_key": "card_id=1",
            }
        ]
    )
    result = ok_json("erase", "--entity", "card_id=1", "--reason", "DSR-114")
    assert result["verified"] and result["removed"] == {
        "offline:card_stats": 1,
        "online:card_stats": 1,
        "prediction_log": 1,
    }
    human = ok("erase", "--entity", "card_id=1", "--reason", "DSR-114", "--actor", "dpo").stdout
    assert "verified: nothing of card_id=1 remains" in human
    assert [e.actor for e in AuditLog(store.db).entries(action="entity.erase")] == ["tester", "dpo"]
    assert store.online.read("card_stats", ["2"])[0] is not None
    store.close()
