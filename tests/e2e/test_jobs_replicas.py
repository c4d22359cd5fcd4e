"""Async jobs across replicas with the shared backend: real PostgreSQL (jobs, results, webhook events, ledger)
and, as the queue, real Redis or PostgreSQL itself. A replica killed (-9) mid-job: another finishes it, once.
A dedicated ``python -m app worker`` runs the jobs that servers without workers accept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pytest_redis.executor import RedisExecutor

from app.settings import PROJECT_ROOT
from tests.audio import LONG_TEXT, espeak, repeat_audio
from tests.e2e.test_jobs import MODEL, jobs_config
from tests.jobs_support import (
    FINAL,
    Receiver,
    admin_job,
    auth,
    job,
    submit,
    submitted,
    verify,
    wait_until,
    webhook_receiver,
    webhook_secret,
)
from tests.server import MODEL_CACHE, RunningServer, run_server
from tests.services import PostgresServer, redis_url


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


def shared_config(database: str, storage: Path, queue: str | None, *, workers: int = 1) -> dict[str, Any]:
    config = jobs_config()
    config["ledger_url"] = database
    config["jobs"] |= {"database_url": database, "queue_url": queue, "storage_dir": str(storage), "workers": workers}
    return config


def ran_first(server: RunningServer, job_id: str) -> bool:
    """Whether ``server`` started the job's first run (its log says so)."""
    return f"job {job_id}: attempt 1 on" in server.log()


@pytest.fixture(scope="module")
def long_call(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("replica-audio")
    return repeat_audio(espeak(folder / "p.wav", LONG_TEXT, speed=170), folder / "long.wav", 6, gap_seconds=1.0)


def test_a_replica_killed_mid_job_leaves_it_to_the_other_which_finishes_it_once(
    tmp_path: Path, postgres: PostgresServer, redis_service: RedisExecutor, receiver: Receiver, long_call: Path
) -> None:
    path = "/replicas/killed"
    with postgres.database() as database:
        config = shared_config(database, tmp_path / "audio", redis_url(redis_service))
        with run_server(tmp_path / "a", config) as first, run_server(tmp_path / "b", config) as second:
            secret = webhook_secret(first, first.api_key)  # minted on one replica, used by both (one database)
            created = submitted(submit(first, first.api_key, long_call, model=MODEL, webhook_url=receiver.url(path)))
            deadline = time.monotonic() + 120
            while job(second, second.api_key, created["id"])["progress"] <= 0.05:
                assert time.monotonic() < deadline, "the job never got going"
                time.sleep(0.1)
            runner, survivor = (first, second) if ran_first(first, created["id"]) else (second, first)
            assert ran_first(runner, created["id"]), "neither replica's log names the run"
            os.kill(runner.process.pid, signal.SIGKILL)
            done = wait_until(survivor, survivor.api_key, created["id"], FINAL, timeout=300)
            assert done["status"] == "succeeded", done
            assert f"job {created['id']}: attempt 2 on" in survivor.log()
            assert admin_job(survivor, created["id"])["attempts"] == 2
            (delivery,) = receiver.wait_for(path, 1)
            verify(delivery, secret)
            time.sleep(1.0)
            assert len(receiver.received(path)) == 1
            usage = httpx.get(f"{survivor.base_url}/admin/usage", headers=auth(survivor.admin_key)).json()
            assert [row["requests"] for row in usage["data"] if row["key"] == "test"] == [1]  # one ledger row
            result = httpx.get(f"{survivor.v1}/audio/jobs/{created['id']}/result", headers=auth(survivor.api_key))
            assert result.status_code == 200 and len(result.json()["text"]) > 1000


def test_jobs_spread_over_replicas_and_each_runs_once(
    tmp_path: Path, postgres: PostgresServer, redis_service: RedisExecutor, synth_wav: Path
) -> None:
    with postgres.database() as database:
        config = shared_config(database, tmp_path / "audio", redis_url(redis_service, db=1))
        with run_server(tmp_path / "a", config) as first, run_server(tmp_path / "b", config) as second:
            ids = [
                submitted(submit(replica, replica.api_key, synth_wav, model=MODEL))["id"]
                for replica in (first, second) * 4
            ]
            for job_id in ids:
                assert wait_until(first, first.api_key, job_id, FINAL)["status"] == "succeeded"
            ran_on = [sum(f"job {job_id}: attempt" in r.log() for r in (first, second)) for job_id in ids]
            assert ran_on == [1] * len(ids)  # each job ran on exactly one replica, once
            assert all("job" in r.log() and "attempt 1 on" in r.log() for r in (first, second))  # both worked
            listed = httpx.get(f"{second.v1}/audio/jobs", headers=auth(second.api_key), params={"limit": 100}).json()
            assert {j["id"] for j in listed["data"]} == set(ids)


def test_a_dedicated_worker_on_the_postgresql_queue_runs_what_a_server_accepts(
    tmp_path: Path, postgres: PostgresServer, synth_wav: Path
) -> None:
    with postgres.database() as database:
        # No queue_url: the queue lives in PostgreSQL too. The server only accepts jobs.
        config = shared_config(database, tmp_path / "audio", None, workers=0)
        with run_server(tmp_path / "server", config) as server, _worker(tmp_path / "worker", config) as worker_log:
            created = submitted(submit(server, server.api_key, synth_wav, model=MODEL, response_format="text"))
            done = wait_until(server, server.api_key, created["id"], FINAL, timeout=120)
            assert done["status"] == "succeeded", done
            assert f"job {created['id']}: attempt 1 on" in worker_log.read_text()
            assert "attempt" not in server.log()
            text = httpx.get(f"{server.v1}/audio/jobs/{created['id']}/result", headers=auth(server.api_key)).text
            assert "fox" in text.lower()


@contextmanager
def _worker(workdir: Path, config: dict[str, Any]) -> Iterator[Path]:
    """``python -m app worker`` with ``config``; its log's path. Stopped with SIGTERM (it must exit cleanly)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / "worker.log"
    env = {**os.environ, "STT_DATA_DIR": str(workdir), "STT_MODEL_CACHE_DIR": str(MODEL_CACHE), "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "--config", str(config_path), "worker"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "Huey consumer started" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield log_path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0, log_path.read_text()
        finally:
            if process.poll() is None:
                process.kill()
