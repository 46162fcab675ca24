"""A content-addressed artifact store over fsspec.

Bytes are stored under their SHA-256 (``sha256/ab/cdef...``), written to a
temporary name and renamed, so a crash never leaves a half-written artifact
visible, and re-hashed on every read, so a changed byte raises an
:class:`~storage.errors.IntegrityError` naming the artifact. A full disk is a
:class:`~storage.errors.StorageFullError` naming the store, with the temporary
file removed; :meth:`ArtifactStore.verify` re-hashes everything stored and
lists temporary files left behind. Any fsspec URL (``s3://bucket/prefix``,
``gs://...``) works as the root.

Example:
    >>> import tempfile
    >>> from storage.artifacts import ArtifactStore
    >>> store = ArtifactStore(tempfile.mkdtemp())
    >>> ref = store.put_bytes(b"weights")
    >>> store.get_bytes(ref.sha256, name="model.bin")
    b'weights'
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from storage.errors import IntegrityError, NotFoundError, StorageFullError, ValidationError

CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _full(exc: OSError, url: str) -> OSError:
    """A full disk as a StorageFullError naming the store; any other OSError as it is."""
    if exc.errno in _FULL:
        return StorageFullError(
            exc.errno, f"the artifact store {url} is full ({exc.strerror}): nothing was stored"
        )
    return exc


@dataclass(frozen=True)
class ArtifactRef:
    """Where stored bytes live: their SHA-256 and size."""

    sha256: str
    size: int


def validate_artifact_name(name: str) -> str:
    """Check a logical artifact name (``model/model.onnx``) and return it.

    Names are relative POSIX paths; anything that could escape a folder
    (``..``, absolute paths, drive letters, backslashes, NUL) is refused.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"artifact name {name!r} is empty")
    if "\x00" in name or "\\" in name:
        raise ValidationError(f"artifact name {name!r} contains a NUL or backslash")
    if name.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", name):
        raise ValidationError(f"artifact name {name!r} is absolute: names must be relative")
    parts = name.split("/")
    if any(part in ("..", ".", "") for part in parts):
        raise ValidationError(f"artifact name {name!r} escapes the artifact root ('..' or '.')")
    return name


def _check_sha(sha256: str) -> str:
    if not _SHA256.match(sha256):
        raise ValidationError(f"{sha256!r} is not a SHA-256 hex digest")
    return sha256


class ArtifactStore:
    """Content-addressed bytes under one root folder or fsspec URL.

    Args:
        root: Local folder or fsspec URL.
    """

    def __init__(self, root: str) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(str(root))
        self.url = str(root)
        self._local = isinstance(self.fs, LocalFileSystem)
        self.fs.makedirs(self._join("sha256"), exist_ok=True)
        if self._local:
            self.fs.makedirs(self._join("tmp"), exist_ok=True)

    @property
    def is_local(self) -> bool:
        """Whether the store is a local folder (its files are plain files on this machine)."""
        return self._local

    def _join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def path_of(self, sha256: str) -> str:
        """The storage path of the bytes with this digest."""
        _check_sha(sha256)
        return self._join("sha256", sha256[:2], sha256[2:])

    def exists(self, sha256: str) -> bool:
        """Whether bytes with this digest are stored."""
        return bool(self.fs.exists(self.path_of(sha256)))

    def put_bytes(self, data: bytes) -> ArtifactRef:
        """Store ``data`` (idempotent: the same bytes are stored once)."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path_of(sha)
        if not self.fs.exists(target):
            self._commit(target, lambda out: out.write(data))
        return ArtifactRef(sha, len(data))

    def put_file(self, path: str | Path) -> ArtifactRef:
        """Store a local file's bytes, streaming (never all in memory)."""
        source = Path(path)
        if not source.is_file():
            raise NotFoundError(f"artifact file {str(source)!r} does not exist")
        digest = hashlib.sha256()
        with source.open("rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
        sha = digest.hexdigest()
        target = self.path_of(sha)
        if not self.fs.exists(target):

            def copy(out: BinaryIO) -> None:
                with source.open("rb") as src:
                    for chunk in iter(lambda: src.read(CHUNK), b""):
                        out.write(chunk)

            self._commit(target, copy)
        return ArtifactRef(sha, source.stat().st_size)

    def _commit(self, target: str, writer: Callable[[BinaryIO], object]) -> None:
        """Write through a temporary name, then rename into place."""
        if not self._local:
            # Object stores make a single PUT visible atomically.
            with self.fs.open(target, "wb") as handle:
                writer(handle)
            return
        tmp = self._join("tmp", uuid.uuid4().hex)
        try:
            with open(tmp, "wb") as handle:
                writer(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(tmp, target)
        except OSError as exc:
            raise _full(exc, self.url) from exc
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def verify(self) -> list[str]:
        """What is wrong in the store: stored bytes that no longer hash to their name, and temporary
        files left behind (a write in progress, or one a crash cut short); empty when clean."""
        problems = []
        for path in sorted(self.fs.find(self._join("sha256"))):
            parts = path.rstrip("/").split("/")
            sha = parts[-2] + parts[-1]
            try:
                found = self.hash_stored(sha)
            except (ValidationError, OSError) as exc:
                problems.append(f"{path}: unreadable or misnamed ({exc})")
                continue
            if found != sha:
                problems.append(f"{path}: content hashes to {found}")
        if self._local:
            problems += [f"{p}: a temporary file" for p in sorted(self.fs.find(self._join("tmp")))]
        return problems

    def begin_upload(self, *, max_bytes: int | None = None) -> Upload:
        """Start a streamed upload: :meth:`Upload.write` chunks, then :meth:`Upload.commit`."""
        return Upload(self, max_bytes=max_bytes)

    def size_of(self, sha256: str) -> int:
        """The stored size of the bytes with this digest (NotFoundError when absent)."""
        try:
            return int(self.fs.size(self.path_of(sha256)))
        except FileNotFoundError:
            raise NotFoundError(f"no artifact with sha256 {sha256} is stored") from None

    def iter_bytes(self, sha256: str, *, name: str = "", chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Stream stored bytes chunk by chunk; the digest is checked after the last chunk.

        Raises:
            NotFoundError: nothing is stored under the digest (before any chunk).
            IntegrityError: after the last chunk, when the bytes no longer hash to ``sha256``.
        """
        label = name or sha256
        try:
            handle = self.fs.open(self.path_of(sha256), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"artifact {label!r} ({sha256[:12]}) is missing from the store") from None
        digest = hashlib.sha256()
        with handle:
            for chunk in iter(lambda: handle.read(chunk_size), b""):
                digest.update(chunk)
                yield chunk
        if digest.hexdigest() != sha256:
            raise IntegrityError(f"artifact {label!r} is corrupted: expected sha256 {sha256}")

    def signed_url(self, sha256: str, *, expires_seconds: int = 300) -> str | None:
        """A presigned URL to the bytes when the store can make one (S3), else None."""
        if self._local:
            return None
        try:
            return str(self.fs.sign(self.path_of(sha256), expiration=expires_seconds))
        except (NotImplementedError, AttributeError, TypeError):
            return None

    def get_bytes(self, sha256: str, *, name: str = "") -> bytes:
        """Read and verify the bytes with this digest.

        Raises:
            NotFoundError: nothing is stored under the digest.
            IntegrityError: the stored bytes no longer hash to ``sha256``.
        """
        label = name or sha256
        path = self.path_of(sha256)
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            raise NotFoundError(f"artifact {label!r} ({sha256[:12]}) is missing from the store") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise IntegrityError(f"artifact {label!r} is corrupted: expected sha256 {sha256}, found {actual}")
        return bytes(data)

    def hash_stored(self, sha256: str) -> str:
        """Re-hash the stored bytes (streaming) and return the digest found."""
        digest = hashlib.sha256()
        with self.fs.open(self.path_of(sha256), "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def download(self, sha256: str, dest: str | Path, *, name: str = "") -> Path:
        """Copy verified bytes to a local file (atomically)."""
        data = self.get_bytes(sha256, name=name)
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return target


class Upload:
    """Bytes arriving in chunks, hashed as they are written to a temporary name.

    Nothing is visible under ``sha256/`` until :meth:`commit` has checked the
    digest (and the size limit); :meth:`abort` (or a failed commit) removes the
    temporary file.

    Example:
        >>> import hashlib, tempfile
        >>> store = ArtifactStore(tempfile.mkdtemp())
        >>> up = store.begin_upload(max_bytes=10)
        >>> up.write(b"weig"); up.write(b"hts")
        >>> up.commit(hashlib.sha256(b"weights").hexdigest()).size
        7
    """

    def __init__(self, store: ArtifactStore, *, max_bytes: int | None = None) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.size = 0
        self._digest = hashlib.sha256()
        self._tmp = store._join("tmp", f"upload-{uuid.uuid4().hex}")
        self._handle: BinaryIO
        if store._local:
            # A plain file: fsspec's local wrapper adds a layer to every write of a large upload.
            os.makedirs(os.path.dirname(self._tmp), exist_ok=True)
            self._handle = open(self._tmp, "wb")  # noqa: SIM115 - closed by commit/abort
        else:
            store.fs.makedirs(store._join("tmp"), exist_ok=True)
            self._handle = store.fs.open(self._tmp, "wb")

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append a chunk; raises ValidationError past ``max_bytes`` (and aborts)."""
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            self.abort()
            raise ValidationError(f"the upload is larger than the limit of {self.max_bytes} bytes")
        self._digest.update(chunk)
        try:
            self._handle.write(chunk)
        except OSError as exc:
            self.abort()
            raise _full(exc, self.store.url) from exc

    def commit(self, expected_sha256: str | None = None) -> ArtifactRef:
        """Check the digest and move the bytes into place (idempotent for stored bytes)."""
        if expected_sha256 is not None:
            _check_sha(expected_sha256)
        try:
            self._handle.close()  # writes what is buffered: the disk may fill here
        except OSError as exc:
            self._remove_tmp()
            raise _full(exc, self.store.url) from exc
        actual = self._digest.hexdigest()
        try:
            if expected_sha256 is not None and actual != expected_sha256:
                raise IntegrityError(
                    f"checksum mismatch: the upload hashes to sha256 {actual}, not {expected_sha256}"
                )
            target = self.store.path_of(actual)
            if self.store._local:
                if not os.path.exists(target):
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    os.replace(self._tmp, target)
            elif not self.store.fs.exists(target):
                self.store.fs.mv(self._tmp, target)
        finally:
            self._remove_tmp()
        return ArtifactRef(actual, self.size)

    def abort(self) -> None:
        """Drop what was written."""
        if not self._handle.closed:
            self._handle.close()
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        if self.store._local:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            return
        try:
            if self.store.fs.exists(self._tmp):
                self.store.fs.rm(self._tmp)
        except FileNotFoundError:  # pragma: no cover - removed concurrently
            pass
