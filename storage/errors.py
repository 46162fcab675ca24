"""Errors raised by the storage layer.

Each message names the thing that was wrong (model, version, field, value) so
a user can act on it without reading a traceback.
"""

from __future__ import annotations


class MlopsError(Exception):
    """Base class of every error the platform raises on purpose."""


class NotFoundError(MlopsError, LookupError):
    """A model, version, alias or artifact that does not exist."""


class AlreadyExistsError(MlopsError, ValueError):
    """A name or version that is already taken."""


class ValidationError(MlopsError, ValueError):
    """Input that is malformed: a bad version string, metric, name or path."""


class TransitionError(MlopsError, ValueError):
    """A lifecycle stage move that the rules do not allow."""


class IntegrityError(MlopsError):
    """Stored bytes whose checksum no longer matches the recorded one."""


class AccessError(MlopsError, PermissionError):
    """A call the service refused for the caller: no key, an unknown key, or a role that does not allow it."""


class UnavailableError(MlopsError, ConnectionError):
    """A backing service that does not answer (the online store's Redis, the metadata database).

    The message names the service; the operation did not complete, and retrying it once the service
    is back is safe.
    """


class StorageFullError(MlopsError, OSError):
    """A write that found its disk full or over quota; the message names the store, and nothing of the
    write is visible (its temporary files are removed)."""
