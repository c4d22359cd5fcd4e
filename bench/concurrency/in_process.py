"""The in-process rows: faster-whisper itself called in this process, loaded as the server would load it, before any
server starts."""

from __future__ import annotations

import bisect
import gc
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from faster_whisper import BatchedInferencePipeline

from app.serving.protocol import AudioRequest
from bench.common import (
    BenchError,
    load_average,
    load_config,
    own_cpu_seconds,
    process_peak_rss_mib,
    reset_peak_rss,
    server_service,
    whisper_engine,
)
from bench.concurrency.clips import Clip
from bench.concurrency.layouts import Layout
from bench.concurrency.profile import timed_ops
from bench.concurrency.rows import ClipResult, Profile, Row
from bench.concurrency.together import run_together
from engines.audio import SAMPLE_RATE, decode_audio
from engines.types import DecodeOptions
from engines.whisper.engine import WhisperEngine

T = TypeVar("T")


def transcribe_text(engine: WhisperEngine, options: DecodeOptions, data: bytes) -> str:
    """faster-whisper itself: the loaded model's own ``WhisperModel.transcribe`` on the decoded upload, with the
    server's beam size and language and faster-whisper's defaults for the rest (30-s windows, its language
    detection and temperature fallback), consuming every segment."""
    segments, _ = engine.model.transcribe(
        decode_audio(data), language=options.language, task=options.task, beam_size=options.beam_size
    )
    return "".join(segment.text for segment in segments).strip()


@contextmanager
def in_process_engine(config: Path, requested: str, model_id: str) -> Iterator[tuple[WhisperEngine, DecodeOptions]]:
    """The model loaded as the server would load it from ``config`` (threads, workers, compute type), and the
    options of a default json request (beam size, temperatures)."""
    service = server_service(load_config(config))
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

    def transcribe(k: int, clip: Clip, release: float) -> ClipResult:
        called = time.perf_counter()
        text = transcribe_text(engine, options, clip.data)
        return ClipResult(clip.index, text, time.perf_counter() - called, called - release)

    def start() -> tuple[bool, float]:
        return reset_peak_rss(os.getpid()), own_cpu_seconds()

    with timed_ops(engine) as busy:
        results, wall, (reset, cpu_start) = run_together(plans, transcribe, start, "worker")
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
    with in_process_engine(configs[key], plan.requested, plan.model_id) as (engine, options):
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
