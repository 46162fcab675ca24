"""Start the platform's flows from another pipeline: through a deployment, or as a subflow.

1. **Through a deployment.** ``run_deployment("train-model/train-model", parameters=...)``
   asks the Prefect server for a run of the ``train-model`` deployment of
   prefect.yaml; a worker of the ``mlops-process`` pool runs it (``mlops up``
   starts one), it shows under the deployment in the UI, and when the caller is
   itself a flow the run is linked to it as a child. ``timeout=0`` returns as
   soon as the run is created; a timeout in seconds waits for it to finish.
2. **As a subflow.** Import the flow and call it: it runs in the caller's
   process (its tasks still on the Dask cluster of its config, or of
   ``MLOPS_DASK_ADDRESS``) and appears as a child run of the caller.

Run it against a stack started with ``mlops up`` (and ``prefect deploy --all``)::

    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python -m examples.run_deployment_example pipelines/fraud.yaml --wait 600

Example:
    >>> from examples.run_deployment_example import TRAINING_DEPLOYMENT, training_parameters
    >>> TRAINING_DEPLOYMENT
    'train-model/train-model'
    >>> training_parameters(config_path="pipelines/churn.yaml")
    {'config_path': 'pipelines/churn.yaml'}
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

#: ``<flow name>/<deployment name>`` of the training deployment in prefect.yaml.
TRAINING_DEPLOYMENT = "train-model/train-model"


def training_parameters(
    config_path: str | None = None, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The parameters of a ``train-model`` run: a pipeline config file, a config dict, or both.

    Keys of ``config`` override those of the file.
    """
    if config_path is None and config is None:
        raise ValueError("a training run needs config_path or config")
    parameters: dict[str, Any] = {}
    if config_path is not None:
        parameters["config_path"] = config_path
    if config is not None:
        parameters["config"] = config
    return parameters


def start_training(
    config_path: str | None = None,
    config: dict[str, Any] | None = None,
    wait_seconds: float = 0,
    deployment: str = TRAINING_DEPLOYMENT,
) -> FlowRun:
    """Start a run of the training deployment; wait up to ``wait_seconds`` for it to finish.

    Returns:
        The flow run as the server knows it (``.state`` tells whether it finished).
    """
    return run_deployment(  # type: ignore[return-value]
        deployment, parameters=training_parameters(config_path, config), timeout=wait_seconds
    )


@flow(name="nightly-retrain")
def nightly_retrain(config_paths: list[str], wait_seconds: float = 0) -> list[str]:
    """Another team's pipeline: one training run per model config, through the deployment.

    Returns:
        The ids of the training runs (children of this run in the UI).
    """
    return [str(start_training(path, wait_seconds=wait_seconds).id) for path in config_paths]


@flow(name="train-then-check")
def train_then_check(config: dict[str, Any]) -> dict[str, Any]:
    """The training flow imported and called as a subflow, in this process.

    Returns:
        What ``train-model`` returns: the registered model, version and metrics.
    """
    from flows.training import train_model

    return train_model(config=config)


def main(argv: list[str] | None = None) -> None:
    """Start one training run per config file through the deployment and print its id and state."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("config_paths", nargs="+", help="Pipeline config files (as the worker sees them).")
    parser.add_argument("--wait", type=float, default=0, help="Seconds to wait for each run to finish.")
    args = parser.parse_args(argv)
    for path in args.config_paths:
        run = start_training(path, wait_seconds=args.wait)
        print(f"{path}: flow run {run.id} ({run.state_name})")


if __name__ == "__main__":
    main()
