"""Loaded model versions, cached per (model, version number), following moving aliases.

A reference (``3``, ``@champion``, ``production``, or none for the default) is
resolved to a version number and the answer kept ``refresh_s`` seconds; a
number never moves, so it is resolved once. When an alias or stage moves, the
next resolution after ``refresh_s`` finds the new number and loads that version
(its files verified against their checksums by the registry); the old one stays
loaded for requests that name it.

Loaded versions are bounded by memory (``max_memory_bytes``, the server's
``MLOPS_SERVE_MAX_MODEL_MEMORY``) and optionally by count (``max_loaded``):
after each load, the least recently *used* versions are dropped until the
total fits. A version is loaded again on its next request. The size of a
version is an estimate, not a measurement (a resident-memory delta taken
around a load is blurred by concurrent loads and requests, and reads near zero
once the allocator reuses an evicted version's memory): its files' bytes times
a factor of its runtime, plus a fixed cost per version (:data:`MEMORY_FACTORS`).
The factors come from loading 20 to 40 demo models per runtime and
measuring the process's resident memory: an ONNX version holds two sessions
and ONNX Runtime expands a tree ensemble about 10 times over its file (0.45
MiB resident for a 12 KiB file, 5.8 MiB for 0.55 MiB), hence 14x + 320 KiB;
the other runtimes count their files' size, above what the demo models hold
(a skops file is zipped JSON: 0.8 MiB of file, 32 KiB resident; XGBoost and
PyTorch 0.4 to 0.8 times their files). On those models the estimates err high
(ONNX by 5 to 40 %), so the bound holds; a model unlike them may differ, and
``benchmarks/many_models.py`` prints the estimated total next to the
server's resident memory. A version larger than the whole bound still loads
(a warning is logged): it evicts every other version and is itself evicted by
the next load, rather than being refused with a 503 that no setting short of a
restart could lift.

The default reference of a model — what ``/v2/models/{name}/infer`` serves —
is the ``champion`` alias, else the newest version in ``production``, else the
newest version.

Example:
    >>> import tempfile, skops.io as sio
    >>> from sklearn.linear_model import LogisticRegression
    >>> from storage.registry.core import Registry
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a")
    >>> clf = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    >>> sig = {"inputs": [{"name": "x", "type": "float"}], "task": "classification", "classes": [0, 1]}
    >>> _ = reg.create_model("toy")
    >>> for _ in range(2):
    ...     _ = reg.create_version("toy", framework="sklearn", artifacts={"model.skops": sio.dumps(clf)},
    ...                            signature=sig)
    >>> cache = ModelCache(reg, refresh_s=0)
    >>> cache.get("toy").version, cache.get("toy", "1").version
    (2, 1)
    >>> _ = reg.set_alias("toy", "champion", 1)
    >>> cache.get("toy").version
    1
    >>> small = ModelCache(reg, max_memory_bytes=cache.get("toy", 1).size_bytes)
    >>> _ = small.get("toy", 1), small.get("toy", 2)
    >>> [m.version for m in small.loaded()], small.stats().evictions
    ([2], 1)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from serving.config import DEFAULT_MAX_MODEL_MEMORY
from serving.protocol import InputSpec
from serving.runtimes import RUNTIMES, Runtime, load_runtime
from storage.errors import IntegrityError, MlopsError, NotFoundError, ValidationError
from storage.registry.core import Registry
from storage.registry.reads import version_number

#: What a model is served at when a request names no version, in order.
DEFAULT_REFS = ("@champion", "production", "latest")
#: Estimated resident bytes of a version by runtime: (bytes per byte of its files, fixed bytes).
MEMORY_FACTORS: dict[str, tuple[float, int]] = {"onnx": (14.0, 320 * 1024)}
#: The estimate of the runtimes not in :data:`MEMORY_FACTORS`.
OTHER_MEMORY_FACTOR = (1.0, 64 * 1024)

logger = logging.getLogger(__name__)


class ModelLoadError(MlopsError):
    """A version that exists but cannot be served (untrusted file, bad checksum, no model file)."""


@dataclass(frozen=True)
class LoadedModel:
    """One version ready to predict, with what the protocol reports about it."""

    model: str
    version: int
    semver: str
    stage: str
    framework: str
    signature: dict[str, Any]
    runtime: Runtime = field(repr=False)
    #: The server's per-value limits: longest string in bytes, most values per tensor.
    limits: tuple[int | None, int | None] = field(default=(None, None), repr=False)
    #: Estimated resident bytes (see :func:`estimate_bytes`).
    size_bytes: int = 0

    @functools.cached_property
    def spec(self) -> InputSpec:
        """The version's input columns, with the server's limits on string length and tensor size."""
        spec = self.runtime.spec
        if self.limits == (None, None):
            return spec
        return dataclasses.replace(spec, max_string_bytes=self.limits[0], max_elements=self.limits[1])

    @property
    def platform(self) -> str:
        """Which runtime serves it (``onnx``, ``xgboost``, ``pytorch``, ``sklearn``, ``pickle``)."""
        return self.runtime.platform

    @property
    def task(self) -> str:
        """``classification`` or ``regression``."""
        return self.runtime.task


@dataclass(frozen=True)
class CacheStats:
    """What a cache holds now and has done since it was made."""

    versions: int
    bytes: int
    max_bytes: int | None
    loads: int
    evictions: int


def estimate_bytes(platform: str, file_bytes: int) -> int:
    """Estimated resident bytes of a version of ``platform`` whose files hold ``file_bytes``.

    >>> estimate_bytes("onnx", 1024), estimate_bytes("sklearn", 1024)
    (342016, 66560)
    """
    factor, fixed = MEMORY_FACTORS.get(platform, OTHER_MEMORY_FACTOR)
    return int(file_bytes * factor) + fixed


def normalize_ref(ref: int | str | None) -> int | str | None:
    """A reference as the cache keys it: a number, a trimmed string, or None for the default.

    >>> normalize_ref(" 3 "), normalize_ref("@champion"), normalize_ref("")
    (3, '@champion', None)
    """
    if ref is None or isinstance(ref, bool):
        return None
    if isinstance(ref, int):
        return ref
    text = str(ref).strip()
    if not text:
        return None
    try:
        number = version_number(text)
    except ValidationError:
        return text  # out of range: the registry refuses it with a 400
    return text if number is None else number


class ModelCache:
    """Versions loaded from a registry (see the module docs).

    Args:
        registry: Where versions and their files come from.
        trust_pickle: Allow ``model.pkl`` files.
        trusted_types: Extra types skops may load.
        refresh_s: Longest time a resolved alias or stage is reused.
        max_memory_bytes: Most estimated bytes kept loaded (None: no bound).
        max_loaded: Most versions kept loaded (None: no bound).
        on_load: Called once with every version loaded (errors in it are ignored).
        order: Runtimes to try, in order.
        max_string_bytes: Longest string value a request may send (413 above; None: no limit).
        max_tensor_elements: Most values in one input tensor (413 above; None: no limit).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        trust_pickle: bool = False,
        trusted_types: Collection[str] = (),
        refresh_s: float = 1.0,
        max_memory_bytes: int | None = DEFAULT_MAX_MODEL_MEMORY,
        max_loaded: int | None = None,
        on_load: Callable[[LoadedModel], None] | None = None,
        order: tuple[str, ...] = RUNTIMES,
        clock: Callable[[], float] = time.monotonic,
        max_string_bytes: int | None = None,
        max_tensor_elements: int | None = None,
    ) -> None:
        self.registry = registry
        self.limits = (max_string_bytes, max_tensor_elements)
        self.trust_pickle = trust_pickle
        self.trusted_types = tuple(trusted_types)
        self.refresh_s = refresh_s
        self.max_memory_bytes = max_memory_bytes
        self.max_loaded = max_loaded
        self.on_load = on_load
        self.order = order
        self.clock = clock
        self._resolved: dict[tuple[str, int | str | None], tuple[int, float]] = {}
        self._loaded: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._failed: dict[tuple[str, int], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._load_locks: dict[tuple[str, int], threading.Lock] = {}
        self._bytes = 0
        self._loads = 0
        self._evictions = 0

    # ------------------------------------------------------------ resolution
    def _lookup(self, model: str, ref: int | str | None) -> int:
        if ref is None:
            for candidate in DEFAULT_REFS:
                try:
                    return self.registry.get_version(model, candidate).number
                except NotFoundError:
                    continue
            self.registry.get_model(model)  # an unknown model says so
            raise NotFoundError(f"model {model!r} has no versions")
        return self.registry.get_version(model, ref).number

    def resolve(self, model: str, ref: int | str | None = None) -> int:
        """The version number ``ref`` points at now (within ``refresh_s``)."""
        key = (model, normalize_ref(ref))
        now = self.clock()
        found = self._resolved.get(key)
        if found is not None and (isinstance(key[1], int) or found[1] > now):
            return found[0]
        number = self._lookup(model, key[1])
        self._resolved[key] = (number, now + self.refresh_s)
        return number

    # ---------------------------------------------------------------- loads
    def peek(self, model: str, ref: int | str | None = None) -> LoadedModel | None:
        """The loaded version ``ref`` points at, without touching the registry (None if unknown yet).

        Serving threads call this first: it never blocks on the database or the disk.
        """
        key = (model, normalize_ref(ref))
        found = self._resolved.get(key)
        if found is None or (not isinstance(key[1], int) and found[1] <= self.clock()):
            return None
        return self._used((model, found[0]))

    def _used(self, key: tuple[str, int]) -> LoadedModel | None:
        found = self._loaded.get(key)
        if found is not None:
            with contextlib.suppress(KeyError):  # evicted meanwhile: the caller still holds it
                self._loaded.move_to_end(key)
        return found

    def get(self, model: str, ref: int | str | None = None) -> LoadedModel:
        """The loaded version ``ref`` (default: champion, production, latest) points at.

        Raises:
            NotFoundError: no such model or version (404).
            ValidationError: a malformed reference (400).
            ModelLoadError: the version cannot be served (503).
        """
        number = self.resolve(model, ref)
        return self.load(model, number)

    def load(self, model: str, number: int) -> LoadedModel:
        """Version ``number`` of ``model``, loaded once."""
        key = (model, number)
        found = self._used(key)
        if found is not None:
            return found
        with self._lock:
            lock = self._load_locks.setdefault(key, threading.Lock())
        with lock:
            found = self._loaded.get(key)
            if found is not None:
                return found
            failed = self._failed.get(key)
            if failed is not None and failed[1] > self.clock():
                raise ModelLoadError(failed[0])
            try:
                loaded = self._load(model, number)
            except ModelLoadError as exc:
                self._failed[key] = (str(exc), self.clock() + max(self.refresh_s, 1.0))
                raise
            self._keep(key, loaded)
        if self.on_load is not None:
            with contextlib.suppress(Exception):  # a hook must never make a loaded model unservable
                self.on_load(loaded)
        return loaded

    def _keep(self, key: tuple[str, int], loaded: LoadedModel) -> None:
        limit = self.max_memory_bytes
        if limit is not None and loaded.size_bytes > limit:
            logger.warning(
                "%s version %s (about %d bytes) is larger than the model memory bound (%d bytes): "
                "it evicts every other version and is evicted by the next load",
                *key, loaded.size_bytes, limit,
            )  # fmt: skip
        with self._lock:
            self._loaded[key] = loaded
            self._bytes += loaded.size_bytes
            self._loads += 1
            while len(self._loaded) > 1 and self._over():
                _, dropped = self._loaded.popitem(last=False)
                self._bytes -= dropped.size_bytes
                self._evictions += 1

    def _over(self) -> bool:
        return (self.max_memory_bytes is not None and self._bytes > self.max_memory_bytes) or (
            self.max_loaded is not None and len(self._loaded) > self.max_loaded
        )

    def _load(self, model: str, number: int) -> LoadedModel:
        mv = self.registry.get_version(model, number)
        names = {a.name for a in mv.artifacts}

        def read(name: str) -> bytes:
            return self.registry.load_artifact(model, number, name)

        try:
            runtime = load_runtime(
                mv.signature,
                read,
                names,
                trust_pickle=self.trust_pickle,
                trusted_types=self.trusted_types,
                order=self.order,
            )
        except (ValidationError, IntegrityError, NotFoundError) as exc:
            raise ModelLoadError(f"{model} version {number} cannot be served: {exc}") from None
        except Exception as exc:  # a corrupt or incompatible file: the version cannot be served
            raise ModelLoadError(
                f"{model} version {number} cannot be served: {type(exc).__name__}: {exc}"
            ) from None
        size = estimate_bytes(runtime.platform, sum(a.size for a in mv.artifacts))
        return LoadedModel(
            model, number, mv.semver, mv.stage, mv.framework, dict(mv.signature or {}), runtime, self.limits,
            size,
        )  # fmt: skip

    def loaded(self) -> list[LoadedModel]:
        """The versions loaded now, least recently used first."""
        with self._lock:
            return list(self._loaded.values())

    def stats(self) -> CacheStats:
        """Versions and estimated bytes loaded now, loads and evictions so far."""
        with self._lock:
            return CacheStats(
                len(self._loaded), self._bytes, self.max_memory_bytes, self._loads, self._evictions
            )

    def versions(self, model: str) -> list[int]:
        """Every version number of ``model``, oldest first."""
        return sorted(v.number for v in self.registry.all_versions(model))
