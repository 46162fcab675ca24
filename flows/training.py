"""The training pipeline: ten retryable stages from a data file to a registered, exported version.

``train-model`` validates the config and runs ``training-pipeline`` on a Dask
task runner (the config's ``dask_address``, ``MLOPS_DASK_ADDRESS``, or a local
cluster). Stages 1-5 (load, validate, engineer, split, tune) are cached under
``cache`` of ``MLOPS_STORAGE_URL`` (else ``MLOPS_HOME``) by a token of the
config and the data's content, so a re-run after a later failure starts where
it stopped, on any worker. Other pipelines start it
with ``run_deployment("train-model/<deployment>", parameters={"config": {...}})``.

Example:
    >>> from flows.training import train_model, training_pipeline
    >>> (train_model.name, training_pipeline.name)
    ('train-model', 'training-pipeline')
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from blocks.pipeline import PipelineConfig
from storage.registry.model_format import signature_for
from tasks.cluster import task_runner_for
from tasks.registry.steps import register_model_version
from tasks.registry.tagging import tag_model
from tasks.training.data import config_token, load_data, source_fingerprint, stage_cache_options
from tasks.training.data_checks import artifact_key, validate_data
from tasks.training.engineering import engineer_features, needs_scaling
from tasks.training.estimators import framework_of
from tasks.training.export import export_version_files, write_version_files
from tasks.training.fit import (
    TrainingSpec,
    cv_fold,
    cv_splitter,
    describe_version,
    holdout_test,
    metric_names,
    split_data,
    summarize_folds,
    train_best,
)
from tasks.training.tuning import (
    chunk_seed,
    create_study_task,
    plan_chunks,
    run_trial_chunk,
    study_name,
    summarize_study_task,
)


def resolve_config(config: dict[str, Any] | None = None, config_path: str | None = None) -> PipelineConfig:
    """The config from a dict or a YAML file (a dict's keys override the file's)."""
    if config_path:
        base = PipelineConfig.from_yaml(config_path)
        return PipelineConfig.parse(
            {**base.model_dump(exclude_unset=True), **(config or {})}, source=config_path
        )
    if config is None:
        raise ValueError("train-model needs a config dict or a config_path")
    return PipelineConfig.parse(config)


@flow(name="train-model")
def train_model(config: dict[str, Any] | None = None, config_path: str | None = None) -> dict[str, Any]:
    """Train, evaluate, export and register a model version from a pipeline config."""
    cfg = resolve_config(config, config_path)
    runner = task_runner_for(cfg.dask_address, cfg.n_workers)
    return training_pipeline.with_options(task_runner=runner)(  # type: ignore[arg-type]
        cfg.model_dump(mode="json")
    )


@flow(name="training-pipeline")
def training_pipeline(config: dict[str, Any]) -> dict[str, Any]:
    """The ten stages on the run's task runner (see :func:`train_model`)."""
    cfg = PipelineConfig.parse(config)
    token = config_token(cfg, source_fingerprint(cfg))
    cached = stage_cache_options(cfg.cache)
    framework = framework_of(cfg.model_class, cfg.model_type)
    # 1-4: load, validate, engineer, split (cached)
    loaded = load_data.with_options(**cached)(cfg, cache_token=token)
    report = validate_data.with_options(**cached)(loaded.frame, cfg, loaded.dataset_uri, cache_token=token)
    task_kind = report["task"]
    data = engineer_features.with_options(**cached)(
        loaded.frame, cfg, task_kind, framework, cache_token=token
    )
    split = split_data.with_options(**cached)(
        data.X, data.y, task_kind, cfg.test_size, cfg.seed, data.order, cache_token=token
    )
    spec = TrainingSpec(
        model_class=cfg.model_class,
        task=task_kind,
        framework=framework,
        features=data.spec,
        engineering=cfg.feature_engineering,
        scale_default=needs_scaling(cfg.model_class),
        fixed_params=dict(cfg.model_params),
        seed=cfg.seed,
        device=cfg.device,
        classes=data.classes,
    )
    metrics = metric_names(task_kind, cfg.metrics)
    # 5: tuning, trials fanned out to the cluster (chunks cached)
    best_params: dict[str, Any] = {}
    tuning: dict[str, Any] | None = None
    if cfg.enable_tuning:
        tuning = _tune(cfg, spec, split, token, cached)
        best_params = tuning["best_params"]
    # 6-8: train, cross-validate in parallel, test on holdout
    fitted = train_best.submit(spec, best_params, split, cfg.distributed)
    folds = []
    if cfg.cross_validation_folds >= 2:
        splitter = cv_splitter(task_kind, cfg.cross_validation_folds, cfg.seed)
        folds = [
            cv_fold.submit(spec, best_params, split.X_train, split.y_train, tr, te, metrics)
            for tr, te in splitter.split(split.X_train, split.y_train)
        ]
    pipeline = fitted.result()
    holdout = holdout_test(pipeline, split, task_kind, metrics)
    all_metrics = {**holdout, **summarize_folds([f.result() for f in folds])}
    # 9: export (native + ONNX with parity)
    exported = export_version_files(pipeline, framework, split.X_test, task_kind)
    # 10: register, then reference profile, explainer, lineage
    version = register_model_version(
        cfg.name,
        framework=framework,
        metrics=all_metrics,
        hyperparameters={**cfg.model_params, **best_params},
        artifacts=exported.files,
        description=cfg.description,
        tags={**cfg.tags, "model_class": cfg.model_class, "task": task_kind},
        signature=signature_for(split.X_train, task_kind, data.classes),
        dataset_uri=loaded.dataset_uri,
        dataset_hash=loaded.dataset_hash,
    )
    tag_model(cfg.name, cfg.model_tags)  # on the model: every version's domain, use case, owner
    details = describe_version(
        cfg.name,
        version.number,
        pipeline,
        split,
        spec,
        cfg.target_column,
        exported.extra(),
        loaded.feature_refs,
    )
    summary = {
        "model": cfg.name,
        "version": version.number,
        "framework": framework,
        "task": task_kind,
        "metrics": all_metrics,
        "hyperparameters": {**cfg.model_params, **best_params},
        "onnx": bool(exported.onnx.get("kept")),
        "export": exported.extra(),
        "tuning": None if tuning is None else {k: v for k, v in tuning.items() if k != "rows"},
        "dataset_uri": loaded.dataset_uri,
        "dataset_hash": loaded.dataset_hash,
        "explainer": details["explainer"],
        "features": details["features"],
    }
    if cfg.output_dir:
        summary["output_dir"] = write_version_files(
            cfg.output_dir, cfg.name, version.number, exported.files, summary
        )
    create_table_artifact(
        key=f"metrics-{artifact_key(cfg.name)}",
        table=[{"metric": k, "value": round(v, 6)} for k, v in all_metrics.items()],
        description=f"{cfg.name} v{version.number}: holdout and cross-validation metrics",
    )
    return summary


def _tune(
    cfg: PipelineConfig, spec: TrainingSpec, split: Any, token: str, cached: dict[str, Any]
) -> dict[str, Any]:
    """Stage 5: create the study, fan chunks of trials out, summarize; publish the trials table.

    With ``tuning_objectives`` the Pareto front is published too, and the chosen trial follows
    the declared rule (``tasks.training.multi_objective``).
    """
    objectives = cfg.tuning_objectives
    name = create_study_task(
        study_name(cfg.name, token), cfg.tuning_storage, _tuning_metric(cfg, spec), cfg.tuner, objectives
    )
    deadline = time.time() + cfg.tuning_timeout if cfg.tuning_timeout else None
    folds = cfg.cross_validation_folds if cfg.cross_validation_folds >= 2 else 3
    chunks = [
        run_trial_chunk.with_options(**cached).submit(
            name,
            cfg.tuning_storage,
            i,
            n,
            chunk_seed(cfg.seed, i),
            cfg.tuner,
            cfg.param_space,
            spec,
            split.X_train,
            split.y_train,
            _tuning_metric(cfg, spec),
            folds,
            deadline,
            cache_token=f"{token}-{i}",
            prune=cfg.pruning,
            objectives=objectives,
        )
        for i, n in enumerate(plan_chunks(cfg.tuning_trials, cfg.n_workers, cfg.trials_per_task))
    ]
    for chunk in chunks:
        chunk.result()
    summary = summarize_study_task(name, cfg.tuning_storage, objectives, cfg.tuning_constraints)
    if objectives:
        chosen = summary["chosen_trial"]
        create_table_artifact(
            key=f"pareto-{artifact_key(cfg.name)}",
            table=[{**row, "chosen": row["trial"] == chosen} for row in summary["pareto_front"]]
            or [{"trial": "-", "chosen": False}],
            description=f"Pareto front of {', '.join(objectives)}: trial {chosen} chosen by the rule "
            f"'{summary['selection_rule']}'"
            + ("" if summary["constraints_met"] else " (no front trial met the bounds: the closest one)"),
        )
    create_table_artifact(
        key=f"trials-{artifact_key(cfg.name)}",
        table=summary["rows"] or [{"trial": "-", "state": "none"}],
        description=f"{summary['completed']}/{summary['trials']} trials done, best {summary['best_value']}",
    )
    return summary


def _tuning_metric(cfg: PipelineConfig, spec: TrainingSpec) -> str:
    if cfg.tuning_metric:
        return cfg.tuning_metric
    return "accuracy" if spec.task == "classification" else "rmse"
