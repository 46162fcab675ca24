"""The default Optuna storage follows the metadata database: a PostgreSQL schema, or SQLite in MLOPS_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import sqlalchemy as sa

from blocks.pipeline import FeatureEngineering, ParamSpec
from storage.db import Database
from storage.errors import ValidationError
from tasks.training.engineering import feature_spec
from tasks.training.fit import TrainingSpec
from tasks.training.study_storage import study_schema_url
from tasks.training.tuning import (
    WORKER_ATTR,
    chunk_seed,
    create_study,
    open_storage,
    run_trial_chunk,
    storage_url,
    summarize_study,
)

REPO = Path(__file__).resolve().parents[3]
C_SPACE = {"C": ParamSpec(type="float", low=0.01, high=10, log=True)}

#: A second process that adds trials to the default study (the settings come from the environment).
CHILD = """
import sys
import optuna
from tasks.training.tuning import open_storage, storage_url
study = optuna.load_study(study_name=sys.argv[1], storage=open_storage())
study.optimize(lambda t: t.suggest_float("C", 0.01, 10, log=True), n_trials=int(sys.argv[2]))
print(storage_url())
"""


@pytest.fixture
def metadata_on_postgres(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """MLOPS_DATABASE_URL on a fresh PostgreSQL schema; the study schema is dropped afterwards."""
    monkeypatch.setenv("MLOPS_DATABASE_URL", postgres_url)
    yield postgres_url
    _, schema = study_schema_url(postgres_url)
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    engine.dispose()


def run_chunk(name: str, n: int, chunk: int) -> dict[str, object]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=90), "b": rng.normal(size=90)})
    y = (X["a"] + 0.3 * rng.normal(size=90) > 0).astype(int).to_numpy()
    spec = TrainingSpec(
        "LogisticRegression", "classification", "sklearn", feature_spec(X), FeatureEngineering(), True, {}
    )
    return run_trial_chunk.fn(
        name, None, chunk, n, chunk_seed(1, chunk), "tpe", C_SPACE, spec, X, y, "accuracy", 3, None
    )


def tables(url: str, schema: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names(schema=schema))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_tuning_run_lands_in_the_metadata_postgresql_and_a_second_process_shares_it(
    metadata_on_postgres: str, tmp_path: Path
) -> None:
    platform = Database(metadata_on_postgres)  # the platform's own tables and migrations first
    platform.dispose()
    url, schema = study_schema_url(metadata_on_postgres)
    assert storage_url() == url

    create_study("shared", None, "accuracy")
    first = run_chunk("shared", 3, chunk=0)
    assert len(first["trials"]) == 3  # type: ignore[arg-type]
    assert {"studies", "trials", "alembic_version"} <= tables(url, schema)
    assert not (tmp_path / "mlops-home" / "optuna.db").exists()

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, "shared", "2"], env=env, capture_output=True, text=True, timeout=300
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip().splitlines()[-1] == url

    study = optuna.load_study(study_name="shared", storage=open_storage())
    assert len(study.trials) == 5
    assert sum(WORKER_ATTR in t.user_attrs for t in study.trials) == 3
    assert summarize_study("shared", None)["trials"] == 5
    # The platform's migrations still see their own revision: Optuna's alembic_version is elsewhere.
    reopened = Database(metadata_on_postgres)
    reopened.dispose()


def test_sqlite_metadata_keeps_the_study_under_mlops_home() -> None:
    assert storage_url().endswith("mlops-home/optuna.db")


def test_shared_files_with_sqlite_metadata_refuse_with_the_settings_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLOPS_STORAGE_URL", "s3://team-bucket/mlops")
    with pytest.raises(ValidationError, match="MLOPS_STORAGE_URL=s3://team-bucket/mlops.*MLOPS_DATABASE_URL"):
        storage_url()
    assert storage_url("sqlite:////shared/optuna.db") == "sqlite:////shared/optuna.db"


def test_the_study_schema_follows_the_search_path() -> None:
    base = "postgresql+psycopg://u:pw@db:5432/mlops"
    assert study_schema_url(base)[1] == "optuna"
    url, schema = study_schema_url(f"{base}?options=-csearch_path%3DTeam_A,public")
    assert schema == "team_a_optuna"
    assert sa.engine.make_url(url).query["options"] == "-csearch_path=team_a_optuna"
    assert sa.engine.make_url(url).password == "pw"
    with pytest.raises(ValidationError, match="MLOPS_DATABASE_URL"):
        study_schema_url(f"{base}?options=-csearch_path%3Dbad-name")
