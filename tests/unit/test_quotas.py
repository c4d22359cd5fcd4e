"""app.accounting.quotas: requests-per-minute windows and rolling audio-hour budgets, with fake clocks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.accounting.ledger import UsageEvent, UsageLedger
from app.accounting.quotas import KeyQuotas
from app.accounting.request_windows import LocalRequestWindow
from app.api.errors import APIError, to_api_error
from app.serving.errors import RateLimited
from app.settings import KeyLimitConfig
from tests.ledger_urls import sqlite_url

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clocks:
    """A monotonic clock and a wall clock that move together, by hand."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = T0

    def monotonic(self) -> float:
        return self.mono

    def now(self) -> datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[UsageLedger]:
    ledger = UsageLedger(sqlite_url(tmp_path / "usage.db"))
    yield ledger
    ledger.close()


def make_quotas(
    ledger: UsageLedger,
    clocks: Clocks,
    default: KeyLimitConfig | None = None,
    **limits: KeyLimitConfig,
) -> KeyQuotas:
    return KeyQuotas(limits, default or KeyLimitConfig(), ledger, clock=clocks.monotonic, wall_clock=clocks.now)


def refused(quotas: KeyQuotas, key: str) -> APIError:
    with pytest.raises(RateLimited) as caught:
        quotas.admit(key)
    return to_api_error(caught.value)


def use_audio(ledger: UsageLedger, key: str, seconds: float, at: datetime) -> None:
    ledger.record(
        UsageEvent(
            key_name=key,
            model="whisper-1",
            endpoint="/v1/audio/transcriptions",
            status=200,
            audio_seconds=seconds,
            ts=at,
        )
    )


# --- configuration --------------------------------------------------------------------------


def test_limit_config_validation() -> None:
    assert KeyLimitConfig() == KeyLimitConfig(requests_per_minute=None, audio_hours_per_day=None)
    with pytest.raises(ValidationError):
        KeyLimitConfig(requests_per_minute=0)
    with pytest.raises(ValidationError):
        KeyLimitConfig(audio_hours_per_day=0)
    with pytest.raises(ValidationError):
        KeyLimitConfig.model_validate({"rpm": 3})


def test_per_key_fields_override_the_default(ledger: UsageLedger, clocks: Clocks) -> None:
    default = KeyLimitConfig(requests_per_minute=10, audio_hours_per_day=2.0)
    quotas = make_quotas(
        ledger,
        clocks,
        default,
        fast=KeyLimitConfig(requests_per_minute=100),
        free=KeyLimitConfig.model_validate({"requests_per_minute": None, "audio_hours_per_day": None}),
    )
    assert quotas.limits_for("someone") == default
    # Unset fields inherit the default; fields set, even to null, win.
    assert quotas.limits_for("fast") == KeyLimitConfig(requests_per_minute=100, audio_hours_per_day=2.0)
    assert quotas.limits_for("free") == KeyLimitConfig()


def test_no_limits_admits_everything(ledger: UsageLedger, clocks: Clocks) -> None:
    quotas = make_quotas(ledger, clocks)
    use_audio(ledger, "alice", 10 * 3600, T0)
    for _ in range(1000):
        quotas.admit("alice")
    quotas.admit("alice")


# --- requests per minute ----------------------------------------------------------------------


def test_rpm_refuses_with_retry_after(ledger: UsageLedger, clocks: Clocks) -> None:
    quotas = make_quotas(ledger, clocks, KeyLimitConfig(requests_per_minute=3))
    for _ in range(3):
        quotas.admit("alice")
        clocks.advance(10)
    # Requests at t=0, 10, 20; now t=30: the first leaves the window at t=60.
    error = refused(quotas, "alice")
    assert error.status == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    assert error.headers == {"retry-after": "30"}
    assert error.body()["error"]["type"] == "requests"
    assert "requests per min (RPM): Limit 3, Used 3" in error.message
    assert "try again in 30s" in error.message

    clocks.advance(29.5)
    assert refused(quotas, "alice").headers["retry-after"] == "1"  # 0.5 s rounds up, never 0
    clocks.advance(0.5)
    quotas.admit("alice")


def test_rpm_window_slides(ledger: UsageLedger, clocks: Clocks) -> None:
    quotas = make_quotas(ledger, clocks, KeyLimitConfig(requests_per_minute=2))
    quotas.admit("alice")  # t=0
    clocks.advance(45)
    quotas.admit("alice")  # t=45
    assert refused(quotas, "alice").headers["retry-after"] == "15"
    clocks.advance(15)  # t=60: the first has left
    quotas.admit("alice")
    assert refused(quotas, "alice").headers["retry-after"] == "45"  # waits for t=45 to leave, at t=105
    clocks.advance(45)
    quotas.admit("alice")


def test_rpm_is_per_key_and_refusals_do_not_count(ledger: UsageLedger, clocks: Clocks) -> None:
    quotas = make_quotas(ledger, clocks, KeyLimitConfig(requests_per_minute=1))
    quotas.admit("alice")
    quotas.admit("bob")
    for _ in range(5):
        with pytest.raises(RateLimited):
            quotas.admit("alice")
    clocks.advance(60)
    quotas.admit("alice")


def test_rpm_default_vs_per_key(ledger: UsageLedger, clocks: Clocks) -> None:
    quotas = make_quotas(
        ledger,
        clocks,
        KeyLimitConfig(requests_per_minute=1),
        batch=KeyLimitConfig(requests_per_minute=3),
        admin=KeyLimitConfig(requests_per_minute=None),
    )
    quotas.admit("someone")
    assert refused(quotas, "someone").status == 429
    for _ in range(3):
        quotas.admit("batch")
    assert refused(quotas, "batch").status == 429
    for _ in range(50):
        quotas.admit("admin")


def test_admit_without_limit_keeps_nothing(ledger: UsageLedger, clocks: Clocks) -> None:
    window = LocalRequestWindow(clocks.monotonic)
    quotas = KeyQuotas({}, KeyLimitConfig(), ledger, wall_clock=clocks.now, window=window)
    quotas.admit("alice")
    assert window._recent == {}


def test_admit_is_atomic_across_threads(ledger: UsageLedger, clocks: Clocks) -> None:
    quotas = make_quotas(ledger, clocks, KeyLimitConfig(requests_per_minute=5))
    admitted: list[int] = []
    start = threading.Barrier(20)

    def work(n: int) -> None:
        start.wait()
        try:
            quotas.admit("alice")
        except RateLimited:
            return
        admitted.append(n)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(20)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(admitted) == 5


# --- audio hours per day -------------------------------------------------------------------------


def test_audio_budget_refuses_with_retry_after(ledger: UsageLedger, clocks: Clocks) -> None:
    quotas = make_quotas(ledger, clocks, KeyLimitConfig(audio_hours_per_day=1.0))
    use_audio(ledger, "alice", 1200, T0 - timedelta(hours=30))  # outside the rolling day
    use_audio(ledger, "alice", 1800, T0 - timedelta(hours=20))
    use_audio(ledger, "alice", 1200, T0 - timedelta(hours=2))
    quotas.admit("alice")  # 3000 s of 3600 s used
    use_audio(ledger, "alice", 1200, T0 - timedelta(hours=1))  # 4200 s used

    error = refused(quotas, "alice")
    assert error.status == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "tokens"
    # Below 3600 s again once the event from 20 h ago leaves the window: in 4 h.
    assert error.headers == {"retry-after": str(4 * 3600), "x-should-retry": "false"}
    assert "audio hours per day: Limit 1, Used 1.17" in error.message
    assert "try again in 4h0m" in error.message

    clocks.advance(4 * 3600 - 1)
    assert refused(quotas, "alice").headers["retry-after"] == "1"
    clocks.advance(1)
    quotas.admit("alice")


def test_audio_budget_needs_enough_old_events_to_expire(ledger: UsageLedger, clocks: Clocks) -> None:
    quotas = make_quotas(ledger, clocks, KeyLimitConfig(audio_hours_per_day=0.5))  # 1800 s
    use_audio(ledger, "alice", 600, T0 - timedelta(hours=23))
    use_audio(ledger, "alice", 600, T0 - timedelta(hours=22))
    use_audio(ledger, "alice", 600, T0 - timedelta(hours=21))
    use_audio(ledger, "alice", 1200, T0 - timedelta(minutes=10))
    # 3000 s used; more than 1200 s must leave (at exactly 1800 s the budget is still spent),
    # which takes the three oldest events: the third leaves at T0 + 3 h.
    assert refused(quotas, "alice").headers["retry-after"] == str(3 * 3600)
    clocks.advance(2 * 3600)
    assert refused(quotas, "alice").headers["retry-after"] == str(3600)
    clocks.advance(3600)
    quotas.admit("alice")


def test_exactly_at_the_budget_is_refused(ledger: UsageLedger, clocks: Clocks) -> None:
    quotas = make_quotas(ledger, clocks, KeyLimitConfig(audio_hours_per_day=0.5))
    use_audio(ledger, "alice", 1800, T0 - timedelta(seconds=30))
    assert refused(quotas, "alice").headers["retry-after"] == str(24 * 3600 - 30)


def test_audio_budget_is_per_key_and_per_config(ledger: UsageLedger, clocks: Clocks) -> None:
    quotas = make_quotas(
        ledger,
        clocks,
        KeyLimitConfig(audio_hours_per_day=1.0),
        big=KeyLimitConfig(audio_hours_per_day=10.0),
        unlimited=KeyLimitConfig.model_validate({"audio_hours_per_day": None}),
    )
    for key in ("alice", "big", "unlimited"):
        use_audio(ledger, key, 2 * 3600, T0 - timedelta(hours=1))
    assert refused(quotas, "alice").type == "tokens"
    quotas.admit("bob")
    quotas.admit("big")
    quotas.admit("unlimited")


def test_audio_budget_is_shared_through_the_ledger(tmp_path: Path, clocks: Clocks) -> None:
    """Two replicas with their own KeyQuotas and engines, one database."""
    url = sqlite_url(tmp_path / "shared.db")
    one, two = UsageLedger(url), UsageLedger(url)
    try:
        limits = KeyLimitConfig(audio_hours_per_day=1.0)
        replica_a = make_quotas(one, clocks, limits)
        replica_b = make_quotas(two, clocks, limits)
        use_audio(one, "alice", 3000, T0 - timedelta(minutes=5))
        replica_b.admit("alice")
        use_audio(one, "alice", 600, T0 - timedelta(minutes=1))
        assert refused(replica_b, "alice").status == 429
        assert refused(replica_a, "alice").status == 429
    finally:
        one.close()
        two.close()


def test_audio_refusal_comes_before_rpm_and_does_not_count(ledger: UsageLedger, clocks: Clocks) -> None:
    quotas = make_quotas(ledger, clocks, KeyLimitConfig(requests_per_minute=1, audio_hours_per_day=1.0))
    use_audio(ledger, "alice", 3600, T0 - timedelta(hours=23, minutes=59))
    with pytest.raises(RateLimited) as caught:
        quotas.admit("alice")
    error = to_api_error(caught.value)
    assert error.type == "tokens"
    assert error.headers["retry-after"] == "60"
    assert "x-should-retry" not in error.headers
    clocks.advance(60)
    quotas.admit("alice")  # the refused attempt took no RPM slot
    assert refused(quotas, "alice").type == "requests"
