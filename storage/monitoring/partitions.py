"""Partition folders of Parquet files whose files can be replaced while others read and append.

A partition (``model=<name>/date=<day>`` of the prediction log) holds

- ``part-<id>.parquet``: files as appended; visible unless a manifest replaces them;
- ``merged-<gen>.parquet``: the output of a replacement (a compaction, or an
  erasure's rewrite); visible only once its manifest is there;
- ``_manifest-<gen>.json``: ``{"replaces": [names], "output": name | null}``,
  written last: its arrival is the one step that swaps the replaced files for
  the output, on a local folder and on an object store alike (each object or
  renamed file appears whole, and nothing is ever renamed over another).

A replacement (:func:`replace`) writes the output, then the manifest, then
lists the partition again: when one of its inputs is gone or another manifest
claims one of them (a concurrent replacement), it withdraws (manifest first,
then output) and reports the conflict; otherwise it deletes its inputs and
the manifests nothing depends on any longer. Readers (:func:`visible`) take
the files of one listing: of two manifests claiming the same file only the
one with the lower name counts, so a file is never read twice. A file that
vanishes during a read (its replacement finished) raises :class:`Vanished`:
list again and read again. Appends only add new ``part-`` files, which no
replacement in progress has listed, so they are never swallowed.

Example:
    >>> import tempfile, pyarrow as pa
    >>> from storage.objectstore import Place
    >>> place = Place(tempfile.mkdtemp())
    >>> for x in (1, 2):
    ...     place.write_table(place.path("d", f"part-{x}.parquet"), pa.table({"x": [x]}))
    >>> replace(place, ("d",), ["part-1.parquet", "part-2.parquet"], pa.table({"x": [1, 2]}))
    True
    >>> [name.split("-")[0] for name in visible(listing(place, ("d",)))]
    ['merged']
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from storage.objectstore import Place

__all__ = [
    "MANIFEST",
    "MERGED",
    "PART",
    "Listing",
    "Manifest",
    "Vanished",
    "collect_garbage",
    "listing",
    "listings",
    "replace",
    "visible",
]

PART, MERGED, MANIFEST = "part-", "merged-", "_manifest-"
#: An output nobody's manifest names after this long belongs to a writer that died: removed.
ORPHAN_AFTER_S = 3600.0
_CACHE_LIMIT = 20_000
_manifests: dict[str, Manifest] = {}  # manifests never change once written: cached by URI


class Vanished(Exception):
    """A file of a listing went away before it was read (a replacement finished): list again."""


@dataclass(frozen=True)
class Manifest:
    """A replacement: the files it replaces and the file it put in their place (None: nothing)."""

    name: str
    replaces: frozenset[str]
    output: str | None


@dataclass(frozen=True)
class Listing:
    """What one listing of a partition folder showed."""

    parts: tuple[str, ...]
    names: frozenset[str]
    manifests: tuple[Manifest, ...]


def _generation() -> str:
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"


def _data_name(name: str) -> bool:
    return name.endswith(".parquet") and name.startswith((PART, MERGED))


def _manifest(place: Place, parts: Sequence[str], name: str) -> Manifest:
    uri = place.uri(place.path(*parts, name))
    found = _manifests.get(uri)
    if found is None:
        try:
            data = json.loads(place.read_bytes(place.path(*parts, name)))
        except FileNotFoundError:
            raise Vanished(f"{uri} went away while the partition was being read") from None
        except ValueError as exc:
            raise ValueError(f"{uri}: the manifest is not valid JSON ({exc})") from None
        found = Manifest(name, frozenset(data.get("replaces", [])), data.get("output"))
        if len(_manifests) >= _CACHE_LIMIT:
            _manifests.clear()
        _manifests[uri] = found
    return found


def _from_names(place: Place, parts: Sequence[str], names: Iterable[str]) -> Listing:
    kept = frozenset(n for n in names if _data_name(n) or (n.startswith(MANIFEST) and n.endswith(".json")))
    manifests = tuple(_manifest(place, parts, n) for n in sorted(kept) if n.startswith(MANIFEST))
    return Listing(tuple(parts), kept, manifests)


def listing(place: Place, parts: Sequence[str]) -> Listing:
    """One fresh listing of the partition folder ``parts`` (its manifests read).

    Raises:
        Vanished: A manifest went away between the listing and its reading.
    """
    return _from_names(place, parts, place.names(*parts))


def listings(place: Place, *pattern: str) -> list[Listing]:
    """Fresh listings of every partition folder matching ``pattern`` (one glob for them all)."""
    folders: dict[str, list[str]] = {}
    prefix = place.path() + "/"
    for path in place.glob(*pattern, "*"):
        folder, _, name = path.rpartition("/")
        folders.setdefault(folder, []).append(name)
    found = []
    for folder, names in sorted(folders.items()):
        parts = tuple(folder.removeprefix(prefix).split("/"))
        found.append(_from_names(place, parts, names))
    return found


def _valid(manifests: Iterable[Manifest]) -> list[Manifest]:
    """Manifests that count: of two claiming one file, the one with the lower name."""
    claimed: set[str] = set()
    valid = []
    for manifest in sorted(manifests, key=lambda m: m.name):
        if manifest.replaces & claimed:
            continue
        claimed |= manifest.replaces
        valid.append(manifest)
    return valid


def visible(part: Listing) -> list[str]:
    """The names of the files a reader reads in this listing, sorted."""
    valid = _valid(part.manifests)
    hidden = set().union(*(m.replaces for m in valid))
    outputs = {m.output for m in valid if m.output}
    names = [n for n in part.names if n.endswith(".parquet") and n not in hidden]
    return sorted(n for n in names if n.startswith(PART) or n in outputs)


def replace(place: Place, parts: Sequence[str], inputs: Sequence[str], table: pa.Table | None) -> bool:
    """Put ``table`` (None or no rows: nothing) in the place of the files ``inputs``; False on a conflict.

    Readers see the inputs or the output, never both and never neither. When
    another replacement claimed one of the inputs first, or one is gone,
    nothing changes and the result is False (list again and retry).
    """
    output = f"{MERGED}{_generation()}.parquet" if table is not None and table.num_rows else None
    if output is not None:
        place.write_table(place.path(*parts, output), table)
    name = f"{MANIFEST}{_generation()}.json"
    body = json.dumps({"replaces": sorted(inputs), "output": output}, indent=1).encode()
    place.write_bytes(place.path(*parts, name), body)
    try:
        after = listing(place, parts)
        conflict = not set(inputs) <= after.names or any(
            m.name != name and m.replaces & set(inputs) for m in after.manifests
        )
    except Vanished:
        conflict = True  # another replacement is tidying up this very moment
    if conflict:
        place.remove([place.path(*parts, name)])
        if output is not None:
            place.remove([place.path(*parts, output)])
        return False
    place.remove(place.path(*parts, n) for n in inputs)
    collect_garbage(place, parts)
    return True


def collect_garbage(place: Place, parts: Sequence[str]) -> int:
    """Remove manifests nothing depends on and outputs of writers that died; returns how many files.

    A manifest stays while one of the files it replaces or its output is still
    there; an output no manifest names stays for :data:`ORPHAN_AFTER_S`
    (its writer may be about to write the manifest).
    """
    try:
        part = listing(place, parts)
    except Vanished:
        return 0  # someone else is tidying up: next time
    gone = [m.name for m in part.manifests if not (m.replaces | {m.output or ""}) & part.names]
    named = {m.output for m in part.manifests}
    cutoff = time.time_ns() - int(ORPHAN_AFTER_S * 1e9)
    for n in part.names:
        if n.startswith(MERGED) and n not in named and _born(n) < cutoff:
            gone.append(n)
    place.remove(place.path(*parts, n) for n in gone)
    return len(gone)


def _born(name: str) -> int:
    stamp = name.removeprefix(MERGED).split("-", 1)[0]
    return int(stamp) if stamp.isdigit() else 0
