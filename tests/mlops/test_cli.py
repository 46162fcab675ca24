"""Tests of the ``mlops`` command line (mlops/cli.py).

Most tests drive the Typer app in-process with ``CliRunner`` (stdout and
stderr are captured separately); one runs the installed ``mlops`` script in a
subprocess. The autouse fixture in tests/conftest.py gives each test its own
``MLOPS_HOME`` and ``MLOPS_USER=tester``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from mlops._cli_common import parse_files, parse_metrics, parse_pairs, parse_params, parse_tag_filters
from mlops.cli import app
from storage.artifacts import ArtifactStore
from storage.errors import ValidationError

MODEL_BYTES = b"pretend skops model"
CARD_BYTES = b'{"owner": "risk"}'


# ------------------------------------------------------------------ helpers
def home() -> Path:
    return Path(os.environ["MLOPS_HOME"])


def run(*args: str, width: int = 80) -> Result:
    """Invoke the app in-process; rich tables are laid out ``width`` columns wide."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": str(width)})


def wide(*args: str) -> str:
    """Human output on a wide terminal, so table cells are not wrapped."""
    result = run(*args, width=200)
    assert result.exit_code == 0, f"{args} failed: {result.output}"
    return result.stdout


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, f"{args} failed: {result.output}"
    return result


def ok_json(*args: str) -> Any:
    """Run with --json; stdout must be nothing but JSON."""
    result = ok(*args, "--json")
    assert result.stderr == ""
    return json.loads(result.stdout)


def failed(*args: str) -> Result:
    """Run a command that must fail cleanly: exit 1, one error line, no traceback."""
    result = run(*args)
    assert result.exit_code == 1, f"{args} should fail: {result.output}"
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    model = tmp_path / "model.skops"
    model.write_bytes(MODEL_BYTES)
    card = tmp_path / "card.json"
    card.write_bytes(CARD_BYTES)
    return {"model": model, "card": card}


@pytest.fixture
def fraud(files: dict[str, Path]) -> None:
    """Model 'fraud' with version 1 (auc 0.91, two files) and version 2 (auc 0.93, child of 1)."""
    ok(
        "registry",
        "create",
        "fraud",
        "--description",
        "card fraud",
        "--owner",
        "risk-team",
        "--tag",
        "team=risk",
    )
    ok(
        "registry",
        "register",
        "fraud",
        "--framework",
        "sklearn",
        "--file",
        str(files["model"]),
        "--file",
        f"card.json={files['card']}",
        "--metric",
        "auc=0.91",
        "--metric",
        "loss=0.30",
        "--dataset-uri",
        "s3://data/fraud.parquet",
        "--dataset-hash",
        "d1",
        "--flow-run-id",
        "run-1",
        "--code-version",
        "git:abc123",
    )
    ok(
        "registry",
        "register",
        "fraud",
        "--framework",
        "sklearn",
        "--metric",
        "auc=0.93",
        "--metric",
        "loss=0.25",
        "--parent",
        "1",
        "--tag",
        "candidate=yes",
    )


def audit_count() -> int:
    with sqlite3.connect(home() / "mlops.db") as conn:
        return int(conn.execute("select count(*) from audit_log").fetchone()[0])


# ------------------------------------------------------------ pure helpers
def test_parse_pairs_names_the_bad_pair() -> None:
    assert parse_pairs(["a=1", "b=x=y"], "tag") == {"a": "1", "b": "x=y"}
    with pytest.raises(ValidationError, match=r"tag 'oops' is malformed: expected key=value"):
        parse_pairs(["a=1", "oops"], "tag")
    with pytest.raises(ValidationError, match=r"tag '=v' is malformed"):
        parse_pairs(["=v"], "tag")
    with pytest.raises(ValidationError, match=r"tag 'a' is given more than once"):
        parse_pairs(["a=1", "a=2"], "tag")


def test_value_parsers() -> None:
    assert parse_metrics(["auc=0.9", "n=3", "bad=abc"]) == {"auc": 0.9, "n": 3.0, "bad": "abc"}
    assert parse_params(["depth=5", "lr=0.1", "on=true", "layers=[64, 32]", "solver=lbfgs"]) == {
        "depth": 5,
        "lr": 0.1,
        "on": True,
        "layers": [64, 32],
        "solver": "lbfgs",
    }
    assert parse_tag_filters(["team=risk", "reviewed"]) == {"team": "risk", "reviewed": None}


def test_parse_files_names_and_errors(files: dict[str, Path], tmp_path: Path) -> None:
    assert parse_files([str(files["model"]), f"model/card.json={files['card']}"]) == {
        "model.skops": files["model"],
        "model/card.json": files["card"],
    }
    with pytest.raises(ValidationError, match="does not exist"):
        parse_files([str(tmp_path / "missing.bin")])
    with pytest.raises(ValidationError, match=r"artifact name 'model.skops' is given more than once"):
        parse_files([str(files["model"]), f"model.skops={files['card']}"])


# ------------------------------------------------------------------ models
def test_create_show_and_list_models_json() -> None:
    created = ok_json(
        "registry",
        "create",
        "fraud",
        "--description",
        "card fraud",
        "--owner",
        "risk-team",
        "--tag",
        "team=risk",
        "--tag",
        "tier=1",
    )
    assert created["name"] == "fraud"
    assert created["created_by"] == "tester"
    ok("registry", "create", "churn", "--tag", "team=growth", "--actor", "ana")

    shown = ok_json("registry", "show", "fraud")
    assert shown["description"] == "card fraud"
    assert shown["owner"] == "risk-team"
    assert shown["tags"] == {"team": "risk", "tier": "1"}
    assert shown["latest_version"] is None
    assert ok_json("registry", "show", "churn")["created_by"] == "ana"

    listed = ok_json("registry", "list")
    assert [m["name"] for m in listed["items"]] == ["churn", "fraud"]
    assert listed["next_token"] is None
    assert [m["name"] for m in ok_json("registry", "list", "--tag", "team=risk")["items"]] == ["fraud"]
    assert [m["name"] for m in ok_json("registry", "list", "--name-contains", "hur")["items"]] == ["churn"]


def test_list_pages() -> None:
    for name in ("a-model", "b-model", "c-model"):
        ok("registry", "create", name)
    first = ok_json("registry", "list", "--page-size", "2")
    assert [m["name"] for m in first["items"]] == ["a-model", "b-model"]
    assert first["next_token"] == "b-model"
    second = ok_json("registry", "list", "--page-size", "2", "--page-token", first["next_token"])
    assert [m["name"] for m in second["items"]] == ["c-model"]
    assert second["next_token"] is None
    people = ok("registry", "list", "--page-size", "2").stdout
    assert "more results: --page-token b-model" in people


def test_create_twice_fails_cleanly() -> None:
    ok("registry", "create", "fraud")
    result = failed("registry", "create", "fraud")
    assert result.stderr == "error: model 'fraud' already exists\n"


def test_show_for_people(fraud: None) -> None:
    out = ok("registry", "show", "fraud").stdout
    assert "model fraud" in out
    assert "risk-team" in out
    assert "team=risk" in out
    assert "2 (0.2.0, development)" in out


# ---------------------------------------------------------------- versions
def test_register_json_values(files: dict[str, Path]) -> None:
    ok("registry", "create", "fraud")
    v1 = ok_json(
        "registry",
        "register",
        "fraud",
        "--framework",
        "sklearn",
        "--file",
        str(files["model"]),
        "--file",
        f"meta/card.json={files['card']}",
        "--metric",
        "auc=0.91",
        "--metric",
        "loss=0.3",
        "--param",
        "depth=5",
        "--param",
        "solver=lbfgs",
        "--param",
        "layers=[64,32]",
        "--semver",
        "1.4.0",
        "--dataset-uri",
        "s3://data/fraud.parquet",
        "--dataset-hash",
        "abc123",
        "--changelog",
        "first cut",
        "--tag",
        "owner=ana",
        "--flow-run-id",
        "run-7",
    )
    assert (v1["model"], v1["number"], v1["semver"], v1["stage"]) == ("fraud", 1, "1.4.0", "development")
    assert v1["framework"] == "sklearn"
    assert v1["metrics"] == {"auc": 0.91, "loss": 0.3}
    assert v1["hyperparameters"] == {"depth": 5, "solver": "lbfgs", "layers": [64, 32]}
    assert v1["tags"] == {"owner": "ana"}
    assert v1["changelog"] == "first cut"
    assert (v1["dataset_uri"], v1["dataset_hash"]) == ("s3://data/fraud.parquet", "abc123")
    assert v1["flow_run_id"] == "run-7"
    assert v1["created_by"] == "tester"
    assert {a["name"]: (a["sha256"], a["size"]) for a in v1["artifacts"]} == {
        "meta/card.json": (hashlib.sha256(CARD_BYTES).hexdigest(), len(CARD_BYTES)),
        "model.skops": (hashlib.sha256(MODEL_BYTES).hexdigest(), len(MODEL_BYTES)),
    }

    v2 = ok_json(
        "registry",
        "register",
        "fraud",
        "--framework",
        "xgboost",
        "--bump",
        "major",
        "--parent",
        "1.4.0",
        "--actor",
        "bob",
    )
    assert (v2["number"], v2["semver"], v2["parent_version"]) == (2, "2.0.0", 1)
    assert v2["created_by"] == "bob"
    v3 = ok_json("registry", "register", "fraud", "--framework", "sklearn")
    assert v3["semver"] == "2.1.0"  # default bump is minor


def test_register_for_people(files: dict[str, Path]) -> None:
    ok("registry", "create", "fraud")
    out = ok(
        "registry",
        "register",
        "fraud",
        "--framework",
        "sklearn",
        "--file",
        str(files["model"]),
        "--metric",
        "auc=0.91",
    ).stdout
    assert "registered fraud version 1 (0.1.0) in development" in out
    assert "model.skops" in out


def test_get_by_every_kind_of_ref(fraud: None) -> None:
    ok("registry", "alias", "fraud", "champion", "1")
    assert ok_json("registry", "get", "fraud", "1")["semver"] == "0.1.0"
    assert ok_json("registry", "get", "fraud", "0.2.0")["number"] == 2
    assert ok_json("registry", "get", "fraud", "latest")["number"] == 2
    assert ok_json("registry", "get", "fraud", "@champion")["number"] == 1
    assert ok_json("registry", "get", "fraud", "champion")["aliases"] == ["champion"]
    v1 = ok_json("registry", "get", "fraud", "1")
    assert v1["metrics"] == {"auc": 0.91, "loss": 0.3}
    assert v1["code_version"] == "git:abc123"
    assert [a["name"] for a in v1["artifacts"]] == ["card.json", "model.skops"]
    assert v1["artifacts"][1]["sha256"] == hashlib.sha256(MODEL_BYTES).hexdigest()
    assert ok_json("registry", "get", "fraud", "2")["parent_version"] == 1
    assert ok_json("registry", "show", "fraud")["latest_version"] == 2


def test_get_for_people(fraud: None) -> None:
    out = ok("registry", "get", "fraud", "1").stdout
    assert "fraud version 1 (0.1.0)" in out
    assert "s3://data/fraud.parquet" in out
    assert "auc" in out and "0.91" in out
    assert "model.skops" in out


def test_versions_filters(fraud: None) -> None:
    all_versions = ok_json("registry", "versions", "fraud")
    assert [v["number"] for v in all_versions["items"]] == [2, 1]
    assert all_versions["next_token"] is None
    assert [
        v["number"] for v in ok_json("registry", "versions", "fraud", "--metric", "auc>=0.92")["items"]
    ] == [2]
    assert [
        v["number"]
        for v in ok_json("registry", "versions", "fraud", "--metric", "auc>0.9", "--metric", "loss>=0.3")[
            "items"
        ]
    ] == [1]
    assert [
        v["number"] for v in ok_json("registry", "versions", "fraud", "--tag", "candidate=yes")["items"]
    ] == [2]
    ok("registry", "stage", "fraud", "1", "staging")
    assert [v["number"] for v in ok_json("registry", "versions", "fraud", "--stage", "staging")["items"]] == [
        1
    ]
    ok("registry", "alias", "fraud", "champion", "2")
    assert [
        v["number"] for v in ok_json("registry", "versions", "fraud", "--alias", "champion")["items"]
    ] == [2]
    page = ok_json("registry", "versions", "fraud", "--page-size", "1")
    assert [v["number"] for v in page["items"]] == [2]
    rest = ok_json("registry", "versions", "fraud", "--page-size", "1", "--page-token", page["next_token"])
    assert [v["number"] for v in rest["items"]] == [1]


def test_versions_for_people(fraud: None) -> None:
    out = ok("registry", "versions", "fraud").stdout
    assert "fraud: versions" in out
    assert "auc=0.93" in out and "auc=0.91" in out


# -------------------------------------------------------------- comparison
def test_compare_picks_the_winner(fraud: None) -> None:
    result = ok_json("registry", "compare", "fraud", "1", "2", "--primary", "auc")
    assert result["winner"] == 2
    assert result["primary"] == "auc"
    assert [(r["version"], r["auc"]) for r in result["rows"]] == [(1, 0.91), (2, 0.93)]
    people = ok("registry", "compare", "fraud", "1", "2", "--primary", "auc").stdout
    assert "winner: version 2" in people


def test_compare_no_winner_below_min_improvement(fraud: None) -> None:
    result = ok_json(
        "registry", "compare", "fraud", "1", "2", "--primary", "auc", "--min-improvement", "0.05"
    )
    assert result["winner"] is None
    assert result["reason"].startswith("no winner:")
    people = ok(
        "registry", "compare", "fraud", "1", "2", "--primary", "auc", "--min-improvement", "0.05"
    ).stdout
    assert "no winner: version 2 auc 0.93 vs version 1 0.91" in people
    assert not any(line.startswith("winner:") for line in people.splitlines())


def test_compare_direction_metrics_and_baseline(fraud: None) -> None:
    lower_loss = ok_json(
        "registry",
        "compare",
        "fraud",
        "1",
        "2",
        "--primary",
        "loss",
        "--direction",
        "min",
        "--metric",
        "loss",
    )
    assert lower_loss["winner"] == 2
    assert lower_loss["metrics"] == ["loss"]
    higher_loss = ok_json("registry", "compare", "fraud", "1", "2", "--primary", "loss")
    assert higher_loss["winner"] == 1
    ok("registry", "alias", "fraud", "champion", "1")
    vs_champion = ok_json("registry", "compare", "fraud", "2", "--baseline", "@champion", "--primary", "auc")
    assert vs_champion["winner"] == 2
    assert sorted(r["version"] for r in vs_champion["rows"]) == [1, 2]
    bad = failed("registry", "compare", "fraud", "1", "2", "--primary", "auc", "--direction", "up")
    assert "direction 'up' is not one of max, min" in bad.stderr


# ----------------------------------------------------------------- lineage
def test_lineage_json_and_tree(fraud: None) -> None:
    lineage = ok_json("registry", "lineage", "fraud")
    assert lineage["model"] == "fraud"
    first, second = lineage["versions"]
    assert first["dataset"] == {"uri": "s3://data/fraud.parquet", "hash": "d1"}
    assert first["run"] == {"flow_run_id": "run-1", "code_version": "git:abc123"}
    assert first["version"]["number"] == 1
    assert second["dataset"] is None
    assert second["parent_version"] == 1
    only = ok_json("registry", "lineage", "fraud", "--version", "2")
    assert [c["version"]["number"] for c in only["versions"]] == [2]

    tree = ok("registry", "lineage", "fraud").stdout
    assert "dataset s3://data/fraud.parquet (hash d1)" in tree
    assert "run run-1 (code version git:abc123)" in tree
    assert "version 1 (0.1.0, development)" in tree
    assert "parent: version 1" in tree


# ---------------------------------------------------------- stage and alias
def test_stage_moves_and_history(fraud: None) -> None:
    out = ok("registry", "stage", "fraud", "1", "staging", "--reason", "offline eval passed").stdout
    assert "moved fraud version 1 (0.1.0) from development to staging" in out
    moved = ok_json("registry", "stage", "fraud", "1", "production", "--alias", "champion", "--actor", "ana")
    assert moved["stage"] == "production"
    assert moved["aliases"] == ["champion"]

    ok("registry", "stage", "fraud", "2", "staging")
    ok("registry", "stage", "fraud", "2", "production", "--demote-to", "staging")
    assert ok_json("registry", "get", "fraud", "1")["stage"] == "staging"
    assert ok_json("registry", "get", "fraud", "production")["number"] == 2

    history = ok_json("registry", "history", "fraud", "--version", "1")
    assert [(h["from_stage"], h["to_stage"]) for h in history] == [
        ("development", "staging"),
        ("staging", "production"),
        ("production", "staging"),
    ]
    assert history[0]["reason"] == "offline eval passed"
    assert history[0]["actor"] == "tester"
    assert history[1]["actor"] == "ana"
    assert len(ok_json("registry", "history", "fraud")) == 5
    assert "offline eval passed" in wide("registry", "history", "fraud")


def test_illegal_stage_move_changes_nothing(fraud: None) -> None:
    before = audit_count()
    result = failed("registry", "stage", "fraud", "2", "production", "--alias", "champion")
    assert result.stderr == (
        "error: cannot move fraud version 2 from development to production: "
        "allowed from development: staging, archived\n"
    )
    assert result.stdout == ""
    version = ok_json("registry", "get", "fraud", "2")
    assert version["stage"] == "development"
    assert version["aliases"] == []
    assert ok_json("registry", "history", "fraud") == []
    assert ok_json("registry", "aliases", "fraud") == []
    assert audit_count() == before

    unknown = failed("registry", "stage", "fraud", "2", "live")
    assert "stage 'live' is not one of development, staging, production, archived" in unknown.stderr


def test_alias_set_move_delete_and_history(fraud: None) -> None:
    assert "alias champion of fraud → version 1" in ok("registry", "alias", "fraud", "champion", "1").stdout
    moved = ok_json("registry", "alias", "fraud", "champion", "2", "--reason", "better auc")
    assert (moved["from_version"], moved["to_version"]) == (1, 2)
    ok("registry", "alias", "fraud", "challenger", "1", "--actor", "ana")
    assert ok_json("registry", "show", "fraud")["aliases"] == {"champion": 2, "challenger": 1}

    history = ok_json("registry", "aliases", "fraud", "--alias", "champion")
    assert [(h["from_version"], h["to_version"], h["reason"]) for h in history] == [
        (None, 1, ""),
        (1, 2, "better auc"),
    ]
    assert [h["actor"] for h in ok_json("registry", "aliases", "fraud")] == ["tester", "tester", "ana"]

    deleted = ok_json("registry", "alias", "fraud", "champion", "--delete")
    assert (deleted["from_version"], deleted["to_version"]) == (2, None)
    assert ok_json("registry", "show", "fraud")["aliases"] == {"challenger": 1}
    assert "(deleted)" in ok("registry", "aliases", "fraud").stdout
    failed("registry", "get", "fraud", "@champion")

    neither = failed("registry", "alias", "fraud", "champion")
    assert "give either a version REF" in neither.stderr
    both = failed("registry", "alias", "fraud", "champion", "1", "--delete")
    assert "give either a version REF" in both.stderr
    reserved = failed("registry", "alias", "fraud", "latest", "1")
    assert "alias 'latest' is invalid" in reserved.stderr


# ------------------------------------------------------- artifacts: verify
def test_verify_passes_then_fails_after_a_flipped_byte(fraud: None) -> None:
    report = ok_json("registry", "verify", "fraud", "1")
    assert report["ok"] is True
    assert {a["name"]: a["ok"] for a in report["artifacts"]} == {"card.json": True, "model.skops": True}
    assert "all 2 artifact(s) match their checksums" in ok("registry", "verify", "fraud", "1").stdout

    sha = hashlib.sha256(MODEL_BYTES).hexdigest()
    blob = Path(ArtifactStore(str(home() / "artifacts")).path_of(sha))
    data = bytearray(blob.read_bytes())
    data[0] ^= 0x01
    blob.write_bytes(bytes(data))

    result = failed("registry", "verify", "fraud", "1")
    assert "error: artifact 'model.skops' of fraud version 1: content hashes to" in result.stderr
    assert "card.json" not in result.stderr
    assert "FAILED" in result.stdout

    as_json = run("registry", "verify", "fraud", "1", "--json")
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert {a["name"]: a["ok"] for a in report["artifacts"]} == {"card.json": True, "model.skops": False}
    assert "model.skops" in as_json.stderr

    export = failed("registry", "export", "fraud", "1", str(home() / "out"))
    assert "artifact 'fraud/1/model.skops' is corrupted" in export.stderr


def test_verify_reports_a_missing_blob(fraud: None) -> None:
    Path(ArtifactStore(str(home() / "artifacts")).path_of(hashlib.sha256(CARD_BYTES).hexdigest())).unlink()
    result = failed("registry", "verify", "fraud", "1")
    assert "error: artifact 'card.json' of fraud version 1: missing from the store" in result.stderr


def test_export_writes_the_artifacts(fraud: None, tmp_path: Path) -> None:
    dest = tmp_path / "export"
    written = ok_json("registry", "export", "fraud", "1", str(dest))
    assert sorted(Path(p).name for p in written) == ["card.json", "model.skops"]
    assert (dest / "model.skops").read_bytes() == MODEL_BYTES
    assert (dest / "card.json").read_bytes() == CARD_BYTES


# ------------------------------------------------------------------- audit
def test_audit_verify_passes_then_names_the_edited_entry(fraud: None) -> None:
    assert audit_count() == 3
    assert ok("audit", "verify").stdout == "audit chain intact: 3 entries\n"
    assert ok_json("audit", "verify") == {"ok": True, "checked": 3, "first_bad_seq": None, "problem": ""}

    with sqlite3.connect(home() / "mlops.db") as conn:
        conn.execute("UPDATE audit_log SET actor='mallory' WHERE seq=2")
    conn.close()

    result = failed("audit", "verify")
    assert result.stderr.startswith("error: audit chain broken at entry 2: audit entry 2 (version.create")
    assert "was edited" in result.stderr
    assert result.stdout == ""
    as_json = run("audit", "verify", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["first_bad_seq"] == 2
    assert "entry 2" in as_json.stderr


def test_audit_log_filters(fraud: None) -> None:
    ok("registry", "stage", "fraud", "1", "staging", "--actor", "ana")
    entries = ok_json("audit", "log")
    assert [e["action"] for e in entries] == [
        "model.create",
        "version.create",
        "version.create",
        "version.stage",
    ]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    staged = ok_json("audit", "log", "--action", "version.stage")
    assert [(e["actor"], e["entity_id"], e["after"]["stage"]) for e in staged] == [
        ("ana", "fraud/1", "staging")
    ]
    by_entity = ok_json("audit", "log", "--entity-type", "model_version", "--entity-id", "fraud/2")
    assert [e["seq"] for e in by_entity] == [3]
    assert [e["seq"] for e in ok_json("audit", "log", "--after", "1", "--limit", "2")] == [2, 3]
    narrow = ok("audit", "log").stdout  # 80 columns: key columns must not collapse
    assert "version.create" in narrow and "version.stage" in narrow
    assert "model_version fraud/1" in wide("audit", "log")
    assert "limit 0 must be at least 1" in failed("audit", "log", "--limit", "0").stderr


# -------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["registry", "get", "nope", "1"], "error: model 'nope' does not exist"),
        (["registry", "show", "nope"], "error: model 'nope' does not exist"),
        (["registry", "get", "fraud", "9"], "error: model 'fraud' has no version 9"),
        (
            ["registry", "register", "fraud", "--framework", "sklearn", "--semver", "1.2"],
            "error: semantic version '1.2' is malformed: expected MAJOR.MINOR.PATCH, e.g. 1.4.0",
        ),
        (
            ["registry", "register", "fraud", "--framework", "sklearn", "--metric", "auc=abc"],
            "error: metric 'auc' has value 'abc', which is not a number",
        ),
        (
            ["registry", "register", "fraud", "--framework", "sklearn", "--metric", "auc"],
            "error: metric 'auc' is malformed: expected key=value",
        ),
        (
            ["registry", "register", "fraud", "--framework", "sklearn", "--tag", "stage:prod"],
            "error: tag 'stage:prod' is malformed: expected key=value",
        ),
        (
            ["registry", "register", "fraud", "--framework", "sklearn", "--param", "depth"],
            "error: param 'depth' is malformed: expected key=value",
        ),
        (
            ["registry", "register", "fraud", "--framework", "caffe"],
            "error: framework 'caffe' is not one of "
            "sklearn, xgboost, pytorch, keras, tensorflow, onnx, custom",
        ),
        (
            ["registry", "register", "fraud", "--framework", "sklearn", "--bump", "huge"],
            "error: bump 'huge' is not one of major, minor, patch",
        ),
        (
            [
                "registry",
                "register",
                "fraud",
                "--framework",
                "sklearn",
                "--bump",
                "major",
                "--semver",
                "1.0.0",
            ],
            "error: give --semver or --bump, not both",
        ),
        (
            ["registry", "register", "fraud", "--framework", "sklearn", "--dataset-uri", "s3://x"],
            "error: dataset_uri and dataset_hash must be given together",
        ),
        (
            ["registry", "register", "fraud", "--framework", "sklearn", "--file", "/no/such/model.bin"],
            "error: artifact file '/no/such/model.bin' does not exist or is not a file",
        ),
        (
            ["registry", "create", "other", "--tag", "bad"],
            "error: tag 'bad' is malformed: expected key=value",
        ),
        (["registry", "create", "bad name!"], "error: model name 'bad name!' is invalid"),
        (["registry", "versions", "fraud", "--metric", "auc"], "error: metric filter 'auc' is malformed"),
        (
            ["registry", "versions", "fraud", "--page-size", "0"],
            "error: page size 0 must be between 1 and 10000",
        ),
        (["registry", "list", "--tag", "=x"], "error: tag filter '=x' is malformed: expected key=value"),
    ],
)
def test_bad_inputs_fail_cleanly(args: list[str], message: str) -> None:
    ok("registry", "create", "fraud")
    before = audit_count()
    result = failed(*args)
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""
    assert ok_json("registry", "versions", "fraud")["items"] == []
    assert audit_count() == before


def test_errors_go_to_stderr_with_json() -> None:
    result = run("registry", "get", "nope", "1", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "error: model 'nope' does not exist\n"


def test_version_command() -> None:
    expected = metadata.version("dwcp-mlops")
    assert ok("version").stdout == f"dwcp-mlops {expected}\n"
    assert ok_json("version") == {"package": "dwcp-mlops", "version": expected}


def test_help_lists_the_commands() -> None:
    out = ok("registry", "--help").stdout
    for command in (
        "create",
        "register",
        "list",
        "show",
        "versions",
        "get",
        "compare",
        "lineage",
        "stage",
        "alias",
        "aliases",
        "history",
        "verify",
        "export",
    ):
        assert command in out


# ------------------------------------------------------ the installed script
def test_installed_script_prints_parseable_json(files: dict[str, Path]) -> None:
    script = Path(sys.executable).parent / "mlops"
    assert script.exists(), f"the console script is not installed at {script}"

    def mlops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            timeout=120,
            check=False,
        )

    assert mlops("registry", "create", "fraud").returncode == 0
    registered = mlops(
        "registry",
        "register",
        "fraud",
        "--framework",
        "sklearn",
        "--file",
        str(files["model"]),
        "--metric",
        "auc=0.97",
        "--semver",
        "3.0.0",
        "--json",
    )
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["semver"] == "3.0.0"

    got = mlops("registry", "get", "fraud", "latest", "--json")
    assert got.returncode == 0, got.stderr
    version = json.loads(got.stdout)
    assert (version["number"], version["metrics"], version["created_by"]) == (1, {"auc": 0.97}, "tester")
    assert version["artifacts"][0]["sha256"] == hashlib.sha256(MODEL_BYTES).hexdigest()

    missing = mlops("registry", "get", "nope", "1", "--json")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr == "error: model 'nope' does not exist\n"
