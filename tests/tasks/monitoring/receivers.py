"""Local destinations for notification tests: an HTTP receiver and an SMTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One HTTP request the receiver got."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class HttpReceiver:
    """Records every POST; paths in ``failing`` answer 500; a path in ``held`` waits for ``release``."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    held: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def record(self, item: Received) -> None:
        with self.changed:
            self.requests.append(item)
            self.changed.notify_all()

    def at(self, path: str) -> list[Received]:
        """The requests to ``path`` so far."""
        with self.changed:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 20.0) -> list[Received]:
        """Block until ``path`` got ``count`` requests (event-driven, with a deadline)."""
        with self.changed:
            self.changed.wait_for(lambda: len([r for r in self.requests if r.path == path]) >= count, timeout)
            return [r for r in self.requests if r.path == path]


@contextmanager
def http_receiver() -> Iterator[HttpReceiver]:
    """A threaded HTTP server on a free 127.0.0.1 port."""
    receiver = HttpReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode()
            receiver.record(Received(self.path, dict(self.headers), body))
            if self.path in receiver.held:
                receiver.release.wait(30)
            status = 500 if self.path in receiver.failing else 200
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status == 200 else b"boom")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    """Messages the SMTP server accepted."""

    port: int = 0
    messages: list[Message] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Message]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    """An ``aiosmtpd`` server on 127.0.0.1 that keeps every message."""
    from aiosmtpd.controller import Controller

    mailbox = Mailbox(port=_free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with mailbox.changed:
                mailbox.messages.append(message_from_bytes(envelope.content))
                mailbox.changed.notify_all()
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname="127.0.0.1", port=mailbox.port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()
