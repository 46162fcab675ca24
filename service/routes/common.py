"""What every router shares: the registry of the running app, and body models that refuse unknown fields."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict

from storage.registry.core import Registry


class Body(BaseModel):
    """A request body: unknown fields are an error that names them."""

    model_config = ConfigDict(extra="forbid")


def registry_of(request: Request) -> Registry:
    """The registry the service owns."""
    registry: Registry = request.app.state.registry
    return registry


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
