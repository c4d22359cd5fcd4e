"""The job queue: Huey (MIT, github.com/coleifer/huey), on SQLite by default, or on PostgreSQL or Redis.

Huey carries job ids to worker threads, runs them in this process (or in ``python -m app worker``
processes), and holds delayed webhook retries in its schedule. It removes a task when a worker
takes it, so a worker killed mid-job loses the task: the job's row and lease (app/jobs/store.py)
are the truth, and the sweeper (app/jobs/system.py) puts lapsed jobs back on the queue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huey import Huey, PostgresHuey, PriorityRedisHuey, SqliteHuey
from huey.consumer import Consumer
from sqlalchemy.engine import make_url

JOB_QUEUE = "audio-jobs"
WEBHOOK_QUEUE = "audio-job-webhooks"
# An idle worker looks at the queue at least this often (SQLite has no blocking read; Redis and
# PostgreSQL wake it at once).
MAX_POLL_SECONDS = 0.5


def build_queue(name: str, url: str) -> Huey:
    """A Huey instance on the broker named by ``url``: a jobs database URL, or ``redis://``."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return PriorityRedisHuey(name, url=url, results=False)
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise ValueError("the job queue needs a SQLite file, not an in-memory database")
        path = Path(database).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Its own file beside the jobs database: Huey and SQLAlchemy then never wait on each other's writes.
        queue_file = path.with_name(f"{path.stem}-queue{path.suffix or '.db'}")
        return SqliteHuey(name, filename=str(queue_file), results=False)
    if backend == "postgresql":
        dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresHuey(name, dsn=dsn, results=False)
    raise ValueError(f"unsupported job queue URL scheme: {parsed.drivername!r}")


class EmbeddedConsumer(Consumer):  # type: ignore[misc]
    """Huey's consumer inside the server: worker threads only, for the ASGI server owns the signals."""

    def _set_signal_handlers(self) -> None:
        return None


def consumer(queue: Huey, workers: int, *, embedded: bool) -> Any:
    kind = EmbeddedConsumer if embedded else Consumer
    return kind(
        queue,
        workers=workers,
        worker_type="thread",
        periodic=False,
        initial_delay=0.05,
        backoff=1.5,
        max_delay=MAX_POLL_SECONDS,
        scheduler_interval=1,
        check_worker_health=False,
    )
