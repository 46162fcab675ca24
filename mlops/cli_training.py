"""``mlops train CONFIG.yaml``: run the train-model flow from a shell, with a progress bar of trials.

Example::

    mlops train churn.yaml
    mlops train churn.yaml --dask-address tcp://10.0.0.5:8786 --json
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from mlops import _render as render
from mlops._cli_common import JsonOpt, fail, say

POLL_SECONDS = 0.5


class TrialProgress:
    """A rich progress bar of finished trials, fed by polling the Optuna study from a thread."""

    def __init__(self, study: str, storage: str | None, total: int, enabled: bool = True) -> None:
        self.study, self.storage, self.total, self.enabled = study, storage, total, enabled
        self.finished = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TrialProgress:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="trial-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _poll(self) -> int:
        from tasks.training.tuning import count_finished

        try:
            return count_finished(self.study, self.storage)
        except Exception:  # the storage may not exist yet, or be mid-migration: try again
            return self.finished

    def _run(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
            job = bar.add_task("trials", total=self.total)
            while True:
                stopping = self._stop.wait(POLL_SECONDS)
                self.finished = self._poll()
                bar.update(job, completed=min(self.finished, self.total))
                if stopping:
                    break


def train(
    config: Annotated[Path, typer.Argument(help="Pipeline config (YAML).")],
    dask_address: Annotated[
        str | None, typer.Option("--dask-address", help="Dask scheduler address (default: a local cluster).")
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a bar of finished trials.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Train, evaluate, export and register a model version from CONFIG (the train-model flow)."""
    from blocks.pipeline import ConfigError, PipelineConfig
    from flows.training import train_model
    from tasks.training.data import config_token, source_fingerprint
    from tasks.training.tuning import study_name

    try:
        cfg = PipelineConfig.from_yaml(config)
        overrides: dict[str, Any] = {"dask_address": dask_address} if dask_address else {}
        cfg = PipelineConfig.parse({**cfg.model_dump(exclude_unset=True), **overrides}, source=str(config))
    except ConfigError as exc:
        fail(str(exc))
    name = study_name(cfg.name, config_token(cfg, source_fingerprint(cfg)))
    with TrialProgress(name, cfg.tuning_storage, cfg.tuning_trials, enabled=progress and cfg.enable_tuning):
        result = train_model(config=cfg.model_dump(mode="json", exclude_unset=True) | overrides)
    if as_json:
        render.emit_json(result)
        return
    onnx = "with ONNX" if result["onnx"] else f"native only ({result['export']['onnx']['reason']})"
    say(
        f"{result['model']} v{result['version']} registered ({result['framework']}, {result['task']}, {onnx})"
    )
    for metric, value in result["metrics"].items():
        say(f"  {metric:<24} {value:.4f}")
    if result.get("tuning"):
        t = result["tuning"]
        say(f"  tuning: {t['completed']} of {t['trials']} trials complete on {len(t['workers'])} worker(s)")
