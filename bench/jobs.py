"""Async jobs on two replicas sharing PostgreSQL, Redis and one storage folder (CONTRACT §7).

N recordings of M minutes are submitted at once as jobs (keys per ``--keys``, alternating replicas) while an
interactive probe keeps sending a short clip synchronously; then the same with one replica SIGKILLed once
half the jobs have finished. Reported: every job succeeded, none lost or duplicated (ledger rows == jobs,
one final state each), throughput against the synchronous path, the probe's latency against an idle
server, and per-key fairness.

    .venv/bin/python -m bench.jobs                                    # base, 20 jobs of 5 min, keys a:12,b:5,c:3
    .venv/bin/python -m bench.jobs --model tiny.en --jobs 6 --minutes 1 --skip-sync
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import sqlalchemy as sa
import yaml

from app.api.auth import hash_key, new_secret
from app.settings import PROJECT_ROOT
from bench.common import (
    BenchError,
    bench_main,
    busy_warning,
    git_commit,
    load_average,
    long_file_sources,
    machine_info,
    process_cpu_seconds,
    process_peak_rss_mib,
    results_file,
    server_config,
    shared_audio_dir,
    write_wav,
)
from bench.server import free_port
from bench.speech import LONG_TEXT, SYNTH_SENTENCE, espeak
from bench.stats import percentile
from bench.tables import markdown_table, render_table
from engines.audio import SAMPLE_RATE, Samples, decode_audio
from engines.cores import available_cores

FINAL = frozenset({"succeeded", "failed", "cancelled"})
PROBE_SECONDS = 5.0
PROBE_CLIP = "en_jfk.flac"
GAP_SECONDS = 0.5
IDLE_PROBES = 10
LATENCY_LIMIT = 1.5  # the probe's p95 under load may be at most this times the idle p95
ADMIN, PROBE_KEY, SYNC_KEY = "bench-admin", "probe", "sync"
LEDGER_WAIT_SECONDS = 15.0  # ledger rows are written by a background thread: wait for them to land


# --- pure logic (unit-tested) ---------------------------------------------------------------------------------


def parse_keys(spec: str) -> list[tuple[str, int]]:
    """``"a:12,b:5,c:3"`` -> [("a", 12), ("b", 5), ("c", 3)] (weights: how the jobs are shared out)."""
    keys: list[tuple[str, int]] = []
    for part in spec.split(","):
        name, _, weight = part.strip().partition(":")
        if not name or not weight.isdigit() or int(weight) < 1:
            raise ValueError(f"--keys: expected name:weight pairs such as a:12,b:5, got {part!r}")
        if name in {ADMIN, PROBE_KEY, SYNC_KEY} or name in dict(keys):
            raise ValueError(f"--keys: the key name {name!r} is reserved or repeated")
        keys.append((name, int(weight)))
    if not keys:
        raise ValueError("--keys: at least one key")
    return keys


def assign_keys(keys: Sequence[tuple[str, int]], jobs: int) -> list[str]:
    """``jobs`` key names in proportion to the weights (largest remainder, at least one each when there are
    enough jobs), grouped by key in ``--keys`` order: the first key's jobs arrive first, the hardest case for
    fairness."""
    total = sum(weight for _, weight in keys)
    shares = [jobs * weight / total for _, weight in keys]
    counts = [int(share) for share in shares]
    by_remainder = sorted(range(len(keys)), key=lambda i: shares[i] - int(shares[i]), reverse=True)
    for n in range(jobs - sum(counts)):
        counts[by_remainder[n % len(keys)]] += 1
    while jobs >= len(keys) and 0 in counts:  # every key gets a job: taken from the largest share
        counts[counts.index(max(counts))] -= 1
        counts[counts.index(0)] += 1
    return [name for (name, _), count in zip(keys, counts, strict=True) for _ in range(count)]


def latency_summary(latencies: Sequence[float]) -> dict[str, float | int | None]:
    return {"n": len(latencies), "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95)}


def ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


@dataclass
class JobRecord:
    """One submitted job, as the benchmark saw it (Unix seconds throughout)."""

    key: str
    submitted_to: int  # the replica the upload went to (any replica may run it)
    file: str
    audio_seconds: float
    submitted: float
    id: str | None = None
    submit_error: str | None = None
    created_at: float | None = None  # when the server stored it (its place in the queue among equal priorities)
    status: str | None = None
    statuses: list[str] = field(default_factory=list)  # every distinct status seen, in order
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int | None = None
    error: Any = None

    def observe(self, status: str) -> None:
        if not self.statuses or self.statuses[-1] != status:
            self.statuses.append(status)
        self.status = status

    @property
    def final_states(self) -> int:
        """How many times it was seen entering a final state (more than one: it ended twice)."""
        return sum(1 for status in self.statuses if status in FINAL)


def fairness(jobs: Sequence[JobRecord], slots: int = 2) -> dict[str, Any]:
    """Per key: jobs, mean wait from submit to start, and the start rank (1 = first) of its first job.

    Holds when every key's first job is among the first (keys + ``slots``) starts: the jobs that start at once
    on the fleet's ``slots`` free job slots may go to whoever submitted first, then each other key's first job
    must come before a busy key's later ones."""
    started = sorted((j for j in jobs if j.started_at is not None), key=lambda j: (j.started_at, j.submitted))
    rank = {id(job): n for n, job in enumerate(started, start=1)}
    keys = list(dict.fromkeys(j.key for j in jobs))
    limit = len(keys) + slots
    per_key: dict[str, dict[str, Any]] = {}
    for key in keys:
        own = [j for j in jobs if j.key == key]
        waits = [j.started_at - j.submitted for j in own if j.started_at is not None]
        ranks = [rank[id(j)] for j in own if id(j) in rank]
        per_key[key] = {
            "jobs": len(own),
            "mean_wait_s": sum(waits) / len(waits) if waits else None,
            "first_start_rank": min(ranks) if ranks else None,
        }
    holds = all(v["first_start_rank"] is not None and v["first_start_rank"] <= limit for v in per_key.values())
    return {"rank_limit": limit, "holds": holds, "keys": per_key}


def integrity(jobs: Sequence[JobRecord], ledger_rows: int, *, killed: bool) -> dict[str, Any]:
    """All succeeded, none lost (every submitted id ends succeeded), none duplicated (one ledger row and one
    final state per job; one attempt each unless a replica was killed)."""
    succeeded = sum(1 for j in jobs if j.status == "succeeded")
    retried = sum(1 for j in jobs if (j.attempts or 0) > 1)
    ended_twice = sum(1 for j in jobs if j.final_states > 1)
    ok = (
        succeeded == len(jobs)
        and ledger_rows == len(jobs)
        and ended_twice == 0
        and (killed or all(j.attempts == 1 for j in jobs))
    )
    return {
        "submitted": len(jobs),
        "succeeded": succeeded,
        "lost": len(jobs) - succeeded,
        "ledger_rows": ledger_rows,
        "duplicated": max(0, ledger_rows - len(jobs)),
        "ended_twice": ended_twice,
        "second_attempts": retried,
        "ok": ok,
    }


def jobs_throughput(jobs: Sequence[JobRecord]) -> tuple[float | None, float | None]:
    """(wall seconds from the first submit to the last finish, audio seconds per wall second)."""
    finished = [j.finished_at for j in jobs if j.finished_at is not None]
    if not jobs or not finished:
        return None, None
    wall = max(finished) - min(j.submitted for j in jobs)
    return wall, sum(j.audio_seconds for j in jobs) / wall if wall > 0 else None


TABLE_HEADERS = [
    "run", "jobs ok", "lost", "ledger rows", "2nd attempts", "wall s", "audio s / wall s", "vs sync",
    "probe p50 / p95 s", "p95 vs idle", "fair (first-start ranks)", "replica CPU s", "peak RSS MiB",
]  # fmt: skip


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_cells(row: Mapping[str, Any]) -> list[str]:
    """One table row from a run's summary (missing parts show as '-')."""
    check = row.get("integrity") or {}
    fair = row.get("fairness")
    probe = row.get("probe") or {}
    ranks = "-" if fair is None else ", ".join(f"{k}:{v['first_start_rank']}" for k, v in fair["keys"].items())
    fair_cell = "-" if fair is None else f"{'yes' if fair['holds'] else 'NO'} ({ranks})"
    ok_cell = "-" if not check else f"{check['succeeded']}/{check['submitted']}"
    return [
        row["run"], ok_cell, str(check.get("lost", "-")), str(check.get("ledger_rows", "-")),
        str(check.get("second_attempts", "-")), _fmt(row.get("wall_s"), 1), _fmt(row.get("throughput")),
        _fmt(row.get("vs_sync")), f"{_fmt(probe.get('p50_s'))} / {_fmt(probe.get('p95_s'))}",
        _fmt(row.get("p95_vs_idle")), fair_cell,
        " + ".join(_fmt(c, 0) for c in row.get("cpu_s", [])) or "-",
        " / ".join(_fmt(m, 0) for m in row.get("peak_rss_mib", [])) or "-",
    ]  # fmt: skip


def tables(rows: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(plain-text table, Markdown table) of the runs."""
    cells = [table_cells(row) for row in rows]
    return render_table(TABLE_HEADERS, cells), markdown_table(TABLE_HEADERS, cells)


# --- inputs ---------------------------------------------------------------------------------------------------


def _source_clips(workdir: Path) -> tuple[list[Samples], str]:
    """The English shared recordings decoded at 16 kHz, else espeak speech (and which it was)."""
    directory = shared_audio_dir()
    sources = long_file_sources(directory) if directory.is_dir() else []
    if sources:
        return [decode_audio(p.read_bytes()) for p in sources], f"shared recordings ({len(sources)} files)"
    speech = espeak(workdir / "espeak.wav", LONG_TEXT)
    return [decode_audio(speech.read_bytes())], "espeak-ng speech"


def job_audio(clips: Sequence[Samples], index: int, seconds: float) -> Samples:
    """``seconds`` of the clips looped in an order rotated by ``index`` and started ``index`` x 7.3 s in, so
    every job's audio differs."""
    gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)
    order = [*clips[index % len(clips) :], *clips[: index % len(clips)]]
    offset = int(index * 7.3 * SAMPLE_RATE)
    wanted = int(seconds * SAMPLE_RATE)
    parts: list[Samples] = []
    total = 0
    while total < offset + wanted:
        for clip in order:
            parts.extend((clip, gap))
            total += clip.size + gap.size
    return np.concatenate(parts)[offset : offset + wanted]


@dataclass(frozen=True)
class Inputs:
    files: list[tuple[str, bytes, float]]  # (name, WAV bytes, audio seconds)
    probe: bytes
    source: str


def build_inputs(workdir: Path, jobs: int, minutes: float) -> Inputs:
    clips, source = _source_clips(workdir)
    files = []
    for index in range(jobs):
        path = workdir / f"job{index:02d}.wav"
        write_wav(path, job_audio(clips, index, minutes * 60))
        files.append((path.name, path.read_bytes(), minutes * 60))
    probe_source = shared_audio_dir() / PROBE_CLIP
    if probe_source.is_file():
        probe = decode_audio(probe_source.read_bytes())
    else:
        probe = decode_audio(espeak(workdir / "probe-src.wav", SYNTH_SENTENCE).read_bytes())
    write_wav(workdir / "probe.wav", probe[: int(PROBE_SECONDS * SAMPLE_RATE)])
    return Inputs(files, (workdir / "probe.wav").read_bytes(), source)


# --- services and replicas ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replica:
    index: int
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    killed: threading.Event = field(default_factory=threading.Event)  # set just before the SIGKILL
    worker: subprocess.Popen[bytes] | None = None  # --dedicated-workers: `python -m app worker` beside it

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [self.process] if self.worker is None else [self.process, self.worker]

    def kill(self) -> None:
        """SIGKILL: the whole "machine" (server and worker), its running job left mid-way."""
        self.killed.set()
        for process in self.processes:
            process.kill()
            process.wait()

    @property
    def alive(self) -> bool:
        return not self.killed.is_set() and self.process.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class Backend:
    database_url: str
    redis_url: str


@contextmanager
def backend() -> Iterator[Backend]:
    """A real PostgreSQL (a fresh database) and Redis on 127.0.0.1 (the tests' own helpers)."""
    from tests.services import pg_ctl_path, postgres_server, redis_server, redis_server_path, redis_url

    if pg_ctl_path() is None or redis_server_path() is None:
        raise BenchError("PostgreSQL (pg_ctl) and redis-server are needed: scripts/install.sh --test installs them")
    with postgres_server() as postgres, postgres.database() as database_url, redis_server() as redis:
        yield Backend(database_url, redis_url(redis))


def replica_config(model: str, backend_: Backend, storage: Path) -> dict[str, Any]:
    config = server_config([model])
    config["aliases"] = {"whisper-1": {"model": model, "usage": "duration"}}
    config["preload_models"] = [model]
    config["ledger_url"] = backend_.database_url  # usage rows shared: one ledger for both replicas
    config["jobs"] = {
        "database_url": backend_.database_url,
        "queue_url": backend_.redis_url,
        "storage_dir": str(storage),
        "workers": 1,
        "lease_seconds": 10,
    }
    return config


@dataclass(frozen=True)
class Keys:
    secrets: dict[str, str]  # name -> secret

    @classmethod
    def make(cls, names: Sequence[str]) -> Keys:
        return cls({name: new_secret() for name in [*names, PROBE_KEY, SYNC_KEY, ADMIN]})

    def env(self) -> str:
        return json.dumps(
            [
                {"name": n, "sha256": hash_key(s), **({"admin": True} if n == ADMIN else {})}
                for n, s in self.secrets.items()
            ]
        )


def _cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def start_replica(index: int, config: Path, workdir: Path, keys: Keys, *, pin: bool, dedicated: bool) -> Replica:
    """``python -m app serve`` (under ``taskset -c <core>`` when pinned) with its own data_dir; ``dedicated``:
    the server runs no jobs, a ``python -m app worker`` (niced) on the same core runs them."""
    data_dir = workdir / f"replica{index}"
    data_dir.mkdir()
    port = free_port()
    app = [sys.executable, "-m", "app", "--config", str(config)]
    serve = [*app, "serve", "--host", "127.0.0.1", "--port", str(port)]
    pinned = ["taskset", "-c", str(_cores()[index % len(_cores())])] if pin else []  # taskset execs: same pid
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "STT_DATA_DIR": str(data_dir),
        "STT_API_KEYS": keys.env(),
        "STT_MODEL_CACHE_DIR": str(PROJECT_ROOT / "var" / "models"),
    }
    log_path = workdir / f"replica{index}.log"
    server_env = {**env, "STT_JOBS__WORKERS": "0"} if dedicated else env
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*pinned, *serve], cwd=PROJECT_ROOT, env=server_env, stdout=log_file, stderr=subprocess.STDOUT
        )
    worker = None
    if dedicated:
        with log_path.with_suffix(".worker.log").open("wb") as log_file:
            worker = subprocess.Popen(
                [*pinned, *app, "worker"], cwd=PROJECT_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
    return Replica(index, f"http://127.0.0.1:{port}", process, log_path, worker=worker)


def wait_ready(replica: Replica, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not replica.alive:
            raise BenchError(f"replica {replica.index} exited with {replica.process.returncode}:\n{replica.log_tail()}")
        if replica.worker is not None and replica.worker.poll() is not None:
            raise BenchError(f"replica {replica.index}'s worker exited with {replica.worker.returncode}")
        try:
            if httpx.get(f"{replica.base_url}/ready", timeout=2).status_code == 200 and _worker_up(replica):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise BenchError(f"replica {replica.index} not ready within {timeout:.0f} s:\n{replica.log_tail()}")


def _worker_up(replica: Replica) -> bool:
    """The dedicated worker (if any) has its model in memory and takes jobs."""
    if replica.worker is None:
        return True
    log = replica.log_path.with_suffix(".worker.log").read_text(errors="replace")
    return "Huey consumer started" in log and "loaded model" in log


def stop_replica(replica: Replica) -> None:
    for process in replica.processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
                continue
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()


@contextmanager
def replicas(config: Path, workdir: Path, keys: Keys, *, pin: bool, dedicated: bool) -> Iterator[list[Replica]]:
    """Two replicas, started one after the other (so they never race to create the shared tables)."""
    started: list[Replica] = []
    try:
        for index in range(2):
            started.append(start_replica(index, config, workdir, keys, pin=pin, dedicated=dedicated))
            wait_ready(started[-1])
        yield started
    finally:
        for replica in started:
            stop_replica(replica)


# --- measurements ---------------------------------------------------------------------------------------------


@dataclass
class Usage:
    """CPU seconds and peak RSS of the replicas, read before a killed one disappears."""

    cpu: dict[int, float] = field(default_factory=dict)
    rss: dict[int, float] = field(default_factory=dict)

    def read(self, replica: Replica) -> None:
        if replica.alive:  # a replica's server and worker together, as one machine
            self.cpu[replica.index] = sum(process_cpu_seconds(p.pid) for p in replica.processes)
            self.rss[replica.index] = sum(process_peak_rss_mib(p.pid) for p in replica.processes)


def usage_now(fleet: Sequence[Replica]) -> Usage:
    usage = Usage()
    for replica in fleet:
        usage.read(replica)
    return usage


def cpu_spent(before: Usage, after: Usage) -> list[float]:
    return [after.cpu[i] - before.cpu[i] for i in sorted(before.cpu) if i in after.cpu]


def sdk(replica: Replica, key: str, keys: Keys) -> openai.OpenAI:
    # No retries: a failed request must show, not be hidden by a retry.
    return openai.OpenAI(base_url=f"{replica.base_url}/v1", api_key=keys.secrets[key], max_retries=0, timeout=3600)


def transcribe(client: openai.OpenAI, name: str, data: bytes) -> float:
    started = time.perf_counter()
    client.audio.transcriptions.create(model="whisper-1", file=(name, data), response_format="json")
    return time.perf_counter() - started


class Probe:
    """Interactive requests every ``interval`` s (one at a time), alternating over the live replicas."""

    def __init__(self, fleet: Sequence[Replica], keys: Keys, clip: bytes, interval: float) -> None:
        self.clients = {r.index: sdk(r, PROBE_KEY, keys) for r in fleet}
        self.fleet, self.clip, self.interval = fleet, clip, interval
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="probe", daemon=True)
        self._sent = 0

    def once(self) -> None:
        live = [r for r in self.fleet if r.alive]
        replica = live[self._sent % len(live)]
        self._sent += 1
        try:
            self.latencies.append(transcribe(self.clients[replica.index], "probe.wav", self.clip))
        except openai.OpenAIError as exc:
            if not replica.killed.is_set():  # a request cut by the kill is not the server's fault
                self.errors.append(f"replica {replica.index}: {exc}")

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.once()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def __enter__(self) -> Probe:
        if self.interval > 0:  # 0: no probe (the jobs' throughput alone, with nothing else on the cores)
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def idle_baseline(fleet: Sequence[Replica], keys: Keys, clip: bytes) -> dict[str, Any]:
    probe = Probe(fleet, keys, clip, 0.0)
    for _ in fleet:  # one warm-up request per replica
        probe.once()
    probe.latencies.clear()
    for _ in range(IDLE_PROBES):
        probe.once()
    return latency_summary(probe.latencies) | {"errors": probe.errors}


def sync_path(fleet: Sequence[Replica], keys: Keys, files: Sequence[tuple[str, bytes, float]]) -> dict[str, Any]:
    """The same files as synchronous requests, two in flight per replica."""
    clients = [sdk(r, SYNC_KEY, keys) for r in fleet]
    began = time.perf_counter()
    with ThreadPoolExecutor(2 * len(fleet)) as pool:
        runs = [pool.submit(transcribe, clients[n % len(fleet)], name, data) for n, (name, data, _) in enumerate(files)]
        try:
            for run in runs:
                run.result()
        except openai.OpenAIError as exc:
            logs = "\n".join(r.log_tail(20) for r in fleet)
            raise BenchError(f"a synchronous request failed: {exc}\n{logs}") from exc
    wall = time.perf_counter() - began
    return {"wall_s": wall, "throughput": sum(seconds for *_, seconds in files) / wall}


def submit(replica: Replica, keys: Keys, job: JobRecord, data: bytes) -> None:
    job.submitted = time.time()
    try:
        answer = httpx.post(
            f"{replica.base_url}/v1/audio/transcriptions/jobs",
            headers={"Authorization": f"Bearer {keys.secrets[job.key]}"},
            files={"file": (job.file, data, "audio/wav")},
            data={"model": "whisper-1", "response_format": "json"},
            timeout=300,
        )
    except httpx.HTTPError as exc:
        job.submit_error = repr(exc)
        return
    if answer.status_code != 202:
        job.submit_error = f"{answer.status_code}: {answer.text[:300]}"
        return
    job.id = answer.json()["id"]
    job.observe(answer.json()["status"])


def submit_all(fleet: Sequence[Replica], keys: Keys, names: Sequence[str], inputs: Inputs) -> list[JobRecord]:
    """Every job at once (one thread each, started in key order), alternating replicas."""
    jobs = [JobRecord(key, n % len(fleet), inputs.files[n][0], inputs.files[n][2], 0.0) for n, key in enumerate(names)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        for job, (_, data, _) in zip(jobs, inputs.files, strict=True):
            pool.submit(submit, fleet[job.submitted_to], keys, job, data)
    return jobs


def poll(ctx: Context, jobs: Sequence[JobRecord], kill_at: int | None, usage: Usage) -> float | None:
    """Poll every unfinished job through a live replica until all are final; SIGKILL replica 1 once ``kill_at``
    jobs have finished, its CPU and peak RSS read into ``usage`` just before (the time of the kill, or None)."""
    fleet, keys = ctx.fleet, ctx.keys
    deadline = time.monotonic() + ctx.timeout
    killed_at: float | None = None
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            live = [r for r in fleet if r.alive]
            for n, job in enumerate(j for j in jobs if j.id is not None and j.status not in FINAL):
                base = live[n % len(live)].base_url
                try:
                    answer = client.get(f"{base}/v1/audio/jobs/{job.id}", headers=_auth(keys, job.key))
                except httpx.HTTPError:
                    continue  # asked again next round
                if answer.status_code == 200:
                    job.observe(answer.json()["status"])
            done = sum(1 for j in jobs if j.status in FINAL)
            if kill_at is not None and killed_at is None and done >= kill_at:
                usage.read(fleet[1])
                fleet[1].kill()
                killed_at = time.time()
                print(f"  killed replica 1 after {done} of {len(jobs)} jobs finished", flush=True)
            if done == sum(1 for j in jobs if j.id is not None):
                return killed_at
            time.sleep(1.0)
    print(f"  warning: jobs still unfinished after {ctx.timeout:.0f} s", flush=True)
    return killed_at


def _auth(keys: Keys, key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys.secrets[key]}"}


def fill_details(fleet: Sequence[Replica], keys: Keys, jobs: Sequence[JobRecord], database_url: str) -> None:
    """Attempts from the admin API; start and finish to the sub-second from the jobs table (the API rounds)."""
    live = next(r for r in fleet if r.alive)
    for job in jobs:
        if job.id is None:
            continue
        answer = httpx.get(f"{live.base_url}/admin/jobs/{job.id}", headers=_auth(keys, ADMIN), timeout=30)
        if answer.status_code == 200:
            body = answer.json()
            job.attempts, job.error = body["attempts"], body["error"]
            job.observe(body["status"])
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, created_at, started_at, finished_at FROM audio_jobs")).all()
    finally:
        engine.dispose()
    times = {row[0]: (row[1], row[2], row[3]) for row in rows}
    for job in jobs:
        job.created_at, job.started_at, job.finished_at = times.get(job.id or "", (None, None, None))


def ledger_rows(database_url: str) -> int:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            query = "SELECT count(*) FROM usage_events WHERE endpoint = 'transcribe_job'"
            return int(conn.execute(sa.text(query)).scalar_one())
    finally:
        engine.dispose()


def settled_ledger_rows(database_url: str, before: int, expected: int) -> int:
    """The phase's ledger rows, waiting a little for the background writer (and for any duplicate to land)."""
    deadline = time.monotonic() + LEDGER_WAIT_SECONDS
    rows = ledger_rows(database_url) - before
    while rows < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = ledger_rows(database_url) - before
    time.sleep(2.0)
    return ledger_rows(database_url) - before


# --- one run of jobs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    fleet: list[Replica]
    keys: Keys
    names: list[str]
    inputs: Inputs
    backend: Backend
    probe_interval: float
    timeout: float
    job_slots: int  # jobs the fleet runs at once


def jobs_run(ctx: Context, run: str, *, kill: bool) -> tuple[dict[str, Any], list[JobRecord]]:
    print(f"{run}: submitting {len(ctx.names)} jobs", flush=True)
    ledger_before = ledger_rows(ctx.backend.database_url)
    usage_before = usage_now(ctx.fleet)
    with Probe(ctx.fleet, ctx.keys, ctx.inputs.probe, ctx.probe_interval) as probe:
        jobs = submit_all(ctx.fleet, ctx.keys, ctx.names, ctx.inputs)
        refused = [j.submit_error for j in jobs if j.submit_error]
        if refused:
            raise BenchError(f"{len(refused)} submits refused, e.g. {refused[0]}")
        usage_mid = usage_now(ctx.fleet)
        kill_at = len(jobs) // 2 if kill else None
        killed_at = poll(ctx, jobs, kill_at, usage_mid)
    usage_after = usage_now(ctx.fleet)
    for index, rss in usage_mid.rss.items():  # the killed replica's last reading
        usage_after.rss.setdefault(index, rss)
        usage_after.cpu.setdefault(index, usage_mid.cpu[index])
    fill_details(ctx.fleet, ctx.keys, jobs, ctx.backend.database_url)
    rows = settled_ledger_rows(ctx.backend.database_url, ledger_before, len(jobs))
    wall, throughput = jobs_throughput(jobs)
    summary = {
        "run": run,
        "integrity": integrity(jobs, rows, killed=kill),
        "wall_s": wall,
        "throughput": throughput,
        "probe": latency_summary(probe.latencies) | {"errors": probe.errors},
        "fairness": fairness(jobs, ctx.job_slots),
        "cpu_s": cpu_spent(usage_before, usage_after),
        "peak_rss_mib": [usage_after.rss[i] for i in sorted(usage_after.rss)],
        "killed_at": killed_at,
    }
    return summary, jobs


# --- the benchmark --------------------------------------------------------------------------------------------


def compare(row: dict[str, Any], idle: Mapping[str, Any], sync: Mapping[str, Any] | None) -> None:
    """Add a jobs row's ratios: throughput against the synchronous path, probe latency against idle."""
    row["vs_sync"] = ratio(row.get("throughput"), None if sync is None else sync["throughput"])
    row["p95_vs_idle"] = ratio(row["probe"]["p95_s"], idle["p95_s"])
    row["p50_vs_idle"] = ratio(row["probe"]["p50_s"], idle["p50_s"])
    row["latency_holds"] = row["p95_vs_idle"] is not None and row["p95_vs_idle"] <= LATENCY_LIMIT


def timed_phase(fleet: Sequence[Replica], row: dict[str, Any], before: Usage) -> dict[str, Any]:
    """``row`` with the replicas' CPU seconds since ``before`` and their peak RSS so far."""
    after = usage_now(fleet)
    return row | {"cpu_s": cpu_spent(before, after), "peak_rss_mib": [after.rss[i] for i in sorted(after.rss)]}


def measure(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    print("idle probe", flush=True)
    before = usage_now(ctx.fleet)
    idle = idle_baseline(ctx.fleet, ctx.keys, ctx.inputs.probe)
    rows = [timed_phase(ctx.fleet, {"run": "idle probe", "probe": idle}, before)]
    sync = None
    if not args.skip_sync:
        print("synchronous path", flush=True)
        before = usage_now(ctx.fleet)
        sync = sync_path(ctx.fleet, ctx.keys, ctx.inputs.files)
        rows.append(timed_phase(ctx.fleet, {"run": "synchronous", **sync, "vs_sync": 1.0}, before))
    details: dict[str, list[dict[str, Any]]] = {}
    for run, kill in [("jobs", False), ("jobs, replica killed", True)]:
        if kill and args.skip_kill:
            continue
        summary, jobs = jobs_run(ctx, run, kill=kill)
        compare(summary, idle, sync)
        rows.append(summary)
        details[run] = [asdict(j) for j in jobs]
        print(tables([summary])[0].splitlines()[-1], flush=True)
    return {"idle": idle, "sync": sync, "rows": rows, "jobs": details}


def run(args: argparse.Namespace) -> int:
    try:
        keys_spec = parse_keys(args.keys)
    except ValueError as exc:
        raise BenchError(str(exc)) from exc
    names = assign_keys(keys_spec, args.jobs)
    load_before = load_average()
    warning = busy_warning(load_before)
    if warning:
        print(warning, file=sys.stderr)
    started = datetime.now(UTC)
    out = results_file(None if args.out is None else args.out / f"jobs-{started:%Y%m%dT%H%M%SZ}.json", "jobs")
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        inputs = build_inputs(workdir, args.jobs, args.minutes)
        print(f"inputs: {args.jobs} x {args.minutes:g} min from {inputs.source}", flush=True)
        backend_ = stack.enter_context(backend())
        (workdir / "storage").mkdir()
        config = workdir / "config.yaml"
        config.write_text(yaml.safe_dump(replica_config(args.model, backend_, workdir / "storage")))
        keys = Keys.make(list(dict(keys_spec)))
        fleet = stack.enter_context(replicas(config, workdir, keys, pin=args.pin, dedicated=args.dedicated_workers))
        timeout = args.timeout or 300 + sum(seconds for *_, seconds in inputs.files)
        # A dedicated worker runs as many jobs as the model has slots (2 in the default config); a server, 1.
        slots = len(fleet) * (2 if args.dedicated_workers else 1)
        ctx = Context(fleet, keys, names, inputs, backend_, args.probe_interval, timeout, slots)
        try:
            results = measure(ctx, args)
        finally:
            for replica in fleet:
                shutil.copyfile(replica.log_path, out.with_suffix(f".replica{replica.index}.log"))
                worker_log = replica.log_path.with_suffix(".worker.log")
                if worker_log.is_file():
                    shutil.copyfile(worker_log, out.with_suffix(f".replica{replica.index}.worker.log"))
    report = {
        "benchmark": "jobs",
        "started_at": started.isoformat(timespec="seconds"),
        "commit": git_commit(),
        "model": args.model,
        "jobs": args.jobs,
        "minutes": args.minutes,
        "keys": dict(keys_spec),
        "key_of_job": names,
        "pinned": args.pin,
        "dedicated_workers": args.dedicated_workers,
        "probe_interval_s": args.probe_interval,
        "inputs": inputs.source,
        "latency_limit": LATENCY_LIMIT,
        **results,
        "machine": machine_info(available_cores(), {"before": load_before, "after": load_average()}),
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    text, markdown = tables(results["rows"])
    out.with_suffix(".md").write_text(f"{title(args, inputs)}\n\n{markdown}\n")
    print(f"\n{title(args, inputs)}\n\n{text}\n\nresults: {out} (table: {out.with_suffix('.md')}, replica logs beside)")
    return 0


def title(args: argparse.Namespace, inputs: Inputs) -> str:
    pinned = "each replica pinned to one core" if args.pin else "replicas unpinned"
    workers = "a dedicated worker process (nice 10)" if args.dedicated_workers else "1 job worker in the server"
    return (
        f"model {args.model}; {args.jobs} jobs x {args.minutes:g} min ({inputs.source}), keys {args.keys}; "
        f"2 replicas, each with {workers}, {pinned}; probe: {PROBE_SECONDS:g}-s clip every {args.probe_interval:g} s"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base", help="local model served (alias whisper-1 -> it); default base")
    parser.add_argument("--jobs", type=int, default=20, help="jobs per run (default 20)")
    parser.add_argument("--minutes", type=float, default=5.0, help="minutes of audio per job (default 5)")
    parser.add_argument(
        "--keys", default="a:12,b:5,c:3", help="keys and their share of the jobs (default a:12,b:5,c:3)"
    )
    parser.add_argument("--skip-sync", action="store_true", help="leave out the synchronous path")
    parser.add_argument("--skip-kill", action="store_true", help="leave out the run with a replica killed")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="pin replica i to core i with taskset (default on: two 1-core machines)")  # fmt: skip
    parser.add_argument(
        "--dedicated-workers",
        action="store_true",
        help="each replica: a server that runs no jobs (jobs.workers 0) and `python -m app worker` beside it",
    )
    parser.add_argument(
        "--probe-interval",
        type=float,
        default=3.0,
        help="seconds between interactive probes; 0: none (throughput alone)",
    )
    parser.add_argument("--timeout", type=float, help="longest wait for a run's jobs (default: 300 s + audio length)")
    parser.add_argument(
        "--out", type=Path, help="folder for jobs-<time>.json, .md and the replica logs (default: bench/results)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
