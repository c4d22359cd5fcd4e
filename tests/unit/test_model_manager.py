"""The model manager through fakes: lazy loads shared between leases, idle unloading, status rows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from engines.manager import ModelManager
from engines.spec import ModelSpec
from tests.inprocess import FakeEngine

WAIT = 10.0  # seconds a test waits for another thread before calling it stuck


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ClosingEngine(FakeEngine):
    """A fake recogniser with worker threads to stop, as the batching engine has."""

    closed: int = 0

    def close(self) -> None:
        self.closed += 1


@dataclass
class Loader:
    """A new engine for each load, counted per model; a model listed in ``gates`` loads only once its gate opens."""

    gates: dict[str, threading.Event] = field(default_factory=dict)
    loads: dict[str, int] = field(default_factory=dict)
    engines: list[ClosingEngine] = field(default_factory=list)
    started: dict[str, threading.Event] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, spec: ModelSpec) -> ClosingEngine:
        self.started.setdefault(spec.name, threading.Event()).set()
        gate = self.gates.get(spec.name)
        if gate is not None:
            assert gate.wait(WAIT), f"{spec.name}'s load was never let through"
        engine = ClosingEngine(name=spec.name, device=f"fake:{spec.name}")
        with self._lock:
            self.loads[spec.name] = self.loads.get(spec.name, 0) + 1
            self.engines.append(engine)
        return engine


@dataclass
class Events:
    seen: list[tuple[str, str]] = field(default_factory=list)

    def model_loaded(self, name: str, seconds: float) -> None:
        assert seconds >= 0
        self.seen.append(("loaded", name))

    def model_unloaded(self, name: str) -> None:
        self.seen.append(("unloaded", name))


SPECS = {name: ModelSpec(name=name, source=f"source-{name}") for name in ("a", "b", "kept")}
LIMITS: dict[str, float | None] = {"a": 10.0, "b": 10.0, "kept": None}


def _manager(loader: Loader, clock: Clock, events: Events | None = None) -> ModelManager:
    return ModelManager(SPECS, loader=loader, idle_unload=LIMITS, events=events, clock=clock)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def loader() -> Loader:
    return Loader()


@pytest.fixture
def manager(loader: Loader, clock: Clock) -> ModelManager:
    return _manager(loader, clock)


def _use(manager: ModelManager, name: str) -> FakeEngine:
    with manager.lease(name) as engine:
        assert isinstance(engine, FakeEngine)
        return engine


def test_nothing_is_loaded_until_first_use(manager: ModelManager, loader: Loader) -> None:
    assert loader.loads == {}
    assert not any(row.loaded for row in manager.status())
    engine = _use(manager, "a")
    assert engine.name == "a" and loader.loads == {"a": 1}


def test_leases_share_one_load(manager: ModelManager, loader: Loader) -> None:
    first, second = _use(manager, "a"), _use(manager, "a")
    assert first is second and loader.loads == {"a": 1}


def test_unloaded_after_idling_for_its_limit(manager: ModelManager, loader: Loader, clock: Clock) -> None:
    _use(manager, "a")
    clock.now += 9.9
    assert manager.unload_idle() == []
    clock.now += 0.1
    assert manager.unload_idle() == ["a"]
    assert manager.unload_idle() == []  # once
    row = next(row for row in manager.status() if row.name == "a")
    assert not row.loaded and row.device is None


def test_a_model_without_a_limit_stays(manager: ModelManager, clock: Clock) -> None:
    _use(manager, "kept")
    clock.now += 1e9
    assert manager.unload_idle() == []
    assert next(row for row in manager.status() if row.name == "kept").loaded


def test_each_model_idles_on_its_own_clock(manager: ModelManager, clock: Clock) -> None:
    _use(manager, "a")
    clock.now += 6
    _use(manager, "b")
    clock.now += 6
    assert manager.unload_idle() == ["a"]
    clock.now += 4
    assert manager.unload_idle() == ["b"]


def test_never_unloaded_under_a_lease(manager: ModelManager, loader: Loader, clock: Clock) -> None:
    with manager.lease("a") as engine:
        clock.now += 1000
        assert manager.unload_idle() == []
        row = next(row for row in manager.status() if row.name == "a")
        assert row.loaded and row.in_use == 1 and row.idle_seconds is None
    # idle from the release, not from the load
    clock.now += 9
    assert manager.unload_idle() == []
    clock.now += 1
    assert manager.unload_idle() == ["a"]
    assert isinstance(engine, ClosingEngine) and engine.closed == 1


def test_a_lease_is_given_back_when_its_user_fails(manager: ModelManager, clock: Clock) -> None:
    with pytest.raises(RuntimeError), manager.lease("a"):
        raise RuntimeError("the decode failed")
    assert next(row for row in manager.status() if row.name == "a").in_use == 0
    clock.now += 10
    assert manager.unload_idle() == ["a"]


def test_reloaded_on_the_next_use_after_unloading(manager: ModelManager, loader: Loader, clock: Clock) -> None:
    first = _use(manager, "a")
    clock.now += 10
    assert manager.unload_idle() == ["a"]
    second = _use(manager, "a")
    assert second is not first and loader.loads == {"a": 2}
    assert next(row for row in manager.status() if row.name == "a").loaded


def test_close_is_called_on_unloaded_engines_only(manager: ModelManager, loader: Loader, clock: Clock) -> None:
    _use(manager, "a")
    _use(manager, "kept")
    clock.now += 10
    assert manager.unload_idle() == ["a"]
    closed = {engine.name: engine.closed for engine in loader.engines}
    assert closed == {"a": 1, "kept": 0}


def test_an_engine_without_close_unloads_too(clock: Clock) -> None:
    plain = FakeEngine()
    manager = ModelManager(SPECS, loader=lambda spec: plain, idle_unload=LIMITS, clock=clock)
    _use(manager, "a")
    clock.now += 10
    assert manager.unload_idle() == ["a"]


def test_preload_loads_without_a_lease(manager: ModelManager, loader: Loader, clock: Clock) -> None:
    manager.preload("b")
    manager.preload("b")
    assert loader.loads == {"b": 1}
    row = next(row for row in manager.status() if row.name == "b")
    assert row.loaded and row.in_use == 0 and row.idle_seconds == 0.0
    clock.now += 10
    assert manager.unload_idle() == ["b"]


def test_events_hear_of_loads_and_unloads(loader: Loader, clock: Clock) -> None:
    events = Events()
    manager = _manager(loader, clock, events)
    _use(manager, "a")
    _use(manager, "a")
    clock.now += 10
    manager.unload_idle()
    _use(manager, "a")
    assert events.seen == [("loaded", "a"), ("unloaded", "a"), ("loaded", "a")]


def test_status_has_a_row_per_configured_model(manager: ModelManager, clock: Clock) -> None:
    _use(manager, "a")
    clock.now += 3.04
    with manager.lease("b"), manager.lease("b"):
        rows = {row.name: row for row in manager.status()}
    assert list(rows) == list(SPECS)
    a, b, kept = rows["a"], rows["b"], rows["kept"]
    assert (a.source, a.loaded, a.in_use, a.idle_seconds, a.device) == ("source-a", True, 0, 3.0, "fake:a")
    assert a.load_seconds is not None and a.load_seconds >= 0
    assert a.memory_bytes is not None and a.memory_bytes >= 0
    assert (b.loaded, b.in_use, b.idle_seconds, b.device) == (True, 2, None, "fake:b")
    assert (kept.source, kept.loaded, kept.in_use) == ("source-kept", False, 0)
    assert (kept.idle_seconds, kept.load_seconds, kept.memory_bytes, kept.device) == (None, None, None, None)


def _in_thread(target: Callable[..., object], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def gated(loader: Loader) -> Iterator[threading.Event]:
    """Holds model "b"'s loads until the test opens the gate (always opened at the end)."""
    gate = loader.gates["b"] = threading.Event()
    yield gate
    gate.set()


def test_loading_one_model_does_not_hold_up_another(
    manager: ModelManager, loader: Loader, gated: threading.Event
) -> None:
    manager.preload("a")
    slow = _in_thread(_use, manager, "b")
    assert loader.started.setdefault("b", threading.Event()).wait(WAIT)

    leased = threading.Event()

    def lease_a() -> None:
        with manager.lease("a"):
            leased.set()

    _in_thread(lease_a)
    assert leased.wait(WAIT), "a lease of a loaded model waited for another model's load"
    assert not any(row.loaded for row in manager.status() if row.name == "b")  # the status does not wait either
    assert slow.is_alive()

    gated.set()
    slow.join(WAIT)
    assert not slow.is_alive() and loader.loads == {"a": 1, "b": 1}


def test_concurrent_first_leases_load_once(manager: ModelManager, loader: Loader, gated: threading.Event) -> None:
    users = 8
    got: list[FakeEngine] = []
    holding = threading.Barrier(users + 1, timeout=WAIT)
    done = threading.Event()

    def user() -> None:
        with manager.lease("b") as engine:
            assert isinstance(engine, FakeEngine)
            got.append(engine)
            holding.wait()
            assert done.wait(WAIT)

    threads = [_in_thread(user) for _ in range(users)]
    assert loader.started.setdefault("b", threading.Event()).wait(WAIT)
    time.sleep(0.2)  # let the other users reach the load, so they wait for the one under way
    gated.set()
    holding.wait()
    assert next(row for row in manager.status() if row.name == "b").in_use == users
    done.set()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert loader.loads == {"b": 1}
    assert len(got) == users and all(engine is got[0] for engine in got)
    assert next(row for row in manager.status() if row.name == "b").in_use == 0
