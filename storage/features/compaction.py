"""Which of a group's files readers see, and compaction of many small files into one per partition.

A group's files live under ``<group>/date=YYYY-MM-DD/part-<id>.parquet`` and
its commit markers under ``<group>/_committed/<id>``. A file is visible when
the marker of its id exists and no *compaction marker* retires it. Markers are
small objects written atomically (a local temporary name then a rename; an
object store shows an object only once its upload completes), so the protocol
holds on a folder and on S3 alike.

Compaction (:func:`compact`) merges each partition's committed files into one:

1. it writes the merged files, ``part-compacted-<hash>.parquet``, invisible for
   want of a marker;
2. it writes the marker ``_committed/compacted-<hash>``, a JSON list of the
   files it retires: this one object switches readers from the old set to the
   new set, so no reader ever sees both or neither;
3. it deletes the retired files, then the markers left without a visible file.

A reader (:func:`list_committed`) lists the markers, reads the retire lists of
the compaction markers, lists the files and lists the markers again; when the
two marker listings differ a writer was at work and it lists again. A read
that then fails because a file of its listing was deleted under it is retried
by :class:`~storage.features.offline.OfflineStore`. Retire lists are carried
into the next compaction marker when an older one is dropped, so re-ingesting
an already compacted batch (a task retry) adds no duplicate rows. One
compaction of a group runs at a time (the scheduled flow's job).

Example:
    >>> import tempfile, pyarrow as pa
    >>> from storage.objectstore import Place
    >>> place = Place(tempfile.mkdtemp())
    >>> for batch in ("a1", "b2"):
    ...     path = place.path("g", "date=2026-01-01", f"part-{batch}.parquet")
    ...     place.write_table(path, pa.table({"x": [1]}))
    ...     place.write_bytes(place.path("g", COMMITS, batch), b"1")
    >>> result = compact(place, "g")
    >>> result.files_before, result.files_after, result.rows
    (2, 1, 2)
    >>> len(list_committed(place, "g").files)
    1
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import MutableMapping
from dataclasses import dataclass

import pyarrow as pa

from storage.errors import IntegrityError, UnavailableError
from storage.objectstore import Place

__all__ = ["COMMITS", "MERGED", "CompactionResult", "Listing", "compact", "list_committed"]

log = logging.getLogger(__name__)

COMMITS = "_committed"
MERGED = "compacted-"
ATTEMPTS = 50


@dataclass(frozen=True)
class Listing:
    """One consistent view of a group's files.

    Attributes:
        files: The visible files (paths in the place's filesystem), sorted.
        present: Every ``part-*.parquet`` file found, visible or not.
        markers: The commit markers' names.
        retires: Per compaction marker, the files it retires (``date=.../part-....parquet``).
    """

    files: tuple[str, ...]
    present: tuple[str, ...]
    markers: frozenset[str]
    retires: dict[str, frozenset[str]]

    @property
    def retired(self) -> frozenset[str]:
        """Every file some compaction marker retires."""
        return frozenset().union(*self.retires.values())


@dataclass(frozen=True)
class CompactionResult:
    """What one compaction of a group did.

    Attributes:
        group: The group.
        files_before: Visible files before.
        files_after: Visible files after.
        partitions: Partitions merged.
        rows: Rows in the merged files.
        bytes_before: Bytes of the files merged.
        bytes_after: Bytes of the merged files.
        marker: The compaction marker's name (None when nothing was merged).
    """

    group: str
    files_before: int
    files_after: int
    partitions: int
    rows: int
    bytes_before: int
    bytes_after: int
    marker: str | None


def relative(place: Place, group: str, path: str) -> str:
    """``date=.../part-....parquet``: a file's name inside its group."""
    return path[len(place.path(group)) + 1 :]


def batch_of(path: str) -> str:
    """The batch (marker name) a part file belongs to."""
    return path.rsplit("/", 1)[-1].removeprefix("part-").removesuffix(".parquet")


def _markers(place: Place, group: str) -> list[str]:
    return [n for n in place.names(group, COMMITS) if not n.startswith(".")]


def _retire_list(place: Place, group: str, marker: str) -> frozenset[str]:
    body = json.loads(place.read_bytes(place.path(group, COMMITS, marker)))
    return frozenset(body["retires"])


def _part_files(place: Place, group: str) -> list[str]:
    """Every ``date=*/part-*.parquet`` of the group, from one recursive listing (one request on S3)."""
    place.fs.invalidate_cache()
    try:
        found = place.fs.find(place.path(group))
    except FileNotFoundError:
        return []
    return sorted(
        p
        for p in map(str, found)
        if fnmatch.fnmatchcase(relative(place, group, p), "date=*/part-*.parquet")
        and relative(place, group, p).count("/") == 1
    )


def list_committed(
    place: Place, group: str, cache: MutableMapping[tuple[str, str], frozenset[str]] | None = None
) -> Listing:
    """A consistent listing of ``group``'s files: markers, retire lists, files, markers again.

    Args:
        place: The offline store's root.
        group: The group's folder name.
        cache: Retire lists already read, by ``(group, marker)`` (compaction markers never change).

    Raises:
        UnavailableError: The markers changed on every one of many listings in a row.
    """
    cache = {} if cache is None else cache
    for _ in range(ATTEMPTS):
        before = _markers(place, group)
        retires: dict[str, frozenset[str]] = {}
        try:
            for m in before:
                if m.startswith(MERGED):
                    if (group, m) not in cache:
                        cache[(group, m)] = _retire_list(place, group, m)
                    retires[m] = cache[(group, m)]
        except FileNotFoundError:
            continue  # dropped by a compaction since the listing
        present = _part_files(place, group)
        if _markers(place, group) != before:
            continue
        markers = frozenset(before)
        retired = frozenset().union(*retires.values())
        files = tuple(
            p for p in present if batch_of(p) in markers and relative(place, group, p) not in retired
        )
        return Listing(files, tuple(present), markers, retires)
    raise UnavailableError(f"offline store {place.uri(place.path(group))}: the commit markers kept changing")


def compact(
    root: Place | str | os.PathLike[str],
    group: str,
    *,
    min_files: int = 2,
    cache: MutableMapping[tuple[str, str], frozenset[str]] | None = None,
) -> CompactionResult:
    """Merge each partition of ``group`` holding at least ``min_files`` visible files into one file.

    Readers see the old files or the merged ones, never both and never
    neither (see the module's text). A file that does not read back is left
    as it is, visible, and named in a warning.

    Args:
        root: The offline store's root (a folder, an fsspec URL or its place).
        group: The group's folder name.
        min_files: Merge a partition only when it holds at least this many files (at least 2).
        cache: Retire lists already read (shared with the store's readers).
    """
    if min_files < 2:
        raise ValueError(f"min_files={min_files}: merging needs at least 2 files")
    place = root if isinstance(root, Place) else Place(root)
    listing = list_committed(place, group, cache)
    partitions: dict[str, list[str]] = defaultdict(list)
    for path in listing.files:
        partitions[relative(place, group, path).split("/", 1)[0]].append(path)
    tables: dict[str, tuple[list[str], pa.Table]] = {}
    for part, paths in sorted(partitions.items()):
        if len(paths) >= min_files:
            read = _readable(place, paths)
            if len(read) >= min_files:
                tables[part] = ([p for p, _ in read], _concat(place, group, part, [t for _, t in read]))
    if not tables:
        n = len(listing.files)
        return CompactionResult(group, n, n, 0, 0, 0, 0, None)
    retiring = {relative(place, group, p) for paths, _ in tables.values() for p in paths}
    obsolete = _obsolete_compactions(listing, retiring, place, group)
    carried = frozenset().union(*(listing.retires[m] for m in obsolete))
    retires = sorted(retiring | carried)
    marker = MERGED + hashlib.sha256("\n".join(retires).encode()).hexdigest()[:20]
    bytes_before = sum(place.stamp(p)[0] for paths, _ in tables.values() for p in paths)
    bytes_after = rows = 0
    for part, (_, table) in tables.items():  # 1. the merged files, not visible yet
        path = place.path(group, part, f"part-{marker}.parquet")
        place.write_table(path, table)
        bytes_after += place.stamp(path)[0]
        rows += table.num_rows
    body = {"retires": retires, "created_ns": time.time_ns()}
    place.write_bytes(place.path(group, COMMITS, marker), json.dumps(body).encode())  # 2. the switch
    retired = listing.retired | frozenset(retires)
    place.remove(p for p in listing.present if relative(place, group, p) in retired)  # 3. old files
    live = {batch_of(p) for p in listing.present if relative(place, group, p) not in retired}
    place.remove(place.path(group, COMMITS, m) for m in sorted(listing.markers - live - {marker}))
    before = len(listing.files)
    after = before - len(retiring) + len(tables)
    log.info("offline store: compacted %s from %d files to %d (%d rows)", group, before, after, rows)
    return CompactionResult(group, before, after, len(tables), rows, bytes_before, bytes_after, marker)


def _readable(place: Place, paths: list[str]) -> list[tuple[str, pa.Table]]:
    read = []
    for path in paths:
        try:
            read.append((path, place.read_table(path)))
        except (OSError, pa.ArrowException) as exc:
            log.warning(
                "offline store: compaction left out the unreadable file %s (%s)", place.uri(path), exc
            )
    return read


def _concat(place: Place, group: str, part: str, tables: list[pa.Table]) -> pa.Table:
    try:
        return pa.concat_tables(tables, promote_options="default")
    except pa.ArrowInvalid as exc:
        where = place.uri(place.path(group, part))
        raise IntegrityError(f"offline store {where}: the files' columns do not merge: {exc}") from exc


def _obsolete_compactions(listing: Listing, retiring: set[str], place: Place, group: str) -> list[str]:
    """Compaction markers none of whose files stays visible once ``retiring`` is retired."""
    gone = listing.retired | retiring
    live = {batch_of(p) for p in listing.present if relative(place, group, p) not in gone}
    return sorted(m for m in listing.retires if m not in live)
