"""Serving a team: one table of throughput, cost, latency, memory and transcripts for every way of running a model.

Every row decodes the same clips with the same model, beam size (the server's, 5 by default) and compute type,
on ``--threads`` CPU threads in all (default: the available cores, 2 on the reference machine):

* ``floor``: Whisper called in this process, one clip after the other, on 1 thread. Its transcripts are the
  reference of every other row's WER (so is its transcript of the mixed-load inputs, taken untimed).
* ``floor-wide``: the same on all the threads.
* ``side``: one in-process 1-thread worker per thread (one model, ``num_workers`` = threads), side by side;
  worker k takes clips k, k + workers, … one after the other.
* ``unbatched-wide`` / ``unbatched-split``: the real server (``python -m app serve``) through the openai SDK,
  each request decoded alone, in one slot of all the threads / one 1-thread slot per thread
  (``max_concurrency``, ``cpu_threads``), at ``--unbatched-levels`` clients (default 1 and 8).
* ``batched-wide`` / ``batched-split``: the server with ``batching: true`` (``max_concurrency`` 16): one batch
  worker of all the threads / one 1-thread batch worker per thread (``batch_workers``), at ``--levels``
  clients (default 1, 2, 4, 8, 16). Client k sends clips k, k + clients, … one after the other. On CPU the
  decoder calls are batched and the encoder forwards are not (``max_encoder_batch_size`` defaults to 1 there);
  ``batched-wide-enc`` / ``batched-split-enc`` batch the encoder forwards too (``max_encoder_batch_size`` 8).
* ``mixed``: on each server layout, the two longest recordings sent at once, and meanwhile a stream of ~5-s
  clips, one every ``--mixed-interval`` seconds; latency percentiles are the short clips'.

Columns: audio seconds per wall second; CPU seconds per audio second (the server process's for server rows,
this process's for in-process rows: less blurred than wall time by other work on a shared machine); p50 and
p95 per-request latency; peak RSS; WER against the 1-thread floor; and where the time goes: the mean batch
size and the encoder and decoder shares of the time spent in CTranslate2 (in-process rows: timed around the
model's calls; batched server rows: from the deltas of ``stt_batch_size`` and ``stt_batch_busy_seconds_total``
on /metrics). Decision lines follow the table: batched throughput at 8 clients against the side-by-side
workers, a lone request batched against unbatched, whether any transcript changed, and the best layout
against the configured default.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jiwer
import numpy as np
import yaml
from faster_whisper import BatchedInferencePipeline
from openai import APIStatusError, OpenAI, OpenAIError
from prometheus_client.parser import text_string_to_metric_families

from app.api.errors import APIError
from app.serving.protocol import AudioRequest
from app.settings import DEFAULT_CONFIG, PROJECT_ROOT, ModelConfig, Settings, load_settings
from bench.common import (
    BenchError,
    audio_dir,
    bench_main,
    busy_warning,
    git_commit,
    load_average,
    long_file_sources,
    machine_info,
    own_cpu_seconds,
    process_cpu_seconds,
    process_peak_rss_mib,
    render_table,
    run_server,
    server_service,
    whisper_engine,
    write_wav,
)
from engines.audio import SAMPLE_RATE, Samples, decode_audio
from engines.cores import available_cores
from engines.types import DecodeOptions
from engines.vad import VadParams, group_regions, speech_regions
from engines.whisper.engine import WhisperEngine
from engines.whisper.loading import resolve_device

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
T = TypeVar("T")
DEFAULT_LEVELS = (1, 2, 4, 8, 16)
DEFAULT_UNBATCHED_LEVELS = (1, 8)
TARGET_CLIENTS = 8  # the level the throughput target and the best layout are judged at
DEFAULT_CLIPS = 16
DEFAULT_MAX_QUEUE = 64
BATCHED_MAX_CONCURRENCY = 16  # with batching, requests decoding at once: at least the most clients
CLIP_MIN_SECONDS = 4.5
CLIP_MAX_SECONDS = 15.0
# Cut the longer recordings at pauses: speech regions joined into chunks of at most CLIP_MAX_SECONDS.
CLIP_VAD = VadParams(threshold=0.5, silence_duration_ms=300, prefix_padding_ms=200, max_chunk_seconds=CLIP_MAX_SECONDS)
# The mixed load's short clips: pieces of about 5 s.
SHORT_MIN_SECONDS = 4.0
SHORT_MAX_SECONDS = 6.5
SHORT_VAD = VadParams(
    threshold=0.5, silence_duration_ms=300, prefix_padding_ms=200, max_chunk_seconds=SHORT_MAX_SECONDS
)
MIXED_LONG_FILES = 2
DEFAULT_MIXED_SHORT = 8
DEFAULT_MIXED_INTERVAL = 2.5
MIXED_SHORT_START = 0.5  # the long files are admitted first
CLIENT_TIMEOUT_SECONDS = 1800
BUSY_SAMPLE_SECONDS = 2.0
# Bounds of the lines under the table (from the issue): batched 8-client throughput against the side-by-side
# in-process workers, and a lone request batched against unbatched.
THROUGHPUT_TARGET = 1.3
LONE_REQUEST_TARGET = 1.05
# The CTranslate2 calls faster-whisper makes, timed in-process and counted by the server's batch workers.
OPS = ("encode", "generate", "align", "detect_language")

# Synthetic sentences (espeak-ng) fill the clip set up to --clips: about 8–14 s each at 165 words per minute.
SENTENCES = (
    "The quarterly report was finished late on Friday, so the team reviewed the numbers again on Monday "
    "morning before sending it to the board.",
    "Please remember to water the tomato plants twice a week while we are away, and keep the greenhouse "
    "door closed at night.",
    "Our train left the station ten minutes behind schedule, but the driver made up the time before we "
    "reached the coast.",
    "The new library opens at nine o'clock and offers free workshops on photography, cooking and "
    "computer programming for beginners.",
    "She packed a warm jacket, two maps and a small torch, because the mountain weather can change "
    "without any warning.",
    "After the storm the fishermen repaired their nets on the beach and talked about the price of fuel "
    "and the size of the catch.",
    "The museum guide explained how the old clock was built, and why it still loses about one minute "
    "every single week.",
    "If the printer jams again, open the side panel, remove the crumpled paper gently and restart the "
    "machine before printing.",
    "Twelve students volunteered to clean the river bank on Saturday, and they collected more than forty "
    "bags of rubbish.",
    "The bakery on the corner sells fresh bread every morning, and by noon the shelves are usually completely empty.",
    "During the meeting we agreed to move the release to next month and to spend the extra time on "
    "testing and documentation.",
    "A thin layer of snow covered the garden, and the children built a crooked snowman with a carrot for a nose.",
    "The pilot announced that we would land in twenty minutes, and asked everyone to fasten their seat "
    "belts and stay seated.",
    "Most of the old houses in the village have thick stone walls that keep them cool in summer and warm in winter.",
)
VOICES = ("en-us", "en+m3", "en+f3", "en-gb", "en-us+f2", "en-gb-scotland", "en-029")
ESPEAK_WORDS_PER_MINUTE = 165


# --- clips ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """One distinct input: 16 kHz mono 16-bit WAV bytes (what is uploaded) and where it came from.

    ``role``: ``clip`` (the rows' clip set), ``long`` or ``short`` (the mixed load's inputs).
    """

    index: int
    name: str
    source: str
    data: bytes
    seconds: float
    reference: str | None = None  # the text espeak-ng spoke; None for recordings
    role: str = "clip"

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "role": self.role,
            "name": self.name,
            "source": self.source,
            "seconds": round(self.seconds, 3),
            "reference": self.reference,
        }


def _wav_bytes(samples: Samples, path: Path) -> bytes:
    write_wav(path, samples)
    return path.read_bytes()


def cut_recordings(
    paths: Sequence[Path], vad: VadParams, min_seconds: float, max_seconds: float
) -> list[tuple[str, str, Samples]]:
    """Recordings of ``min_seconds`` to ``max_seconds`` whole, longer ones cut at pauses into pieces in that range."""
    found: list[tuple[str, str, Samples]] = []
    for path in paths:
        audio = decode_audio(path.read_bytes())
        seconds = audio.size / SAMPLE_RATE
        if seconds <= max_seconds:
            if seconds >= min_seconds:
                found.append((path.stem, path.name, audio))
            continue
        chunks = group_regions(speech_regions(audio, vad), max_seconds)
        for number, chunk in enumerate(c for c in chunks if c.length >= min_seconds * SAMPLE_RATE):
            start, end = chunk.start / SAMPLE_RATE, chunk.end / SAMPLE_RATE
            found.append(
                (
                    f"{path.stem}_part{number + 1}",
                    f"{path.name} {start:.1f}-{end:.1f} s",
                    audio[chunk.start : chunk.end],
                )
            )
    return found


def recording_clips(directory: Path) -> list[tuple[str, str, Samples]]:
    """English recordings up to CLIP_MAX_SECONDS whole, longer ones cut at pauses into ≤15 s pieces."""
    return cut_recordings(long_file_sources(directory), CLIP_VAD, CLIP_MIN_SECONDS, CLIP_MAX_SECONDS)


def synthetic_clips(count: int, workdir: Path) -> list[tuple[str, str, Samples, str]]:
    """``count`` sentences spoken by espeak-ng in turn by different voices (none without espeak-ng)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None or count <= 0:
        return []
    found: list[tuple[str, str, Samples, str]] = []
    for number, text in enumerate(SENTENCES[:count]):
        voice = VOICES[number % len(VOICES)]
        target = workdir / f"espeak_{number + 1:02d}.wav"
        command = [espeak, "-v", voice, "-s", str(ESPEAK_WORDS_PER_MINUTE), "-w", str(target), text]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not target.is_file():
            raise BenchError(f"espeak-ng failed for voice {voice}: {result.stderr.strip()[-300:]}")
        audio = decode_audio(target.read_bytes())[: int(CLIP_MAX_SECONDS * SAMPLE_RATE)]
        found.append((f"espeak_{number + 1:02d}", f"espeak-ng -v {voice}", audio, text))
    return found


def build_clips(directory: Path, workdir: Path, count: int) -> list[Clip]:
    """``count`` distinct clips: recordings and synthetic sentences, alternating while both last."""
    recorded = recording_clips(directory)
    synthetic = synthetic_clips(max(0, count - len(recorded)) + count // 2, workdir)
    ordered: list[tuple[str, str, Samples, str | None]] = []
    rec_iter, syn_iter = iter(recorded), iter(synthetic)
    while len(ordered) < count:
        before = len(ordered)
        # Two recordings for every synthetic sentence while both kinds remain.
        for _ in range(2):
            item = next(rec_iter, None)
            if item is not None and len(ordered) < count:
                ordered.append((*item, None))
        spoken = next(syn_iter, None)
        if spoken is not None and len(ordered) < count:
            ordered.append(spoken)
        if len(ordered) == before:
            break
    if len(ordered) < count:
        print(f"note: only {len(ordered)} distinct clips could be built (asked for {count})", flush=True)
    if not ordered:
        raise BenchError(f"no clips of {CLIP_MIN_SECONDS}–{CLIP_MAX_SECONDS} s could be built from {directory}")
    clips = []
    for index, (name, source, audio, reference) in enumerate(ordered):
        data = _wav_bytes(audio, workdir / f"clip_{index:02d}_{name}.wav")
        clips.append(Clip(index, name, source, data, audio.size / SAMPLE_RATE, reference))
    return clips


def build_mixed_inputs(directory: Path, workdir: Path, first_index: int, shorts: int) -> tuple[list[Clip], list[Clip]]:
    """The mixed load's inputs: the MIXED_LONG_FILES longest recordings, and up to ``shorts`` ~5-s pieces of the
    others (cut at pauses). Indices continue after the clip set's, so one table of floor transcripts covers all."""
    sources = long_file_sources(directory)
    decoded = {path: decode_audio(path.read_bytes()) for path in sources}
    longest = sorted(sources, key=lambda p: decoded[p].size, reverse=True)[:MIXED_LONG_FILES]
    if len(longest) < MIXED_LONG_FILES:
        raise BenchError(f"the mixed load needs {MIXED_LONG_FILES} recordings in {directory}")
    rest = [p for p in sources if p not in longest]
    pieces = cut_recordings(rest, SHORT_VAD, SHORT_MIN_SECONDS, SHORT_MAX_SECONDS)[:shorts]
    if not pieces:
        raise BenchError(f"no clips of {SHORT_MIN_SECONDS}–{SHORT_MAX_SECONDS} s could be cut from {directory}")
    longs: list[Clip] = []
    for number, path in enumerate(longest):
        audio = decoded[path]  # mixed down to mono, as every clip is uploaded
        index = first_index + number
        data = _wav_bytes(audio, workdir / f"long_{number}_{path.stem}.wav")
        longs.append(Clip(index, path.stem, path.name, data, audio.size / SAMPLE_RATE, role="long"))
    short_clips: list[Clip] = []
    for number, (name, source, audio) in enumerate(pieces):
        index = first_index + len(longs) + number
        data = _wav_bytes(audio, workdir / f"short_{number:02d}_{name}.wav")
        short_clips.append(Clip(index, name, source, data, audio.size / SAMPLE_RATE, role="short"))
    return longs, short_clips


# --- measurements -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipResult:
    """One request's transcript and timings within one row."""

    clip: int
    text: str
    latency_s: float  # from sending the request (in-process: calling transcribe) to the whole answer
    sent_at_s: float = 0.0  # from the start of the row
    streamed: bool = False
    first_delta_s: float | None = None
    deltas: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "clip": self.clip,
            "latency_s": round(self.latency_s, 4),
            "sent_at_s": round(self.sent_at_s, 4),
        }
        if self.streamed:
            out["streamed"] = True
            out["first_delta_s"] = None if self.first_delta_s is None else round(self.first_delta_s, 4)
            out["deltas"] = self.deltas
        if self.error is not None:
            out["error"] = self.error
        out["text"] = self.text
        return out


@dataclass(frozen=True)
class Profile:
    """Where a row's decoding time went: seconds inside each CTranslate2 call (summed over the workers that
    ran at once), and the mean batch size of each (server batch workers only)."""

    busy_s: Mapping[str, float]
    batch_mean: Mapping[str, float] = field(default_factory=dict)

    def share(self, op: str) -> float | None:
        total = sum(self.busy_s.values())
        return self.busy_s.get(op, 0.0) / total if total > 0 else None

    def as_dict(self) -> dict[str, object]:
        return {
            "busy_s": {op: round(s, 4) for op, s in self.busy_s.items()},
            "share": {op: _round(self.share(op)) for op in self.busy_s},
            "batch_mean": {op: round(m, 3) for op, m in self.batch_mean.items()},
        }


@dataclass
class Row:
    """Every input of a row once, in one configuration: in-process or through the server."""

    key: str  # the layout: floor, floor-wide, side, pipeline, unbatched-wide, …
    label: str
    kind: str  # "in-process", "server" or "mixed"
    clients: int  # concurrent clients or workers (mixed: the long files; pipeline: the batch size)
    wall_s: float
    cpu_s: float  # in-process: this process; server: the server process
    peak_rss_mib: float
    peak_rss_reset: bool  # the peak was reset before the row (else it covers everything before)
    load_after: list[float]
    results: list[ClipResult] = field(default_factory=list)
    profile: Profile | None = None
    shorts: int = 0  # mixed: the short requests sent

    def ok(self) -> list[ClipResult]:
        return [r for r in self.results if r.error is None]


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None


_PUNCTUATION = re.compile(r"[^\w\s']")


def normalize_text(text: str) -> str:
    """Lower case, punctuation dropped (apostrophes kept), single spaces: what WER is computed on."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def corpus_wer(references: Mapping[int, str], hypotheses: Sequence[tuple[int, str]]) -> float | None:
    """Word error rate of ``(clip, text)`` hypotheses against the clips' references (non-empty ones only).

    A list, not a mapping: the mixed load sends some short clips more than once, and each answer counts.
    """
    pairs = [(normalize_text(references[k]), normalize_text(text)) for k, text in hypotheses if k in references]
    pairs = [(ref, hyp) for ref, hyp in pairs if ref]
    if not pairs:
        return None
    return float(jiwer.wer([ref for ref, _ in pairs], [hyp for _, hyp in pairs]))


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's VmHWM to its current RSS (``echo 5 > /proc/<pid>/clear_refs``); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# --- where the time goes ----------------------------------------------------------------------------------


class TimedModel:
    """The CTranslate2 model with its ``OPS`` calls timed; everything else passes through."""

    def __init__(self, inner: Any, busy: dict[str, float], lock: threading.Lock) -> None:
        self._inner = inner
        self._busy = busy
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in OPS or not callable(value):
            return value

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                with self._lock:
                    self._busy[name] += elapsed

        return timed


@contextmanager
def timed_ops(engine: WhisperEngine) -> Iterator[dict[str, float]]:
    """Seconds spent in each CTranslate2 call of ``engine`` while the block runs (all threads together)."""
    busy = dict.fromkeys(OPS, 0.0)
    original = engine.model.model
    engine.model.model = TimedModel(original, busy, threading.Lock())
    try:
        yield busy
    finally:
        engine.model.model = original


BATCH_SIZE_SUM = "stt_batch_size_sum"
BATCH_SIZE_COUNT = "stt_batch_size_count"
BATCH_BUSY = "stt_batch_busy_seconds_total"

Metrics = dict[str, dict[str, float]]


def parse_batch_metrics(text: str) -> Metrics:
    """The batch workers' samples in a /metrics answer: {sample name: {op: value}}, summed over the models."""
    found: Metrics = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (BATCH_SIZE_SUM, BATCH_SIZE_COUNT, BATCH_BUSY):
                by_op = found.setdefault(sample.name, {})
                op = sample.labels.get("op", "")
                by_op[op] = by_op.get(op, 0.0) + float(sample.value)
    return found


def batch_profile(before: Metrics, after: Metrics) -> Profile | None:
    """What the batch workers did between two /metrics readings; None when the server has no batch metrics."""
    if BATCH_BUSY not in after:
        return None

    def delta(name: str, op: str) -> float:
        return after.get(name, {}).get(op, 0.0) - before.get(name, {}).get(op, 0.0)

    ops = [*OPS, *sorted(set(after[BATCH_BUSY]) - set(OPS))]
    busy = {op: delta(BATCH_BUSY, op) for op in ops}
    means = {op: delta(BATCH_SIZE_SUM, op) / delta(BATCH_SIZE_COUNT, op) for op in ops if delta(BATCH_SIZE_COUNT, op)}
    return Profile(busy, means)


def read_batch_metrics(base_url: str) -> Metrics:
    """The server's batch metrics now; empty when it has none (or no /metrics)."""
    try:
        answer = httpx.get(f"{base_url}/metrics", timeout=10)
    except httpx.HTTPError:
        return {}
    return parse_batch_metrics(answer.text) if answer.status_code == 200 else {}


# --- in-process rows --------------------------------------------------------------------------------------


def transcribe_text(engine: WhisperEngine, options: DecodeOptions, data: bytes) -> str:
    """Decode the uploaded bytes and transcribe them, consuming every segment (as bench.run does)."""
    _, segments = engine.transcribe(decode_audio(data), options)
    return "".join(segment.text for segment in segments).strip()


@contextmanager
def in_process_engine(
    settings: Settings, config: Path, requested: str, model_id: str
) -> Iterator[tuple[WhisperEngine, DecodeOptions]]:
    """The model loaded as the server would load it from ``config`` (threads, workers, compute type), and the
    options of a default json request (beam size, temperatures)."""
    service = server_service(settings)
    print(f"in-process: loading model {model_id!r} ({config.parent.name}) …", flush=True)
    with service.manager.lease(model_id) as leased:
        engine = whisper_engine(leased)
        request = AudioRequest(task="transcribe", file=b"", model=requested)
        yield engine, service.decode_options(request, engine, model_id)


def in_process_row(
    key: str, label: str, engine: WhisperEngine, options: DecodeOptions, clips: Sequence[Clip], workers: int
) -> Row:
    """``workers`` threads start together; worker k transcribes clips k, k + workers, … one after the other."""
    print(f"in-process: {label.removeprefix('in-process: ')} over {len(clips)} clip(s) …", flush=True)
    plans = [list(clips[k::workers]) for k in range(workers)]
    barrier = threading.Barrier(workers + 1)
    lock = threading.Lock()
    results: list[ClipResult] = []
    row_start = [0.0]

    def worker(k: int) -> None:
        barrier.wait()
        for clip in plans[k]:
            called = time.perf_counter()
            text = transcribe_text(engine, options, clip.data)
            with lock:
                results.append(ClipResult(clip.index, text, time.perf_counter() - called, called - row_start[0]))

    threads = [threading.Thread(target=worker, args=(k,), name=f"worker-{k}") for k in range(workers)]
    with timed_ops(engine) as busy:
        for thread in threads:
            thread.start()
        reset = reset_peak_rss(os.getpid())
        cpu_start = own_cpu_seconds()
        row_start[0] = time.perf_counter()
        barrier.wait()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - row_start[0]
        cpu = own_cpu_seconds() - cpu_start
    if len(results) != len(clips):
        raise BenchError(f"{label}: a worker failed (see above)")
    return Row(
        key=key,
        label=label,
        kind="in-process",
        clients=workers,
        wall_s=wall,
        cpu_s=cpu,
        peak_rss_mib=process_peak_rss_mib(os.getpid()),
        peak_rss_reset=reset,
        load_after=load_average(),
        results=sorted(results, key=lambda r: r.clip),
        profile=Profile(dict(busy)),
    )


def pipeline_row(engine: WhisperEngine, options: DecodeOptions, clips: Sequence[Clip], batch_size: int) -> Row:
    """An extra: ``BatchedInferencePipeline`` over all clips at once, each clip one batch element.

    The clips are decoded and joined end to end; the pipeline cuts them apart again (``clip_timestamps``),
    pads each to 30 s and runs ``batch_size`` of them through the encoder and decoder together, with timestamp
    tokens as the server decodes. Temperature 0 only (the pipeline has no fallback). Latency = when the clip's
    text came out of the pipeline, from the start of the row.
    """
    label = f"in-process BatchedInferencePipeline, batch {batch_size}"
    print(f"in-process: {label} …", flush=True)
    pipeline = BatchedInferencePipeline(engine.model)
    reset = reset_peak_rss(os.getpid())
    cpu_start = own_cpu_seconds()
    start = time.perf_counter()
    audios = [decode_audio(clip.data) for clip in clips]
    offsets = np.cumsum([0, *(a.size for a in audios)])[:-1]
    starts = [float(o) / SAMPLE_RATE for o in offsets]
    stamps = [{"start": s, "end": s + a.size / SAMPLE_RATE} for s, a in zip(starts, audios, strict=True)]
    with timed_ops(engine) as busy:
        segments, _info = pipeline.transcribe(
            np.concatenate(audios),
            language=options.language,
            task="transcribe",
            beam_size=options.beam_size,
            temperature=0.0,
            clip_timestamps=stamps,
            batch_size=batch_size,
            vad_filter=False,
            without_timestamps=False,
        )
        pieces: list[list[str]] = [[] for _ in clips]
        done_at: list[float | None] = [None] * len(clips)
        for segment in segments:
            # A segment's seek is its clip's offset in 10 ms frames, truncated: it names the clip exactly.
            owner = max(0, bisect.bisect_right(starts, int(segment.seek) / 100 + 0.011) - 1)
            pieces[owner].append(str(segment.text))
            done_at[owner] = time.perf_counter() - start
    wall = time.perf_counter() - start
    results = [ClipResult(clip.index, "".join(pieces[i]).strip(), done_at[i] or wall) for i, clip in enumerate(clips)]
    return Row(
        key="pipeline",
        label=label,
        kind="in-process",
        clients=batch_size,
        wall_s=wall,
        cpu_s=own_cpu_seconds() - cpu_start,
        peak_rss_mib=process_peak_rss_mib(os.getpid()),
        peak_rss_reset=reset,
        load_after=load_average(),
        results=results,
        profile=Profile(dict(busy)),
    )


@dataclass(frozen=True)
class InProcessPlan:
    """What to run in this process, before any server starts."""

    requested: str
    model_id: str
    layouts: Mapping[str, Layout]
    wide: bool  # the floor on all the threads
    side: bool
    pipeline_batch_sizes: tuple[int, ...]
    references_of: tuple[Clip, ...]  # inputs the floor also transcribes, untimed (the mixed load's)


def _using(
    plan: InProcessPlan, configs: Mapping[str, Path], key: str, body: Callable[[WhisperEngine, DecodeOptions], T]
) -> T:
    """``body`` with the model loaded as ``configs[key]`` says; the model is freed before the next one loads, so
    each row's peak RSS is its own."""
    with in_process_engine(_load(configs[key]), configs[key], plan.requested, plan.model_id) as (engine, options):
        result = body(engine, options)
    del engine, options
    gc.collect()
    return result


def bench_in_process(
    plan: InProcessPlan, configs: Mapping[str, Path], clips: Sequence[Clip]
) -> tuple[list[Row], dict[int, str], int]:
    """The in-process rows, before any server starts; also the floor's transcripts and the beam size."""

    def measure(key: str, engine: WhisperEngine, options: DecodeOptions) -> Row:
        layout = plan.layouts[key]
        in_process_row("warm-up", "warm-up", engine, options, clips[: layout.workers], layout.workers)
        return in_process_row(key, layout.label, engine, options, clips, layout.workers)

    def floor(engine: WhisperEngine, options: DecodeOptions) -> tuple[Row, dict[int, str], int]:
        row = measure("floor", engine, options)
        references = {r.clip: r.text for r in row.results}
        if plan.references_of:
            print(f"in-process: floor transcripts of the {len(plan.references_of)} mixed-load inputs …", flush=True)
            for clip in plan.references_of:
                references[clip.index] = transcribe_text(engine, options, clip.data)
        return row, references, options.beam_size

    def wide(engine: WhisperEngine, options: DecodeOptions) -> list[Row]:
        rows = [measure("floor-wide", engine, options)] if plan.wide else []
        rows.extend(pipeline_row(engine, options, clips, size) for size in plan.pipeline_batch_sizes)
        return rows

    floor_row, references, beam_size = _using(plan, configs, "floor", floor)
    rows = [floor_row]
    if plan.wide or plan.pipeline_batch_sizes:
        rows.extend(_using(plan, configs, "floor-wide", wide))
    if plan.side:
        rows.append(_using(plan, configs, "side", lambda engine, options: measure("side", engine, options)))
    return rows, references, beam_size


# --- layouts ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """How the model under test runs: in this process or in the server, batched or not, on how many threads."""

    key: str
    label: str
    batching: bool
    workers: int  # slots (max_concurrency) or, batched, batch workers
    threads: int  # CTranslate2 threads of each
    encoder_batched: bool = False  # batched: encoder forwards batched too (the CPU default batches decoding only)

    def model_settings(self, max_batch_size: int | None, batch_wait_ms: float | None) -> dict[str, object]:
        """The ``models.<id>`` keys this layout sets in the config (the rest as configured)."""
        if not self.batching:
            # batching off even where the configured model batches by default
            return {"batching": False, "max_concurrency": self.workers, "cpu_threads": self.threads}
        batched: dict[str, object] = {
            "batching": True,
            "max_concurrency": BATCHED_MAX_CONCURRENCY,
            "batch_workers": self.workers,
            "cpu_threads": self.threads,
        }
        if max_batch_size is not None:
            batched["max_batch_size"] = max_batch_size
        if self.encoder_batched:
            batched["max_encoder_batch_size"] = max_batch_size or DEFAULT_ENCODER_BATCH
        if batch_wait_ms is not None:
            batched["batch_wait_ms"] = batch_wait_ms
        return batched


IN_PROCESS_KEYS = ("floor", "floor-wide", "side")
SERVER_KEYS = (
    "unbatched-wide",
    "unbatched-split",
    "batched-wide",
    "batched-split",
    "batched-wide-enc",
    "batched-split-enc",
)
DEFAULT_ENCODER_BATCH = 8  # the -enc layouts without --max-batch-size
MIXED = "mixed"
SELECTABLE = (*IN_PROCESS_KEYS[1:], *SERVER_KEYS, MIXED)  # the 1-thread floor always runs: it is the reference


def layouts(threads: int) -> dict[str, Layout]:
    """Every layout for ``threads`` CPU threads in all."""
    t = threads
    plural = "s" if t > 1 else ""
    return {
        "floor": Layout("floor", "floor: in-process, 1 thread", False, 1, 1),
        "floor-wide": Layout("floor-wide", f"floor: in-process, {t} thread{plural}", False, 1, t),
        "side": Layout("side", f"in-process: {t} worker{plural} x 1 thread, side by side", False, t, 1),
        "unbatched-wide": Layout("unbatched-wide", f"server unbatched: 1 slot x {t} thread{plural}", False, 1, t),
        "unbatched-split": Layout("unbatched-split", f"server unbatched: {t} slot{plural} x 1 thread", False, t, 1),
        "batched-wide": Layout("batched-wide", f"server batched: 1 worker x {t} thread{plural}", True, 1, t),
        "batched-split": Layout("batched-split", f"server batched: {t} worker{plural} x 1 thread", True, t, 1),
        "batched-wide-enc": Layout(
            "batched-wide-enc", f"server batched + encoder: 1 worker x {t} thread{plural}", True, 1, t, True
        ),
        "batched-split-enc": Layout(
            "batched-split-enc", f"server batched + encoder: {t} worker{plural} x 1 thread", True, t, 1, True
        ),
    }


def configured_layout(model: ModelConfig, threads: int, cores: int) -> str | None:
    """The key of the layout the configured model runs in (its default), if it is one of this benchmark's."""
    workers = model.batch_workers if model.batching else model.max_concurrency
    per_worker = model.cpu_threads or max(1, cores // workers)
    prefix = "batched" if model.batching else "unbatched"
    suffix = "-enc" if model.batching and (model.max_encoder_batch_size or 1) > 1 else ""
    if workers == 1 and per_worker == threads:
        return f"{prefix}-wide{suffix}"
    if workers == threads and per_worker == 1:
        return f"{prefix}-split{suffix}"
    return None


def write_server_config(
    settings: Settings, model_id: str, model_settings: Mapping[str, object], max_queue: int, workdir: Path
) -> Path:
    """A YAML config with the model under test alone (and the aliases that point at it), preloaded.

    The usage ledger goes to the temporary folder, not to the checkout's var/usage.db.
    """
    model = {**settings.models[model_id].model_dump(mode="json"), **model_settings, "max_queue": max_queue}
    kept = settings.model_dump(
        mode="json",
        include={
            "log_level",
            "log_format",
            "local_model_usage",
            "model_cache_dir",
            "offline",
            "max_upload_bytes",
            "max_form_field_bytes",
            "max_audio_seconds",
            "default_chunking_strategy",
            "vad_threshold",
            "vad_silence_duration_ms",
            "vad_prefix_padding_ms",
            "vad_max_chunk_seconds",
            "block_seconds",
            "request_timeout_seconds",
            "sse_keepalive_seconds",
        },
    )
    config = {
        **kept,
        "models": {model_id: model},
        "aliases": {
            name: alias.model_dump(mode="json") for name, alias in settings.aliases.items() if alias.model == model_id
        },
        "preload_models": [model_id],
        "ledger_url": f"sqlite:///{workdir / 'usage.db'}",
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --- server rows ------------------------------------------------------------------------------------------


def _sdk(base_url: str) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=CLIENT_TIMEOUT_SECONDS)


def send(sdk: OpenAI, model: str, clip: Clip, streamed: bool, row_start: float) -> ClipResult:
    """One request; a streamed one also times the first ``transcript.text.delta`` (from sending the request)."""
    sent = time.perf_counter()
    try:
        if not streamed:
            response = sdk.audio.transcriptions.create(model=model, file=(clip.name, clip.data), response_format="json")
            return ClipResult(clip.index, response.text.strip(), time.perf_counter() - sent, sent - row_start)
        first_delta: float | None = None
        deltas = 0
        text: str | None = None
        with sdk.audio.transcriptions.create(model=model, file=(clip.name, clip.data), stream=True) as events:
            for event in events:
                if event.type == "transcript.text.delta":
                    deltas += 1
                    if first_delta is None:
                        first_delta = time.perf_counter() - sent
                elif event.type == "transcript.text.done":
                    text = event.text
        if text is None:
            raise BenchError("the stream ended without a transcript.text.done event")
        return ClipResult(
            clip.index,
            text.strip(),
            time.perf_counter() - sent,
            sent - row_start,
            streamed=True,
            first_delta_s=first_delta,
            deltas=deltas,
        )
    except (OpenAIError, BenchError) as exc:
        status = f"HTTP {exc.status_code}: " if isinstance(exc, APIStatusError) else ""
        return ClipResult(
            clip.index, "", time.perf_counter() - sent, sent - row_start, streamed=streamed,
            error=f"{status}{exc}"[:300],
        )  # fmt: skip


def is_streamed(position: int, stream_every: int) -> bool:
    return stream_every > 0 and position % stream_every == stream_every - 1


@dataclass(frozen=True)
class Send:
    """One request of a schedule: when (from the start of the row) and which input."""

    at_s: float
    clip: Clip
    streamed: bool = False


@dataclass(frozen=True)
class Measured:
    """What a schedule took on the server."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    peak_rss_reset: bool
    results: list[ClipResult]
    profile: Profile | None


def run_schedule(base_url: str, pid: int, model: str, lanes: Sequence[Sequence[Send]]) -> Measured:
    """One thread per lane; the lanes start together and each sends its requests in order, none before its time
    (a lane's next request waits for its previous answer)."""
    sdks = [_sdk(base_url) for _ in lanes]
    barrier = threading.Barrier(len(lanes) + 1)
    lock = threading.Lock()
    results: list[ClipResult] = []
    row_start = [0.0]

    def lane(k: int) -> None:
        barrier.wait()
        for item in lanes[k]:
            delay = row_start[0] + item.at_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            result = send(sdks[k], model, item.clip, item.streamed, row_start[0])
            with lock:
                results.append(result)

    threads = [threading.Thread(target=lane, args=(k,), name=f"client-{k}") for k in range(len(lanes))]
    for thread in threads:
        thread.start()
    metrics_before = read_batch_metrics(base_url)
    reset = reset_peak_rss(pid)
    cpu_start = process_cpu_seconds(pid)
    row_start[0] = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - row_start[0]
    cpu = process_cpu_seconds(pid) - cpu_start
    peak = process_peak_rss_mib(pid)
    for sdk in sdks:
        sdk.close()
    profile = batch_profile(metrics_before, read_batch_metrics(base_url))
    ordered = sorted(results, key=lambda r: (r.sent_at_s, r.clip))
    return Measured(wall, cpu, peak, reset, ordered, profile)


def level_lanes(clips: Sequence[Clip], clients: int, stream_every: int) -> list[list[Send]]:
    """``clients`` closed-loop clients: client k sends clips k, k + clients, … one after the other."""
    return [
        [
            Send(0.0, clip, is_streamed(position, stream_every))
            for position, clip in enumerate(clips)
            if position % clients == k
        ]
        for k in range(clients)
    ]


def mixed_lanes(
    longs: Sequence[Clip], shorts: Sequence[Clip], count: int, interval_s: float, start_s: float = MIXED_SHORT_START
) -> list[list[Send]]:
    """The mixed load: every long file at t=0, each on its own client, and ``count`` short clips (cycled), the
    k-th sent at ``start_s + k * interval_s`` on a client of its own, whether or not the earlier ones are done
    (a stream of users that do not wait for each other)."""
    lanes = [[Send(0.0, clip)] for clip in longs]
    if shorts:
        lanes.extend([Send(start_s + k * interval_s, shorts[k % len(shorts)])] for k in range(count))
    return lanes


def _server_row(layout: Layout, kind: str, clients: int, measured: Measured, shorts: int = 0) -> Row:
    return Row(
        key=layout.key,
        label=f"mixed: {layout.label}" if kind == MIXED else layout.label,
        kind=kind,
        clients=clients,
        wall_s=measured.wall_s,
        cpu_s=measured.cpu_s,
        peak_rss_mib=measured.peak_rss_mib,
        peak_rss_reset=measured.peak_rss_reset,
        load_after=load_average(),
        results=measured.results,
        profile=measured.profile,
        shorts=shorts,
    )


@dataclass(frozen=True)
class MixedLoad:
    longs: tuple[Clip, ...]
    shorts: tuple[Clip, ...]
    count: int
    interval_s: float


def bench_server(
    config: Path,
    model: str,
    model_id: str,
    layout: Layout,
    clips: Sequence[Clip],
    levels: Sequence[int],
    stream_every: int,
    mixed: MixedLoad | None,
) -> tuple[list[Row], dict[str, float]]:
    """One fresh server for this layout; an untimed warm-up of every worker, each level in turn, then the mixed
    load."""
    print(f"http: {layout.label}: starting the server (preloading {model_id!r}) …", flush=True)
    with run_server(config, config.parent, preload=model_id) as server:
        pid = server.process.pid
        memory = {"startup_peak_rss_mib": process_peak_rss_mib(pid)}
        # Every slot or batch worker once, and a batch of two when batching, before anything is timed.
        warm = clips[: max(layout.workers, 2 if layout.batching else 1)]
        print(f"http: {layout.label}: warm-up ({len(warm)} at once) …", flush=True)
        run_schedule(server.base_url, pid, model, level_lanes(warm, len(warm), 0))
        if stream_every:
            with _sdk(server.base_url) as sdk:
                send(sdk, model, clips[0], True, time.perf_counter())
        memory["after_warmup_peak_rss_mib"] = process_peak_rss_mib(pid)
        rows = []
        for clients in levels:
            print(f"http: {layout.label}: {clients} concurrent client(s) …", flush=True)
            measured = run_schedule(server.base_url, pid, model, level_lanes(clips, clients, stream_every))
            rows.append(_server_row(layout, "server", clients, measured))
        if mixed is not None:
            print(
                f"http: {layout.label}: mixed load ({len(mixed.longs)} long files, {mixed.count} short clips "
                f"every {mixed.interval_s:g} s) …",
                flush=True,
            )
            lanes = mixed_lanes(mixed.longs, mixed.shorts, mixed.count, mixed.interval_s)
            measured = run_schedule(server.base_url, pid, model, lanes)
            rows.append(_server_row(layout, MIXED, len(mixed.longs), measured, mixed.count))
        memory["lifetime_peak_rss_mib"] = max([*memory.values(), *(r.peak_rss_mib for r in rows)])
    return rows, memory


# --- the machine's other load ------------------------------------------------------------------------------


def _cpu_ticks() -> dict[int, tuple[int, str]]:
    ticks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[int(entry.name)] = (int(fields[11]) + int(fields[12]), stat[stat.index("(") + 1 : stat.rindex(")")])
    return ticks


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:160]


def busy_processes(seconds: float = BUSY_SAMPLE_SECONDS, top: int = 6) -> list[dict[str, object]]:
    """The other processes using the CPU right now: % of one core over ``seconds``, busiest first."""
    before = _cpu_ticks()
    time.sleep(seconds)
    after = _cpu_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    busy = []
    for pid, (ticks, name) in after.items():
        if pid == os.getpid() or pid not in before:
            continue
        percent = 100 * (ticks - before[pid][0]) / hz / seconds
        if percent >= 5:
            busy.append({"pid": pid, "name": name, "cpu_percent": round(percent, 1), "cmdline": _cmdline(pid)})
    busy.sort(key=lambda p: float(str(p["cpu_percent"])), reverse=True)
    return busy[:top]


def describe_busy(busy: Sequence[dict[str, object]]) -> str:
    if not busy:
        return "none above 5 % of a core"
    return "; ".join(f"{p['cpu_percent']}% {str(p['cmdline'] or p['name'])[:70]}" for p in busy)


# --- the table --------------------------------------------------------------------------------------------


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def summarize(row: Row, catalog: Mapping[int, Clip], floor: Mapping[int, str]) -> dict[str, object]:
    """A row's figures; latency percentiles leave out the mixed load's long files (they have their own)."""
    ok = row.ok()
    audio = sum(catalog[r.clip].seconds for r in ok)
    timed = [r for r in ok if catalog[r.clip].role != "long"]
    longs = [r.latency_s for r in ok if catalog[r.clip].role == "long"]
    firsts = [r.first_delta_s for r in ok if r.first_delta_s is not None]
    spoken = {c.index: c.reference for c in catalog.values() if c.reference is not None}
    hypotheses = [(r.clip, r.text) for r in ok]
    profile = row.profile
    return {
        "key": row.key,
        "label": row.label,
        "kind": row.kind,
        "clients": row.clients,
        "shorts": row.shorts,
        "requests": len(row.results),
        "ok": len(ok),
        "errors": len(row.results) - len(ok),
        "http_429": sum(1 for r in row.results if r.error is not None and r.error.startswith("HTTP 429")),
        "wall_s": round(row.wall_s, 3),
        "wall_s_per_request": round(row.wall_s / len(ok), 4) if ok else None,
        "audio_s": round(audio, 3),
        "audio_s_per_wall_s": round(audio / row.wall_s, 4),
        "cpu_s": round(row.cpu_s, 3),
        "cpu_s_per_audio_s": round(row.cpu_s / audio, 4) if audio else None,
        "latency_p50_s": _round(percentile([r.latency_s for r in timed], 50)),
        "latency_p95_s": _round(percentile([r.latency_s for r in timed], 95)),
        "long_files_s": [round(s, 3) for s in longs],
        "first_delta_p50_s": _round(percentile(firsts, 50)),
        "first_delta_p95_s": _round(percentile(firsts, 95)),
        "streamed": sum(1 for r in row.results if r.streamed),
        "peak_rss_mib": round(row.peak_rss_mib, 1),
        "peak_rss_reset_before": row.peak_rss_reset,
        "wer_vs_floor": _round(corpus_wer(floor, hypotheses), 5),
        "same_text_as_floor": sum(1 for r in ok if floor.get(r.clip) == r.text),
        "wer_vs_espeak_text": _round(corpus_wer(spoken, hypotheses), 5),
        "profile": None if profile is None else profile.as_dict(),
        "load_after": row.load_after,
        "results": [r.as_dict() for r in row.results],
    }


TABLE_HEADERS = (
    "row",
    "clients",
    "audio s/s",
    "CPU s/audio s",
    "lat p50 s",
    "lat p95 s",
    "long files s",
    "peak RSS MiB",
    "WER% vs floor",
    "same text",
    "batch enc/gen",
    "encode %",
    "generate %",
    "load 1m",
)


def _cell(value: object, fmt: str) -> str:
    return "-" if not isinstance(value, int | float) else format(value, fmt)


def _pct(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{100 * value:.1f}"


def _clients(s: Mapping[str, object]) -> str:
    if s["kind"] == MIXED:
        return f"{s['clients']} long + {s['shorts']} short"
    if s["key"] == "pipeline":
        return f"batch {s['clients']}"
    return str(s["clients"])


def table_row(s: Mapping[str, object]) -> tuple[str, ...]:
    clients = _clients(s)
    if s["errors"]:
        clients += f" ({s['errors']} err)"
    profile = s["profile"]
    share: Mapping[str, object] = {}
    batch = "-"
    if isinstance(profile, dict):
        share = profile["share"]
        means = profile["batch_mean"]
        if means:
            batch = f"{_cell(means.get('encode'), '.1f')}/{_cell(means.get('generate'), '.1f')}"
    longs = s["long_files_s"]
    load = s["load_after"]
    assert isinstance(longs, list) and isinstance(load, list)
    return (
        str(s["label"]),
        clients,
        _cell(s["audio_s_per_wall_s"], ".2f"),
        _cell(s["cpu_s_per_audio_s"], ".3f"),
        _cell(s["latency_p50_s"], ".2f"),
        _cell(s["latency_p95_s"], ".2f"),
        " / ".join(f"{v:.1f}" for v in longs) or "-",
        _cell(s["peak_rss_mib"], ".0f"),
        "ref" if s["key"] == "floor" else _pct(s["wer_vs_floor"]),
        f"{s['same_text_as_floor']}/{s['requests']}",
        batch,
        _pct(share.get("encode")),
        _pct(share.get("generate")),
        f"{load[0]:.2f}",
    )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [headers, ["---"] * len(headers), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def target_level(levels: Sequence[int], unbatched_levels: Sequence[int]) -> int:
    """The client count the decisions compare at: TARGET_CLIENTS when both sweeps have it, else the most clients
    both have, else the batched sweep's most."""
    common = set(levels) & set(unbatched_levels)
    if TARGET_CLIENTS in common:
        return TARGET_CLIENTS
    return max(common) if common else max(levels)


def _rate(s: Mapping[str, object]) -> float:
    value = s["audio_s_per_wall_s"]
    return float(value) if isinstance(value, int | float) else 0.0


def _per_request(s: Mapping[str, object]) -> float:
    value = s["wall_s_per_request"]
    return float(value) if isinstance(value, int | float) else float("inf")


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def decision_lines(
    summaries: Sequence[Mapping[str, object]], target: int, default_key: str | None, labels: Mapping[str, str]
) -> list[str]:
    """The issue's targets, each on one line: batched throughput at ``target`` clients against the side-by-side
    in-process workers, a lone request batched against unbatched, unchanged transcripts, and the best layout
    against the configured default (``default_key``)."""

    def find(key: str, kind: str, clients: int | None = None) -> Mapping[str, object] | None:
        for s in summaries:
            if s["key"] == key and s["kind"] == kind and (clients is None or s["clients"] == clients):
                return s
        return None

    at = f"{target} client{'s' if target != 1 else ''}"
    lines = []
    side = find("side", "in-process")
    batched = [s for key in SERVER_KEYS if key.startswith("batched") and (s := find(key, "server", target))]
    if side is None or not batched:
        lines.append(f"throughput at {at}: not compared (no side-by-side row or no batched row)")
    else:
        for s in batched:
            ratio = _rate(s) / _rate(side) if _rate(side) else 0.0
            lines.append(
                f"throughput at {at}: {s['label']} {_rate(s):.2f} audio s/s = {ratio:.2f}x "
                f"{side['label']} ({_rate(side):.2f}); "
                f"target >= {THROUGHPUT_TARGET}: {_met(ratio >= THROUGHPUT_TARGET)}"
            )

    lone_unbatched = [s for key in SERVER_KEYS if key.startswith("unbatched") and (s := find(key, "server", 1))]
    lone_batched = [s for key in SERVER_KEYS if key.startswith("batched") and (s := find(key, "server", 1))]
    if not lone_unbatched or not lone_batched:
        lines.append("lone request: not compared (no 1-client row batched and unbatched)")
    else:
        fastest = min(lone_unbatched, key=_per_request)
        for s in lone_batched:
            ratio = _per_request(s) / _per_request(fastest)
            twin = find(str(s["key"]).replace("batched", "unbatched"), "server", 1)
            same_threads = (
                ""
                if twin is None or twin is fastest
                else f"; {_per_request(s) / _per_request(twin):.3f}x {twin['label']}"
            )
            lines.append(
                f"lone request: {s['label']} {_per_request(s):.2f} s per request = {ratio:.3f}x {fastest['label']} "
                f"({_per_request(fastest):.2f} s{same_threads}); target <= {LONE_REQUEST_TARGET}: "
                f"{_met(ratio <= LONE_REQUEST_TARGET)}"
            )

    compared = [s for s in summaries if s["key"] != "floor"]
    worse = [s for s in compared if isinstance(s["wer_vs_floor"], float) and s["wer_vs_floor"] > 0]
    differ = [s for s in compared if s["same_text_as_floor"] != s["requests"]]
    failed = [s for s in summaries if s["errors"]]
    if worse:
        listed = ", ".join(f"{s['label']} ({s['clients']} cl) {_pct(s['wer_vs_floor'])} %" for s in worse)
        lines.append(f"transcripts: WER > 0 against the 1-thread floor in {len(worse)} row(s): {listed}")
    else:
        rest = f"; {len(differ)} row(s) differ in case or punctuation only" if differ else ", every text identical"
        lines.append(f"transcripts: WER 0 against the 1-thread floor in all {len(compared)} row(s){rest}")
    if failed:
        lines.append("errors: " + ", ".join(f"{s['label']} ({s['clients']} cl) {s['errors']}" for s in failed))

    at_target = [s for key in SERVER_KEYS if (s := find(key, "server", target))]
    if at_target:
        best = max(at_target, key=_rate)
        ranking = ", ".join(f"{s['label']} {_rate(s):.2f}" for s in sorted(at_target, key=_rate, reverse=True))
        lines.append(f"best layout at {at}: {best['label']} (audio s/s: {ranking})")
        default = find(default_key, "server", target) if default_key else None
        if default_key is None:
            lines.append("the configured default layout is none of the measured ones")
        elif default is None:
            lines.append(f"the configured default ({labels[default_key]}) was not measured at {at}")
        elif default is best:
            lines.append(f"the configured default ({default['label']}) is the best measured one: yes")
        else:
            lines.append(
                f"the configured default ({default['label']}) is the best measured one: no, "
                f"{_rate(default):.2f} audio s/s against {_rate(best):.2f} ({_rate(default) / _rate(best):.2f}x)"
            )
    mixed = [s for s in summaries if s["kind"] == MIXED and isinstance(s["latency_p95_s"], float)]
    if mixed:
        quickest = min(mixed, key=lambda s: float(str(s["latency_p95_s"])))
        lines.append(
            "mixed load, short clips' p95 latency: "
            + ", ".join(f"{str(s['label']).removeprefix('mixed: ')} {s['latency_p95_s']:.2f} s" for s in mixed)
            + f"; lowest: {str(quickest['label']).removeprefix('mixed: ')}"
        )
    return lines


# --- command line -----------------------------------------------------------------------------------------


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected one or more integers of at least 1")
    return values


def _batch_sizes(text: str) -> tuple[int, ...]:
    return () if text.strip().lower() in ("", "none", "0") else _int_list(text)


def _layout_keys(text: str) -> tuple[str, ...]:
    keys = tuple(part.strip() for part in text.split(",") if part.strip())
    if "all" in keys:
        return SELECTABLE
    unknown = [k for k in keys if k not in SELECTABLE]
    if unknown:
        raise argparse.ArgumentTypeError(f"layouts are {', '.join(SELECTABLE)} (or all); got {text!r}")
    return keys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.concurrency", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="whisper-1", help="model name sent to the API: an alias or a local id")
    parser.add_argument("--clips", type=int, default=DEFAULT_CLIPS, help="distinct clips of 4.5–15 s (default 16)")
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads every row uses in all (default: the available cores)"
    )
    parser.add_argument(
        "--layouts",
        type=_layout_keys,
        default=SELECTABLE,
        help=f"rows besides the 1-thread floor (default all: {','.join(SELECTABLE)})",
    )
    parser.add_argument(
        "--levels", type=_int_list, default=DEFAULT_LEVELS, help="batched: concurrent clients (default 1,2,4,8,16)"
    )
    parser.add_argument(
        "--unbatched-levels",
        type=_int_list,
        default=DEFAULT_UNBATCHED_LEVELS,
        help="unbatched: concurrent clients (default 1,8)",
    )
    parser.add_argument(
        "--mixed-short",
        type=int,
        default=DEFAULT_MIXED_SHORT,
        help=f"mixed load: short clips sent (default {DEFAULT_MIXED_SHORT})",
    )
    parser.add_argument(
        "--mixed-interval",
        type=float,
        default=DEFAULT_MIXED_INTERVAL,
        help=f"mixed load: seconds between short clips (default {DEFAULT_MIXED_INTERVAL})",
    )
    parser.add_argument("--max-batch-size", type=int, help="batched: max_batch_size (default: the model's setting)")
    parser.add_argument("--batch-wait-ms", type=float, help="batched: batch_wait_ms (default: the model's setting)")
    parser.add_argument(
        "--stream-every", type=int, default=0, help="stream every Nth request of the sweeps (default 0: none)"
    )
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE, help="server max_queue (default 64)")
    parser.add_argument(
        "--pipeline-batch-sizes",
        type=_batch_sizes,
        default=(),
        help="extra rows: faster-whisper's BatchedInferencePipeline in-process at these batch sizes (default none)",
    )
    parser.add_argument(
        "--out", type=Path, help="JSON results file (default: bench/results/concurrency-<timestamp>.json; .md beside)"
    )
    parser.add_argument("--config", type=Path, help="server YAML config (default: $STT_CONFIG or configs/default.yaml)")
    return parser


def _load(config: Path) -> Settings:
    try:
        return load_settings(config)
    except FileNotFoundError as exc:
        raise BenchError(str(exc)) from exc


def _check(args: argparse.Namespace) -> None:
    if args.clips < 1:
        raise BenchError("--clips must be at least 1")
    if args.threads < 0:
        raise BenchError("--threads must be 0 (the available cores) or more")
    if args.stream_every < 0:
        raise BenchError("--stream-every must be 0 or more")
    if args.mixed_short < 0 or args.mixed_interval < 0:
        raise BenchError("--mixed-short and --mixed-interval must be 0 or more")
    most = max([*args.levels, *args.unbatched_levels])
    if most > args.clips:
        raise BenchError("every level sends each clip once: --levels may not exceed --clips")
    if most > args.max_queue + 1:  # unbatched, one slot: the rest must wait in the queue
        raise BenchError("--max-queue must leave room for the largest level, or requests get 429")


def run(args: argparse.Namespace, emit: Callable[[str], None] = print) -> int:
    _check(args)
    wall_start = time.perf_counter()
    source_dir = audio_dir()
    config = Path(args.config or os.environ.get("STT_CONFIG") or DEFAULT_CONFIG).resolve()
    settings = _load(config)
    requested: str = args.model
    try:
        model_id = server_service(settings).resolve(requested).model_id
    except APIError as exc:
        raise BenchError(f"--model {requested!r}: {exc.message}") from exc
    model_cfg = settings.models[model_id]
    device, compute_type = resolve_device(model_cfg.device, model_cfg.compute_type)
    cores = available_cores()
    threads: int = args.threads or cores
    every = layouts(threads)
    selected = [key for key in SELECTABLE if key in args.layouts]
    server_keys = [key for key in SERVER_KEYS if key in selected]
    with_mixed = MIXED in selected and bool(server_keys)
    default_key = configured_layout(model_cfg, threads, cores)
    levels: tuple[int, ...] = args.levels
    unbatched_levels: tuple[int, ...] = args.unbatched_levels
    target = target_level(levels, unbatched_levels)
    started = datetime.now(UTC)
    load: dict[str, list[float]] = {"before": load_average()}
    busy_before = busy_processes()
    print(f"other processes on the CPU: {describe_busy(busy_before)}", flush=True)
    servers: dict[str, dict[str, object]] = {}
    server_rows: list[Row] = []

    with tempfile.TemporaryDirectory(prefix="stt-bench-concurrency-") as tmp:
        workdir = Path(tmp)
        clips = build_clips(source_dir, workdir, args.clips)
        longs: list[Clip] = []
        shorts: list[Clip] = []
        if with_mixed:
            longs, shorts = build_mixed_inputs(source_dir, workdir, len(clips), args.mixed_short)
        catalog = {c.index: c for c in [*clips, *longs, *shorts]}
        total_audio = sum(c.seconds for c in clips)
        print(f"clips: {len(clips)} distinct, {total_audio:.1f} s of audio in all", flush=True)
        if max([*levels, *unbatched_levels]) > len(clips):
            raise BenchError(f"only {len(clips)} clips: --levels may not exceed that")

        configs = {
            key: write_server_config(
                settings,
                model_id,
                layout.model_settings(args.max_batch_size, args.batch_wait_ms),
                args.max_queue,
                workdir / key,
            )
            for key, layout in every.items()
            if key == "floor" or key in selected or (key == "floor-wide" and args.pipeline_batch_sizes)
        }
        plan = InProcessPlan(
            requested=requested,
            model_id=model_id,
            layouts=every,
            wide="floor-wide" in selected,
            side="side" in selected,
            pipeline_batch_sizes=args.pipeline_batch_sizes,
            references_of=(*longs, *shorts),
        )
        in_process, floor_texts, beam_size = bench_in_process(plan, configs, clips)
        load["after_in_process"] = load_average()

        mixed = MixedLoad(tuple(longs), tuple(shorts), args.mixed_short, args.mixed_interval) if with_mixed else None
        for key in server_keys:
            layout = every[key]
            rows, memory = bench_server(
                configs[key],
                requested,
                model_id,
                layout,
                clips,
                levels if layout.batching else unbatched_levels,
                args.stream_every,
                mixed,
            )
            server_rows.extend(rows)
            servers[key] = {
                "label": layout.label,
                "models": yaml.safe_load(configs[key].read_text())["models"],
                **{k: round(v, 1) for k, v in memory.items()},
            }
            load[f"after_{key}"] = load_average()

    ordered = [
        *in_process,
        *(r for r in server_rows if r.kind != MIXED),
        *(r for r in server_rows if r.kind == MIXED),
    ]
    summaries = [summarize(r, catalog, floor_texts) for r in ordered]
    labels = {key: layout.label for key, layout in every.items()}
    decisions = decision_lines(summaries, target, default_key, labels)
    busy_after = busy_processes()
    elapsed = time.perf_counter() - wall_start
    mixed_note = (
        f"; mixed load: {', '.join(f'{c.name} ({c.seconds:.0f} s)' for c in longs)} at once, and {args.mixed_short} "
        f"short clips of {min(c.seconds for c in shorts):.1f}–{max(c.seconds for c in shorts):.1f} s, one every "
        f"{args.mixed_interval:g} s from {MIXED_SHORT_START:g} s"
        if with_mixed
        else ""
    )
    header = [
        f"model {requested} -> {model_id} ({model_cfg.source}, {device}/{compute_type}, beam {beam_size}); "
        f"{threads} threads in all in every row; {len(clips)} clips, {total_audio:.1f} s of audio, each once per row"
        f"{mixed_note}",
        f"configured default layout: {labels[default_key] if default_key else 'none of these'}; "
        f"{f'1 request in {args.stream_every} streamed' if args.stream_every else 'nothing streamed'}",
        "latency: per request, from sending it (in-process: calling transcribe) to the whole answer; mixed rows: "
        "the short clips. encode/generate %: shares of the time spent in CTranslate2 (in-process: timed around "
        "the calls; batched server: the batch workers' busy time on /metrics); batch enc/gen: mean batch sizes",
    ]
    cells = [table_row(s) for s in summaries]
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 1),
        "git_commit": git_commit(),
        "config": str(config),
        "model_requested": requested,
        "model_id": model_id,
        "model": {"source": model_cfg.source, "device": device, "compute_type": compute_type, "beam_size": beam_size},
        "threads": threads,
        "configured_layout": default_key,
        "layouts": {key: every[key].label for key in ["floor", *selected] if key in every},
        "levels": list(levels),
        "unbatched_levels": list(unbatched_levels),
        "target_clients": target,
        "stream_every": args.stream_every,
        "mixed": {
            "long_files": [c.index for c in longs],
            "short_clips": [c.index for c in shorts],
            "short_requests": args.mixed_short,
            "interval_s": args.mixed_interval,
            "first_short_at_s": MIXED_SHORT_START,
        }
        if with_mixed
        else None,
        "servers": servers,
        "machine": machine_info(cores, {**load, "after": load_average()}),
        "other_processes_before": busy_before,
        "other_processes_after": busy_after,
        "audio_dir": str(source_dir),
        "clips": [c.as_dict() for c in catalog.values()],
        "floor_texts": {str(k): v for k, v in floor_texts.items()},
        "rows": summaries,
        "decisions": decisions,
    }
    out: Path = args.out or RESULTS_DIR / f"concurrency-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    load_line = " | ".join(f"{k} {v[0]:.2f}/{v[1]:.2f}/{v[2]:.2f}" for k, v in load.items())
    footer = [
        f"load average (1/5/15 min): {load_line}",
        f"other processes on the CPU before: {describe_busy(busy_before)}",
        f"other processes on the CPU after: {describe_busy(busy_after)}",
    ]
    warning = busy_warning(load["before"])
    if warning is not None:
        footer.append(warning)
    markdown = [
        f"# bench.concurrency, {started.isoformat(timespec='minutes')} (commit {report['git_commit']})",
        "",
        *(f"{line}  " for line in header),
        "",
        markdown_table(TABLE_HEADERS, cells),
        "",
        *(f"- {line}" for line in decisions),
        "",
        *(f"{line}  " for line in footer),
    ]
    out.with_suffix(".md").write_text("\n".join(markdown) + "\n")

    emit("")
    for line in header:
        emit(line)
    emit(render_table(TABLE_HEADERS, cells))
    emit("")
    for line in decisions:
        emit(line)
    emit("")
    for line in footer:
        emit(line)
    emit(f"\ntook {elapsed / 60:.1f} min; results written to {out} and {out.with_suffix('.md').name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
