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
import threading
import time
from collections.abc import Iterator
from typing import Any

from serving.app import create_app
from serving.config import ServeSettings

__all__ = ["ServerThread", "create_app", "free_port", "running_server", "serve"]


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


def serve(settings: ServeSettings | None = None, *, fd: int | None = None) -> None:
    """Serve until interrupted, in this process (``mlops serve``).

    Args:
        settings: Server settings (``MLOPS_SERVE_*`` when None).
        fd: An already bound listening socket to serve on instead of ``host:port``
            (replica processes sharing one port).
    """
    from serving.graceful import GracefulServer

    settings = settings or ServeSettings()
    app = create_app(settings)
    extra: dict[str, Any] = {"fd": fd} if fd is not None else {}
    # drains keep-alive connections on SIGTERM and exits 0 after a clean shutdown
    GracefulServer(_config(app, settings.host, settings.port, settings.log_level, **extra)).run()


class ServerThread:
    """A uvicorn server for ``app`` in a daemon thread on ``127.0.0.1``; stop it with :meth:`stop`."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        import uvicorn

        self.host = host
        self.port = port or free_port(host)
        self.server = uvicorn.Server(_config(app, self.host, self.port, "warning"))
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{self.host}:{self.port}"

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
