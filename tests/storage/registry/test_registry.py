"""The model registry on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage.audit import AuditLog
from storage.errors import AlreadyExistsError, NotFoundError, TransitionError, ValidationError
from storage.registry.core import Registry


def _snapshot(registry: Registry) -> dict[str, int]:
    """Row counts of every table: 'changes nothing' means these stay equal."""
    from storage.schema import metadata

    with registry.db.read() as conn:
        return {
            name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for name, table in metadata.tables.items()
        }


@pytest.fixture
def fraud(registry: Registry) -> Registry:
    registry.create_model("fraud", description="card fraud", owner="risk", tags={"team": "risk"})
    return registry


def test_create_model_and_versions_number_and_semver(fraud: Registry) -> None:
    v1 = fraud.create_version("fraud", framework="sklearn", metrics={"auc": 0.9})
    v2 = fraud.create_version("fraud", framework="sklearn", bump="patch")
    v3 = fraud.create_version("fraud", framework="xgboost", bump="major")
    v4 = fraud.create_version("fraud", framework="xgboost", semver="3.2.1")
    v5 = fraud.create_version("fraud", framework="xgboost")
    assert [v.number for v in (v1, v2, v3, v4, v5)] == [1, 2, 3, 4, 5]
    assert [v.semver for v in (v1, v2, v3, v4, v5)] == ["0.1.0", "0.1.1", "1.0.0", "3.2.1", "3.3.0"]
    assert all(v.stage == "development" for v in (v1, v5))
    model = fraud.get_model("fraud")
    assert (model.owner, model.tags, model.latest_version) == ("risk", {"team": "risk"}, 5)


def test_version_metadata_round_trips(fraud: Registry) -> None:
    v = fraud.create_version(
        "fraud",
        framework="sklearn",
        metrics={"auc": 0.93, "f1": 1},
        hyperparameters={"max_depth": 6, "lr": 0.1},
        signature={"inputs": [{"name": "amount", "type": "float"}]},
        dataset_uri="s3://data/fraud.parquet",
        dataset_hash="abc123",
        code_version="deadbeef",
        flow_run_id="run-1",
        changelog="first",
        tags={"owner": "ana"},
        artifacts={"model.onnx": b"onnx-bytes", "reports/validation.html": b"<html/>"},
    )
    got = fraud.get_version("fraud", v.number)
    assert got == v  # what create returns is what a read returns
    assert got.metrics == {"auc": 0.93, "f1": 1.0}
    assert got.hyperparameters == {"max_depth": 6, "lr": 0.1}
    assert got.signature == {"inputs": [{"name": "amount", "type": "float"}]}
    assert (got.dataset_uri, got.dataset_hash, got.code_version, got.flow_run_id) == (
        "s3://data/fraud.parquet",
        "abc123",
        "deadbeef",
        "run-1",
    )
    assert {a.name: a.kind for a in got.artifacts} == {
        "model.onnx": "onnx",
        "reports/validation.html": "report",
    }
    assert fraud.load_artifact("fraud", v.number, "model.onnx") == b"onnx-bytes"


def test_metrics_keep_full_double_precision(fraud: Registry) -> None:
    exact = {"auc": 0.9347826086956522, "loss": 0.1 + 0.2, "tiny": 5e-324, "huge": 1.7976931348623157e308}
    fraud.create_version("fraud", framework="sklearn", metrics=exact)
    assert fraud.get_version("fraud", 1).metrics == exact
    assert fraud.search_versions(model="fraud").items[0].metrics == exact


def test_version_references(fraud: Registry) -> None:
    fraud.create_version("fraud", framework="sklearn", semver="1.0.0")
    fraud.create_version("fraud", framework="sklearn", semver="1.1.0")
    fraud.set_alias("fraud", "champion", 1)
    fraud.transition_stage("fraud", 2, "staging")
    assert fraud.get_version("fraud", "2").number == 2
    assert fraud.get_version("fraud", "v1.1.0").number == 2
    assert fraud.get_version("fraud", "@champion").number == 1
    assert fraud.get_version("fraud", "champion").number == 1
    assert fraud.get_version("fraud", "latest").number == 2
    assert fraud.get_version("fraud", "staging").number == 2
    with pytest.raises(NotFoundError, match="no version in production"):
        fraud.get_version("fraud", "production")


def test_stage_transitions_enforced_and_production_is_unique(fraud: Registry) -> None:
    for _ in range(3):
        fraud.create_version("fraud", framework="sklearn")
    with pytest.raises(TransitionError, match="allowed from development: staging, archived"):
        fraud.transition_stage("fraud", 1, "production")
    fraud.transition_stage("fraud", 1, "staging")
    fraud.transition_stage("fraud", 1, "production", alias="champion", reason="best auc")
    fraud.transition_stage("fraud", 2, "staging")
    fraud.transition_stage("fraud", 2, "production", alias="champion")
    assert fraud.get_version("fraud", 1).stage == "archived"
    assert fraud.get_version("fraud", 2).stage == "production"
    assert fraud.get_version("fraud", "@champion").number == 2
    assert [(m.from_version, m.to_version) for m in fraud.alias_history("fraud", "champion")] == [
        (None, 1),
        (1, 2),
    ]
    moves = [(m.version, m.from_stage, m.to_stage) for m in fraud.stage_history("fraud")]
    assert moves == [
        (1, "development", "staging"),
        (1, "staging", "production"),
        (2, "development", "staging"),
        (1, "production", "archived"),
        (2, "staging", "production"),
    ]
    # Asked for explicitly, two production versions may coexist.
    fraud.transition_stage("fraud", 3, "staging")
    fraud.transition_stage("fraud", 3, "production", allow_multiple=True)
    prod = fraud.search_versions(model="fraud", stage="production").items
    assert sorted(v.number for v in prod) == [2, 3]


def test_alias_history_records_who_and_why(fraud: Registry) -> None:
    fraud.create_version("fraud", framework="sklearn")
    fraud.create_version("fraud", framework="sklearn")
    fraud.set_alias("fraud", "challenger", 1, actor="ana", reason="new")
    fraud.set_alias("fraud", "challenger", 2, actor="bo", reason="retrained")
    fraud.delete_alias("fraud", "challenger", actor="cy", reason="test over")
    history = fraud.alias_history("fraud", "challenger")
    assert [(h.from_version, h.to_version, h.actor, h.reason) for h in history] == [
        (None, 1, "ana", "new"),
        (1, 2, "bo", "retrained"),
        (2, None, "cy", "test over"),
    ]
    assert fraud.get_model("fraud").aliases == {}


def test_search_filters_and_pagination(registry: Registry) -> None:
    for name in ("a", "b"):
        registry.create_model(name)
        for i in range(7):
            registry.create_version(
                name,
                framework="sklearn",
                metrics={"auc": 0.80 + i / 100},
                tags={"team": "x" if i % 2 else "y"},
            )
    registry.set_alias("a", "champion", 3)
    registry.transition_stage("b", 5, "staging")
    assert [v.number for v in registry.search_versions(model="a", tags={"team": "x"}).items] == [6, 4, 2]
    assert [v.number for v in registry.search_versions(model="a", metrics=["auc>=0.845"]).items] == [7, 6]
    assert [(v.model, v.number) for v in registry.search_versions(alias="champion").items] == [("a", 3)]
    assert [(v.model, v.number) for v in registry.search_versions(stage="staging").items] == [("b", 5)]
    seen, token = [], None
    while True:
        page = registry.list_versions("a", page_size=3, page_token=token)
        seen.extend(v.number for v in page.items)
        token = page.next_token
        if token is None:
            break
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    models = registry.list_models(page_size=1)
    assert [m.name for m in models.items] == ["a"]
    assert [m.name for m in registry.list_models(page_token=models.next_token).items] == ["b"]


def test_compare_picks_winner_or_none(fraud: Registry) -> None:
    fraud.create_version("fraud", framework="sklearn", metrics={"auc": 0.90, "f1": 0.7})
    fraud.create_version("fraud", framework="sklearn", metrics={"auc": 0.93, "f1": 0.6})
    fraud.create_version("fraud", framework="sklearn", metrics={"auc": 0.905})
    result = fraud.compare("fraud", [1, 2, 3], primary="auc", min_improvement=0.01)
    assert result.winner == 2
    assert [r["version"] for r in result.rows] == [1, 2, 3]
    assert result.rows[2]["f1"] is None
    close = fraud.compare("fraud", [1, 3], primary="auc", min_improvement=0.01)
    assert close.winner is None and "below the bar" in close.reason
    lower = fraud.compare("fraud", [1, 2], primary="f1", direction="min")
    assert lower.winner == 2
    vs_champion = fraud.compare("fraud", [3], primary="auc", baseline=1, min_improvement=0.001)
    assert vs_champion.winner == 3
    with pytest.raises(ValidationError, match="missing from version"):
        fraud.compare("fraud", [1, 3], primary="f1")


def test_lineage_chain(fraud: Registry) -> None:
    fraud.create_version(
        "fraud",
        framework="sklearn",
        dataset_uri="file://d.csv",
        dataset_hash="h1",
        flow_run_id="r1",
        code_version="c1",
    )
    fraud.create_version(
        "fraud",
        framework="sklearn",
        dataset_uri="file://d.csv",
        dataset_hash="h2",
        flow_run_id="r2",
        parent_version=1,
    )
    chain = fraud.lineage("fraud")["versions"]
    assert chain[0]["dataset"] == {"uri": "file://d.csv", "hash": "h1"}
    assert chain[0]["run"] == {"flow_run_id": "r1", "code_version": "c1"}
    assert chain[1]["parent_version"] == 1 and chain[1]["dataset"]["hash"] == "h2"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda r: r.create_version("nope", framework="sklearn"),
            NotFoundError,
            "model 'nope' does not exist",
        ),
        (
            lambda r: r.transition_stage("fraud", 1, "production"),
            TransitionError,
            "from development to production",
        ),
        (lambda r: r.transition_stage("fraud", 1, "gold"), ValidationError, "stage 'gold'"),
        (
            lambda r: r.create_version("fraud", framework="sklearn", semver="1.2"),
            ValidationError,
            "'1.2' is malformed",
        ),
        (
            lambda r: r.create_version("fraud", framework="sklearn", semver="0.1.0"),
            AlreadyExistsError,
            "0.1.0",
        ),
        (
            lambda r: r.create_version("fraud", framework="sklearn", artifacts={"../x": b"1"}),
            ValidationError,
            "escapes",
        ),
        (
            lambda r: r.create_version("fraud", framework="sklearn", artifacts={"/etc/passwd": b"1"}),
            ValidationError,
            "absolute",
        ),
        (
            lambda r: r.create_version("fraud", framework="sklearn", metrics={"auc": "high"}),
            ValidationError,
            "metric 'auc' has value 'high', which is not a number",
        ),
        (
            lambda r: r.create_version("fraud", framework="sklearn", metrics={"auc": float("nan")}),
            ValidationError,
            "not finite",
        ),
        (lambda r: r.create_version("fraud", framework="tensorflowish"), ValidationError, "framework"),
        (lambda r: r.set_alias("fraud", "production", 1), ValidationError, "reserved"),
        (lambda r: r.set_alias("fraud", "champion", 9), NotFoundError, "no version 9"),
        (lambda r: r.create_model("fraud"), AlreadyExistsError, "already exists"),
        (lambda r: r.create_model("bad name!"), ValidationError, "model name"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(fraud: Registry, call, error, message) -> None:  # type: ignore[no-untyped-def]
    fraud.create_version("fraud", framework="sklearn", metrics={"auc": 0.9})
    before = _snapshot(fraud)
    with pytest.raises(error, match=message):
        call(fraud)
    assert _snapshot(fraud) == before
    assert AuditLog(fraud.db).verify().ok


def test_every_change_is_audited_and_chain_verifies(fraud: Registry) -> None:
    fraud.create_version("fraud", framework="sklearn")
    fraud.set_version_tag("fraud", 1, "reviewed", "yes")
    fraud.set_model_tag("fraud", "domain", "payments")
    fraud.set_alias("fraud", "champion", 1)
    fraud.transition_stage("fraud", 1, "staging")
    actions = [e.action for e in AuditLog(fraud.db).entries(limit=100)]
    assert actions == [
        "model.create",
        "version.create",
        "version.tag",
        "model.tag",
        "alias.move",
        "version.stage",
    ]
    report = AuditLog(fraud.db).verify()
    assert report.ok and report.checked == 6


def test_verify_and_integrity_error_on_flipped_byte(fraud: Registry) -> None:
    from pathlib import Path

    from storage.errors import IntegrityError

    v = fraud.create_version("fraud", framework="sklearn", artifacts={"model.skops": b"weights" * 100})
    assert fraud.verify_version("fraud", 1).ok
    blob = Path(fraud.artifacts.path_of(v.artifacts[0].sha256))
    data = bytearray(blob.read_bytes())
    data[10] ^= 0x01
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="artifact 'fraud/1/model.skops' is corrupted"):
        fraud.load_artifact("fraud", 1, "model.skops")
    report = fraud.verify_version("fraud", 1)
    assert not report.ok and report.artifacts[0].name == "model.skops"


def test_export_writes_verified_files(fraud: Registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fraud.create_version(
        "fraud", framework="sklearn", artifacts={"model/model.onnx": b"x", "card.md": b"# m"}
    )
    written = fraud.export_version("fraud", 1, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "card.md",
        "model/model.onnx",
    ]
    assert (tmp_path / "out" / "model" / "model.onnx").read_bytes() == b"x"


def test_idempotency_key_makes_retries_safe(fraud: Registry) -> None:
    first = fraud.create_version("fraud", framework="sklearn", idempotency_key="task-run-1")
    again = fraud.create_version("fraud", framework="sklearn", idempotency_key="task-run-1")
    other = fraud.create_version("fraud", framework="sklearn", idempotency_key="task-run-2")
    assert (first.number, again.number, other.number) == (1, 1, 2)
    assert fraud.get_model("fraud").latest_version == 2


def test_malformed_reference_and_duplicate_compare_refs(fraud: Registry) -> None:
    fraud.create_version("fraud", framework="sklearn", metrics={"auc": 0.9})
    fraud.create_version("fraud", framework="sklearn", metrics={"auc": 0.95})
    fraud.set_alias("fraud", "champion", 1)
    with pytest.raises(ValidationError, match="version '1.2' is malformed"):
        fraud.get_version("fraud", "1.2")
    result = fraud.compare("fraud", [1, "@champion", 2], primary="auc")
    assert [r["version"] for r in result.rows] == [1, 2] and result.winner == 2


def test_read_records_carry_every_field(fraud: Registry) -> None:
    from dataclasses import fields

    from storage.registry.records import ModelVersion

    fraud.create_version("fraud", framework="sklearn")
    read = fraud.get_version("fraud", 1)
    assert set(vars(read)) == {f.name for f in fields(ModelVersion)}
    with pytest.raises(AttributeError):
        read.stage = "production"  # type: ignore[misc]


def test_extra_metadata_can_be_added_later_and_is_audited(fraud: Registry) -> None:
    fraud.create_version("fraud", framework="sklearn", extra={"team": "risk"})
    updated = fraud.set_version_extra("fraud", 1, "explainer", {"kind": "shap.TreeExplainer"})
    assert updated.extra == {"team": "risk", "explainer": {"kind": "shap.TreeExplainer"}}
    assert fraud.get_version("fraud", 1).extra == updated.extra
    last = AuditLog(fraud.db).entries(action="version.extra")[-1]
    assert (last.before, last.after) == ({"explainer": None}, {"explainer": {"kind": "shap.TreeExplainer"}})
    with pytest.raises(ValidationError, match="must be JSON-serialisable"):
        fraud.set_version_extra("fraud", 1, "bad", object())
