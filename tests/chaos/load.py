"""Steady load from several keep-alive clients, each request's outcome recorded with its time."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Outcome:
    """One request: when it ended, whether it succeeded, which process answered, what failed."""

    at: float
    ok: bool
    pid: int | None = None
    error: str = ""


@dataclass
class Load:
    """``clients`` threads, each with its own keep-alive connection, calling ``path`` until stopped.

    Every failure is recorded, never retried: a test counts what a client without
    retries would have seen.
    """

    url: str
    path: str = "/work?ms=5"
    clients: int = 6
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:  # keep-alive (httpx's default)
            while not self._stop.is_set():
                try:
                    response = client.get(self.path)
                    response.raise_for_status()
                    body: Any = response.json()
                    outcome = Outcome(time.monotonic(), True, body.get("pid"))
                except httpx.HTTPError as exc:
                    outcome = Outcome(time.monotonic(), False, error=f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self.outcomes.append(outcome)

    def __enter__(self) -> Load:
        for i in range(self.clients):
            thread = threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every client and wait for its request in flight."""
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def wait_for(self, requests: int, timeout: float = 60.0) -> None:
        """Wait until ``requests`` more requests ended."""
        target = len(self.outcomes) + requests
        deadline = time.monotonic() + timeout
        while len(self.outcomes) < target and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.outcomes) >= target, (
            f"only {len(self.outcomes)} of {target} requests within {timeout} s"
        )

    @property
    def failures(self) -> list[Outcome]:
        """The failed requests so far."""
        with self._lock:
            return [o for o in self.outcomes if not o.ok]

    def pids(self, since: float = 0.0) -> set[int]:
        """Processes that answered since ``since`` (a ``time.monotonic()`` value)."""
        with self._lock:
            return {o.pid for o in self.outcomes if o.ok and o.pid is not None and o.at >= since}
