"""Folders that live on a local disk or in an object store, behind one small interface.

Every file the platform writes besides the metadata database (artifacts,
the offline feature store, the prediction log, ground truth, reports) goes
under a :class:`Place`: a local folder, or an fsspec URL such as
``s3://bucket/prefix``. With ``MLOPS_STORAGE_URL`` pointing at an object
store, no process reads a file another process wrote under its own
``MLOPS_HOME``. S3's endpoint, credentials and region come from the standard
AWS settings (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``), so MinIO, Ceph and AWS
work alike.

Writes are atomic either way: a local file is written under a temporary name
and renamed; an object store makes an object visible only once its upload
completes. Listings never come from a cache, so a file another process wrote
a moment ago is seen. DuckDB reads remote Parquet through the same fsspec
filesystem (:func:`duckdb_connection`): no DuckDB extension is downloaded at
run time.

Example:
    >>> import tempfile, pyarrow as pa
    >>> place = Place(tempfile.mkdtemp())
    >>> path = place.path("group", "date=2026-01-01", "part-a.parquet")
    >>> place.write_table(path, pa.table({"x": [1, 2]}))
    >>> [p.endswith("part-a.parquet") for p in place.glob("group", "date=*", "*.parquet")]
    [True]
    >>> con = duckdb_connection(place)
    >>> con.execute(f"SELECT sum(x) FROM read_parquet('{place.uri(path)}')").fetchone()
    (3,)
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from storage.errors import StorageFullError, ValidationError

__all__ = ["Place", "duckdb_connection", "is_remote", "read_frame"]

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def is_remote(url: str | os.PathLike[str]) -> bool:
    """Whether ``url`` names an object store (``s3://``, ``gs://``, ``memory://``) rather than a folder.

    Example:
        >>> is_remote("s3://bucket/x"), is_remote("/tmp/x"), is_remote("file:///tmp/x")
        (True, False, False)
    """
    text = str(url)
    return "://" in text and not text.startswith("file://")


class Place:
    """A folder on this machine or under an fsspec URL.

    Args:
        url: A local folder or an fsspec URL (``s3://bucket/prefix``).

    Attributes:
        url: The URL as given.
        fs: The fsspec filesystem.
        root: The root's path inside ``fs`` (no protocol).
    """

    def __init__(self, url: str | os.PathLike[str]) -> None:
        self.url = str(url)
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.root = str(Path(root).absolute()) if self.is_local else root.rstrip("/")

    def __repr__(self) -> str:
        return f"Place({self.url!r})"

    # ------------------------------------------------------------ names
    def path(self, *parts: str) -> str:
        """The path of ``parts`` under the root, in ``fs``'s terms."""
        return "/".join([self.root, *parts]) if parts else self.root

    def uri(self, path: str) -> str:
        """``path`` as DuckDB, pyarrow or a person names it: a plain path, or with its protocol."""
        if self.is_local:
            return path
        return str(self.fs.unstrip_protocol(path))

    def child(self, *parts: str) -> Place:
        """The place of a sub-folder."""
        return Place(self.uri(self.path(*parts)))

    # ------------------------------------------------------------ reads
    def glob(self, *parts: str) -> list[str]:
        """Sorted paths matching the pattern ``parts`` under the root (never a cached listing)."""
        self.fs.invalidate_cache()
        return sorted(str(p) for p in self.fs.glob(self.path(*parts)))

    def names(self, *parts: str) -> list[str]:
        """Names of the entries of a sub-folder (empty when it does not exist)."""
        folder = self.path(*parts)
        self.fs.invalidate_cache()
        try:
            entries = self.fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def exists(self, path: str) -> bool:
        """Whether a file exists at ``path``."""
        if not self.is_local:
            self.fs.invalidate_cache(path)
        return bool(self.fs.exists(path))

    def stamp(self, path: str) -> tuple[int, str]:
        """The file's size and a token that changes when it is rewritten (mtime, ETag)."""
        info = self.fs.info(path)
        token = info.get("mtime") or info.get("LastModified") or info.get("ETag") or info.get("created")
        return int(info.get("size") or 0), str(token)

    def read_bytes(self, path: str) -> bytes:
        """The file's bytes."""
        return bytes(self.fs.cat_file(path))

    def read_table(self, path: str, columns: list[str] | None = None) -> pa.Table:
        """A whole Parquet file as a table."""
        with self.fs.open(path, "rb") as handle:
            return pq.read_table(handle, columns=columns)

    # ------------------------------------------------------------ writes
    def makedirs(self, *parts: str) -> None:
        """Create a sub-folder (object stores have none: nothing to do)."""
        if self.is_local:
            os.makedirs(self.path(*parts), exist_ok=True)

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` atomically (readers see the old file or the new, never half)."""
        self._atomic(path, lambda handle: handle.write(data))

    def write_table(self, path: str, table: pa.Table, compression: str = "zstd") -> None:
        """Write ``table`` as Parquet to ``path`` atomically."""
        self._atomic(path, lambda handle: pq.write_table(table, handle, compression=compression))

    def _atomic(self, path: str, write: Callable[[BinaryIO], object]) -> None:
        if not self.is_local:
            handle = self.fs.open(path, "wb")
            try:
                write(handle)
            except BaseException:
                _abandon(handle)  # closing would publish what was written so far
                raise
            try:
                handle.close()
            except OSError as exc:
                raise self._full(exc, path) from exc
            return
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as handle:
                write(handle)
            os.replace(tmp, final)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):
                raise self._full(exc, path) from exc
            raise

    def _full(self, exc: OSError, path: str) -> OSError:
        if exc.errno in _FULL:
            return StorageFullError(
                exc.errno, f"{self.uri(path)}: the store is full ({exc.strerror}); nothing was written"
            )
        return exc

    def remove(self, paths: Iterable[str]) -> None:
        """Delete files (those already gone are fine)."""
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(path)


def _abandon(handle: Any) -> None:
    """Throw away an object store upload in progress (its object never appears)."""
    discard = getattr(handle, "discard", None)
    if callable(discard):
        with contextlib.suppress(Exception):
            discard()
    with contextlib.suppress(Exception):
        handle.closed = True  # a later close (or garbage collection) must not upload it


def read_frame(url: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV, Parquet, JSON or JSON-lines file as a frame, from a folder or an object store.

    The kind comes from the extension; ``~`` and environment variables are
    expanded in local paths. Errors name the file.

    Example:
        >>> import tempfile, pandas as pd
        >>> path = f"{tempfile.mkdtemp()}/e.csv"
        >>> pd.DataFrame({"id": [1, 2]}).to_csv(path, index=False)
        >>> read_frame(path)["id"].tolist()
        [1, 2]
    """
    text = str(url) if is_remote(url) else os.path.expandvars(os.path.expanduser(str(url)))
    suffix = Path(text.split("?", 1)[0]).suffix.lower()
    if suffix not in (".csv", ".parquet", ".json", ".jsonl"):
        raise ValidationError(f"file {text!r}: expected .csv, .parquet, .json or .jsonl, not {suffix!r}")
    fs, path = fsspec.core.url_to_fs(text)
    fs.invalidate_cache()
    if not fs.isfile(path):
        raise ValidationError(f"file {text!r} does not exist")
    try:
        with fs.open(path, "rb") as handle:
            if suffix == ".csv":
                frame = pd.read_csv(handle)
            elif suffix == ".parquet":
                frame = pd.read_parquet(handle)
            else:
                body = handle.read()
                lines = suffix == ".jsonl" or body.lstrip()[:1] == b"{"
                frame = pd.read_json(io.BytesIO(body), lines=lines)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ValidationError(f"file {text!r} cannot be read as {suffix[1:]}: {exc}") from exc
    return frame


def duckdb_connection(place: Place | None = None) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection in UTC that reads ``place``'s files.

    A remote place's fsspec filesystem is registered with the connection, and
    automatic extension downloads are off: a read never reaches the network
    for anything but the store itself.
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET autoinstall_known_extensions = false")
    if place is not None and not place.is_local:
        con.register_filesystem(place.fs)
    return con
