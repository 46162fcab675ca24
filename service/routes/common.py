"""What every router shares: the registry of the running app, and body models that refuse unknown fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from storage.registry.core import Registry


class Body(BaseModel):
    """A request body: unknown fields are an error that names them."""

    model_config = ConfigDict(extra="forbid")


def registry_of(request: Request) -> Registry:
    """The registry the service owns."""
    registry: Registry = request.app.state.registry
    return registry


T = TypeVar("T")

#: The largest page read on the event loop (see :func:`read`).
INLINE_PAGE = 100


async def read(request: Request, fn: Callable[..., T], *args: Any, small: bool = True) -> T:
    """Run a registry read: on SQLite, a ``small`` one on the event loop, any other in the thread pool.

    A SQLite read in WAL mode never waits for a writer, and one version or a
    page of up to :data:`INLINE_PAGE` costs 0.05-2 ms of mostly Python work,
    which holds the GIL in a worker thread too; the thread hop itself costs
    0.2-0.4 ms on 2 vCPUs. PostgreSQL reads (network round trips) and large
    pages stay off the loop.
    """
    if small and registry_of(request).db.dialect == "sqlite":
        return fn(*args)
    return await run_in_threadpool(fn, *args)


def page(items: list[Any], next_token: str | None) -> dict[str, Any]:
    """A page of JSON-ready items."""
    return {"items": items, "next_token": next_token}


def tag_filters(tags: list[str] | None) -> dict[str, str | None]:
    """``key=value`` or bare ``key`` query values → a tag filter."""
    from storage.errors import ValidationError

    filters: dict[str, str | None] = {}
    for item in tags or ():
        key, sep, value = item.partition("=")
        if not key.strip():
            raise ValidationError(f"tag filter {item!r} is malformed: expected key=value or key")
        filters[key.strip()] = value if sep else None
    return filters
