"""Run the model server: one uvicorn process, or a server in a background thread.

Example:
    >>> import tempfile, httpx
    >>> from serving.config import ServeSettings
    >>> from storage.registry.core import Registry
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a")
    >>> app = create_app(ServeSettings(log_predictions=False), registry=reg)
    >>> with running_server(app) as url:
    ...     httpx.get(f"{url}/v2/health/ready").json()
    {'ready': True}
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serving.app import create_app
from serving.config import ServeSettings

__all__ = ["ServerThread", "check_tls", "create_app", "free_port", "running_server", "serve"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _config(app: Any, host: str, port: int, log_level: str, **kwargs: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
        **kwargs,
    )


def check_tls(cert: Path | str | None, key: Path | str | None) -> None:
    """Refuse a TLS setting that cannot work, before anything starts, with a message that says why.

    Both files or neither; both must exist; the key must belong to the
    certificate (OpenSSL's ``KEY_VALUES_MISMATCH`` otherwise surfaces only
    inside uvicorn's startup, as a traceback). An encrypted key is refused
    rather than prompted for.

    Raises:
        ValidationError: naming the file(s) and the problem.
    """
    from storage.errors import ValidationError

    if cert is None and key is None:
        return
    if cert is None or key is None:
        raise ValidationError("TLS needs both --tls-cert and --tls-key (MLOPS_SERVE_TLS_CERT/KEY)")
    for path in (cert, key):
        if not Path(path).is_file():
            raise ValidationError(f"TLS file {str(path)!r} does not exist")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key), password=lambda: b"")
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            why = "the private key does not belong to the certificate"
        else:
            why = f"they cannot be loaded as a PEM certificate and an unencrypted PEM key ({exc})"
        raise ValidationError(f"TLS certificate {str(cert)!r} and key {str(key)!r}: {why}") from None


def _tls(settings: ServeSettings) -> dict[str, Any]:
    """uvicorn's TLS options for ``settings`` (checked first), or none for plain HTTP."""
    from storage.errors import ValidationError

    check_tls(settings.tls_cert, settings.tls_key)
    if settings.tls_cert is None:
        return {}
    if settings.grpc_port is not None:
        raise ValidationError(
            "--grpc-port serves plain gRPC: with --tls-cert its keys and data would travel unencrypted "
            "beside HTTPS; leave out --grpc-port or terminate TLS in front of the server"
        )
    return {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}


def serve(settings: ServeSettings | None = None, *, fd: int | None = None) -> None:
    """Serve until interrupted, in this process (``mlops serve``).

    Args:
        settings: Server settings (``MLOPS_SERVE_*`` when None).
        fd: An already bound listening socket to serve on instead of ``host:port``
            (replica processes sharing one port).
    """
    from serving.graceful import GracefulServer

    settings = settings or ServeSettings()
    extra: dict[str, Any] = _tls(settings)  # refused before any model loads
    app = create_app(settings)
    if fd is not None:
        extra["fd"] = fd
    # drains keep-alive connections on SIGTERM and exits 0 after a clean shutdown
    GracefulServer(_config(app, settings.host, settings.port, settings.log_level, **extra)).run()


class ServerThread:
    """A uvicorn server for ``app`` in a daemon thread on ``127.0.0.1``; stop it with :meth:`stop`.

    With ``tls_cert`` and ``tls_key`` (checked by :func:`check_tls`) it serves HTTPS.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        tls_cert: Path | str | None = None,
        tls_key: Path | str | None = None,
    ) -> None:
        import uvicorn

        check_tls(tls_cert, tls_key)
        tls = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)} if tls_cert else {}
        self.host = host
        self.port = port or free_port(host)
        self.scheme = "https" if tls_cert else "http"
        self.server = uvicorn.Server(_config(app, self.host, self.port, "warning", **tls))
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerThread:
        """Start and wait until the server accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the model server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down (runs the app's shutdown: flushes the prediction log) and join the thread."""
        self.server.should_exit = True
        self.thread.join(timeout)


@contextlib.contextmanager
def running_server(app: Any, *, port: int | None = None) -> Iterator[str]:
    """A running server for ``app``; yields its URL and stops it on exit."""
    server = ServerThread(app, port=port).start()
    try:
        yield server.url
    finally:
        server.stop()
