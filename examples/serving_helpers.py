"""What the use cases share: a model server on loopback, replayed traffic, two reviewers.

Example:
    >>> rows = [{"amount": 1.0}, {"amount": 2.0}]
    >>> [len(b) for b in batches(rows, 1)]
    [1, 1]
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pandas as pd

from storage.registry.approvals import PENDING, ApprovalStore
from tasks.registry.promotion import decide

ADMIN_KEY = "demo-admin-key"
#: Inference needs this key (the GDPR Art. 32 and SOC 2 rules check that the server requires keys).
API_KEY = "demo-api-key"
HEADERS = {"X-API-Key": API_KEY}


@contextlib.contextmanager
def model_server() -> Iterator[str]:
    """A model server for the registry under ``MLOPS_HOME`` on a free 127.0.0.1 port; yields its URL.

    Stopping it flushes the prediction log, so monitoring reads every request.
    """
    from serving.app import create_app
    from serving.config import ServeSettings
    from serving.server import running_server

    settings = ServeSettings(api_keys=[API_KEY], admin_key=ADMIN_KEY, log_flush_s=0.5, refresh_s=0.2)
    with running_server(create_app(settings)) as url:
        yield url


def batches(rows: Sequence[dict[str, Any]], size: int) -> list[Sequence[dict[str, Any]]]:
    """``rows`` in consecutive slices of ``size``."""
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of ``frame`` as JSON-ready feature dicts of ``columns``."""
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame[list(columns)].to_dict("records")
    ]


def replay(
    url: str, endpoint: str, rows: Sequence[dict[str, Any]], keys: Sequence[Any], *, delay_s: float = 0.0
) -> list[dict[str, Any]]:
    """Send each row as one request (sticky by its key); return the responses' bodies."""
    answers: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=30, headers=HEADERS) as client:
        for row, key in zip(rows, keys, strict=True):
            response = client.post(
                f"/v1/models/{endpoint}/predict",
                json={"instances": [row]},
                headers={"X-Request-Key": str(key)},
            )
            response.raise_for_status()
            answers.append(response.json())
            if delay_s:
                time.sleep(delay_s)
    return answers


class Traffic(threading.Thread):
    """Replays rows in a loop until stopped (live traffic while a rollout runs)."""

    def __init__(self, url: str, endpoint: str, rows: Sequence[dict[str, Any]], delay_s: float = 0.01):
        super().__init__(daemon=True, name=f"traffic-{endpoint}")
        self.url, self.endpoint, self.rows, self.delay_s = url, endpoint, rows, delay_s
        self.sent = 0
        self.failed = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30, headers=HEADERS) as client:
            while not self._stop_event.is_set():
                row = self.rows[self.sent % len(self.rows)]
                response = client.post(
                    f"/v1/models/{self.endpoint}/predict",
                    json={"instances": [row]},
                    headers={"X-Request-Key": str(self.sent)},
                )
                self.sent += 1
                self.failed += response.status_code >= 400
                self._stop_event.wait(self.delay_s)

    def stop(self) -> None:
        """Stop and wait for the thread."""
        self._stop_event.set()
        self.join(30)


def review_when_asked(
    store: ApprovalStore, model: str, version: int, reviews: Sequence[tuple[str, str]], timeout_s: float = 120
) -> None:
    """Wait for the promotion flow's request for ``model`` ``version``, then approve it as each reviewer."""
    for reviewer, comment in reviews:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pending = [r for r in store.list(status=PENDING, model=model) if r.version == version]
            if (
                pending
                and pending[0].flow_run_id
                and reviewer not in {d.reviewer for d in pending[0].decisions}
            ):
                request, how = decide(store, pending[0].id, reviewer, "approve", comment)
                print(f"{reviewer} approved request {request.id} (promote-model run: {how})")
                break
            time.sleep(0.5)


def reviewers(
    store: ApprovalStore, model: str, version: int, reviews: Sequence[tuple[str, str]]
) -> threading.Thread:
    """A started thread that plays the reviewers of ``model`` ``version``.

    The thread runs in a copy of the caller's context, so it reaches the Prefect
    API the caller is configured for (``temporary_settings`` lives in a context
    variable, which a new thread would not see).
    """
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(review_when_asked, store, model, version, reviews), daemon=True
    )
    thread.start()
    return thread
