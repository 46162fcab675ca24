"""The platform as separate "hosts" on one machine: every process with its own home and working folder.

A :class:`Cluster` starts an S3 API (moto's server), a Prefect server on its
own PostgreSQL database, a Dask scheduler, two Dask worker processes, a
Prefect process worker and the model server. Each runs as its own process
group with its own ``MLOPS_HOME``, ``PREFECT_HOME`` and working directory, and
they meet only by address: the metadata database and Prefect's on the local
PostgreSQL, files in S3, the online store in Redis, tasks through the Dask
scheduler, flow runs through the Prefect API. What a host's home may hold
afterwards is its own logs and PID files (:meth:`Host.stored_files`).
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from examples.serving_helpers import API_KEY
from mlops.prefect_server import (
    deploy_prefect_yaml,
    ensure_result_storage,
    ensure_work_pool,
    pool_workers,
    prefect_server_command,
)
from mlops.processes import (
    HOST,
    ServiceRecord,
    free_port,
    http_ok,
    port_open,
    service_env,
    spawn_service,
    stop_services,
    wait_until,
)
from tests.s3_server import aws_environment

ROOT = Path(__file__).resolve().parents[2]
WORK_POOL = "mlops-process"
ADMIN_KEY = "cluster-admin-key"


@dataclass
class Host:
    """One "machine": a home folder, a working folder, the processes started there."""

    name: str
    home: Path
    work: Path
    services: list[ServiceRecord] = field(default_factory=list)

    @property
    def run(self) -> Path:
        return self.home / "run"

    def stored_files(self) -> list[str]:
        """Every file under the home that is not a log, a PID file or a cache of the process itself."""
        found = []
        for path in sorted(self.home.rglob("*")):
            if path.is_file() and path.suffix not in (".log", ".pid") and path.name not in OWN_CACHES:
                found.append(str(path.relative_to(self.home)))
        return found


#: Files a process keeps for itself only: Prefect's note of the block types it registered (so the
#: next start skips that step); no other process reads it and losing it costs one registration.
OWN_CACHES = frozenset({"memo_store.toml"})


class Cluster:
    """The processes of a shared-nothing installation (see the module docs)."""

    def __init__(self, root: Path, postgres_url: str, redis_url: str) -> None:
        self.root = root
        self.tag = uuid.uuid4().hex[:10]
        self.postgres_url = postgres_url
        self.redis_url = redis_url
        self.hosts: dict[str, Host] = {}
        self.bucket = f"mlops-cluster-{self.tag}"
        self.s3_endpoint = f"http://{HOST}:{free_port()}"
        self.prefect_api = f"http://{HOST}:{free_port()}/api"
        self.dask_address = f"tcp://{HOST}:{free_port()}"
        self.serve_url = f"http://{HOST}:{free_port()}"
        self.schema = f"cluster_{self.tag}"
        self.prefect_db = f"prefect_{self.tag}"
        self.results: dict[str, str] = {}  # where flow results go (set once Prefect runs)

    # ------------------------------------------------------------ settings
    @property
    def storage_url(self) -> str:
        return f"s3://{self.bucket}/mlops"

    def database_url(self) -> str:
        sep = "&" if "?" in self.postgres_url else "?"
        return f"{self.postgres_url}{sep}options=-csearch_path%3D{self.schema}"

    def shared_env(self) -> dict[str, str]:
        """The settings every host gets: addresses of the shared services, nothing local."""
        return {
            **aws_environment(self.s3_endpoint),
            "MLOPS_DATABASE_URL": self.database_url(),
            "MLOPS_STORAGE_URL": self.storage_url,
            "MLOPS_ONLINE_STORE_URL": f"{self.redis_url}?prefix=cluster-{self.tag}:",
            "PREFECT_API_URL": self.prefect_api,
            "MLOPS_DASK_ADDRESS": self.dask_address,
            "MLOPS_SERVE_URL": self.serve_url,
            "MLOPS_SERVE_ADMIN_KEY": ADMIN_KEY,
            "MLOPS_USER": "cluster",
            **self.results,
        }

    def host(self, name: str) -> Host:
        if name not in self.hosts:
            home, work = self.root / name / "home", self.root / name / "work"
            (home / "run").mkdir(parents=True)
            work.mkdir(parents=True)
            self.hosts[name] = Host(name, home, work)
        return self.hosts[name]

    def env_of(self, host: Host, **extra: str) -> dict[str, str]:
        env = service_env(host.home)
        # the project, and its flows/ folder: Prefect loads a deployment's entrypoint file as a
        # top-level module (flows/training.py is "training"), and Dask unpickles tasks by module name
        paths = [str(ROOT), str(ROOT / "flows"), *filter(None, [env.get("PYTHONPATH")])]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env.update(self.shared_env())
        env.update(extra)
        return env

    def _start(self, host: Host, name: str, command: list[str], env: dict[str, str]) -> ServiceRecord:
        record = spawn_service(name, command, env, host.run, cwd=host.work)
        host.services.append(record)
        return record

    # ------------------------------------------------------------ start/stop
    def _create_databases(self) -> None:
        admin = sa.create_engine(self.postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {self.schema}")
            conn.exec_driver_sql(f"CREATE DATABASE {self.prefect_db}")
        admin.dispose()

    def _drop_databases(self) -> None:
        admin = sa.create_engine(self.postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.schema}_optuna CASCADE")  # the studies
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.prefect_db} WITH (FORCE)")
        admin.dispose()

    def _prefect_database(self) -> str:
        url = sa.make_url(self.postgres_url).set(drivername="postgresql+asyncpg", database=self.prefect_db)
        return url.render_as_string(hide_password=False).split("?", 1)[0]

    def start(self, timeout: float = 180.0) -> Cluster:
        """Start every process and wait until each answers; on failure stop those started."""
        self._create_databases()
        try:
            self._start_all(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self, timeout: float) -> None:
        port = lambda url: int(url.rsplit(":", 1)[1].split("/")[0])  # noqa: E731
        s3 = self.host("object-store")
        moto = self._start(s3, "s3", [
            str(Path(sys.executable).with_name("moto_server")), "-H", HOST, "-p", str(port(self.s3_endpoint)),
        ], self.env_of(s3))  # fmt: skip
        server_host = self.host("prefect-server")
        server_env = self.env_of(server_host, PREFECT_SERVER_DATABASE_CONNECTION_URL=self._prefect_database())
        server_env.pop("PREFECT_API_URL")
        server = self._start(
            server_host, "prefect-server", prefect_server_command(port(self.prefect_api)), server_env
        )
        scheduler_host = self.host("dask-scheduler")
        scheduler = self._start(scheduler_host, "dask-scheduler", [
            sys.executable, "-m", "distributed.cli.dask_scheduler",
            "--host", HOST, "--port", str(port(self.dask_address)), "--no-dashboard",
        ], self.env_of(scheduler_host))  # fmt: skip
        wait_until(moto, lambda: port_open(port(self.s3_endpoint)), timeout, "listening")
        self._create_bucket()
        wait_until(scheduler, lambda: port_open(port(self.dask_address)), timeout, "listening")
        workers = []
        for n in (1, 2):
            worker_host = self.host(f"dask-worker-{n}")
            workers.append(self._start(worker_host, "dask-worker", [
                sys.executable, "-m", "distributed.cli.dask_worker", self.dask_address,
                "--nworkers", "1", "--nthreads", "1", "--host", HOST, "--no-dashboard",
                "--name", f"worker-{n}", "--local-directory", str(worker_host.work / "dask"),
            ], self.env_of(worker_host)))  # fmt: skip
        serve_host = self.host("model-server")
        model_server = self._start(serve_host, "model-server", [
            sys.executable, "-m", "mlops.cli", "serve", "--host", HOST, "--port", str(port(self.serve_url)),
        ], self.env_of(serve_host, MLOPS_SERVE_API_KEYS=API_KEY))  # fmt: skip
        wait_until(server, lambda: http_ok(f"{self.prefect_api}/health"), timeout, "answering")
        ensure_work_pool(self.prefect_api, self.env_of(server_host))
        self.results = ensure_result_storage(self.prefect_api, self.storage_url)
        worker_host = self.host("prefect-worker")
        worker = self._start(worker_host, "prefect-worker", [
            sys.executable, "-m", "mlops.prefect_worker", "--pool", WORK_POOL,
            "--name", f"cluster-worker-{self.tag}",
        ], self.env_of(worker_host))  # fmt: skip
        for record in workers:
            wait_until(record, lambda: self.dask_workers() >= 2, timeout, "joined")
        ready = f"{self.serve_url}/v2/health/live"
        wait_until(model_server, lambda: http_ok(ready, accept_any=True), timeout, "answering")
        wait_until(worker, lambda: pool_workers(self.prefect_api, WORK_POOL) > 0, timeout, "online")

    def deploy(self, names: list[str]) -> None:
        """Register deployments of prefect.yaml from a "laptop" host (its flows run in the project folder)."""
        deploy_prefect_yaml(self.prefect_api, names, project_dir=ROOT, home=self.host("laptop").home)

    def _create_bucket(self) -> None:
        import boto3

        env = aws_environment(self.s3_endpoint)
        boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        ).create_bucket(Bucket=self.bucket)

    def dask_workers(self) -> int:
        from distributed import Client

        try:
            with Client(self.dask_address, timeout=5) as client:
                return len(client.scheduler_info(n_workers=-1)["workers"])
        except OSError:
            return 0

    def stop(self) -> list[str]:
        """Stop every process (the object store last) and drop the databases."""
        records = [r for h in self.hosts.values() if h.name != "object-store" for r in h.services]
        stopped = stop_services(records, timeout=15)
        if "object-store" in self.hosts:
            stopped += stop_services(self.hosts["object-store"].services, timeout=5)
        self._drop_databases()
        return stopped
