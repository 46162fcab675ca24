"""Files: streamed uploads checked against their SHA-256, streamed (or presigned) downloads.

Registering a version with files is two steps, so no request holds a whole
file in memory: ``PUT /artifacts/{sha256}`` streams each file's bytes (the
service hashes them as they arrive and refuses a mismatch or a body over the
limit, leaving nothing visible), then ``POST /models/{name}/versions`` names
them by digest. A download streams the verified bytes with their digest in
``X-Checksum-Sha256``, or redirects to a presigned URL when the store is S3.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from service.auth import Contributor, Principal, Reader
from service.errors import TooLarge
from service.routes.common import registry_of
from storage.artifacts import ArtifactRef, ArtifactStore, Upload
from storage.errors import ValidationError

router = APIRouter(tags=["artifacts"])
#: Bytes gathered on the event loop before a worker thread hashes and writes them.
_FLUSH = 4 << 20
#: Below this, a whole upload to a local store is hashed and written on the event loop.
_INLINE = 256 << 10
#: A refused upload's remaining body is read and dropped up to this many bytes before the
#: answer: a connection closed with bytes still unread is reset, and a client still sending
#: then sees a broken connection instead of the 413. Larger bodies are cut off unread.
_DRAIN = 64 << 20


class _Sink:
    """One upload's bytes on their way to the store, written in large batches by worker threads.

    The store's :class:`~storage.artifacts.Upload` is opened by the first batch,
    so a small upload costs a single thread hop (:meth:`finish`).
    """

    def __init__(self, store: ArtifactStore, limit: int) -> None:
        self.store, self.limit = store, limit
        self.upload: Upload | None = None

    def write(self, chunks: list[bytes]) -> None:
        if self.upload is None:
            self.upload = self.store.begin_upload(max_bytes=self.limit)
        for chunk in chunks:
            self.upload.write(chunk)

    def finish(self, chunks: list[bytes], sha256: str) -> ArtifactRef:
        self.write(chunks)
        assert self.upload is not None
        return self.upload.commit(sha256)

    def abort(self) -> None:
        if self.upload is not None:
            self.upload.abort()


@router.put("/artifacts/{sha256}", status_code=201)
async def upload(request: Request, sha256: str, caller: Principal = Contributor) -> dict[str, Any]:
    """Store a file's bytes under their digest; 409 when they hash to something else, 413 when too large.

    Receiving overlaps with storing: while a worker thread hashes and writes one
    batch of about 4 MiB, the event loop gathers the next (chunks are kept as
    they arrive, never copied into one buffer).
    """
    registry = registry_of(request)
    limit: int = request.app.state.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        await _drain(request)
        raise TooLarge(f"the upload of {declared} bytes is larger than the limit of {limit} bytes")
    store = registry.artifacts
    store.path_of(sha256)  # refuses a malformed digest (400) before reading the body
    sink = _Sink(store, limit)
    writing: asyncio.Future[None] | None = None
    batch: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            batch.append(chunk)
            size += len(chunk)
            if size >= _FLUSH:
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(asyncio.to_thread(sink.write, batch))
                batch, size = [], 0
        if writing is not None:
            await writing
            writing = None
            ref = await asyncio.to_thread(sink.finish, batch, sha256)
        elif size <= _INLINE and store.is_local:
            ref = sink.finish(batch, sha256)  # a small file: a thread hop costs more than writing it
        else:
            ref = await asyncio.to_thread(sink.finish, batch, sha256)
    except ValidationError as exc:
        await _settle(writing)
        sink.abort()
        if "larger than the limit" in str(exc):
            await _drain(request)
            raise TooLarge(str(exc)) from None
        raise
    except BaseException:
        await _settle(writing)
        sink.abort()
        raise
    return {"sha256": ref.sha256, "size": ref.size}


async def _drain(request: Request) -> None:
    """Read and drop what is left of the request's body, up to ``_DRAIN`` bytes."""
    dropped = 0
    with contextlib.suppress(ClientDisconnect):
        async for chunk in request.stream():
            dropped += len(chunk)
            if dropped > _DRAIN:
                return


async def _settle(writing: asyncio.Future[None] | None) -> None:
    """Wait for a batch still being written (its own error, if any, is the one already raised)."""
    if writing is not None:
        with contextlib.suppress(BaseException):
            await writing


@router.head("/artifacts/{sha256}")
def artifact_exists(request: Request, sha256: str, caller: Principal = Reader) -> Response:
    """200 with the size when the bytes are stored, 404 otherwise (lets clients skip an upload)."""
    size = registry_of(request).artifacts.size_of(sha256)
    return Response(status_code=200, headers={"Content-Length": str(size)})


@router.get("/models/{name}/versions/{ref}/files/{path:path}", response_model=None)
def download(
    request: Request, name: str, ref: str, path: str, caller: Principal = Reader
) -> StreamingResponse | RedirectResponse:
    """One file of a version, streamed; the client checks ``X-Checksum-Sha256``."""
    registry = registry_of(request)
    found = registry.artifact(name, ref, path)
    store = registry.artifacts
    if request.app.state.settings.presign_downloads:
        url = store.signed_url(found.sha256)
        if url:
            return RedirectResponse(url, status_code=307, headers={"X-Checksum-Sha256": found.sha256})
    chunks = store.iter_bytes(found.sha256, name=f"{name}/{ref}/{path}")
    first = next(chunks, b"")  # a missing file is a 404 here, before the response starts

    def body() -> Any:
        yield first
        yield from chunks

    headers = {"X-Checksum-Sha256": found.sha256, "Content-Length": str(found.size)}
    return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)
