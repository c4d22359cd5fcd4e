"""The model manager: lazy loading, sharing between aliases, leases while in use, idle unloading."""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from engines.spec import ModelSpec
from engines.types import Transcriber

log = logging.getLogger(__name__)


class ModelEvents(Protocol):
    """Told about loads and unloads (the web layer turns these into metrics)."""

    def model_loaded(self, name: str, seconds: float) -> None: ...

    def model_unloaded(self, name: str) -> None: ...


@dataclass
class _Loaded:
    engine: Transcriber
    loaded_at: float
    last_used: float
    load_seconds: float
    memory_bytes: int
    in_use: int = 0


@dataclass(frozen=True)
class ModelStatus:
    """What an admin sees for one configured model."""

    name: str
    source: str
    loaded: bool
    in_use: int
    idle_seconds: float | None
    load_seconds: float | None
    memory_bytes: int | None
    device: str | None


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


class ModelManager:
    """Loads each configured model at most once, shares it, and unloads it after ``idle_unload`` seconds.

    A model is leased while a request uses it and is never unloaded under a lease. Loading one model
    holds only that model's lock, so requests for other, loaded models go on meanwhile.
    """

    def __init__(
        self,
        specs: dict[str, ModelSpec],
        *,
        loader: Callable[[ModelSpec], Transcriber],
        idle_unload: dict[str, float | None] | None = None,
        events: ModelEvents | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.specs = specs
        self._loader = loader
        self._idle_unload = idle_unload or {}
        self._events = events
        self._clock = clock
        self._loaded: dict[str, _Loaded] = {}
        self._state = threading.Lock()  # guards _loaded and the lease counts
        self._load_locks = {name: threading.Lock() for name in specs}

    def _load(self, name: str) -> _Loaded:
        with self._load_locks[name]:
            with self._state:
                entry = self._loaded.get(name)
                if entry is not None:
                    return entry
            before, started = _rss_bytes(), time.perf_counter()
            engine = self._loader(self.specs[name])
            seconds = time.perf_counter() - started
            now = self._clock()
            entry = _Loaded(engine, now, now, seconds, max(0, _rss_bytes() - before))
            with self._state:
                self._loaded[name] = entry
            if self._events is not None:
                self._events.model_loaded(name, seconds)
            return entry

    def _acquire(self, name: str) -> Transcriber:
        while True:
            entry = self._load(name)
            with self._state:
                if self._loaded.get(name) is entry:  # not unloaded between load and lease
                    entry.in_use += 1
                    entry.last_used = self._clock()
                    return entry.engine

    def _release(self, name: str) -> None:
        with self._state:
            entry = self._loaded.get(name)
            if entry is not None and entry.in_use > 0:
                entry.in_use -= 1
                entry.last_used = self._clock()

    @contextmanager
    def lease(self, name: str) -> Iterator[Transcriber]:
        """The model, loaded first if needed (blocking), and never unloaded while the lease is held."""
        engine = self._acquire(name)
        try:
            yield engine
        finally:
            self._release(name)

    def preload(self, name: str) -> None:
        self._load(name)

    def unload_idle(self) -> list[str]:
        """Unload every model idle for longer than its limit; returns their names."""
        now = self._clock()
        dropped: list[str] = []
        engines: list[Transcriber] = []
        with self._state:
            for name, entry in list(self._loaded.items()):
                limit = self._idle_unload.get(name)
                if limit is not None and entry.in_use == 0 and now - entry.last_used >= limit:
                    del self._loaded[name]
                    dropped.append(name)
                    engines.append(entry.engine)
        for engine in engines:
            close = getattr(engine, "close", None)  # a batching engine's worker threads hold the model
            if callable(close):
                close()
        if dropped:
            gc.collect()  # CTranslate2 frees its weights when the last reference goes
            for name in dropped:
                log.info("unloaded model %s after idling", name)
                if self._events is not None:
                    self._events.model_unloaded(name)
        return dropped

    def status(self) -> list[ModelStatus]:
        now = self._clock()
        with self._state:
            rows = []
            for name, spec in self.specs.items():
                entry = self._loaded.get(name)
                rows.append(
                    ModelStatus(
                        name=name,
                        source=spec.source,
                        loaded=entry is not None,
                        in_use=entry.in_use if entry else 0,
                        idle_seconds=round(now - entry.last_used, 1) if entry and entry.in_use == 0 else None,
                        load_seconds=round(entry.load_seconds, 2) if entry else None,
                        memory_bytes=entry.memory_bytes if entry else None,
                        device=entry.engine.device if entry else None,
                    )
                )
            return rows
