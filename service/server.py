"""Run the platform service: in this process (``mlops server``) or in a background thread.

Example:
    >>> import tempfile, httpx
    >>> from blocks.settings import MlopsSettings
    >>> from service.app import create_app
    >>> app = create_app(settings=MlopsSettings(home=tempfile.mkdtemp()))
    >>> with running_service(app) as url:
    ...     httpx.get(f"{url}/api/v1/health").json()["status"]
    'ok'
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

from service.config import ServiceSettings


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def uvicorn_config(app: Any, settings: ServiceSettings) -> Any:
    """uvicorn's configuration for ``app``: host, port, TLS when a certificate is given."""
    import uvicorn

    from storage.errors import ValidationError

    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ValidationError("TLS needs both --tls-cert and --tls-key")
    for path in (settings.tls_cert, settings.tls_key):
        if path is not None and not path.is_file():
            raise ValidationError(f"TLS file {str(path)!r} does not exist")
    if settings.tls_cert and settings.tls_key:
        # A key that is not the certificate's would otherwise fail inside uvicorn's startup.
        try:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key), password=lambda: b"")
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc):
                why = "the private key does not belong to the certificate"
            else:
                why = f"they cannot be loaded as a PEM certificate and an unencrypted PEM key ({exc})"
            cert, key = str(settings.tls_cert), str(settings.tls_key)
            raise ValidationError(f"TLS certificate {cert!r} and key {key!r}: {why}") from None
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
    )


def serve(settings: ServiceSettings | None = None) -> None:
    """Serve until SIGINT/SIGTERM, in this process."""
    import uvicorn

    from service.app import create_app

    settings = settings or ServiceSettings()
    uvicorn.Server(uvicorn_config(create_app(settings), settings)).run()


class ServiceThread:
    """The service in a daemon thread; :meth:`start` waits until it listens, :meth:`stop` joins it."""

    def __init__(self, app: Any, settings: ServiceSettings | None = None) -> None:
        import uvicorn

        # Without explicit settings (or with port 0) the thread takes a free port.
        base = settings or app.state.settings.model_copy(update={"port": 0})
        self.settings = base.model_copy(update={"port": base.port or free_port(base.host)})
        self.server = uvicorn.Server(uvicorn_config(app, self.settings))
        self._ready = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"mlops-service-{self.settings.port}", daemon=True
        )

    def _run(self) -> None:
        try:
            self.server.run()
        finally:
            self._ready.set()

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"{self.settings.scheme()}://{self.settings.host}:{self.settings.port}"

    def start(self, timeout: float = 60.0) -> ServiceThread:
        """Start and wait until the service accepts connections."""
        original = self.server.startup

        async def startup(*args: Any, **kwargs: Any) -> None:
            await original(*args, **kwargs)
            self._ready.set()

        self.server.startup = startup  # type: ignore[method-assign]
        self.thread.start()
        if not self._ready.wait(timeout) or not self.server.started:
            raise RuntimeError(f"the platform service did not start on {self.url}")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down and join the thread."""
        self.server.should_exit = True
        self.thread.join(timeout)


@contextlib.contextmanager
def running_service(app: Any, settings: ServiceSettings | None = None) -> Iterator[str]:
    """A running service for ``app``; yields its URL and stops it on exit."""
    thread = ServiceThread(app, settings).start()
    try:
        yield thread.url
    finally:
        thread.stop()
