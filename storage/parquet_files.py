"""Many Parquet files read as one, when one of them is damaged.

The offline feature store and the prediction log are folders of Parquet files
read together by DuckDB. Writes are atomic (temporary name, then rename), but
a disk error, a partial copy or a crash of the machine before the page cache
reached the disk can still leave a truncated or garbled file, and one such
file made every read of the folder fail. DuckDB mostly names the file it could
not read in its error (``No magic bytes found at end of file '<path>'``,
``Failed to read file "<path>": ZSTD Decompression failure``), but not always
(a garbled page header gives only ``invalid TType``), so a reader:

- runs its query over every file; on a DuckDB error that names some of them,
  or, for an error of reading that names none, on the files pyarrow cannot
  read back, logs a warning naming each, leaves them out and runs again
  (:func:`unreadable_files`, :func:`read_skipping_corrupt`): the rest stays
  readable, and only a failing read pays for the check;
- and :func:`verify_parquet` reads files whole with pyarrow and names every
  one that does not read back, for an operator or a scheduled check.

Example:
    >>> import tempfile, pathlib, pyarrow as pa, pyarrow.parquet as pq
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> pq.write_table(pa.table({"a": [1, 2]}), root / "good.parquet")
    >>> _ = (root / "bad.parquet").write_bytes(b"PAR1 not really")
    >>> [(pathlib.Path(c.path).name, c.reason[:13]) for c in verify_parquet(sorted(map(str, root.iterdir())))]
    [('bad.parquet', 'ArrowInvalid:')]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import duckdb

__all__ = ["CorruptFile", "named_in", "read_skipping_corrupt", "unreadable_files", "verify_parquet"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class CorruptFile:
    """A file that does not read back, and why."""

    path: str
    reason: str


def named_in(error: BaseException, files: Sequence[str]) -> list[str]:
    """The files of ``files`` whose path the error message names."""
    text = str(error)
    return [f for f in files if f in text]


def unreadable_files(
    error: BaseException, files: Sequence[str], read: Callable[[str], object] | None = None
) -> list[CorruptFile]:
    """The files a DuckDB error is about: those it names, else (a read error) those that do not read.

    ``read`` reads one file whole (default: pyarrow on a local path); see :func:`verify_parquet`.
    """
    reason = f"{type(error).__name__}: {error}"
    named = named_in(error, files)
    if named:
        return [CorruptFile(path, reason) for path in named]
    reading = (duckdb.IOException, duckdb.InvalidInputException, duckdb.InternalException)
    if isinstance(error, reading) or type(error) is duckdb.Error:
        return verify_parquet(files, read)
    return []  # a binder, parser or conversion error: not a damaged file


def read_skipping_corrupt(
    run: Callable[[list[str]], T], files: Sequence[str], what: str, skipped: list[CorruptFile] | None = None
) -> T:
    """``run(files)``; when DuckDB fails naming some of the files, warn, leave them out, run again.

    Args:
        run: The read, over a list of files (called with ``[]`` when every file is unreadable).
        files: The files to read.
        what: What is being read, for the warning (``prediction log of 'fraud'``).
        skipped: Receives each file left out, with DuckDB's reason.

    Raises:
        duckdb.Error: A failure that names none of the files (not a damaged file).
    """
    remaining = list(files)
    while True:
        try:
            return run(remaining)
        except duckdb.Error as exc:
            bad = unreadable_files(exc, remaining)
            if not bad:
                raise
            for found in bad:
                log.warning(
                    "%s: left out the unreadable Parquet file %s (%s)", what, found.path, found.reason
                )
                if skipped is not None:
                    skipped.append(found)
            gone = {found.path for found in bad}
            remaining = [f for f in remaining if f not in gone]


def verify_parquet(files: Sequence[str], read: Callable[[str], object] | None = None) -> list[CorruptFile]:
    """Every file of ``files`` that cannot be read whole, with the reason (the others read back).

    ``read`` reads one file (an object store's ``Place.read_table``); pyarrow on a local path by default.
    """
    import pyarrow.parquet as pq

    read_whole = read or pq.read_table
    corrupt = []
    for path in files:
        try:
            read_whole(path)
        except Exception as exc:  # any failure to read back is what this check reports
            corrupt.append(CorruptFile(path, f"{type(exc).__name__}: {exc}"))
    return corrupt
