"""A model that always fails, and a served registry with a stable and a failing version."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np

from serving.app import create_app
from serving.config import ServeSettings
from serving.server import running_server
from serving.testing import demo_frame, register_demo
from storage.registry.core import Registry
from storage.registry.model_format import PICKLE_FILE, signature_for

ADMIN_KEY = "admin-secret"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


class FailingModel:
    """Loads fine, fails on every prediction: the deliberately broken canary."""

    steps: ClassVar[list[Any]] = []
    classes_ = np.array([0, 1])

    def predict_proba(self, frame: Any) -> Any:
        raise RuntimeError("this version is broken on purpose")


@contextmanager
def served_registry(tmp_path: Path, *, log_predictions: bool = False) -> Iterator[tuple[str, Registry]]:
    """A real server on 127.0.0.1 over a registry: ``fraud`` v1 works (sklearn), v2 always fails."""
    reg = Registry.open(f"sqlite:///{tmp_path / 'mlops.db'}", str(tmp_path / "artifacts"), actor="tester")
    register_demo(reg, "fraud", "sklearn", n_estimators=5)
    reg.create_version(
        "fraud",
        framework="custom",
        artifacts={PICKLE_FILE: pickle.dumps(FailingModel())},
        signature=signature_for(demo_frame(8), "classification", [0, 1]),
    )
    settings = ServeSettings(
        admin_key=ADMIN_KEY,
        trust_pickle=True,
        log_predictions=log_predictions,
        log_flush_s=0.2,
        refresh_s=0.2,
    )
    with running_server(create_app(settings, registry=reg)) as url:
        yield url, reg


@dataclass
class Traffic:
    """Requests sent to an endpoint from a background thread, with what answered."""

    url: str
    endpoint: str
    answers: list[tuple[str, int, str]] = field(default_factory=list)  # (key, status, variant or error)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def _run(self) -> None:
        rows = demo_frame(2).to_dict(orient="records")
        i = 0
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                key = f"user-{i}"
                i += 1
                r = client.post(
                    f"/v1/models/{self.endpoint}/predict",
                    json={"instances": rows},
                    headers={"X-Request-Key": key},
                )
                body = r.json()
                self.answers.append((key, r.status_code, body.get("variant") or body.get("error", "")))

    def start(self) -> Traffic:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def finish(self) -> list[tuple[str, int, str]]:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)
        return self.answers
