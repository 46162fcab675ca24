"""Batch scoring files: plan chunks of a CSV or Parquet file, read one chunk, write parts, merge them.

Input and output are local paths or any fsspec URL (``s3://``, ``gs://``,
``memory://``). A Parquet file is cut at row-group boundaries; a CSV file at
byte offsets, each chunk owning the lines that *start* inside its byte range
(as Dask's ``read_csv`` does: quoted fields must not hold line breaks). Chunks
are numbered in file order, so scored parts put back in that order keep the
input's row order.

Each chunk's scored rows are written as a part under a work folder beside the
output (temporary name, then rename, so a retried task leaves no torn part);
:func:`merge_parts` joins the parts in order into a temporary file next to the
output and renames it into place, then removes the work folder. On a local
disk the rename is atomic; on an object store it is a copy then a delete.

Example:
    >>> import tempfile, pandas as pd
    >>> folder = tempfile.mkdtemp()
    >>> pd.DataFrame({"x": range(10)}).to_csv(f"{folder}/in.csv", index=False)
    >>> chunks = plan_chunks(f"{folder}/in.csv", chunk_bytes=8)
    >>> sum(read_chunk(c, {"x": "int"}).num_rows for c in chunks)
    10
"""

from __future__ import annotations

import io
import os
import posixpath
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from storage.errors import ValidationError

FORMATS = ("csv", "parquet")
_ARROW_TYPES = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "string": pa.string()}


def file_format(url: str) -> str:
    """``csv`` or ``parquet``, by the name's ending.

    >>> file_format("s3://b/x.PARQUET"), file_format("in.csv")
    ('parquet', 'csv')
    """
    name = url.lower().rstrip("/")
    for ending, fmt in ((".csv", "csv"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(ending):
            return fmt
    raise ValidationError(f"{url!r}: batch scoring reads and writes .csv or .parquet files")


def expand(url: str) -> str:
    """``~`` and environment variables expanded in a local path; URLs as given."""
    return url if "://" in url else os.path.expandvars(os.path.expanduser(url))


@dataclass(frozen=True)
class Chunk:
    """One slice of the input: row groups of a Parquet file, or a byte range of a CSV file."""

    index: int
    url: str
    fmt: str
    row_groups: tuple[int, ...] = ()
    start: int = 0
    end: int = 0
    header_end: int = 0
    first_row: int | None = None  # the chunk's first row in the file (known for Parquet)


def plan_chunks(
    url: str, *, chunk_rows: int = 250_000, chunk_bytes: int | None = None, parallel: int = 1
) -> list[Chunk]:
    """The chunks of ``url``, about ``chunk_rows`` rows each (CSV: estimated from the first lines).

    ``parallel`` (the threads that will score them) evens the work out: the
    chunk count is rounded up to a multiple of it and the chunks are cut to
    about equal sizes, so no thread scores a last, lone chunk while the others
    wait. An explicit ``chunk_bytes`` (CSV) is taken as given.
    """
    url = expand(url)
    fmt = file_format(url)
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        raise ValidationError(f"input {url!r} does not exist")
    if fmt == "parquet":
        with fs.open(path, "rb") as f:
            meta = pq.ParquetFile(f).metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        if parallel > 1 and sum(sizes):
            chunk_rows = -(-sum(sizes) // _balanced(sum(sizes) / chunk_rows, parallel))
        groups: list[list[int]] = [[]]
        firsts, rows, total = [0], 0, 0
        for g, size in enumerate(sizes):
            if rows >= chunk_rows:
                groups.append([])
                firsts.append(total)
                rows = 0
            groups[-1].append(g)
            rows += size
            total += size
        return [Chunk(i, url, fmt, row_groups=tuple(g), first_row=firsts[i]) for i, g in enumerate(groups)]
    size = fs.size(path)
    with fs.open(path, "rb") as f:
        head = f.read(1 << 16)
    header_end = head.find(b"\n") + 1
    if header_end == 0:
        header_end = len(head) if len(head) < (1 << 16) else 0
    if header_end == 0:
        raise ValidationError(f"input {url!r}: the first line (the header) is over 64 KiB")
    if chunk_bytes is None:
        sample = head[header_end:]
        per_row = max(1, len(sample) // max(1, sample.count(b"\n")))
        body = max(1, size - header_end)
        count = _balanced(body / max(1 << 14, chunk_rows * per_row), parallel)  # chunks of 16 KiB or more
        chunk_bytes = -(-body // count)
    starts = list(range(header_end, max(size, header_end + 1), chunk_bytes))
    return [
        Chunk(i, url, fmt, start=s, end=min(s + chunk_bytes, size), header_end=header_end)
        for i, s in enumerate(starts)
    ]


def _balanced(chunks: float, parallel: int) -> int:
    """``chunks`` rounded to a whole count (at least 1), then up to a multiple of ``parallel``.

    >>> _balanced(4.1, 1), _balanced(4.1, 2), _balanced(5.0, 2), _balanced(0.3, 2)
    (4, 4, 6, 2)
    """
    count = max(1, round(chunks))
    step = max(1, parallel)
    return -(-count // step) * step


def _csv_lines(chunk: Chunk) -> tuple[bytes, bytes]:
    fs, path = fsspec.core.url_to_fs(chunk.url)
    with fs.open(path, "rb") as f:
        header = f.read(chunk.header_end)
        if chunk.start > chunk.header_end:
            f.seek(chunk.start - 1)
            f.readline()  # the line that started before this chunk belongs to the previous one
        else:
            f.seek(chunk.start)
        begin = f.tell()
        data = f.read(max(0, chunk.end - begin)) if begin < chunk.end else b""
        if data and not data.endswith(b"\n"):
            data += f.readline()  # finish the last line that starts inside the range
    return header, data


def read_chunk(chunk: Chunk, types: dict[str, str]) -> pa.Table:
    """The chunk's rows, columns named in ``types`` read as those signature types."""
    if chunk.fmt == "parquet":
        fs, path = fsspec.core.url_to_fs(chunk.url)
        with fs.open(path, "rb") as f:
            return pq.ParquetFile(f).read_row_groups(list(chunk.row_groups))
    header, data = _csv_lines(chunk)
    names = [c.strip().strip('"') for c in header.decode("utf-8", "replace").rstrip("\r\n").split(",")]
    column_types = {n: _ARROW_TYPES[t] for n, t in types.items() if n in names and t in _ARROW_TYPES}
    if not data.strip():
        return pa.table({n: pa.array([], type=column_types.get(n, pa.string())) for n in names})
    try:
        return pacsv.read_csv(
            io.BytesIO(header + data),
            convert_options=pacsv.ConvertOptions(column_types=column_types, strings_can_be_null=True),
        )
    except pa.ArrowInvalid as exc:
        raise ValidationError(f"{chunk.url}: chunk {chunk.index}: {exc}") from None


# ------------------------------------------------------------------ output
def parts_folder(output: str, job_id: str) -> str:
    """Where a job's parts go: a hidden folder beside the output."""
    output = expand(output)
    parent, name = posixpath.split(output.rstrip("/"))
    return posixpath.join(parent, f".{name}.parts-{job_id}")


def _replace(fs: Any, source: str, target: str) -> None:
    if hasattr(fs, "local_file") or fs.protocol in ("file", ("file", "local")):
        os.replace(source, target)
    else:
        fs.mv(source, target)


def write_part(table: pa.Table, output: str, job_id: str, index: int) -> str:
    """Write chunk ``index``'s scored rows as a part (temporary name, then rename); returns its path."""
    fmt = file_format(output)
    folder = parts_folder(output, job_id)
    fs, root = fsspec.core.url_to_fs(folder)
    fs.makedirs(root, exist_ok=True)
    final = posixpath.join(root, f"part-{index:06d}.{fmt}")
    temp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(temp, "wb") as f:
        if fmt == "parquet":
            pq.write_table(table, f)
        else:
            pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=index == 0))
    _replace(fs, temp, final)
    return final


def discard_parts(output: str, job_id: str) -> None:
    """Remove a failed job's parts (the output itself is never touched)."""
    fs, root = fsspec.core.url_to_fs(parts_folder(output, job_id))
    if fs.exists(root):
        fs.rm(root, recursive=True)


def merge_parts(output: str, job_id: str, count: int) -> int:
    """Join parts ``0..count-1`` in order into ``output`` (temporary file, then rename); returns bytes."""
    output = expand(output)
    fmt = file_format(output)
    fs, target = fsspec.core.url_to_fs(output)
    _, root = fsspec.core.url_to_fs(parts_folder(output, job_id))
    parent = posixpath.dirname(target)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    temp = posixpath.join(parent, f".{posixpath.basename(target)}.tmp-{job_id}")
    parts = [posixpath.join(root, f"part-{i:06d}.{fmt}") for i in range(count)]
    with fs.open(temp, "wb") as out:
        if fmt == "csv":
            for part in parts:
                with fs.open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
        else:
            writer: pq.ParquetWriter | None = None
            for part in parts:
                with fs.open(part, "rb") as f:
                    table = pq.read_table(f)
                if writer is None:
                    writer = pq.ParquetWriter(out, table.schema)
                writer.write_table(table.cast(writer.schema))
            if writer is not None:
                writer.close()
    size = int(fs.size(temp))
    _replace(fs, temp, target)
    fs.rm(root, recursive=True)
    return size
