"""Links from what flows publish (Prefect Markdown artifacts) to the matching console page.

The console is served by the platform service (``mlops server``) at its root.
When ``MLOPS_CONSOLE_URL`` names where people reach it, each artifact gets a
line "Open in the console: <url>"; without it the artifacts stay as they were.

=============  ============================================
kind           page
=============  ============================================
``model``      ``/models/<model>``
``version``    ``/models/<model>/versions/<version>``
``approvals``  ``/approvals?model=<model>``
``endpoint``   ``/endpoints/<endpoint>`` (``model`` is the endpoint name)
``monitoring`` ``/monitoring?model=<model>``
=============  ============================================

Example:
    >>> from blocks.settings import MlopsSettings
    >>> site = MlopsSettings(console_url="https://mlops.example.com/")
    >>> console_link("version", "fraud", 3, settings=site)
    'https://mlops.example.com/models/fraud/versions/3'
    >>> console_line("endpoint", "fraud live", settings=site)
    'Open in the console: <https://mlops.example.com/endpoints/fraud%20live>'
    >>> console_link("model", "fraud", settings=MlopsSettings(console_url=None)) is None
    True
"""

from __future__ import annotations

from urllib.parse import quote

from blocks.settings import MlopsSettings, get_settings

KINDS = ("model", "version", "approvals", "endpoint", "monitoring")

__all__ = ["KINDS", "console_line", "console_link"]


def console_link(
    kind: str, model: str, version: int | str | None = None, *, settings: MlopsSettings | None = None
) -> str | None:
    """The console URL of a page about ``model`` (and ``version``), or None when no console URL is set.

    Args:
        kind: One of :data:`KINDS`.
        model: The model name (the endpoint name for ``endpoint``).
        version: The version number or reference, for ``version`` (without it: the model page).
        settings: Where ``console_url`` comes from (``MLOPS_CONSOLE_URL`` when None).

    Raises:
        ValueError: An unknown ``kind``.
    """
    if kind not in KINDS:
        raise ValueError(f"console page kind {kind!r} is not one of {', '.join(KINDS)}")
    base = (settings or get_settings()).console_url
    if not base or not base.strip():
        return None
    root = base.strip().rstrip("/")
    name = quote(str(model), safe="")
    if kind == "version" and version is not None:
        path = f"/models/{name}/versions/{quote(str(version), safe='')}"
    elif kind in ("model", "version"):
        path = f"/models/{name}"
    elif kind == "endpoint":
        path = f"/endpoints/{name}"
    else:
        path = f"/{kind}?model={name}"
    return root + path


def console_line(
    kind: str, model: str, version: int | str | None = None, *, settings: MlopsSettings | None = None
) -> str:
    """``"Open in the console: <url>"`` for a Markdown artifact, or ``""`` when no console URL is set."""
    url = console_link(kind, model, version, settings=settings)
    return f"Open in the console: <{url}>" if url else ""
