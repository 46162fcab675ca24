"""Settings of the model server, read from ``MLOPS_SERVE_*`` environment variables.

List settings (``api_keys``, ``models``, ``trusted_types``) take a comma-separated
string or a JSON list, e.g. ``MLOPS_SERVE_API_KEYS=key-a,key-b``.

Example:
    >>> s = ServeSettings(api_keys="k1, k2", port=9000)
    >>> s.api_keys, s.port, s.keys_required
    (['k1', 'k2'], 9000, True)
    >>> ServeSettings().keys_required
    False
    >>> ServeSettings(max_model_memory="512MiB").max_model_memory
    536870912
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from storage.errors import ValidationError

#: Default largest accepted request body (64 MiB: a 10,000-row batch of 50 columns is about 5 MiB).
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
#: Default longest string value of an input (64 KiB: a long free-text field, not a document dump).
DEFAULT_MAX_STRING_BYTES = 64 * 1024
#: Default bound on the estimated memory of loaded model versions (2 GiB).
DEFAULT_MAX_MODEL_MEMORY = 2 * 1024**3


#: Units of a size, case-insensitive: decimal (``KB``, ``k``) and binary (``KiB``, ``Ki``).
SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mi": 1024**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gi": 1024**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "ti": 1024**4, "tib": 1024**4,
}  # fmt: skip
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_size(value: int | str, what: str = "size") -> int:
    """Bytes in ``value``: a whole number of bytes or a number with a unit (``2GiB``, ``512MB``).

    Raises:
        ValidationError: not a positive size; the message names ``what`` and the value.

    >>> parse_size("2GiB"), parse_size("1.5 kb"), parse_size(4096), parse_size("64Mi")
    (2147483648, 1500, 4096, 67108864)
    >>> parse_size("2 parsecs", "--max-model-memory")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    storage.errors.ValidationError: --max-model-memory '2 parsecs' is not a size: expected bytes or a ...
    """
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        match = _SIZE.fullmatch(str(value))
        unit = SIZE_UNITS.get(match.group(2).lower()) if match else None
        if match is None or unit is None:
            raise ValidationError(
                f"{what} {str(value)!r} is not a size: expected bytes or a number with a unit "
                "(KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. 2GiB"
            )
        number = int(float(match.group(1)) * unit)
    if number <= 0:
        raise ValidationError(f"{what} {str(value)!r} must be above zero bytes")
    return number


def _split(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class ServeSettings(BaseSettings):
    """How ``mlops serve`` runs.

    Attributes:
        host: Interface to bind (``MLOPS_SERVE_HOST``).
        port: TCP port (``MLOPS_SERVE_PORT``).
        grpc_port: TCP port of the Open Inference Protocol over gRPC
            (``MLOPS_SERVE_GRPC_PORT``); None serves HTTP only, 0 a free port.
        tls_cert: PEM certificate file (``MLOPS_SERVE_TLS_CERT``); with
            ``tls_key`` the server speaks HTTPS only.
        tls_key: PEM private key of ``tls_cert`` (``MLOPS_SERVE_TLS_KEY``).
        api_keys: Keys accepted for inference (``MLOPS_SERVE_API_KEYS``); when
            empty, inference needs no key.
        admin_key: Key for the admin (traffic) API (``MLOPS_SERVE_ADMIN_KEY``);
            when unset, the admin API refuses every call.
        trust_pickle: Load ``model.pkl`` files (runs arbitrary code: only for
            models from a trusted source).
        trusted_types: Extra fully-qualified type names skops may load, beyond
            scikit-learn, NumPy and SciPy types.
        models: Models loaded at start; the server reports ready once they load.
        max_body_bytes: Largest request body accepted (413 above).
        max_batch_rows: Most rows in one request (400 above).
        max_string_bytes: Longest string value of any input, in UTF-8 bytes
            (413 above, naming the input and row; nothing that long is logged).
        max_tensor_elements: Most values in one input tensor (413 above).
        max_model_memory: Bound on the estimated memory of loaded model versions
            (``MLOPS_SERVE_MAX_MODEL_MEMORY``), in bytes or with a unit (``2GiB``,
            ``512MB``); the least recently used versions are dropped beyond it
            (see :mod:`serving.models`). None: no bound.
        refresh_s: How often a version reference (alias, stage) is re-resolved,
            so a moved alias is served within this many seconds.
        log_predictions: Append every prediction to the prediction log.
        log_flush_rows: The prediction log writer flushes after this many rows...
        log_flush_s: ...or this many seconds, whichever comes first.
        log_queue_rows: Rows the writer may hold before it drops new ones
            (a full queue never blocks a response; drops are counted).
        shadow_queue: Shadow predictions waiting to run before new ones are dropped.
        log_level: uvicorn's log level.
    """

    model_config = SettingsConfigDict(env_prefix="MLOPS_SERVE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    grpc_port: int | None = Field(default=None, ge=0, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    admin_key: str | None = None
    trust_pickle: bool = False
    trusted_types: Annotated[list[str], NoDecode] = Field(default_factory=list)
    models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    max_batch_rows: int = Field(default=100_000, gt=0)
    max_string_bytes: int = Field(default=DEFAULT_MAX_STRING_BYTES, gt=0)
    max_tensor_elements: int = Field(default=10_000_000, gt=0)
    max_model_memory: int | None = DEFAULT_MAX_MODEL_MEMORY
    refresh_s: float = Field(default=1.0, ge=0)
    log_predictions: bool = True
    log_flush_rows: int = Field(default=5_000, gt=0)
    log_flush_s: float = Field(default=1.0, gt=0)
    log_queue_rows: int = Field(default=1_000_000, gt=0)
    shadow_queue: int = Field(default=1_000, gt=0)
    log_level: str = "warning"

    @field_validator("api_keys", "trusted_types", "models", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("max_model_memory", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse_size(value, "MLOPS_SERVE_MAX_MODEL_MEMORY")
        except ValidationError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("api_keys")
    @classmethod
    def _no_blank_keys(cls, value: list[str]) -> list[str]:
        return [k for k in value if k]

    def scheme(self) -> str:
        """``https`` when a certificate is configured, else ``http``."""
        return "https" if self.tls_cert else "http"

    @property
    def keys_required(self) -> bool:
        """Whether inference requests must carry an API key."""
        return bool(self.api_keys)
