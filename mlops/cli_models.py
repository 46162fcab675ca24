"""``mlops registry tag / untag / import``: tags on models and versions, and models trained elsewhere.

Tags declare what a model is for (``domain``, ``use_case``: the EU AI Act risk
level is read from them), who owns it, and anything else a search should
find. A model's tags hold for every version; ``--version`` tags one version
(its tags win over the model's where both say the same key). Every change is
audited.

``import`` registers a model file written by another framework (ONNX, skops,
XGBoost, PyTorch, Keras, a TensorFlow SavedModel) as a new version, with its
signature inferred, checked against a sample and served right (see
:mod:`tasks.registry.importing` and ``docs/models.md``).

Example::

    mlops registry tag fraud domain=finance use_case="card fraud detection"
    mlops registry tag fraud --version 3 reviewed=yes
    mlops registry untag fraud reviewed --version 3
    mlops registry import churn model.onnx --sample rows.csv
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from mlops import _render as render
from mlops._cli_common import ActorOpt, JsonOpt, NameArg, TagsOpt, open_registry, parse_pairs, say
from storage.errors import ValidationError
from storage.registry.core import Registry

VersionOpt = Annotated[
    str | None,
    typer.Option(
        "--version", help="Tag this version (number, semver, @alias, a stage) instead of the model."
    ),
]


def _local(registry: Any, what: str) -> Registry:
    if not isinstance(registry, Registry):
        raise ValidationError(
            f"`mlops registry {what}` works on this machine's registry; unset MLOPS_API_URL to use it"
        )
    return registry


def _tags_of(registry: Registry, name: str, version: str | None) -> dict[str, Any]:
    if version is None:
        return {"model": name, "tags": dict(registry.get_model(name).tags)}
    mv = registry.get_version(name, version)
    return {"model": name, "version": mv.number, "tags": dict(mv.tags)}


def tag(
    name: NameArg,
    pairs: Annotated[list[str], typer.Argument(help="Tags as key=value (one or more).")],
    version: VersionOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set tags on a model, or on one version with --version (audited).

    Declare the EU AI Act risk level with domain=... use_case=... [intended_use=...].
    """
    values = parse_pairs(pairs, "tag")
    if not values:
        raise ValidationError("give at least one tag as key=value")
    with open_registry() as reg:
        registry = _local(reg, "tag")
        for key, value in values.items():
            if version is None:
                registry.set_model_tag(name, key, value, actor=actor)
            else:
                registry.set_version_tag(name, version, key, value, actor=actor)
        result = _tags_of(registry, name, version)
    if as_json:
        render.emit_json(result)
        return
    where = name if version is None else f"{name} version {result['version']}"
    say(f"tagged {where}: {', '.join(f'{k}={v}' for k, v in values.items())}")


def untag(
    name: NameArg,
    keys: Annotated[list[str], typer.Argument(help="Tag keys to remove (one or more).")],
    version: VersionOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove tags from a model, or from one version with --version (audited)."""
    with open_registry() as reg:
        registry = _local(reg, "untag")
        removed = [
            key
            for key in keys
            if (
                registry.delete_model_tag(name, key, actor=actor)
                if version is None
                else registry.delete_version_tag(name, version, key, actor=actor)
            )
        ]
        result = _tags_of(registry, name, version) | {"removed": removed}
    if as_json:
        render.emit_json(result)
        return
    missing = [k for k in keys if k not in removed]
    where = name if version is None else f"{name} version {result['version']}"
    if removed:
        say(f"removed from {where}: {', '.join(removed)}")
    if missing:
        say(f"{where} had no tag: {', '.join(missing)}")


def _read_signature(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValidationError(f"cannot read signature file {path}: {exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValidationError(f"signature file {path} is not valid JSON or YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValidationError(f"signature file {path} must hold a mapping (inputs, outputs, task, classes)")
    return data


def import_model_cmd(
    name: NameArg,
    path: Annotated[Path, typer.Argument(help="The model file (or a SavedModel folder).")],
    framework: Annotated[
        str | None,
        typer.Option(
            help="onnx, sklearn (skops), xgboost, pytorch, keras or tensorflow; by default from the file."
        ),
    ] = None,
    signature: Annotated[
        Path | None,
        typer.Option(
            help="JSON or YAML: inputs, task, classes, and outputs with a role "
            "(label, probabilities, logits, regression) where the model's are ambiguous."
        ),
    ] = None,
    sample: Annotated[
        Path | None,
        typer.Option(help="CSV, Parquet or JSON rows of inputs: the signature is checked on them."),
    ] = None,
    task: Annotated[str | None, typer.Option(help="classification or regression.")] = None,
    classes: Annotated[
        str | None, typer.Option(help="Class labels in probability-column order, comma separated.")
    ] = None,
    module: Annotated[
        str | None,
        typer.Option(help="PyTorch state dict: the nn.Module class as package.module:Class."),
    ] = None,
    module_args: Annotated[
        str | None, typer.Option(help="PyTorch state dict: the module's keyword arguments as JSON.")
    ] = None,
    description: Annotated[str, typer.Option(help="What this version is.")] = "",
    tag: TagsOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a model trained elsewhere as a new version, served through ONNX where it can be."""
    from tasks.registry.importing import import_model

    try:
        args = json.loads(module_args) if module_args else None
    except ValueError as exc:
        raise ValidationError(f"--module-args is not valid JSON: {exc}") from None
    with open_registry() as reg:
        registry = _local(reg, "import")
        result = import_model(
            registry,
            name,
            path,
            framework=framework,
            signature=_read_signature(signature),
            sample=sample,
            task=task,
            classes=[c.strip() for c in classes.split(",")] if classes else None,
            module=module,
            module_args=args,
            description=description,
            tags=parse_pairs(tag, "tag"),
            actor=actor,
        )
    if as_json:
        render.emit_json(result.to_dict())
        return
    say(
        f"imported {path} as {name} version {result.version.number} "
        f"({result.framework}; served by {result.runtime}; {result.outputs})"
    )
    if result.parity is not None:
        diff = f"max |ONNX - {result.framework}| = {result.parity:.3g}"
        say(f"checked on {result.sample_rows} sample rows: {diff}")
