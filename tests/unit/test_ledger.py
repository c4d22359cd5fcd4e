"""app.accounting.ledger: recording usage events and reading per-key totals back, on SQLite."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.accounting.ledger import KeyTotals, UsageEvent, UsageLedger, usage_events
from tests.ledger_urls import sqlite_url
from tests.services import PostgresServer

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "usage.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, db_path: Path) -> Iterator[UsageLedger]:
    """A fresh ledger on SQLite, and on a real PostgreSQL server (its own database per test)."""
    if request.param == "sqlite":
        ledger = UsageLedger(sqlite_url(db_path))
        yield ledger
        ledger.close()
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    with postgres.database() as url:
        ledger = UsageLedger(url)
        yield ledger
        ledger.close()


def event(key: str = "alice", *, ts: datetime = T0, audio: float = 0.0, tin: int = 0, tout: int = 0) -> UsageEvent:
    return UsageEvent(
        key_name=key,
        model="whisper-1",
        endpoint="/v1/audio/transcriptions",
        status=200,
        audio_seconds=audio,
        input_tokens=tin,
        output_tokens=tout,
        ts=ts,
    )


def test_creates_parent_dir_table_and_wal(db_path: Path) -> None:
    ledger = UsageLedger(sqlite_url(db_path))
    assert db_path.is_file()
    ledger.record(event())
    ledger.close()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = [row[1] for row in raw.execute("PRAGMA table_info(usage_events)")]
    assert columns == [
        "id",
        "ts",
        "key_name",
        "model",
        "endpoint",
        "status",
        "audio_seconds",
        "input_tokens",
        "output_tokens",
    ]


def test_sqlite_url_is_absolute(tmp_path: Path) -> None:
    assert sqlite_url(tmp_path / "u.db") == f"sqlite:///{tmp_path.resolve() / 'u.db'}"
    assert sqlite_url(tmp_path / "u.db").startswith("sqlite:////")


def test_empty_ledger(ledger: UsageLedger) -> None:
    assert ledger.totals() == []
    assert ledger.totals(key_name="alice") == []
    assert ledger.audio_seconds_since("alice", T0 - timedelta(days=1)) == 0.0
    assert ledger.running_total_passes("alice", T0 - timedelta(days=1), 0.0) is None


def test_record_and_totals_per_key(ledger: UsageLedger) -> None:
    ledger.record(event("bob", audio=10.5, tin=100, tout=20))
    ledger.record(event("alice", audio=1.25, tin=5, tout=7))
    ledger.record(event("alice", audio=2.0, tin=6, tout=8))
    assert ledger.totals() == [
        KeyTotals("alice", requests=2, audio_seconds=3.25, input_tokens=11, output_tokens=15),
        KeyTotals("bob", requests=1, audio_seconds=10.5, input_tokens=100, output_tokens=20),
    ]
    assert ledger.totals(key_name="bob") == [KeyTotals("bob", 1, 10.5, 100, 20)]
    assert ledger.totals(key_name="nobody") == []


def test_every_field_is_stored(ledger: UsageLedger) -> None:
    ledger.record(
        UsageEvent(
            key_name="k",
            model="m",
            endpoint="/v1/audio/translations",
            status=429,
            audio_seconds=0.5,
            input_tokens=3,
            output_tokens=4,
            ts=T0,
        )
    )
    with ledger.engine.connect() as conn:
        row = conn.execute(sa.select(usage_events)).one()
    assert row._mapping == {
        "id": 1,
        "ts": T0,
        "key_name": "k",
        "model": "m",
        "endpoint": "/v1/audio/translations",
        "status": 429,
        "audio_seconds": 0.5,
        "input_tokens": 3,
        "output_tokens": 4,
    }


def test_default_timestamp_is_now_utc(ledger: UsageLedger) -> None:
    before = datetime.now(UTC)
    ledger.record(UsageEvent(key_name="k", model="m", endpoint="/e", status=200))
    after = datetime.now(UTC)
    with ledger.engine.connect() as conn:
        stored = conn.execute(sa.select(usage_events.c.ts)).scalar_one()
    assert stored.tzinfo is not None
    assert before <= stored <= after


def test_since_filters_inclusively(ledger: UsageLedger) -> None:
    for hours in range(5):
        ledger.record(event(ts=T0 + timedelta(hours=hours), audio=60.0))
    assert ledger.totals(since=T0 + timedelta(hours=2))[0].requests == 3
    assert ledger.totals(since=T0 + timedelta(hours=2, seconds=1))[0].requests == 2
    assert ledger.totals(since=T0 + timedelta(hours=5)) == []
    assert ledger.audio_seconds_since("alice", T0 + timedelta(hours=3)) == 120.0
    assert ledger.audio_seconds_since("bob", T0) == 0.0


def test_time_zones_are_normalised_to_utc(ledger: UsageLedger) -> None:
    plus_two = timezone(timedelta(hours=2))
    # 13:30 at UTC+2 is 11:30 UTC: before T0.
    ledger.record(event(ts=datetime(2026, 3, 1, 13, 30, tzinfo=plus_two), audio=1.0))
    ledger.record(event(ts=T0 + timedelta(minutes=30), audio=2.0))
    assert ledger.audio_seconds_since("alice", T0) == 2.0
    # A naive `since` is UTC.
    assert ledger.audio_seconds_since("alice", datetime(2026, 3, 1, 11, 0)) == 3.0
    # The same instant written in another zone.
    assert ledger.audio_seconds_since("alice", datetime(2026, 3, 1, 14, 0, tzinfo=plus_two)) == 2.0


def test_running_total_passes(ledger: UsageLedger) -> None:
    ledger.record(event(ts=T0, audio=10.0))
    ledger.record(event(ts=T0 + timedelta(minutes=1), audio=0.0))
    ledger.record(event(ts=T0 + timedelta(minutes=2), audio=20.0))
    ledger.record(event("bob", ts=T0 + timedelta(minutes=3), audio=500.0))
    ledger.record(event(ts=T0 + timedelta(minutes=4), audio=30.0))
    since = T0 - timedelta(hours=1)
    assert ledger.running_total_passes("alice", since, 0.0) == T0
    assert ledger.running_total_passes("alice", since, 9.99) == T0
    assert ledger.running_total_passes("alice", since, 10.0) == T0 + timedelta(minutes=2)
    assert ledger.running_total_passes("alice", since, 30.0) == T0 + timedelta(minutes=4)
    assert ledger.running_total_passes("alice", since, 60.0) is None
    assert ledger.running_total_passes("alice", T0 + timedelta(minutes=2), 25.0) == T0 + timedelta(minutes=4)


def test_persists_across_instances(db_path: Path) -> None:
    first = UsageLedger(sqlite_url(db_path))
    first.record(event(audio=4.0))
    first.close()
    second = UsageLedger(sqlite_url(db_path))
    try:
        assert second.totals() == [KeyTotals("alice", 1, 4.0, 0, 0)]
    finally:
        second.close()


def test_two_instances_share_one_file(db_path: Path) -> None:
    """Two replicas on one database see each other's usage."""
    one, two = UsageLedger(sqlite_url(db_path)), UsageLedger(sqlite_url(db_path))
    try:
        one.record(event(audio=1.0))
        two.record(event(audio=2.0))
        assert one.audio_seconds_since("alice", T0) == two.audio_seconds_since("alice", T0) == 3.0
    finally:
        one.close()
        two.close()


def _hammer(ledger: UsageLedger, threads: int, per_thread: int) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(index: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                ledger.record(event(f"key{index % 3}", ts=T0 + timedelta(seconds=i), audio=0.5, tin=1, tout=2))
                if i % 10 == 0:
                    ledger.totals()
                    ledger.audio_seconds_since(f"key{index % 3}", T0)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []


def test_concurrent_writers_and_readers(ledger: UsageLedger) -> None:
    threads, per_thread = 12, 40
    _hammer(ledger, threads, per_thread)
    totals = ledger.totals()
    assert sum(t.requests for t in totals) == threads * per_thread
    assert sum(t.audio_seconds for t in totals) == threads * per_thread * 0.5
    assert sum(t.output_tokens for t in totals) == threads * per_thread * 2
    assert {t.key_name: t.requests for t in totals} == {"key0": 160, "key1": 160, "key2": 160}


def test_concurrent_instances_on_one_file(db_path: Path) -> None:
    """Separate engines (as separate processes would have) rely on WAL and the busy timeout."""
    ledgers = [UsageLedger(sqlite_url(db_path)) for _ in range(3)]
    try:
        errors: list[BaseException] = []

        def work(ledger: UsageLedger) -> None:
            try:
                for _ in range(50):
                    ledger.record(event(audio=1.0))
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(ledger,)) for ledger in ledgers for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        assert ledgers[0].totals() == [KeyTotals("alice", 300, 300.0, 0, 0)]
    finally:
        for ledger in ledgers:
            ledger.close()


def test_in_memory_database_is_shared_between_threads() -> None:
    ledger = UsageLedger("sqlite://")
    try:
        _hammer(ledger, 4, 20)
        assert sum(t.requests for t in ledger.totals()) == 80
    finally:
        ledger.close()
