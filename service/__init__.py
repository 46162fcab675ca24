"""The platform service (``mlops server``): the REST API and console every remote client talks to.

It owns the metadata database and the artifact store, checks API keys and
their roles, and sits beside the CLI above ``tasks/`` and ``storage/``; it
never imports the model server (``serving/``).

Example:
    >>> import service
    >>> "create_app" in service.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.app import create_app
    from service.config import ServiceSettings
    from service.server import ServiceThread, running_service, serve

_EXPORTS = {
    "create_app": "service.app",
    "ServiceSettings": "service.config",
    "ServiceThread": "service.server",
    "running_service": "service.server",
    "serve": "service.server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
