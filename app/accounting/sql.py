"""One SQL database by URL (SQLAlchemy Core): SQLite by default, PostgreSQL for replicas.

URLs: ``sqlite:////abs/path.db`` (parent directory created, WAL journal), ``sqlite://`` (in memory, one
shared connection; tests only), or ``postgresql+psycopg://user:password@host:5432/dbname``.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Stores UTC on every backend (naive on SQLite, ``timestamptz`` elsewhere); always reads back aware UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        # SQLite has no time zones: keep naive UTC so stored text compares in time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class SqlDatabase:
    """An engine plus the locks SQLite needs; every use is blocking and thread-safe."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        database = parsed.database or ""
        in_memory = self.is_sqlite and database in ("", ":memory:")
        options: dict[str, Any] = {}
        if in_memory:
            # One connection for all threads, else every thread would see its own empty database.
            options = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        elif self.is_sqlite:
            if not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            options = {"connect_args": {"timeout": 30}}
        else:
            options = {"pool_pre_ping": True}
        self.engine = sa.create_engine(parsed, **options)
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        # SQLite allows one writer at a time: queue writers on a lock rather than in its busy-wait loop.
        # With the single shared in-memory connection, readers must queue as well.
        self.write_lock: AbstractContextManager[Any] = threading.Lock() if self.is_sqlite else nullcontext()
        self.read_lock: AbstractContextManager[Any] = self.write_lock if in_memory else nullcontext()

    def create_tables(self, metadata: sa.MetaData) -> None:
        try:
            metadata.create_all(self.engine, checkfirst=True)
        except DBAPIError:
            # Another replica may have created them between our check and our CREATE.
            inspector = sa.inspect(self.engine)
            if not all(inspector.has_table(name) for name in metadata.tables):
                raise

    def close(self) -> None:
        """Close every pooled connection; the database must not be used afterwards."""
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers never block the writer; NORMAL sync is durable across crashes of the process.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()
