"""Real PostgreSQL and Redis servers for tests, run as users run them (pytest-postgresql / pytest-redis executors).

Each starts on 127.0.0.1 and a free port, in a throwaway folder, and is stopped (folder removed) on exit.
PostgreSQL refuses to run as root: as root, its ``pg_ctl`` runs through ``runuser`` as an unprivileged
account (Debian's ``postgres``, else ``nobody``) that owns the folder. Without the binaries a test skips,
unless it runs as root, where ``scripts/install.sh --test`` installs them, so a missing one is a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import DatabaseJanitor
from pytest_redis.executor import RedisExecutor

from tests.server import free_port

HOST = "127.0.0.1"
PG_SUPERUSER = "postgres"
INSTALL_HINT = "scripts/install.sh --test installs it (apt-get install {package})"


def _is_root() -> bool:
    return os.geteuid() == 0


def missing(what: str, package: str) -> NoReturn:
    """Skip (or, as root, fail) a test whose service binary is absent."""
    message = f"{what} not found; {INSTALL_HINT.format(package=package)}"
    if _is_root():
        pytest.fail(message)
    pytest.skip(message)


def pg_ctl_path() -> str | None:
    """Debian keeps the server binaries off PATH, one folder per major version: take the newest."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if versions:
        return str(versions[-1])
    return shutil.which("pg_ctl")


def redis_server_path() -> str | None:
    return shutil.which("redis-server")


@dataclass(frozen=True)
class PostgresServer:
    executor: PostgreSQLExecutor

    @property
    def port(self) -> int:
        return int(self.executor.port)

    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL of a database on this server (trust auth on loopback: no password)."""
        return f"postgresql+psycopg://{PG_SUPERUSER}@{HOST}:{self.port}/{dbname}"

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh, empty database for one test (its URL); dropped afterwards."""
        janitor = DatabaseJanitor(user=PG_SUPERUSER, host=HOST, port=self.port, dbname=f"t_{uuid.uuid4().hex[:12]}")
        janitor.init()
        try:
            yield self.url(janitor.dbname)
        finally:
            janitor.drop()


def _unprivileged_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return pwd.getpwnam("nobody")


def _as_user_wrapper(folder: Path, pg_ctl: str, account: pwd.struct_passwd) -> str:
    """A ``pg_ctl`` that runs the real one as ``account`` (from ``/``, a folder every account may enter)."""
    wrapper = folder / "pg_ctl"
    wrapper.write_text(f'#!/bin/sh\ncd / && exec runuser -u {account.pw_name} -- {pg_ctl} "$@"\n')
    wrapper.chmod(stat.S_IRWXU)
    return str(wrapper)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    pg_ctl = _required(pg_ctl_path(), "PostgreSQL (pg_ctl)", "postgresql")
    with _scratch_folder("stt-pg-") as folder:
        executable = pg_ctl
        if _is_root():
            account = _unprivileged_account()
            executable = _as_user_wrapper(folder, pg_ctl, account)
            os.chown(folder, account.pw_uid, account.pw_gid)
        port = free_port()
        executor = PostgreSQLExecutor(
            executable=executable,
            host=HOST,
            port=port,
            datadir=str(folder / "data"),
            unixsocketdir=str(folder),
            logfile=str(folder / "postgresql.log"),
            startparams="-w",
            dbname="postgres",
            user=PG_SUPERUSER,
            # Throwaway data: skip the fsyncs that make a 2-core CI machine slow.
            postgres_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        )
        with _started(executor):
            yield PostgresServer(executor)


@contextmanager
def redis_server() -> Iterator[RedisExecutor]:
    """A redis-server without persistence; ``stop()`` / ``start()`` on it make an outage and the recovery."""
    with _scratch_folder("stt-redis-") as folder:
        executor = RedisExecutor(
            executable=_required(redis_server_path(), "redis-server", "redis-server"),
            databases=4,
            redis_timeout=30,
            loglevel="warning",
            host=HOST,
            port=free_port(),
            save='""',
            datadir=folder,
        )
        with _started(executor):
            yield executor


def _required(path: str | None, what: str, package: str) -> str:
    if path is None:
        missing(what, package)
    return path


@contextmanager
def _scratch_folder(prefix: str) -> Iterator[Path]:
    """A throwaway folder for one server's data, socket and log, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _started(executor: PostgreSQLExecutor | RedisExecutor) -> Iterator[None]:
    executor.start()
    try:
        yield
    finally:
        executor.stop()


def redis_url(executor: RedisExecutor, db: int = 0) -> str:
    return f"redis://{executor.host}:{executor.port}/{db}"
