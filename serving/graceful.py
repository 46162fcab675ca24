"""uvicorn with a drain before its graceful shutdown, and exit status 0 after SIGTERM.

uvicorn's own shutdown stops accepting, then closes every idle keep-alive
connection at once. A client that sent its next request on such a connection
a moment earlier gets no answer (``Server disconnected without sending a
response``): harmless for one process that is going away anyway, a lost
request for a replica that leaves while others keep serving the same port.

:class:`GracefulServer` drains first:

1. it stops accepting (its copy of the listening socket is closed; other
   replicas sharing the socket take the new connections);
2. a response on its way is sent with ``Connection: close``, and every request
   that starts from now on is answered with ``Connection: close``: a client
   learns from its own next answer that it must reconnect;
3. it waits until those connections closed, at most ``drain_s`` seconds (by
   default uvicorn's keep-alive timeout, after which uvicorn would close an
   idle connection anyway), then runs uvicorn's shutdown for what is left
   (requests in flight finish within ``timeout_graceful_shutdown``).

uvicorn re-raises a SIGTERM it handled once the server stopped, so a clean
shutdown ended with status 143, which supervisors and ``set -e`` scripts read
as a failure; this server does not: after SIGTERM and a clean shutdown,
``run()`` returns and the process exits 0. SIGINT is still re-raised (130).

Example:
    >>> import uvicorn
    >>> server = GracefulServer(uvicorn.Config(app=None), drain_s=1.0)
    >>> server.draining, server.drain_s
    (False, 1.0)
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from types import FrameType
from typing import Any

import uvicorn

__all__ = ["GracefulServer"]

CLOSE = (b"connection", b"close")


class _CloseWhenDraining:
    """ASGI wrapper: while the server drains, every response carries ``Connection: close``."""

    def __init__(self, app: Any, server: GracefulServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.server.draining:
            await self.app(scope, receive, send)
            return

        async def closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), CLOSE]}
            await send(message)

        await self.app(scope, receive, closing)


class GracefulServer(uvicorn.Server):
    """A uvicorn server that drains keep-alive connections before it stops (see the module docs).

    Args:
        config: uvicorn's configuration.
        drain_s: Longest wait for keep-alive connections to close after their
            next response (None: uvicorn's ``timeout_keep_alive``; 0: no drain).
    """

    def __init__(self, config: uvicorn.Config, *, drain_s: float | None = None) -> None:
        super().__init__(config)
        self.drain_s = float(config.timeout_keep_alive if drain_s is None else drain_s)
        self.draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Stop on a signal; a SIGTERM is not raised again after the shutdown (exit status 0)."""
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", None)
        if sig == signal.SIGTERM and isinstance(captured, list) and sig in captured:
            captured.remove(sig)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup, with the app wrapped so that a draining server closes connections."""
        self.config.loaded_app = _CloseWhenDraining(self.config.loaded_app, self)
        await super().startup(sockets=sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, drain keep-alive connections, then uvicorn's graceful shutdown."""
        for server in getattr(self, "servers", []):
            server.close()
        for sock in sockets or []:
            sock.close()
        self.draining = True
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            if cycle is not None and not cycle.response_complete:
                cycle.keep_alive = False  # the response on its way says Connection: close
        deadline = time.monotonic() + self.drain_s
        while self.server_state.connections and not self.force_exit and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await super().shutdown(sockets=None)
