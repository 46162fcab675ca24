"""The model server over HTTPS (``mlops serve --tls-cert/--tls-key``, ``MLOPS_SERVE_TLS_CERT/KEY``).

The certificate is made at test time for 127.0.0.1. A client that trusts it
gets predictions; plain HTTP on the same port gets nothing; a key that is not
the certificate's, half a pair, TLS with replicas or beside plain gRPC are all
refused before anything listens, with a message that says why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mlops.cli import app as cli
from serving.app import create_app
from serving.config import ServeSettings
from serving.server import ServerThread, check_tls, free_port, serve
from serving.testing import demo_frame, register_demo
from storage.errors import ValidationError
from storage.registry.core import Registry
from tests.tls_certs import self_signed, trusting

ROWS = demo_frame(2, seed=5).to_dict("records")


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    cert, key = self_signed(tmp_path / "tls")
    other_cert, other_key = self_signed(tmp_path / "tls", "other")
    return {"cert": cert, "key": key, "other_cert": other_cert, "other_key": other_key}


@pytest.mark.slow
def test_mlops_serve_over_https_from_the_environment(tmp_path: Path, certs: dict[str, Path]) -> None:
    home = tmp_path / "home"
    registry = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"))
    register_demo(registry, "fraud", "sklearn")
    registry.db.dispose()
    port = free_port()
    env = {**os.environ, "MLOPS_HOME": str(home), "MLOPS_SERVE_TLS_CERT": str(certs["cert"]),
           "MLOPS_SERVE_TLS_KEY": str(certs["key"])}  # fmt: skip
    command = [
        sys.executable,
        "-m",
        "mlops.cli",
        "serve",
        "--port",
        str(port),
        "--model",
        "fraud",
        "--no-log",
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"https://127.0.0.1:{port}"
    trusted = trusting(certs["cert"])
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/v2/health/ready", verify=trusted, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mlops serve did not become ready over https"
            time.sleep(0.2)
        answer = httpx.post(f"{url}/v1/models/fraud/predict", json=ROWS, verify=trusted)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/v2/health/ready", verify=trusting(certs["other_cert"]), timeout=5)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"serving on https://127.0.0.1:{port}" in out.decode()


def test_server_thread_serves_https(tmp_path: Path, certs: dict[str, Path]) -> None:
    registry = Registry.open(f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "a"))
    app = create_app(ServeSettings(log_predictions=False), registry=registry)
    server = ServerThread(app, tls_cert=certs["cert"], tls_key=certs["key"]).start()
    try:
        assert server.url.startswith("https://")
        ready = httpx.get(f"{server.url}/v2/health/ready", verify=trusting(certs["cert"]))
        assert ready.json() == {"ready": True}
    finally:
        server.stop()
        registry.db.dispose()


def test_bad_pairs_are_refused_with_the_reason(certs: dict[str, Path]) -> None:
    with pytest.raises(ValidationError, match="private key does not belong to the certificate"):
        check_tls(certs["cert"], certs["other_key"])
    with pytest.raises(ValidationError, match="needs both"):
        check_tls(certs["cert"], None)
    with pytest.raises(ValidationError, match="does not exist"):
        check_tls(certs["cert"], certs["key"].with_name("missing.key"))
    with pytest.raises(ValidationError, match="private key does not belong"):
        serve(ServeSettings(port=0, tls_cert=certs["cert"], tls_key=certs["other_key"]))
    with pytest.raises(ValidationError, match="plain gRPC"):
        serve(ServeSettings(port=0, grpc_port=0, tls_cert=certs["cert"], tls_key=certs["key"]))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tls-key", "{other_key}"], "private key does not belong to the certificate"),
        (["--tls-key", "{key}", "--replicas", "2"], "replicas (--replicas, --autoscale) share a listening"),
        (["--tls-key", "{key}", "--autoscale"], "terminate TLS in front of the replicas"),
    ],
)
def test_mlops_serve_refuses_what_cannot_work(certs: dict[str, Path], extra: list[str], message: str) -> None:
    args = ["serve", "--port", "0", "--tls-cert", str(certs["cert"])]
    args += [a.format(**{k: str(v) for k, v in certs.items()}) for a in extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split())
    assert "serving on" not in result.output and "Traceback" not in result.output
