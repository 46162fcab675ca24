"""A client that keeps sending a declared body whatever the server does, over a plain socket.

httpx stops at the first failed write, so it cannot tell a server that answers a
refused request after reading its body from one that answers at once and closes
the connection under the body still on its way (the client then gets a reset,
not the answer). :func:`send_declared_body` can.
"""

from __future__ import annotations

import select
import socket
from urllib.parse import urlsplit


def send_declared_body(url: str, method: str, path: str, headers: dict[str, str], size: int) -> bytes:
    """Send the headers with ``Content-Length: size``, then ``size`` bytes; return the answer's head.

    Raises ``AssertionError`` when the server answers within 2 s of the headers alone.
    """
    where = urlsplit(url)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {where.netloc}", f"Content-Length: {size}"]
    lines += [f"{key}: {value}" for key, value in headers.items()]
    assert where.hostname is not None and where.port is not None
    with socket.create_connection((where.hostname, where.port), timeout=60) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        early, _, _ = select.select([conn], [], [], 2.0)
        assert not early, "the server answered before reading the body"
        sent = 0
        while sent < size:
            piece = min(64 << 10, size - sent)
            conn.sendall(b"x" * piece)
            sent += piece
        answer = b""
        while b"\r\n\r\n" not in answer:
            received = conn.recv(65536)
            assert received, f"the connection closed after {answer!r}"
            answer += received
    return answer.split(b"\r\n\r\n", 1)[0]
