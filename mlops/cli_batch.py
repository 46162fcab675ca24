"""``mlops predict MODEL[@REF] --input PATH_OR_URL --output PATH_OR_URL``: batch scoring from a shell.

Scores the file and prints where the scores went (a progress bar of chunks on
stderr). ``REF`` is a version number, a stage (``production``), ``latest``, a
semantic version or an alias (``@champion`` or just ``champion``); without it
the serving default is used (``champion``, else the newest production
version, else the newest).

Where it runs:

* ``--flow``: the ``batch-predict`` flow, one Prefect flow run with a
  ``score-chunk`` task run (retried twice) per chunk on the Dask cluster. The
  default when a Prefect API is configured (see :func:`prefect_api_configured`).
* ``--no-flow``: the same chunks and scoring functions run from this process
  (:mod:`tasks.batch.local`): threads, or the Dask cluster at
  ``--dask-address`` / ``MLOPS_DASK_ADDRESS``; same output, same atomic
  rename, same lineage in the registry; but no flow or task runs in Prefect
  and no retries. The default when no Prefect API is configured: otherwise
  the command would start Prefect's temporary server for the one run (about
  15 s here) to record it where nobody looks, which ``mlflow models predict``
  users do not expect.

Example::

    mlops predict fraud@champion --input transactions.parquet --output scores.parquet
    mlops predict fraud@3 --input s3://bucket/day.csv --output s3://bucket/day-scores.csv --json
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from mlops import _render as render
from mlops._cli_common import JsonOpt, say

_PLAIN_REFS = ("development", "staging", "production", "archived", "latest")


def split_target(target: str) -> tuple[str, str | None]:
    """``MODEL[@REF]`` as (model, reference the registry understands).

    >>> split_target("fraud@champion"), split_target("fraud@3"), split_target("fraud")
    (('fraud', '@champion'), ('fraud', '3'), ('fraud', None))
    >>> split_target("fraud@production"), split_target("fraud@@champion"), split_target("fraud@1.2.0")
    (('fraud', 'production'), ('fraud', '@champion'), ('fraud', '1.2.0'))
    """
    model, sep, ref = target.partition("@")
    if not sep or not ref:
        return model, None
    if ref.startswith("@") or ref.isdigit() or ref in _PLAIN_REFS or ref[:1].isdigit():
        return model, ref
    return model, f"@{ref}"


def prefect_api_configured(cwd: Path | None = None) -> bool:
    """Whether Prefect has an API to talk to (so a flow run would be recorded somewhere that lasts).

    Looked up without importing Prefect (seconds of start-up): ``PREFECT_API_URL``
    in the environment, in ``.env``, ``prefect.toml`` (``[api] url``) or
    ``pyproject.toml`` (``[tool.prefect.api] url``) of the working folder, or in
    the active profile of ``$PREFECT_PROFILES_PATH`` (default
    ``$PREFECT_HOME/profiles.toml``, ``~/.prefect``). When Prefect is already
    loaded in this process, its own settings answer.
    """
    if "prefect.settings" in sys.modules:
        from prefect.settings import get_current_settings

        return bool(get_current_settings().api.url)
    return prefect_api_in_config(cwd)


def prefect_api_in_config(cwd: Path | None = None) -> bool:
    """Whether the environment, the working folder's files or the active Prefect profile set an API URL."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    folder = cwd or Path.cwd()
    dotenv = _text(folder / ".env")
    if re.search(r"(?m)^\s*(export\s+)?PREFECT_API_URL\s*=\s*\S", dotenv):
        return True
    if _toml_get(folder / "prefect.toml", ("api", "url")):
        return True
    if _toml_get(folder / "pyproject.toml", ("tool", "prefect", "api", "url")):
        return True
    return bool(_active_profile().get("PREFECT_API_URL"))


def _active_profile() -> dict[str, Any]:
    """The active Prefect profile's settings: Prefect's built-in profiles, then the user's over them."""
    spec = importlib.util.find_spec("prefect")  # finds the package without running it
    builtin = Path(spec.origin).parent / "settings" / "profiles.toml" if spec and spec.origin else None
    defaults = _toml(builtin) if builtin else {}
    home = os.path.expanduser(os.environ.get("PREFECT_HOME", "~/.prefect"))
    user = _toml(Path(os.path.expanduser(os.environ.get("PREFECT_PROFILES_PATH", f"{home}/profiles.toml"))))
    active = os.environ.get("PREFECT_PROFILE") or user.get("active") or defaults.get("active") or ""
    merged: dict[str, Any] = {}
    for source in (defaults, user):
        found = source.get("profiles", {}).get(active, {})
        merged.update(found if isinstance(found, dict) else {})
    return merged


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace") if path.is_file() else ""
    except OSError:
        return ""


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(_text(path))
    except tomllib.TOMLDecodeError:
        return {}


def _toml_get(path: Path, keys: tuple[str, ...]) -> bool:
    node: Any = _toml(path)
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return bool(node)


def predict(
    target: Annotated[str, typer.Argument(help="MODEL or MODEL@REF (number, stage, semver, alias).")],
    input: Annotated[
        str, typer.Option("--input", "-i", help="CSV or Parquet file: a path or an fsspec URL.")
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="Where the scores go (.csv or .parquet).")],
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", min=1, help="Rows per chunk.")] = 250_000,
    dask_address: Annotated[
        str | None, typer.Option("--dask-address", help="Dask scheduler address (default: a local cluster).")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Threads of the local cluster (or of --no-flow).")
    ] = 2,
    use_flow: Annotated[
        bool | None,
        typer.Option(
            "--flow/--no-flow",
            help="--flow: run the batch-predict Prefect flow (a flow run, task runs retried twice). "
            "--no-flow: the same scoring from this process, with the same output and lineage, but "
            "nothing recorded in Prefect and no retries. Default: the flow when a Prefect API is "
            "configured (PREFECT_API_URL), else --no-flow (no temporary Prefect server to start).",
            show_default=False,
        ),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a bar of chunks.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Score a file with a registered version (the batch-predict flow, or in-process: see --flow)."""
    model, ref = split_target(target)
    run_flow = prefect_api_configured() if use_flow is None else use_flow
    options: dict[str, Any] = {"version": ref, "chunk_rows": chunk_rows, "dask_address": dask_address,
                               "show_progress": progress and not as_json}  # fmt: skip
    if run_flow:
        from flows.batch import batch_predict

        result = batch_predict(model=model, input=input, output=output, n_workers=workers, **options)
    else:
        from tasks.batch.local import score_file

        result = score_file(model, input, output, workers=workers, **options)
    result["mode"] = "flow" if run_flow else "in-process"
    if as_json:
        render.emit_json(result)
        return
    rate = result["rows"] / max(result["seconds"], 1e-9) * 60
    how = "batch-predict flow" if run_flow else "in this process, no Prefect flow run"
    say(
        f"{result['rows']:,} rows scored by {model} v{result['version']} into {result['output']} "
        f"in {result['seconds']:.1f} s ({rate:,.0f} rows/min; {how})"
    )
