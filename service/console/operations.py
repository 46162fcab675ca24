"""Console pages for operations (filled in beside the main pages)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
