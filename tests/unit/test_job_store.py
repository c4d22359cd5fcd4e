"""The job store's conditional writes, on SQLite and on a real PostgreSQL: one claim wins, a lapsed lease passes
the job on and voids the old run, a final state and its webhook event happen once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.jobs.store import JobStore, NewJob
from tests.services import PostgresServer

LEASE = 10.0
TTL = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def store_and_clock(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[JobStore, Clock]]:
    clock = Clock()
    if request.param == "sqlite":
        store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}", clock=clock)
        yield store, clock
        store.close()
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    with postgres.database() as url:
        store = JobStore(url, clock=clock)
        yield store, clock
        store.close()


def new_job(key: str = "k", webhook: str | None = "http://127.0.0.1:9/hook") -> NewJob:
    return NewJob(
        key_name=key,
        task="transcribe",
        model="whisper-1",
        response_format="json",
        options="{}",
        audio_url=None,
        audio_file="audio-x",
        webhook_url=webhook,
    )


def test_one_claim_wins_and_only_its_attempt_finishes(store_and_clock: tuple[JobStore, Clock]) -> None:
    store, clock = store_and_clock
    job = store.create(new_job())
    first = store.claim(job.id, "a", LEASE)
    assert first is not None and first.attempt == 1 and first.job.status == "running"
    assert store.claim(job.id, "b", LEASE) is None  # held
    clock.now += LEASE + 1  # its worker stopped renewing
    second = store.claim(job.id, "b", LEASE)
    assert second is not None and second.attempt == 2
    assert store.renew(first, LEASE, 0.5, None).held is False  # the old run learns it lost the job
    assert store.finish(first, "succeeded", result=(b"old", "text/plain"), result_ttl_seconds=TTL) is None
    done = store.finish(second, "succeeded", result=(b"new", "text/plain"), result_ttl_seconds=TTL)
    assert done is not None and done.status == "succeeded" and done.progress == 1.0
    assert done.expires_at == pytest.approx(clock.now + TTL)
    assert store.result(job.id) == (b"new", "text/plain")
    assert store.finish(second, "failed", error=("x", "y"), result_ttl_seconds=TTL) is None  # final is final
    assert store.event_for(job.id) is not None


def test_many_workers_claiming_at_once_get_one_claim(store_and_clock: tuple[JobStore, Clock]) -> None:
    store, _ = store_and_clock
    job = store.create(new_job())
    wins: list[object] = []
    barrier = threading.Barrier(8)

    def claim(name: str) -> None:
        barrier.wait()
        found = store.claim(job.id, name, LEASE)
        if found is not None:
            wins.append(found)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1


def test_cancel_a_queued_job_at_once_and_ask_a_running_one(store_and_clock: tuple[JobStore, Clock]) -> None:
    store, _ = store_and_clock
    queued = store.create(new_job())
    cancelled = store.cancel(queued.id, "k", TTL)
    assert cancelled is not None and cancelled.status == "cancelled" and store.event_for(queued.id) is not None
    assert store.claim(queued.id, "a", LEASE) is None
    running = store.create(new_job(webhook=None))
    claim = store.claim(running.id, "a", LEASE)
    assert claim is not None
    asked = store.cancel(running.id, "k", TTL)
    assert asked is not None and asked.status == "running" and asked.cancel_requested
    assert store.renew(claim, LEASE, 0.2, 60.0).cancel_requested
    assert store.cancel(running.id, "someone-else", TTL) is None  # not theirs: unknown
    finished = store.finish(claim, "cancelled", result_ttl_seconds=TTL)
    assert finished is not None and finished.status == "cancelled" and store.event_for(running.id) is None


def test_release_puts_a_job_back_and_lapsed_jobs_are_found(store_and_clock: tuple[JobStore, Clock]) -> None:
    store, clock = store_and_clock
    job = store.create(new_job())
    claim = store.claim(job.id, "a", LEASE)
    assert claim is not None and store.release(claim)
    again = store.claim(job.id, "b", LEASE)
    assert again is not None and again.attempt == 2
    assert store.lapsed(queued_before=clock.now - 600) == []
    clock.now += LEASE + 1
    assert store.lapsed(queued_before=clock.now - 600) == [job.id]
    failed = store.fail_unclaimed(job.id, ("worker_lost", "gone"), TTL)
    assert failed is not None and failed.status == "failed" and failed.error_code == "worker_lost"


def test_pages_are_newest_first_per_key(store_and_clock: tuple[JobStore, Clock]) -> None:
    store, clock = store_and_clock
    ids = []
    for _ in range(3):
        ids.append(store.create(new_job()).id)
        clock.now += 1
    other = store.create(new_job(key="other")).id
    page, more = store.page("k", limit=2)
    assert [j.id for j in page] == ids[::-1][:2] and more
    page, more = store.page("k", limit=2, after=ids[1])
    assert [j.id for j in page] == [ids[0]] and not more
    assert store.page("k", limit=5, after=other) == ([], False)  # another key's cursor shows nothing
    assert [j.id for j in store.page(None, limit=1)[0]] == [other]
    assert store.active_count("k") == 3


def test_an_event_is_delivered_by_one_worker_and_retried_when_due(store_and_clock: tuple[JobStore, Clock]) -> None:
    store, clock = store_and_clock
    job = store.create(new_job())
    claim = store.claim(job.id, "a", LEASE)
    assert claim is not None and store.finish(claim, "failed", error=("e", "m"), result_ttl_seconds=TTL)
    event_id = store.event_for(job.id)
    assert event_id is not None and store.due_events() == [event_id]
    event = store.claim_event(event_id, 30)
    assert event is not None and event.type == "audio.job.failed"
    assert store.claim_event(event_id, 30) is None  # being delivered
    store.record_attempt(event, status=500, error=None, seconds=0.1, delivered=False, retry_at=clock.now + 5)
    assert store.due_events() == [] and store.claim_event(event_id, 30) is None  # not due yet
    clock.now += 5
    retried = store.claim_event(event_id, 30)
    assert retried is not None and retried.attempts == 1
    store.record_attempt(retried, status=204, error=None, seconds=0.1, delivered=True, retry_at=None)
    assert store.due_events() == [] and store.claim_event(event_id, 30) is None
    assert [(a.number, a.status) for a in store.attempts(job.id)] == [(1, 500), (2, 204)]


def test_expired_jobs_and_their_events_are_deleted(store_and_clock: tuple[JobStore, Clock]) -> None:
    store, clock = store_and_clock
    job = store.create(new_job())
    assert store.cancel(job.id, None, TTL) is not None
    assert store.expired() == []
    clock.now += TTL + 1
    assert store.expired() == [(job.id, "audio-x")]
    assert store.get(job.id) is None and store.event_for(job.id) is None


def test_webhook_secrets_rotate(store_and_clock: tuple[JobStore, Clock]) -> None:
    store, _ = store_and_clock
    assert store.secret("k") is None
    first = store.rotate_secret("k")
    second = store.rotate_secret("k")
    assert first != second and store.secret("k") == second and second.startswith("whsec_")


def test_a_jobs_place_in_its_keys_line(store_and_clock: tuple[JobStore, Clock]) -> None:
    store, clock = store_and_clock
    first = store.create(new_job())
    clock.now += 1
    store.create(new_job(key="other"))
    second = store.create(new_job())
    assert store.active_before(first) == 0 and store.active_before(second) == 1
    store.discard(first.id)
    assert store.get(first.id) is None and store.active_before(second) == 0
