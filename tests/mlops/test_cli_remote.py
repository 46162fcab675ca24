"""The ``mlops`` command through the platform service (``MLOPS_API_URL``, ``MLOPS_API_KEY``).

A service runs in a thread over its own home (SQLite); the command runs
in-process with a different, empty ``MLOPS_HOME`` and only the URL and a key,
and that home must stay empty: no database, no artifact. Each key's owner is
who acts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from blocks.settings import MlopsSettings
from mlops.cli import app
from service.app import create_app
from service.config import ServiceSettings
from service.server import running_service
from storage.governance.lineage import LineageStore
from storage.registry.core import Registry

KEYS = {
    "ada": "admin",
    "cole": "contributor",
    "rita": "reviewer",
    "rob": "reviewer",
    "reed": "reader",
}


@dataclass
class Remote:
    """A running service, its registry, and a key per person."""

    url: str
    registry: Registry
    keys: dict[str, str]

    def run(self, who: str | None, *args: str) -> Result:
        env = {"MLOPS_API_URL": self.url, "MLOPS_API_KEY": self.keys[who] if who else "", "COLUMNS": "200"}
        return CliRunner().invoke(app, list(args), env=env)

    def ok(self, who: str, *args: str) -> Result:
        result = self.run(who, *args)
        assert result.exit_code == 0, f"{args} as {who} failed: {result.output}"
        return result

    def json(self, who: str, *args: str) -> Any:
        result = self.ok(who, *args, "--json")
        assert result.stderr == ""
        return json.loads(result.stdout)

    def failed(self, who: str | None, *args: str) -> str:
        """Run a command that must fail cleanly; returns its error message."""
        result = self.run(who, *args)
        assert result.exit_code == 1, f"{args} as {who} should fail: {result.output}"
        assert result.stderr.startswith("error: ") and "Traceback" not in result.output
        return result.stderr


@pytest.fixture
def remote(tmp_path: Path, _isolated_home: Path) -> Iterator[Remote]:
    settings = MlopsSettings(home=tmp_path / "server-home")
    app_ = create_app(ServiceSettings(port=0), settings=settings)
    keys = {owner: app_.state.keys.create(owner, role, actor="setup")[0] for owner, role in KEYS.items()}
    with running_service(app_) as url:
        yield Remote(url, app_.state.registry, keys)
    # the client side kept nothing: no database, no artifact, not even the folder
    assert not _isolated_home.exists() or list(_isolated_home.rglob("*")) == []


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    model = tmp_path / "model.skops"
    model.write_bytes(b"pretend skops model" * 1000)
    card = tmp_path / "card.json"
    card.write_bytes(b'{"owner": "risk"}')
    return {"model": model, "card": card}


def _register(remote: Remote, files: dict[str, Path], auc: str) -> dict[str, Any]:
    return remote.json(  # type: ignore[no-any-return]
        "cole",
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
        f"auc={auc}",
        "--param",
        "depth=4",
        "--tag",
        "team=risk",
        "--dataset-uri",
        "s3://raw/tx.parquet",
        "--dataset-hash",
        "sha256:abc",
    )


def test_whoami_and_keys(remote: Remote) -> None:
    assert remote.json("rita", "whoami") == {"owner": "rita", "role": "reviewer", "url": remote.url}
    assert "rita (reviewer)" in remote.ok("rita", "whoami").stdout
    created = remote.ok("ada", "keys", "create", "dora", "--role", "reader", "--description", "dashboards")
    secret = created.stdout.strip()
    assert secret.startswith("mlops_") and "shown once" in created.stderr
    listed = remote.json("ada", "keys", "list")
    dora = next(k for k in listed if k["owner"] == "dora")
    assert dora["role"] == "reader" and dora["created_by"] == "ada" and "key" not in dora
    assert "dashboards" in remote.ok("ada", "keys", "list").stdout
    remote.keys["dora"] = secret
    assert remote.json("dora", "whoami")["owner"] == "dora"
    assert remote.json("ada", "keys", "revoke", str(dora["id"]))["active"] is False
    assert "not valid" in remote.failed("dora", "whoami")
    assert "dora" not in {k["owner"] for k in remote.json("ada", "keys", "list")}
    assert "dora" in {k["owner"] for k in remote.json("ada", "keys", "list", "--all")}
    assert "may not admin" in remote.failed("cole", "keys", "create", "eve", "--role", "admin")
    as_json = remote.json("ada", "keys", "create", "fay", "--role", "contributor")
    assert as_json["key"].startswith("mlops_") and as_json["owner"] == "fay"


def test_registry_commands(remote: Remote, files: dict[str, Path], tmp_path: Path) -> None:
    assert remote.json("cole", "registry", "create", "fraud", "--owner", "risk", "--tag", "team=risk")["name"]
    v1 = _register(remote, files, "0.91")
    v2 = _register(remote, files, "0.95")
    assert (v1["number"], v2["number"], v1["created_by"]) == (1, 2, "cole")
    assert {a["name"] for a in v1["artifacts"]} == {"model.skops", "card.json"}
    assert remote.registry.load_artifact("fraud", 1, "model.skops") == files["model"].read_bytes()
    assert [m["name"] for m in remote.json("reed", "registry", "list")["items"]] == ["fraud"]
    assert remote.json("reed", "registry", "show", "fraud")["owner"] == "risk"
    versions = remote.json("reed", "registry", "versions", "fraud", "--metric", "auc>=0.9")
    assert [v["number"] for v in versions["items"]] == [2, 1]
    assert remote.json("reed", "registry", "get", "fraud", "1")["hyperparameters"] == {"depth": 4}
    compared = remote.json("reed", "registry", "compare", "fraud", "1", "2", "--primary", "auc")
    assert compared["winner"] == 2
    lineage = remote.json("reed", "registry", "lineage", "fraud", "--version", "1")
    assert "s3://raw/tx.parquet" in json.dumps(lineage)
    assert remote.json("reed", "registry", "verify", "fraud", "1")["ok"] is True
    out = tmp_path / "exported"
    written = remote.json("reed", "registry", "export", "fraud", "1", str(out))
    assert sorted(Path(p).name for p in written) == ["card.json", "model.skops"]
    assert (out / "model.skops").read_bytes() == files["model"].read_bytes()
    # stage and alias moves need an admin key; the key's owner is the actor
    assert "needs one of admin" in remote.failed("cole", "registry", "stage", "fraud", "1", "staging")
    for number in ("1", "2"):
        assert remote.json("ada", "registry", "stage", "fraud", number, "staging")["stage"] == "staging"
    moved = remote.ok("ada", "registry", "stage", "fraud", "1", "production", "--alias", "champion")
    assert "moved fraud version 1 (0.1.0) from staging to production" in moved.stdout
    remote.ok(
        "ada", "registry", "stage", "fraud", "2", "production", "--alias", "champion", "--reason", "better"
    )
    assert remote.json("ada", "registry", "alias", "fraud", "challenger", "1")["to_version"] == 1
    aliases = remote.json("reed", "registry", "aliases", "fraud", "--alias", "champion")
    assert [(m["to_version"], m["actor"]) for m in aliases] == [(1, "ada"), (2, "ada")]
    history = remote.json("reed", "registry", "history", "fraud", "--version", "2")
    assert history[-1]["to_stage"] == "production" and history[-1]["actor"] == "ada"
    rolled = remote.json("ada", "registry", "rollback", "fraud", "--reason", "regression")
    assert (rolled["restored_version"], rolled["replaced_version"]) == (1, 2)
    assert remote.registry.get_version("fraud", "@champion").number == 1
    # --actor can only name the key's owner
    assert "not the owner of MLOPS_API_KEY ('cole')" in remote.failed(
        "cole", "registry", "create", "other", "--actor", "mallory"
    )
    assert remote.json("cole", "registry", "create", "other", "--actor", "cole")["name"] == "other"
    assert "does not exist" in remote.failed("reed", "registry", "get", "nope", "1")


def test_approvals_reviewers_audit_and_lineage(remote: Remote, files: dict[str, Path]) -> None:
    remote.ok("cole", "registry", "create", "fraud")
    _register(remote, files, "0.93")
    assert (
        "reviewer rita: ml-lead" in remote.ok("ada", "reviewers", "add", "rita", "--role", "ml-lead").stdout
    )
    remote.ok("ada", "reviewers", "add", "rob", "--role", "risk")
    assert remote.json("reed", "reviewers", "list") == {"rita": ["ml-lead"], "rob": ["risk"]}
    assert "may not admin" in remote.failed("rita", "reviewers", "add", "rita", "--role", "boss")
    # staging: one approval; the contributor opens it, a reviewer approves with their own key
    request = remote.json(
        "cole", "approvals", "request", "fraud", "1", "--stage", "staging", "--reason", "eval"
    )
    assert request["requested_by"] == "cole" and request["status"] == "pending"
    assert [r["id"] for r in remote.json("reed", "approvals", "list", "--pending")] == [request["id"]]
    assert (
        "Promotion of fraud version 1 to staging"
        in remote.ok("reed", "approvals", "show", str(request["id"])).stdout
    )
    assert remote.json("reed", "approvals", "show", str(request["id"]))["reason"] == "eval"
    assert "may not approve" in remote.failed("cole", "approve", str(request["id"]))
    assert "not the owner of MLOPS_API_KEY ('rita')" in remote.failed(
        "rita", "approve", str(request["id"]), "--reviewer", "rob"
    )
    decided = remote.ok("rita", "approve", str(request["id"]), "--reviewer", "rita", "--comment", "fine")
    assert "rita approved request" in decided.stdout
    assert remote.registry.get_version("fraud", 1).stage == "staging"
    # production: two approvals; the admin who asks may not approve their own request
    prod = remote.json("ada", "approvals", "request", "fraud", "1", "--stage", "production")
    assert "self-approval is not allowed" in remote.failed("ada", "approve", str(prod["id"]))
    first = remote.json("rita", "approve", str(prod["id"]))
    assert (first["status"], [d["reviewer"] for d in first["decisions"]]) == ("pending", ["rita"])
    second = remote.json("rob", "approve", str(prod["id"]), "--comment", "ok")
    assert second["status"] == "promoted"
    assert remote.registry.get_version("fraud", "@champion").number == 1
    assert remote.registry.get_version("fraud", 1).stage == "production"
    # a rejection ends a request
    _register(remote, files, "0.94")
    other = remote.json("cole", "approvals", "request", "fraud", "2", "--stage", "staging")
    assert (
        remote.json("rob", "reject", str(other["id"]), "--comment", "no bias report")["status"] == "rejected"
    )
    # audit: who did what, and the chain holds
    assert "audit chain intact" in remote.ok("reed", "audit", "verify").stdout
    assert remote.json("reed", "audit", "verify")["ok"] is True
    entries = remote.json("reed", "audit", "log", "--entity-type", "approval_request", "--limit", "1000")
    assert {"cole", "ada", "rita", "rob"} <= {e["actor"] for e in entries}
    assert "version.create" in remote.ok("reed", "audit", "log", "--limit", "1000").stdout
    # lineage reads
    LineageStore(remote.registry).register_dataset(
        "transactions",
        uri="s3://raw/tx.parquet",
        source="core",
        owner="data-eng",
        contains_pii=True,
        retention_days=365,
    )
    tree = remote.json("reed", "lineage", "model", "fraud")
    assert tree["versions"][0]["datasets"][0]["name"] == "transactions"
    assert {"rita", "rob"} == {who for a in tree["versions"][0]["approvals"] for who in a["approved_by"]}
    assert "version 1" in remote.ok("reed", "lineage", "model", "fraud").stdout
    assert [d["name"] for d in remote.json("reed", "lineage", "datasets")] == ["transactions"]
    assert remote.json("reed", "lineage", "dataset", "transactions")["dataset"]["contains_pii"] is True


@pytest.mark.parametrize(
    "args",
    [
        ("train", "--config", "x.yaml"),
        ("serve",),
        ("up",),
        ("features", "entities"),
        ("lineage", "register", "d", "--uri", "u", "--source", "s", "--owner", "o", "--pii"),
        ("erase", "--entity", "id=1", "--reason", "dsr"),
        ("monitor",),
        ("endpoints", "list"),
    ],
)
def test_local_commands_refuse_with_the_service_named(remote: Remote, args: tuple[str, ...]) -> None:
    message = remote.failed("ada", *args)
    assert f"`mlops {args[0]}" in message
    assert "MLOPS_API_URL is set" in message and remote.url in message


def test_help_still_works_remotely(remote: Remote) -> None:
    assert "Usage" in remote.ok("ada", "train", "--help").stdout
    assert "--reviewer" in remote.ok("ada", "approve", "--help").stdout


def test_missing_or_wrong_key(remote: Remote) -> None:
    assert "MLOPS_API_KEY is not set" in remote.failed(None, "registry", "list")
    remote.keys["nobody"] = "mlops_not-a-key"
    assert "not valid" in remote.failed("nobody", "registry", "list")


def test_unreachable_service_is_a_clean_error(_isolated_home: Path) -> None:
    env = {"MLOPS_API_URL": "http://127.0.0.1:9", "MLOPS_API_KEY": "mlops_x"}
    result = CliRunner().invoke(app, ["registry", "list"], env=env)
    assert result.exit_code == 1 and "cannot be reached" in result.stderr
    assert not _isolated_home.exists()


def test_whoami_and_reviewer_rules_locally(_isolated_home: Path) -> None:
    assert os.environ.get("MLOPS_API_URL") is None
    result = CliRunner().invoke(app, ["whoami"])
    assert result.exit_code == 1 and "MLOPS_API_URL" in result.stderr
    result = CliRunner().invoke(app, ["approve", "1"])
    assert result.exit_code == 1 and "--reviewer is required" in result.stderr
