"""MLflow's side of ``benchmarks/api.py``: its seed, its tracking server, and the five operations over REST.

The seed runs under MLflow's own interpreter (``python benchmarks/api_mlflow.py
WORK VERSIONS MODELS``), through ``MlflowClient`` on the SQLite file, before
the server starts: per version one run (tagged with its code version and flow
run, with its training data set logged as a run input) and one model version
pointing at that run, its metrics as ``metric.<name>`` tags (MLflow versions
have no metrics of their own). It takes about 140 ms per version on the
2-vCPU machine, so ``--mlflow-cache DIR`` keeps the seeded database
(``DIR/<versions>x<models>/``) and later runs copy it.

The server is ``mlflow server`` with one uvicorn worker, no access log,
proxied artifacts (``--artifacts-destination``) and its job runner off
(``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: otherwise it starts seven huey
consumer processes that took about 12% CPU each on the 2 vCPUs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api import Http, Side, aliases, model_name, spec


def seed(work: Path, versions: int, models: int) -> dict[str, Any]:
    """Build MLflow's registry in ``work/mlflow.db`` (run under MLflow's interpreter)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, InputTag

    started = time.perf_counter()
    uri = f"sqlite:///{work}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("bench", artifact_location="mlflow-artifacts:/bench")
    for k in range(models):
        client.create_registered_model(model_name(k))
    run_ids: dict[str, str] = {}
    for i in range(versions):
        s = spec(i, models)
        run = client.create_run(
            experiment, tags={"mlflow.source.git.commit": s["code_version"], "flow_run_id": s["flow_run_id"]}
        )
        dataset = Dataset(
            name=s["dataset_uri"].rsplit("/", 1)[1],
            digest=s["dataset_hash"][:10],
            source_type="s3",
            source=json.dumps({"uri": s["dataset_uri"]}),
        )
        client.log_inputs(
            run.info.run_id,
            datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])],
        )
        tags = {**s["tags"], **{f"metric.{k}": repr(v) for k, v in s["metrics"].items()}}
        mv = client.create_model_version(
            s["model"], source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags=tags
        )
        if int(mv.version) != s["number"]:
            raise AssertionError(f"MLflow numbered version {i} as {mv.version}, expected {s['number']}")
        run_ids[s["model"]] = run.info.run_id
    for k in range(models):
        for alias, number in aliases(versions // models).items():
            client.set_registered_model_alias(model_name(k), alias, str(number))
    return {"seconds": time.perf_counter() - started, "run_ids": run_ids}


def begin_seed(
    python: Path, work: Path, versions: int, models: int, cache: Path | None, log: Callable[[str], None]
) -> Callable[[], dict[str, Any]]:
    """Start MLflow's seed (or copy it from ``cache``); the returned call waits for it."""
    cached = cache / f"{versions}x{models}" if cache else None
    if cached is not None and (cached / "seed.json").exists():
        shutil.copyfile(cached / "mlflow.db", work / "mlflow.db")
        seeded = json.loads((cached / "seed.json").read_text())
        log(f"MLflow's seed copied from {cached} (it took {seeded['seconds']:.0f} s)")
        return lambda: {**seeded, "from_cache": True}
    command = [str(python), __file__, str(work), str(versions), str(models)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    log(f"seeding MLflow with {versions} versions in a subprocess")

    def finish() -> dict[str, Any]:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"MLflow's seed failed ({proc.returncode})")
        seeded: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        log(f"seeded MLflow in {seeded['seconds']:.0f} s")
        if cached is not None:
            cached.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(work / "mlflow.db", cached / "mlflow.db")
            (cached / "seed.json").write_text(json.dumps(seeded))
        return seeded

    return finish


def start_server(python: Path, work: Path, port: int) -> subprocess.Popen[bytes]:
    """``mlflow server`` on the seeded SQLite file, in its own session (``api.stop`` ends the group)."""
    command = [str(python.with_name("mlflow")), "server", "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
               "--artifacts-destination", str(work / "mlflow-artifacts"), "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1", "--uvicorn-opts", "--no-access-log"]  # fmt: skip
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return subprocess.Popen(command, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip


class MLflow(Side):
    """MLflow 3's REST API: model versions, aliases, runs, proxied artifacts."""

    name = "mlflow"
    api = "/api/2.0/mlflow"

    def __init__(self, http_: Http, per_model: int, models: int, run_ids: dict[str, str]) -> None:
        super().__init__(http_, per_model, models)
        self.run_ids = run_ids

    def create(self, j: int, payload: bytes) -> int:
        """Upload the file into a run's artifacts, then register a version from that run."""
        s = spec(self.per_model * self.models + j, self.models)
        run = self.run_ids[s["model"]]
        folder = f"bench/{run}/artifacts/model-{j}"  # the source must lie inside the run's artifacts
        path = f"/api/2.0/mlflow-artifacts/artifacts/{folder}/model.bin"
        self.http.call("PUT", path, payload, "application/octet-stream")
        tags = {**s["tags"], **{f"metric.{k}": repr(v) for k, v in s["metrics"].items()}}
        body = {
            "name": s["model"],
            "source": f"mlflow-artifacts:/{folder}",
            "run_id": run,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        return int(self.http.post(f"{self.api}/model-versions/create", body)["model_version"]["version"])

    def by_alias(self, model: str, alias: str) -> int:
        found = self.http.get(f"{self.api}/registered-models/alias", name=model, alias=alias)
        return int(found["model_version"]["version"])

    def by_tag(self, team: str) -> int:
        path = f"{self.api}/model-versions/search"
        return len(self.http.get(path, filter=f"tags.team = '{team}'", max_results=100)["model_versions"])

    def page(self, model: str) -> list[int]:
        found = self.http.get(f"{self.api}/model-versions/search", filter=f"name = '{model}'",
                              max_results=100, order_by="version_number DESC")  # fmt: skip
        return [int(v["version"]) for v in found["model_versions"]]

    def lineage(self, model: str, number: int) -> str:
        """The version, then its run (where MLflow keeps the data set and code version)."""
        mv = self.http.get(f"{self.api}/model-versions/get", name=model, version=str(number))["model_version"]
        run = self.http.get(f"{self.api}/runs/get", run_id=mv["run_id"])["run"]
        return str(json.loads(run["inputs"]["dataset_inputs"][0]["dataset"]["source"])["uri"])


if __name__ == "__main__":
    print(json.dumps(seed(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
