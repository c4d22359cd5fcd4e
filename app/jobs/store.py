"""Jobs, their results, webhook secrets and webhook deliveries, in one SQL database (SQLite or PostgreSQL).

The job row is the truth about a job; the queue only says which job to look at next. Every change of
state is one conditional UPDATE, so two workers (or a worker and a cancel) can never both win: a run
holds its job through ``attempt`` and a lease it renews, and only the holder of the current attempt
may finish it. A final state and its webhook event are written in one transaction.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from app.accounting.sql import SqlDatabase
from app.jobs.signing import new_secret

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE_STATUSES = ("queued", "running")

metadata = sa.MetaData()
_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

audio_jobs = sa.Table(
    "audio_jobs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("key_name", sa.String(200), nullable=False),
    sa.Column("task", sa.String(16), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("response_format", sa.String(32), nullable=False),
    sa.Column("options", sa.Text(), nullable=False),  # the request's fields as JSON (app/jobs/request_codec.py)
    sa.Column("audio_url", sa.Text()),
    sa.Column("audio_file", sa.String(256)),  # a name inside jobs.storage_dir, while the job needs it
    sa.Column("webhook_url", sa.Text()),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("started_at", sa.Double()),
    sa.Column("finished_at", sa.Double()),
    sa.Column("expires_at", sa.Double()),
    sa.Column("audio_seconds", sa.Double()),
    sa.Column("progress", sa.Double(), nullable=False, default=0.0),
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_message", sa.Text()),
    sa.Column("attempt", sa.Integer(), nullable=False, default=0),
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_until", sa.Double()),
    sa.Column("cancel_requested", sa.Boolean(), nullable=False, default=False),
    sa.Column("dispatched_at", sa.Double(), nullable=False),
    sa.Column("result_body", sa.LargeBinary()),
    sa.Column("result_media_type", sa.String(128)),
    sa.Index("ix_audio_jobs_key_created", "key_name", "created_at"),
    sa.Index("ix_audio_jobs_status_lease", "status", "lease_until"),
)

webhook_secrets = sa.Table(
    "webhook_secrets",
    metadata,
    sa.Column("key_name", sa.String(200), primary_key=True),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
)

webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("job_id", sa.String(64), nullable=False, unique=True),  # one event per job: its final state
    sa.Column("key_name", sa.String(200), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Double(), nullable=False),
    sa.Column("lease_until", sa.Double()),
    sa.Column("delivered_at", sa.Double()),
    sa.Column("gave_up", sa.Boolean(), nullable=False, default=False),
    sa.Index("ix_webhook_events_pending", "delivered_at", "gave_up", "next_attempt_at"),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(64), nullable=False, index=True),
    sa.Column("number", sa.Integer(), nullable=False),
    sa.Column("at", sa.Double(), nullable=False),
    sa.Column("status", sa.Integer()),  # the receiver's HTTP status; null when none came
    sa.Column("error", sa.Text()),
    sa.Column("seconds", sa.Double(), nullable=False),
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass(frozen=True)
class NewJob:
    """What a submission stores; the rest of a job's row is the store's."""

    key_name: str
    task: str
    model: str
    response_format: str
    options: str
    audio_url: str | None
    audio_file: str | None
    webhook_url: str | None


@dataclass(frozen=True)
class JobRow(NewJob):
    """A job as stored (the result body is read separately)."""

    id: str
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    expires_at: float | None
    audio_seconds: float | None
    progress: float
    error_code: str | None
    error_message: str | None
    attempt: int
    cancel_requested: bool

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def as_object(self) -> dict[str, Any]:
        """The job object of CONTRACT §7."""
        error = None if self.error_code is None else {"code": self.error_code, "message": self.error_message or ""}
        return {
            "id": self.id,
            "object": "audio.job",
            "status": self.status,
            "created_at": int(self.created_at),
            "started_at": None if self.started_at is None else int(self.started_at),
            "finished_at": None if self.finished_at is None else int(self.finished_at),
            "model": self.model,
            "response_format": self.response_format,
            "audio_seconds": self.audio_seconds,
            "progress": round(self.progress, 4),
            "error": error,
            "webhook_url": self.webhook_url,
            "expires_at": None if self.expires_at is None else int(self.expires_at),
        }


_JOB_COLUMNS = [audio_jobs.c[name] for name in JobRow.__dataclass_fields__]


@dataclass(frozen=True)
class Claim:
    """A run's hold on its job: only this attempt may renew and finish it."""

    job: JobRow
    attempt: int
    owner: str


@dataclass(frozen=True)
class Renewal:
    held: bool  # false: the lease was lost (the job ran on elsewhere, or was finished); stop
    cancel_requested: bool


@dataclass(frozen=True)
class EventRow:
    id: str
    job_id: str
    key_name: str
    type: str
    url: str
    created_at: float
    attempts: int


@dataclass(frozen=True)
class AttemptRow:
    event_id: str
    number: int
    at: float
    status: int | None
    error: str | None


class JobStore:
    """Every read and conditional write of the job tables; blocking, thread-safe."""

    def __init__(self, url: str, *, clock: Any = time.time) -> None:
        self.database = SqlDatabase(url)
        self.clock = clock
        self.database.create_tables(metadata)

    def close(self) -> None:
        self.database.close()

    # --- jobs -----------------------------------------------------------------------------------------------

    def create(self, new: NewJob) -> JobRow:
        now = self.clock()
        row = {
            **new.__dict__,
            "id": new_id("audiojob"),
            "status": "queued",
            "created_at": now,
            "progress": 0.0,
            "attempt": 0,
            "cancel_requested": False,
            "dispatched_at": now,
        }
        with self.database.write_lock, self.database.engine.begin() as conn:
            conn.execute(audio_jobs.insert(), row)
        job = self.get(row["id"])
        assert job is not None
        return job

    def get(self, job_id: str, key_name: str | None = None) -> JobRow | None:
        """The job, or None when unknown (or not ``key_name``'s, when given)."""
        query = sa.select(*_JOB_COLUMNS).where(audio_jobs.c.id == job_id)
        if key_name is not None:
            query = query.where(audio_jobs.c.key_name == key_name)
        with self.database.read_lock, self.database.engine.connect() as conn:
            found = conn.execute(query).first()
        return None if found is None else JobRow(*found)

    def page(self, key_name: str | None, *, limit: int, after: str | None = None) -> tuple[list[JobRow], bool]:
        """Newest first; ``after`` is the id of the last job of the previous page. Also: whether more follow."""
        columns = audio_jobs.c
        query = sa.select(*_JOB_COLUMNS)
        if key_name is not None:
            query = query.where(columns.key_name == key_name)
        if after is not None:
            cursor = self.get(after, key_name)
            if cursor is None:
                return [], False
            query = query.where(
                sa.or_(
                    columns.created_at < cursor.created_at,
                    sa.and_(columns.created_at == cursor.created_at, columns.id < cursor.id),
                )
            )
        query = query.order_by(columns.created_at.desc(), columns.id.desc()).limit(limit + 1)
        with self.database.read_lock, self.database.engine.connect() as conn:
            rows = [JobRow(*found) for found in conn.execute(query).all()]
        return rows[:limit], len(rows) > limit

    def result(self, job_id: str) -> tuple[bytes, str] | None:
        query = sa.select(audio_jobs.c.result_body, audio_jobs.c.result_media_type).where(audio_jobs.c.id == job_id)
        with self.database.read_lock, self.database.engine.connect() as conn:
            found = conn.execute(query).first()
        if found is None or found[0] is None:
            return None
        return bytes(found[0]), str(found[1])

    def active_count(self, key_name: str) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(audio_jobs)
            .where(audio_jobs.c.key_name == key_name, audio_jobs.c.status.in_(ACTIVE_STATUSES))
        )
        with self.database.read_lock, self.database.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def active_before(self, job: JobRow) -> int:
        """The key's queued and running jobs created before ``job`` (its place in its key's line)."""
        columns = audio_jobs.c
        earlier = sa.or_(
            columns.created_at < job.created_at, sa.and_(columns.created_at == job.created_at, columns.id < job.id)
        )
        query = (
            sa.select(sa.func.count())
            .select_from(audio_jobs)
            .where(columns.key_name == job.key_name, columns.status.in_(ACTIVE_STATUSES), earlier)
        )
        with self.database.read_lock, self.database.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def discard(self, job_id: str) -> None:
        """Delete a job that was never dispatched (refused right after its row was written)."""
        with self.database.write_lock, self.database.engine.begin() as conn:
            conn.execute(audio_jobs.delete().where(audio_jobs.c.id == job_id))

    def claim(self, job_id: str, owner: str, lease_seconds: float) -> Claim | None:
        """Take a queued job, or a running one whose lease lapsed (its worker died); None when not runnable."""
        now = self.clock()
        columns = audio_jobs.c
        runnable = sa.or_(
            columns.status == "queued",
            sa.and_(columns.status == "running", columns.lease_until < now),
        )
        with self.database.write_lock, self.database.engine.begin() as conn:
            found = conn.execute(sa.select(columns.attempt).where(columns.id == job_id, runnable)).first()
            if found is None:
                return None
            attempt = int(found[0]) + 1
            taken = conn.execute(
                audio_jobs.update()
                .where(columns.id == job_id, columns.attempt == attempt - 1, runnable)
                .values(
                    status="running",
                    attempt=attempt,
                    lease_owner=owner,
                    lease_until=now + lease_seconds,
                    started_at=sa.func.coalesce(columns.started_at, now),
                )
            )
            if taken.rowcount != 1:
                return None
        job = self.get(job_id)
        assert job is not None
        return Claim(job, attempt, owner)

    def renew(self, claim: Claim, lease_seconds: float, progress: float, audio_seconds: float | None) -> Renewal:
        columns = audio_jobs.c
        held = self._held(claim)
        values: dict[str, Any] = {"lease_until": self.clock() + lease_seconds, "progress": max(0.0, min(1.0, progress))}
        if audio_seconds is not None:
            values["audio_seconds"] = audio_seconds
        with self.database.write_lock, self.database.engine.begin() as conn:
            renewed = conn.execute(audio_jobs.update().where(*held).values(**values))
            if renewed.rowcount != 1:
                return Renewal(held=False, cancel_requested=False)
            cancel = conn.execute(sa.select(columns.cancel_requested).where(columns.id == claim.job.id)).scalar_one()
        return Renewal(held=True, cancel_requested=bool(cancel))

    def finish(
        self,
        claim: Claim,
        status: JobStatus,
        *,
        result: tuple[bytes, str] | None = None,
        error: tuple[str, str] | None = None,
        audio_seconds: float | None = None,
        result_ttl_seconds: float,
    ) -> JobRow | None:
        """End the claimed run in a final state (with its webhook event); None when the claim was lost."""
        values: dict[str, Any] = {"progress": 1.0} if status == "succeeded" else {}
        if result is not None:
            values["result_body"], values["result_media_type"] = result
        if audio_seconds is not None:
            values["audio_seconds"] = audio_seconds
        return self._finalize(self._held(claim), status, error, values, result_ttl_seconds)

    def fail_unclaimed(self, job_id: str, error: tuple[str, str], result_ttl_seconds: float) -> JobRow | None:
        """Fail a job nobody holds (its runs keep dying, or it outlived its time)."""
        columns = audio_jobs.c
        now = self.clock()
        loose = [
            columns.id == job_id,
            sa.or_(columns.status == "queued", sa.and_(columns.status == "running", columns.lease_until < now)),
        ]
        return self._finalize(loose, "failed", error, {}, result_ttl_seconds)

    def cancel(self, job_id: str, key_name: str | None, result_ttl_seconds: float) -> JobRow | None:
        """Cancel: a queued job (or one whose worker died) at once; a running one is asked to stop."""
        columns = audio_jobs.c
        job = self.get(job_id, key_name)
        if job is None or job.final:
            return job
        now = self.clock()
        idle = sa.or_(columns.status == "queued", sa.and_(columns.status == "running", columns.lease_until < now))
        if self._finalize([columns.id == job_id, idle], "cancelled", None, {}, result_ttl_seconds) is None:
            with self.database.write_lock, self.database.engine.begin() as conn:
                conn.execute(
                    audio_jobs.update()
                    .where(columns.id == job_id, columns.status == "running")
                    .values(cancel_requested=True)
                )
        return self.get(job_id)

    def release(self, claim: Claim) -> bool:
        """Hand a claimed job back to the queue (its worker is shutting down); it keeps its attempt count."""
        with self.database.write_lock, self.database.engine.begin() as conn:
            released = conn.execute(
                audio_jobs.update()
                .where(*self._held(claim))
                .values(status="queued", lease_owner=None, lease_until=None, dispatched_at=self.clock())
            )
            return released.rowcount == 1

    def _held(self, claim: Claim) -> list[sa.ColumnElement[bool]]:
        columns = audio_jobs.c
        return [columns.id == claim.job.id, columns.status == "running", columns.attempt == claim.attempt]

    def _finalize(
        self,
        where: Sequence[sa.ColumnElement[bool]],
        status: JobStatus,
        error: tuple[str, str] | None,
        values: dict[str, Any],
        result_ttl_seconds: float,
    ) -> JobRow | None:
        now = self.clock()
        values = {
            **values,
            "status": status,
            "finished_at": now,
            "expires_at": now + result_ttl_seconds,
            "lease_owner": None,
            "lease_until": None,
            "error_code": None if error is None else error[0],
            "error_message": None if error is None else error[1],
        }
        job_id = None
        with self.database.write_lock, self.database.engine.begin() as conn:
            columns = audio_jobs.c
            found = conn.execute(sa.select(columns.id, columns.webhook_url, columns.key_name).where(*where)).first()
            if found is None:
                return None
            job_id, webhook_url, key_name = str(found[0]), found[1], found[2]
            if conn.execute(audio_jobs.update().where(*where).values(**values)).rowcount != 1:
                return None
            if webhook_url:
                conn.execute(
                    webhook_events.insert(),
                    {
                        "id": new_id("evt"),
                        "job_id": job_id,
                        "key_name": key_name,
                        "type": f"audio.job.{status}",
                        "url": webhook_url,
                        "created_at": now,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "gave_up": False,
                    },
                )
        return self.get(job_id)

    def drop_audio(self, job_id: str) -> None:
        with self.database.write_lock, self.database.engine.begin() as conn:
            conn.execute(audio_jobs.update().where(audio_jobs.c.id == job_id).values(audio_file=None))

    def set_audio_file(self, claim: Claim, name: str) -> bool:
        with self.database.write_lock, self.database.engine.begin() as conn:
            return conn.execute(audio_jobs.update().where(*self._held(claim)).values(audio_file=name)).rowcount == 1

    def lapsed(self, *, queued_before: float) -> list[str]:
        """Jobs to dispatch again: running ones whose lease lapsed, and queued ones dispatched long ago."""
        columns = audio_jobs.c
        now = self.clock()
        query = sa.select(columns.id).where(
            sa.or_(
                sa.and_(columns.status == "running", columns.lease_until < now),
                sa.and_(columns.status == "queued", columns.dispatched_at < queued_before),
            )
        )
        with self.database.read_lock, self.database.engine.connect() as conn:
            ids = [str(found[0]) for found in conn.execute(query).all()]
        if ids:
            with self.database.write_lock, self.database.engine.begin() as conn:
                conn.execute(audio_jobs.update().where(columns.id.in_(ids)).values(dispatched_at=now))
        return ids

    def expired(self) -> list[tuple[str, str | None]]:
        """Delete finished jobs past ``expires_at`` (and their events); their (id, audio file) to clean up."""
        columns = audio_jobs.c
        now = self.clock()
        query = sa.select(columns.id, columns.audio_file).where(columns.expires_at < now)
        with self.database.write_lock, self.database.engine.begin() as conn:
            gone = [(str(found[0]), found[1]) for found in conn.execute(query).all()]
            if gone:
                ids = [job_id for job_id, _ in gone]
                events = sa.select(webhook_events.c.id).where(webhook_events.c.job_id.in_(ids))
                conn.execute(webhook_attempts.delete().where(webhook_attempts.c.event_id.in_(events)))
                conn.execute(webhook_events.delete().where(webhook_events.c.job_id.in_(ids)))
                conn.execute(audio_jobs.delete().where(columns.id.in_(ids)))
        return gone

    def audio_files_in_use(self) -> set[str]:
        query = sa.select(audio_jobs.c.audio_file).where(audio_jobs.c.audio_file.is_not(None))
        with self.database.read_lock, self.database.engine.connect() as conn:
            return {str(found[0]) for found in conn.execute(query).all()}

    # --- webhook secrets and events -------------------------------------------------------------------------

    def rotate_secret(self, key_name: str) -> str:
        """A new signing secret for ``key_name``'s webhooks (the previous one stops at once)."""
        secret = new_secret()
        with self.database.write_lock, self.database.engine.begin() as conn:
            conn.execute(webhook_secrets.delete().where(webhook_secrets.c.key_name == key_name))
            conn.execute(webhook_secrets.insert(), {"key_name": key_name, "secret": secret, "created_at": self.clock()})
        return secret

    def secret(self, key_name: str) -> str | None:
        query = sa.select(webhook_secrets.c.secret).where(webhook_secrets.c.key_name == key_name)
        with self.database.read_lock, self.database.engine.connect() as conn:
            found = conn.execute(query).scalar_one_or_none()
        return None if found is None else str(found)

    def claim_event(self, event_id: str, lease_seconds: float) -> EventRow | None:
        """Take a due, undelivered event for one delivery attempt; None when delivered, given up or taken."""
        columns = webhook_events.c
        now = self.clock()
        due = [
            columns.id == event_id,
            columns.delivered_at.is_(None),
            columns.gave_up.is_(False),
            columns.next_attempt_at <= now,
            sa.or_(columns.lease_until.is_(None), columns.lease_until < now),
        ]
        with self.database.write_lock, self.database.engine.begin() as conn:
            if conn.execute(webhook_events.update().where(*due).values(lease_until=now + lease_seconds)).rowcount != 1:
                return None
            found = conn.execute(
                sa.select(
                    columns.id,
                    columns.job_id,
                    columns.key_name,
                    columns.type,
                    columns.url,
                    columns.created_at,
                    columns.attempts,
                ).where(columns.id == event_id)
            ).one()
        return EventRow(*found)

    def record_attempt(
        self,
        event: EventRow,
        *,
        status: int | None,
        error: str | None,
        seconds: float,
        delivered: bool,
        retry_at: float | None,
    ) -> None:
        """One delivery attempt's outcome; ``retry_at`` None without delivery means: give up."""
        now = self.clock()
        number = event.attempts + 1
        values: dict[str, Any] = {"attempts": number, "lease_until": None}
        if delivered:
            values["delivered_at"] = now
        elif retry_at is None:
            values["gave_up"] = True
        else:
            values["next_attempt_at"] = retry_at
        with self.database.write_lock, self.database.engine.begin() as conn:
            conn.execute(
                webhook_attempts.insert(),
                {
                    "event_id": event.id,
                    "number": number,
                    "at": now,
                    "status": status,
                    "error": error,
                    "seconds": seconds,
                },
            )
            conn.execute(webhook_events.update().where(webhook_events.c.id == event.id).values(**values))

    def due_events(self) -> list[str]:
        """Undelivered events that are due and held by no delivery (their task was lost, or is late)."""
        columns = webhook_events.c
        now = self.clock()
        query = sa.select(columns.id).where(
            columns.delivered_at.is_(None),
            columns.gave_up.is_(False),
            columns.next_attempt_at <= now,
            sa.or_(columns.lease_until.is_(None), columns.lease_until < now),
        )
        with self.database.read_lock, self.database.engine.connect() as conn:
            return [str(found[0]) for found in conn.execute(query).all()]

    def event_for(self, job_id: str) -> str | None:
        query = sa.select(webhook_events.c.id).where(webhook_events.c.job_id == job_id)
        with self.database.read_lock, self.database.engine.connect() as conn:
            found = conn.execute(query).scalar_one_or_none()
        return None if found is None else str(found)

    def attempts(self, job_id: str) -> list[AttemptRow]:
        """Every delivery attempt of the job's webhook event, oldest first."""
        events = sa.select(webhook_events.c.id).where(webhook_events.c.job_id == job_id)
        columns = webhook_attempts.c
        query = (
            sa.select(columns.event_id, columns.number, columns.at, columns.status, columns.error)
            .where(columns.event_id.in_(events))
            .order_by(columns.number)
        )
        with self.database.read_lock, self.database.engine.connect() as conn:
            return [AttemptRow(*found) for found in conn.execute(query).all()]
