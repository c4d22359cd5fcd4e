"""Live transcription latency and capacity: real recordings streamed at real time into /v1/realtime.

Each session streams one recording at 1x real time (100 ms appends on an absolute clock) through the
openai SDK's realtime client, with server VAD and the default delay, and records per turn:

* first delta: wall time from ``speech_started`` to the turn's first delta (turns over 3 s);
* completion: wall time from ``speech_stopped`` to ``...transcription.completed``;

and, per run, the server process's CPU seconds per second of audio streamed. Per model, each
recording is first streamed alone (latency), then 2 to ``--max-sessions`` sessions run at once,
session *i* on the *i*-th recording in turn (capacity); a run "keeps real time" when every turn
completed and the p95 completion is under 2 s. Recordings: the 35-s Harvard sentences (telephone
band, pauses between sentences), the radio phone-in call and the VoxConverse excerpt.

    .venv/bin/python -m bench.realtime                     # tiny.en and base, alone then 2-4 sessions
    .venv/bin/python -m bench.realtime --models base --max-sessions 2
    .venv/bin/python -m bench.realtime --models base --sessions 8    # one capacity level
    .venv/bin/python -m bench.realtime --translate                   # translation (bench/realtime_translation.py)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from openai import AsyncOpenAI

from app.settings import PROJECT_ROOT
from bench import realtime_translation
from bench.common import (
    BenchError,
    audio_dir,
    bench_main,
    busy_warning,
    git_commit,
    load_average,
    machine_info,
    process_cpu_seconds,
    results_file,
    run_server,
    server_config,
)
from bench.concurrency.profile import batch_profile, read_batch_metrics
from bench.concurrency.rows import Profile
from bench.speech import wer
from bench.stats import percentile
from bench.tables import render_table
from engines.audio import decode_audio
from engines.cores import available_cores

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
RECORDINGS = ("en_osr_harvard72_8k.wav", "diar_pyaudioanalysis_radio4spk.wav", "diar_voxconverse_gwtwd.wav")
LABELS = {RECORDINGS[0]: "harvard", RECORDINGS[1]: "phone call", RECORDINGS[2]: "voxconverse"}
CHUNK_SECONDS = 0.1
TAIL_SECONDS = 1.5  # silence after each recording, so its last turn ends
TARGET_P95_SECONDS = 2.0
LONG_TURN_SECONDS = 3.0
DRAIN_TIMEOUT_SECONDS = 60.0


@dataclass
class Turn:
    started: float | None = None
    stopped: float | None = None
    first_delta: float | None = None
    completed: float | None = None
    audio_ms: int = 0
    transcript: str = ""


@dataclass
class SessionResult:
    recording: str
    turns: dict[str, Turn] = field(default_factory=dict)

    @property
    def transcript(self) -> str:
        return " ".join(t.transcript for t in self.turns.values() if t.transcript)


def pcm24(path: Path) -> bytes:
    audio = decode_audio(path.read_bytes(), sample_rate=24_000)
    audio = np.concatenate([audio, np.zeros(int(24_000 * TAIL_SECONDS), np.float32)])
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


async def one_session(
    client: AsyncOpenAI, model: str, recording: str, data: bytes, start_delay: float
) -> SessionResult:
    result = SessionResult(recording)
    await asyncio.sleep(start_delay)
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        await conn.session.update(
            session={"type": "transcription", "audio": {"input": {"transcription": {"model": model}}}}
        )
        chunk = int(48_000 * CHUNK_SECONDS)

        async def send() -> None:
            begin = time.perf_counter()
            for n, i in enumerate(range(0, len(data), chunk)):
                await conn.input_audio_buffer.append(audio=base64.b64encode(data[i : i + chunk]).decode())
                await asyncio.sleep(max(0.0, begin + (n + 1) * CHUNK_SECONDS - time.perf_counter()))

        sender = asyncio.create_task(send())
        sent_at: float | None = None
        while True:
            try:
                event: Any = await asyncio.wait_for(conn.recv(), timeout=1.0)
            except TimeoutError:
                event = None
            now = time.perf_counter()
            kind = "" if event is None else event.type
            item = getattr(event, "item_id", None)
            if kind == "input_audio_buffer.speech_started" and item:
                result.turns[item] = Turn(started=now, audio_ms=-event.audio_start_ms)
            elif kind == "input_audio_buffer.speech_stopped" and item in result.turns:
                turn = result.turns[item]
                turn.stopped, turn.audio_ms = now, turn.audio_ms + event.audio_end_ms
            elif kind.endswith("transcription.delta") and item in result.turns:
                turn = result.turns[item]
                turn.first_delta = turn.first_delta or now
            elif kind.endswith("transcription.completed") and item in result.turns:
                turn = result.turns[item]
                turn.completed, turn.transcript = now, event.transcript
            if sender.done():
                sent_at = sent_at or now
                open_turns = [t for t in result.turns.values() if t.completed is None]
                if not open_turns or now - sent_at > DRAIN_TIMEOUT_SECONDS:
                    break
        await sender
    return result


@dataclass
class Level:
    model: str
    sessions: int
    results: list[SessionResult]
    audio_seconds: float
    cpu_seconds: float
    wall_seconds: float

    def turns(self) -> list[Turn]:
        return [t for r in self.results for t in r.turns.values()]

    @classmethod
    def pooled(cls, levels: Sequence[Level]) -> Level:
        """Several runs of one level as one: every session's turns, the CPU and audio summed."""
        first = levels[0]
        return cls(
            first.model,
            first.sessions,
            [r for level in levels for r in level.results],
            sum(level.audio_seconds for level in levels),
            sum(level.cpu_seconds for level in levels),
            sum(level.wall_seconds for level in levels),
        )

    def completion(self) -> list[float]:
        return [t.completed - t.stopped for t in self.turns() if t.completed and t.stopped]

    def first_delta(self) -> list[float]:
        return [
            t.first_delta - t.started
            for t in self.turns()
            if t.first_delta and t.started and t.audio_ms > LONG_TURN_SECONDS * 1000
        ]

    @property
    def all_completed(self) -> bool:
        return all(t.completed is not None for t in self.turns())

    @property
    def keeps_real_time(self) -> bool:
        p95 = percentile(self.completion(), 95)
        return self.all_completed and p95 is not None and p95 < TARGET_P95_SECONDS

    def row(self) -> dict[str, Any]:
        completion, first = self.completion(), self.first_delta()
        return {
            "model": self.model,
            "sessions": self.sessions,
            "turns": len(self.turns()),
            "incomplete_turns": sum(t.completed is None for t in self.turns()),
            "first_delta_p50_s": percentile(first, 50),
            "first_delta_p95_s": percentile(first, 95),
            "completion_p50_s": percentile(completion, 50),
            "completion_p95_s": percentile(completion, 95),
            "cpu_s_per_audio_s": self.cpu_seconds / self.audio_seconds,
            "keeps_real_time": self.keeps_real_time,
            "transcripts": {r.recording: r.transcript for r in self.results},
            "turn_details": [
                {
                    "recording": r.recording,
                    "audio_s": t.audio_ms / 1000,
                    "first_delta_s": None if not (t.first_delta and t.started) else round(t.first_delta - t.started, 3),
                    "completed_s": None if not (t.completed and t.stopped) else round(t.completed - t.stopped, 3),
                }
                for r in self.results
                for t in r.turns.values()
            ],
        }


async def run_level(
    base_url: str, pid: int, model: str, sessions: int, audio: dict[str, bytes], only: str | None = None
) -> Level:
    """``sessions`` concurrent sessions, each on the next recording in turn (or all on ``only``)."""
    client = AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    names = [only or RECORDINGS[i % len(RECORDINGS)] for i in range(sessions)]
    cpu_before, wall_before = process_cpu_seconds(pid), time.perf_counter()
    results = await asyncio.gather(
        *(one_session(client, model, name, audio[name], start_delay=0.37 * i) for i, name in enumerate(names))
    )
    seconds = sum(len(audio[name]) / 48_000 for name in names)
    return Level(model, sessions, list(results), seconds, process_cpu_seconds(pid) - cpu_before,
                 time.perf_counter() - wall_before)  # fmt: skip


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["model", "sessions", "recordings", "turns", "first delta p50/p95 s", "completed p50/p95 s",
               "CPU s / audio s", "batch enc/gen", "keeps real time"]  # fmt: skip
    cells = [
        [
            row["model"], str(row["sessions"]), row["recordings"], f"{row['turns']} ({row['incomplete_turns']} open)",
            f"{fmt(row['first_delta_p50_s'])} / {fmt(row['first_delta_p95_s'])}",
            f"{fmt(row['completion_p50_s'])} / {fmt(row['completion_p95_s'])}",
            fmt(row["cpu_s_per_audio_s"]), batch_means(row.get("batch_mean")),
            "yes" if row["keeps_real_time"] else "no",
        ]
        for row in rows
    ]  # fmt: skip
    return render_table(headers, cells)


def level_row(level: Level, directory: Path, profile: Profile | None, label: str) -> dict[str, Any]:
    """A capacity level's table row, with its batch sizes and the Harvard sessions' WER."""
    recordings = ", ".join(LABELS[r.recording] for r in level.results[: level.sessions])
    row = level.row() | {"recordings": recordings + label}
    row["batch_mean"] = None if profile is None else dict(profile.batch_mean)
    row["harvard_wer"] = next(
        (wer_of(directory / "en_osr_harvard72_8k.txt", r.transcript)
         for r in level.results if r.recording == RECORDINGS[0]), None)  # fmt: skip
    return row


def batch_means(means: dict[str, float] | None) -> str:
    """Mean batch sizes of the encoder and decoder calls over a level ("-" when the model does not batch)."""
    if not means:
        return "-"
    return f"{fmt(means.get('encode'), 1)}/{fmt(means.get('generate'), 1)}"


def wer_of(reference_path: Path, text: str) -> float | None:
    if not reference_path.is_file():
        return None
    return wer(reference_path.read_text(), text)


def run(args: argparse.Namespace) -> int:
    if args.translate:
        return realtime_translation.run(args)
    directory = audio_dir()
    missing = [name for name in RECORDINGS if not (directory / name).is_file()]
    if missing:
        raise BenchError(f"missing recordings in {directory}: {', '.join(missing)}")
    audio = {name: pcm24(directory / name) for name in RECORDINGS}
    load_before = load_average()
    warning = busy_warning(load_before)
    if warning:
        print(warning, file=sys.stderr)
    config = server_config(args.models, json.loads(args.model_settings))
    config["aliases"] = {"gpt-realtime-whisper": {"model": args.models[0], "usage": "tokens"}}
    rows: list[dict[str, Any]] = []
    out = results_file(args.out, "realtime")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config_path = workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        env = {"STT_MODEL_CACHE_DIR": str(PROJECT_ROOT / "var" / "models"), "STT_LEDGER_URL": "sqlite://"}
        with run_server(config_path, workdir, preload=args.models[0], env=env) as server:
            for model in args.models:
                asyncio.run(
                    run_level(
                        f"{server.base_url}/v1",
                        server.process.pid,
                        model,
                        1,
                        {n: a[: 48_000 * 3] for n, a in audio.items()},
                    )
                )  # warm-up; fmt: skip
                # Latency: each recording alone in one session. Capacity: 2, 3, ... sessions at once.
                for name in RECORDINGS if args.sessions is None else ():
                    level = asyncio.run(run_level(f"{server.base_url}/v1", server.process.pid, model, 1, audio, name))
                    row = level.row() | {"recordings": f"{LABELS[name]} alone"}
                    rows.append(row)
                    print(table([row]).splitlines()[-1], flush=True)
                for sessions in args.sessions or range(2, args.max_sessions + 1):
                    runs = []
                    for run_index in range(args.repeat):
                        metrics_before = read_batch_metrics(server.base_url)
                        level = asyncio.run(
                            run_level(
                                f"{server.base_url}/v1", server.process.pid, model, sessions, audio, args.recording
                            )
                        )
                        profile = batch_profile(metrics_before, read_batch_metrics(server.base_url))
                        label = "" if args.repeat == 1 else f" (run {run_index + 1} of {args.repeat})"
                        rows.append(level_row(level, directory, profile, label))
                        print(table([rows[-1]]).splitlines()[-1], flush=True)
                        runs.append(level)
                    if args.repeat > 1:
                        # Single runs of one level scatter widely: every turn of every run in one row.
                        level = Level.pooled(runs)
                        rows.append(level_row(level, directory, None, f" (all {args.repeat} runs pooled)"))
                        print(table([rows[-1]]).splitlines()[-1], flush=True)
                    if not level.keeps_real_time and not args.all_levels:
                        break
            # The server's log holds each session's decode counts (live, speculative, final, waits).
            shutil.copyfile(server.log_path, out.with_suffix(".log"))
    print()
    print(table(rows))
    load_after = load_average()
    out.write_text(json.dumps({
        "benchmark": "realtime", "commit": git_commit(), "rows": rows,
        "machine": machine_info(available_cores(), {"before": load_before, "after": load_after}),
    }, indent=2))  # fmt: skip
    print(f"\nresults: {out} (server log: {out.with_suffix('.log')})")
    return 0


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"], help="local models (embedded) to run")
    parser.add_argument("--max-sessions", type=int, default=4, help="most concurrent sessions tried per model")
    parser.add_argument(
        "--sessions", type=int, nargs="+", help="only these capacity levels (no recordings alone), e.g. --sessions 8"
    )
    parser.add_argument("--recording", choices=RECORDINGS, help="every capacity session on this recording")
    parser.add_argument(
        "--model-settings",
        default="{}",
        help='JSON of models.<id> keys to change, e.g. \'{"batching": true, "max_concurrency": 16}\'',
    )
    parser.add_argument(
        "--repeat", type=positive, default=1, help="runs of each capacity level, then one row of all their turns pooled"
    )
    parser.add_argument("--all-levels", action="store_true", help="keep going after a level misses real time")
    parser.add_argument("--out", type=Path, help="JSON results file (default: bench/results/realtime-<time>.json)")
    parser.add_argument(
        "--translate", action="store_true", help="translation sessions instead: first and last delta, 1 and 3 sessions"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
