"""Batch scoring benchmark: rows per minute of ``batch-predict`` against ``mlflow models predict``.

The model is the demo card-fraud pipeline of :mod:`serving.testing` (scaled
numbers + one-hot country, ``GradientBoostingClassifier(n_estimators=100)``,
trained on 2,000 rows), registered as ONNX for our side and saved with
``mlflow.sklearn`` for MLflow's. The input is one CSV file of ``--rows`` rows
(``amount``, ``age``, ``country``); both sides score that same file into a
CSV file, and the clock runs from the command's start to the output on disk.

* **ours**: the ``batch-predict`` flow (chunks of ``--chunk-rows`` rows on a
  local Dask cluster of ``--workers`` threads, ONNX Runtime, output merged in
  input order and renamed into place, lineage recorded), in this process,
  after one warm-up run on a small file (Prefect's temporary server and the
  cluster start outside the clock; the flow's own overhead is inside it);
  also ``mlops predict`` as a fresh process, clock from process start: with
  no Prefect API configured (the benchmark's subprocess has none) it scores
  in-process without a flow run (its default), and with ``--flow`` (the flow,
  so Prefect's temporary server starts inside the clock).
* **model alone**: ONNX Runtime on the whole file's columns already in memory
  (one session, its default threads, 250,000-row batches), no I/O, no
  orchestration: the floor any orchestration of this model sits on.
* **MLflow**: ``mlflow models predict -m MODEL -i IN.csv -t csv -o OUT.csv
  --env-manager local`` in MLflow's own virtualenv (``--mlflow-python``;
  ``benchmarks/.work/mlflow-venv`` by default), clock from process start.

Both outputs are checked to hold the same labels for every row.

Usage:
    .venv/bin/python benchmarks/batch.py [--rows 1000000] [--chunk-rows 250000] [--workers 2]
                                         [--mlflow-python PATH] [--skip-mlflow] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_MLFLOW_PYTHON = ROOT / "benchmarks" / ".work" / "mlflow-venv" / "bin" / "python"
TARGETS = {"rows_per_minute": 1_000_000, "vs_mlflow": 5.0}

_MLFLOW_SAVE = """
import sys, mlflow.sklearn, skops.io as sio
pipeline = sio.load(sys.argv[1], trusted=sio.get_untrusted_types(file=sys.argv[1]))
mlflow.sklearn.save_model(pipeline, sys.argv[2], serialization_format="cloudpickle")
"""


def build(work: Path, rows: int) -> dict[str, Any]:
    """Register the ONNX model, save the same pipeline for MLflow, write the input CSV."""
    import numpy as np
    import skops.io as sio

    from serving.testing import demo_frame, demo_pipeline, demo_target, register_demo
    from storage.registry.core import Registry

    registry = Registry.from_settings()
    register_demo(registry, "fraud", "onnx", rows=2000, n_estimators=100)
    train = demo_frame(2000, 0)
    pipeline = demo_pipeline(train, demo_target(train, 0), n_estimators=100)
    (work / "pipeline.skops").write_bytes(sio.dumps(pipeline))
    frame = demo_frame(rows, seed=7)
    frame.to_csv(work / "input.csv", index=False)
    demo_frame(5000, seed=8).to_csv(work / "warmup.csv", index=False)
    labels = pipeline.predict(frame.iloc[:2000])
    return {"labels_head": np.asarray(labels), "input_bytes": (work / "input.csv").stat().st_size}


def ours(work: Path, chunk_rows: int, workers: int) -> dict[str, Any]:
    from distributed import LocalCluster

    from flows.batch import batch_predict

    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        batch_predict("fraud", str(work / "warmup.csv"), str(work / "warmup-out.csv"), dask_address=address)
        start = time.perf_counter()
        result = batch_predict(
            "fraud",
            str(work / "input.csv"),
            str(work / "ours.csv"),
            chunk_rows=chunk_rows,
            dask_address=address,
        )
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": result["rows"], "chunks": result["chunks"]}


def ours_cli(work: Path, chunk_rows: int, workers: int, *extra: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    start = time.perf_counter()
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "mlops"), "predict", "fraud", "-i", str(work / "input.csv"),
         "-o", str(work / "ours-cli.csv"), "--chunk-rows", str(chunk_rows), "--workers", str(workers),
         "--no-progress", *extra],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    return {"seconds": time.perf_counter() - start}


def model_alone(work: Path) -> dict[str, Any]:
    """ONNX Runtime alone on the input's columns in memory (the version's own session)."""
    import pandas as pd

    from serving.protocol import Batch
    from tasks.batch.scoring import runtime_for

    runtime = runtime_for("fraud", 1)
    frame = pd.read_csv(work / "input.csv")
    columns = {"amount": frame["amount"].to_numpy(), "age": frame["age"].to_numpy(),
               "country": frame["country"].to_numpy(dtype=object)}  # fmt: skip
    step = 250_000
    start = time.perf_counter()
    for i in range(0, len(frame), step):
        runtime.predict(Batch({k: v[i : i + step] for k, v in columns.items()}, min(step, len(frame) - i)))
    return {"seconds": time.perf_counter() - start}


def mlflow(work: Path, python: Path) -> dict[str, Any]:
    model_dir = work / "mlflow-model"
    subprocess.run(
        [str(python), "-c", _MLFLOW_SAVE, str(work / "pipeline.skops"), str(model_dir)],
        check=True, capture_output=True,
    )  # fmt: skip
    mlflow_bin = python.parent / "mlflow"
    start = time.perf_counter()
    done = subprocess.run(
        [str(mlflow_bin), "models", "predict", "-m", str(model_dir), "-i", str(work / "input.csv"),
         "-t", "csv", "-o", str(work / "mlflow.json"), "--env-manager", "local"],
        capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"mlflow models predict failed: {done.stderr[-2000:]}")
    return {"seconds": seconds}


def check_same(work: Path, has_mlflow: bool) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    scored = pd.read_csv(work / "ours.csv", usecols=["prediction", "model_version"])
    out: dict[str, Any] = {"rows": len(scored), "versions": sorted(set(scored["model_version"]))}
    if has_mlflow:
        text = (work / "mlflow.json").read_text()
        found = json.loads(text)
        labels = np.asarray(found["predictions"] if isinstance(found, dict) else found).reshape(-1)
        # ONNX Runtime runs the trees in float32, scikit-learn in float64: a row on a threshold may flip
        out["labels_agree_with_mlflow"] = float((labels == scored["prediction"].to_numpy()).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=250_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mlflow-python", type=Path, default=DEFAULT_MLFLOW_PYTHON)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    os.environ["MLOPS_HOME"] = str(work / "home")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.testing.utilities import prefect_test_harness

    built = build(work, args.rows)
    report: dict[str, Any] = {
        "rows": args.rows, "input_bytes": built["input_bytes"], "chunk_rows": args.chunk_rows,
        "workers": args.workers, "cpus": os.cpu_count(), "python": platform.python_version(),
    }  # fmt: skip
    with prefect_test_harness(server_startup_timeout=120):
        report["ours"] = ours(work, args.chunk_rows, args.workers)
    report["ours"]["rows_per_minute"] = args.rows / report["ours"]["seconds"] * 60
    report["model_alone"] = model_alone(work)
    if not args.skip_cli:
        report["ours_cli"] = ours_cli(work, args.chunk_rows, args.workers)
        report["ours_cli"]["rows_per_minute"] = args.rows / report["ours_cli"]["seconds"] * 60
        report["ours_cli_flow"] = ours_cli(work, args.chunk_rows, args.workers, "--flow")
    has_mlflow = not args.skip_mlflow and args.mlflow_python.exists()
    if has_mlflow:
        report["mlflow"] = mlflow(work, args.mlflow_python)
        report["mlflow"]["rows_per_minute"] = args.rows / report["mlflow"]["seconds"] * 60
        report["vs_mlflow"] = report["mlflow"]["seconds"] / report["ours"]["seconds"]
        report["model_alone_vs_mlflow"] = report["mlflow"]["seconds"] / report["model_alone"]["seconds"]
        if "ours_cli" in report:
            report["cli_vs_mlflow"] = report["mlflow"]["seconds"] / report["ours_cli"]["seconds"]
            report["cli_flow_vs_mlflow"] = report["mlflow"]["seconds"] / report["ours_cli_flow"]["seconds"]
    report["check"] = check_same(work, has_mlflow)
    report["targets"] = TARGETS
    print(json.dumps(report, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
