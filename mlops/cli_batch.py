"""``mlops predict MODEL[@REF] --input PATH_OR_URL --output PATH_OR_URL``: batch scoring from a shell.

Runs the ``batch-predict`` flow (chunks on the Dask cluster, a progress bar
on stderr) and prints where the scores went. ``REF`` is a version number, a
stage (``production``), ``latest``, a semantic version or an alias
(``@champion`` or just ``champion``); without it the serving default is used
(``champion``, else the newest production version, else the newest).

Example::

    mlops predict fraud@champion --input transactions.parquet --output scores.parquet
    mlops predict fraud@3 --input s3://bucket/day.csv --output s3://bucket/day-scores.csv --json
"""

from __future__ import annotations

from typing import Annotated

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
    workers: Annotated[int, typer.Option("--workers", min=1, help="Workers of the local cluster.")] = 2,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a bar of chunks.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Score a file with a registered version (the batch-predict flow)."""
    from flows.batch import batch_predict

    model, ref = split_target(target)
    result = batch_predict(
        model=model, input=input, output=output, version=ref, chunk_rows=chunk_rows,
        dask_address=dask_address, n_workers=workers, show_progress=progress and not as_json,
    )  # fmt: skip
    if as_json:
        render.emit_json(result)
        return
    rate = result["rows"] / max(result["seconds"], 1e-9) * 60
    say(
        f"{result['rows']:,} rows scored by {model} v{result['version']} into {result['output']} "
        f"in {result['seconds']:.1f} s ({rate:,.0f} rows/min)"
    )
