"""Done when: the platform runs as a service and is used from elsewhere with only a URL and keys.

``mlops server`` runs as a real process over its own ``MLOPS_HOME`` (SQLite,
and PostgreSQL as ``MLOPS_DATABASE_URL``); ``mlops keys create`` makes the keys
against that home. Every other command runs as its own process from a second,
empty ``MLOPS_HOME`` with only ``MLOPS_API_URL`` and a key: it registers a
version with files, lists versions, asks for promotions that reviewers approve
with their own keys, reads lineage and verifies the audit chain, and leaves
that home empty. SIGTERM stops the server with exit code 0.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.server import free_port

SCRIPT = Path(sys.executable).parent / "mlops"
MLOPS = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "mlops.cli"]
KEYS = {"ada": "admin", "cole": "contributor", "rita": "reviewer", "rob": "reviewer"}
HEALTH_DEADLINE_S = 90.0

pytestmark = pytest.mark.slow  # a dozen processes per database: a few seconds each on a busy machine


def base_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no MLOPS_* and no Prefect API from the test process."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    return env | {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
    }


def mlops(env: dict[str, str], *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    """Run the installed ``mlops`` command in its own process."""
    done = subprocess.run([*MLOPS, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == expect, (
        f"mlops {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}"
    )
    return done


@dataclass
class Server:
    """A running ``mlops server`` process, its environment and the keys made for it."""

    process: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    log: Path
    keys: dict[str, str] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, then wait for the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def wait_until_healthy(server: Server, verify: bool | str = True) -> dict[str, Any]:
    """Poll the socket, then /api/v1/health, until the deadline; fail at once if the process ends."""
    host, port = server.url.rpartition("://")[2].split(":")
    deadline = dt.datetime.now() + dt.timedelta(seconds=HEALTH_DEADLINE_S)
    while dt.datetime.now() < deadline:
        try:
            server.process.wait(timeout=0.05)  # the poll interval: returns only if the server died
        except subprocess.TimeoutExpired:
            pass
        else:
            raise AssertionError(f"mlops server exited with {server.process.returncode}:\n{server.output()}")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            answer = httpx.get(f"{server.url}/api/v1/health", verify=verify, timeout=5)
        except (OSError, httpx.TransportError):
            continue
        if answer.status_code == 200:
            result: dict[str, Any] = answer.json()
            return result
    raise AssertionError(f"mlops server was not healthy within {HEALTH_DEADLINE_S} s:\n{server.output()}")


def start_server(env: dict[str, str], log: Path, *options: str) -> Server:
    """Start ``mlops server`` on a free port and wait until it answers."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*MLOPS, "server", "--port", str(port), *options], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    scheme = "https" if "--tls-cert" in options else "http"
    return Server(process, f"{scheme}://127.0.0.1:{port}", env, log)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """``mlops server`` over its own home, with a key per person made by ``mlops keys create``."""
    env = base_env(tmp_path) | {"MLOPS_HOME": str(tmp_path / "server-home"), "MLOPS_USER": "ops"}
    if request.param == "postgresql":
        env["MLOPS_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    running = start_server(env, tmp_path / "server.log")
    try:
        health = wait_until_healthy(running)
        assert health["status"] == "ok"
        for owner, role in KEYS.items():
            created = json.loads(mlops(env, "keys", "create", owner, "--role", role, "--json").stdout)
            assert (created["owner"], created["role"], created["created_by"]) == (owner, role, "ops")
            running.keys[owner] = created["key"]
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(timeout=30)


def test_the_platform_used_from_elsewhere(server: Server, tmp_path: Path) -> None:
    client_home = tmp_path / "client-home"
    client_env = base_env(tmp_path) | {"MLOPS_HOME": str(client_home), "MLOPS_API_URL": server.url}

    def as_(who: str, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        return mlops(client_env | {"MLOPS_API_KEY": server.keys[who]}, *args, expect=expect)

    def as_json(who: str, *args: str) -> Any:
        return json.loads(as_(who, *args, "--json").stdout)

    weights = tmp_path / "model.onnx"
    weights.write_bytes(os.urandom(300_000))
    card = tmp_path / "card.json"
    card.write_text('{"owner": "risk"}')
    assert as_json("cole", "whoami") == {"owner": "cole", "role": "contributor", "url": server.url}

    # register a version with files
    as_("cole", "registry", "create", "fraud", "--description", "card fraud", "--owner", "risk")
    version = as_json(
        "cole",
        "registry",
        "register",
        "fraud",
        "--framework",
        "onnx",
        "--file",
        str(weights),
        "--file",
        f"card.json={card}",
        "--metric",
        "auc=0.93",
        "--dataset-uri",
        "s3://lake/fraud/2026-11.parquet",
        "--dataset-hash",
        "sha256:feed",
    )
    assert (version["number"], version["created_by"], version["stage"]) == (1, "cole", "development")
    assert {a["name"] for a in version["artifacts"]} == {"model.onnx", "card.json"}
    listed = as_json("cole", "registry", "versions", "fraud")
    assert [v["number"] for v in listed["items"]] == [1]

    # staging: one reviewer; production: two reviewers, and the requester may not approve
    staging = as_json(
        "cole", "approvals", "request", "fraud", "1", "--stage", "staging", "--reason", "eval ok"
    )
    assert staging["requested_by"] == "cole"
    assert "may not approve" in as_("cole", "approve", str(staging["id"]), expect=1).stderr
    assert as_json("rita", "approve", str(staging["id"]), "--comment", "metrics hold")["status"] == "promoted"
    assert as_json("cole", "registry", "get", "fraud", "1")["stage"] == "staging"
    production = as_json("ada", "approvals", "request", "fraud", "1", "--stage", "production")
    assert production["required_approvals"] == 2
    refused = as_("ada", "approve", str(production["id"]), expect=1)
    assert "self-approval is not allowed" in refused.stderr
    wrong_name = as_("rita", "approve", str(production["id"]), "--reviewer", "rob", expect=1)
    assert "not the owner of MLOPS_API_KEY ('rita')" in wrong_name.stderr
    assert as_json("rita", "approve", str(production["id"]))["status"] == "pending"
    approved = as_json("rob", "approve", str(production["id"]), "--comment", "risk signed off")
    assert approved["status"] == "promoted"
    assert {d["reviewer"] for d in approved["decisions"]} == {"rita", "rob"}

    # the version moved, with its alias
    champion = as_json("cole", "registry", "get", "fraud", "@champion")
    assert (champion["number"], champion["stage"]) == (1, "production")
    pending = as_json("cole", "approvals", "list", "--pending")
    assert pending == []

    # files came through the API intact
    out = tmp_path / "exported"
    as_("cole", "registry", "export", "fraud", "production", str(out))
    assert (out / "model.onnx").read_bytes() == weights.read_bytes()
    assert as_json("cole", "registry", "verify", "fraud", "1")["ok"] is True

    # lineage and the audit chain
    lineage = as_json("cole", "lineage", "model", "fraud")
    (chain,) = lineage["versions"]
    assert chain["training_dataset"] == {"uri": "s3://lake/fraud/2026-11.parquet", "hash": "sha256:feed"}
    assert {who for a in chain["approvals"] for who in a["approved_by"]} == {"rita", "rob"}
    assert "s3://lake/fraud/2026-11.parquet" in as_("cole", "registry", "lineage", "fraud").stdout
    assert "audit chain intact" in as_("cole", "audit", "verify").stdout
    actors = {e["actor"] for e in as_json("cole", "audit", "log", "--limit", "1000")}
    assert {"ops", "cole", "rita", "rob", "ada"} <= actors

    # the second home holds nothing: no database, no artifact
    assert not client_home.exists() or list(client_home.rglob("*")) == []
    if "MLOPS_DATABASE_URL" not in server.env:
        assert (Path(server.env["MLOPS_HOME"]) / "mlops.db").is_file()
    assert server.stop() == 0, server.output()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_the_service_over_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    env = base_env(tmp_path) | {"MLOPS_HOME": str(tmp_path / "server-home"), "MLOPS_USER": "ops"}
    secret = mlops(env, "keys", "create", "ada", "--role", "admin").stdout.strip()
    server = start_server(env, tmp_path / "server.log", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert server.url.startswith("https://")
        assert wait_until_healthy(server, verify=str(cert))["status"] == "ok"
        client_env = base_env(tmp_path) | {
            "MLOPS_HOME": str(tmp_path / "client-home"),
            "MLOPS_API_URL": server.url,
            "MLOPS_API_KEY": secret,
            "MLOPS_API_CA_BUNDLE": str(cert),
        }
        assert "ada (admin) at https://" in mlops(client_env, "whoami").stdout
        untrusted = mlops(client_env | {"MLOPS_API_CA_BUNDLE": ""}, "whoami", expect=1)
        assert "cannot be reached" in untrusted.stderr and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        assert server.stop() == 0, server.output()
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=30)


def test_tls_needs_both_files(tmp_path: Path) -> None:
    env = base_env(tmp_path) | {"MLOPS_HOME": str(tmp_path / "server-home")}
    cert, _ = _self_signed(tmp_path)
    done = mlops(env, "server", "--port", str(free_port()), "--tls-cert", str(cert), expect=1)
    assert "TLS needs both --tls-cert and --tls-key" in done.stderr
