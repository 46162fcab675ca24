"""The platform service over HTTPS with a certificate made at test time for 127.0.0.1.

A client that trusts the certificate gets answers; plain HTTP on the same
port gets none; a client that does not trust it is refused; a key that is not
the certificate's, or half a pair, is refused before the service starts, with
a message that says so.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mlops.cli import app as cli
from mlops.client import Client
from service.app import create_app
from service.config import ServiceSettings
from service.server import running_service, uvicorn_config
from storage.errors import ValidationError
from storage.registry.core import Registry
from tests.tls_certs import self_signed, trusting


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    cert, key = self_signed(tmp_path / "tls")
    other_cert, other_key = self_signed(tmp_path / "tls", "other")
    return {"cert": cert, "key": key, "other_cert": other_cert, "other_key": other_key}


def test_service_speaks_https_only(tmp_path: Path, certs: dict[str, Path]) -> None:
    registry = Registry.open(f"sqlite:///{tmp_path / 'mlops.db'}", str(tmp_path / "artifacts"), actor="t")
    settings = ServiceSettings(port=0, tls_cert=certs["cert"], tls_key=certs["key"])
    app = create_app(settings, registry=registry)
    secret, _ = app.state.keys.create("ana", "contributor", actor="setup")
    with running_service(app, settings) as url:
        assert url.startswith("https://127.0.0.1:")
        with Client(url, secret, verify=str(certs["cert"])) as client:
            assert client.health()["status"] == "ok"
            client.create_model("fraud")
            mv = client.create_version("fraud", framework="custom", artifacts={"model.bin": b"weights"})
            assert client.load_artifact("fraud", mv.number, "model.bin") == b"weights"
        answer = httpx.get(f"{url}/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"},
                           verify=trusting(certs["cert"]))  # fmt: skip
        assert answer.json()["owner"] == "ana"

        plain = url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{plain}/api/v1/health", timeout=5)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/api/v1/health", verify=trusting(certs["other_cert"]), timeout=5)
    registry.db.dispose()


def test_a_key_that_is_not_the_certificates_is_refused_before_start(certs: dict[str, Path]) -> None:
    mismatched = ServiceSettings(port=0, tls_cert=certs["cert"], tls_key=certs["other_key"])
    with pytest.raises(ValidationError, match="private key does not belong to the certificate"):
        uvicorn_config(object(), mismatched)
    with pytest.raises(ValidationError, match="needs both"):
        uvicorn_config(object(), ServiceSettings(port=0, tls_cert=certs["cert"]))
    with pytest.raises(ValidationError, match="cannot be loaded"):
        uvicorn_config(object(), ServiceSettings(port=0, tls_cert=certs["key"], tls_key=certs["key"]))


def test_mlops_server_names_the_mismatch(certs: dict[str, Path]) -> None:
    args = ["server", "--port", "0", "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["other_key"])]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        result = CliRunner().invoke(cli, args)
    finally:  # `mlops server` installs its own handlers before it starts
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert result.exit_code == 1
    assert "private key does not belong to the certificate" in result.output
    assert "Traceback" not in result.output
