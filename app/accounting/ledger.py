"""A durable per-request usage ledger (SQLAlchemy Core), on SQLite by default or any SQL database by URL.

URLs: ``sqlite:////abs/path/usage.db`` (parent directory created, WAL journal), ``sqlite://`` (in memory,
one shared connection; tests only), or ``postgresql+psycopg://user:password@host:5432/dbname`` (psycopg is a
dependency; replicas that share the database then share audio budgets too).
Every method is blocking and thread-safe; from the event loop call them via ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa

from app.accounting.sql import SqlDatabase, UTCDateTime, as_utc

TABLE_NAME = "usage_events"


metadata = sa.MetaData()

usage_events = sa.Table(
    TABLE_NAME,
    metadata,
    # BIGINT where the database has it; SQLite only auto-increments an INTEGER PRIMARY KEY.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("ts", UTCDateTime(), nullable=False),
    sa.Column("key_name", sa.String(200), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("endpoint", sa.String(200), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("audio_seconds", sa.Double(), nullable=False, default=0.0),
    sa.Column("input_tokens", sa.BigInteger(), nullable=False, default=0),
    sa.Column("output_tokens", sa.BigInteger(), nullable=False, default=0),
    # Covers the rolling-window SUM of audio per key, which runs before every budgeted request.
    sa.Index("ix_usage_events_key_name_ts_audio", "key_name", "ts", "audio_seconds"),
    sa.Index("ix_usage_events_ts", "ts"),
)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class UsageEvent:
    """One finished (or failed) API request: who, what, and how much audio and how many tokens it used."""

    key_name: str
    model: str
    endpoint: str
    status: int
    audio_seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    ts: datetime = field(default_factory=_now)


@dataclass(frozen=True)
class KeyTotals:
    """Usage summed over the ledger rows of one key."""

    key_name: str
    requests: int
    audio_seconds: float
    input_tokens: int
    output_tokens: int


class UsageLedger:
    """The ``usage_events`` table: one INSERT per request, and summaries read back from it."""

    def __init__(self, url: str) -> None:
        self.database = SqlDatabase(url)
        self.is_sqlite = self.database.is_sqlite
        self.engine = self.database.engine
        self._write_lock = self.database.write_lock
        self._read_lock = self.database.read_lock
        self.database.create_tables(metadata)

    def record(self, event: UsageEvent) -> None:
        """Append one event (a single INSERT, committed before returning)."""
        row = {
            "ts": event.ts,
            "key_name": event.key_name,
            "model": event.model,
            "endpoint": event.endpoint,
            "status": event.status,
            "audio_seconds": float(event.audio_seconds),
            "input_tokens": int(event.input_tokens),
            "output_tokens": int(event.output_tokens),
        }
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(usage_events.insert(), row)

    def totals(self, key_name: str | None = None, since: datetime | None = None) -> list[KeyTotals]:
        """Per-key sums, sorted by key name; only ``key_name`` and events at or after ``since`` when given."""
        columns = usage_events.c
        query = (
            sa.select(
                columns.key_name,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(columns.audio_seconds), 0.0),
                sa.func.coalesce(sa.func.sum(columns.input_tokens), 0),
                sa.func.coalesce(sa.func.sum(columns.output_tokens), 0),
            )
            .where(*self._filters(key_name, since))
            .group_by(columns.key_name)
            .order_by(columns.key_name)
        )
        with self._read_lock, self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            KeyTotals(
                key_name=str(name),
                requests=int(requests),
                audio_seconds=float(audio),
                input_tokens=int(tokens_in),
                output_tokens=int(tokens_out),
            )
            for name, requests, audio, tokens_in, tokens_out in rows
        ]

    def audio_seconds_since(self, key_name: str, since: datetime) -> float:
        """Audio seconds that ``key_name`` used at or after ``since``."""
        columns = usage_events.c
        query = sa.select(sa.func.coalesce(sa.func.sum(columns.audio_seconds), 0.0)).where(
            *self._filters(key_name, since)
        )
        with self._read_lock, self.engine.connect() as conn:
            return float(conn.execute(query).scalar_one())

    def running_total_passes(self, key_name: str, since: datetime, amount: float) -> datetime | None:
        """When the key's audio seconds, summed from ``since`` onwards in time order, first exceed ``amount``.

        That is the ``ts`` of the oldest event that must leave a rolling window before the window's total
        drops by more than ``amount``; None when the total since ``since`` never exceeds it.
        """
        columns = usage_events.c
        running = (
            sa.select(
                columns.ts.label("ts"),
                sa.func.sum(columns.audio_seconds).over(order_by=(columns.ts, columns.id)).label("running"),
            )
            .where(*self._filters(key_name, since))
            .subquery()
        )
        query = sa.select(running.c.ts).where(running.c.running > amount).order_by(running.c.ts).limit(1)
        with self._read_lock, self.engine.connect() as conn:
            found = conn.execute(query).scalar_one_or_none()
        return None if found is None else as_utc(found)

    def close(self) -> None:
        """Close every pooled connection; the ledger must not be used afterwards."""
        self.engine.dispose()

    @staticmethod
    def _filters(key_name: str | None, since: datetime | None) -> list[sa.ColumnElement[bool]]:
        filters: list[sa.ColumnElement[bool]] = []
        if key_name is not None:
            filters.append(usage_events.c.key_name == key_name)
        if since is not None:
            filters.append(usage_events.c.ts >= as_utc(since))
        return filters
