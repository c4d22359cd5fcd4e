"""Serving a team: throughput under concurrent clients, server worker layouts, and batched decoding.

1. The floor: Whisper called in this process, one clip after the other, with the server's own model
   settings (beam 5), and the same again greedy (beam 1).
2. faster-whisper's ``BatchedInferencePipeline`` in this process over the same clips (one clip per batch
   element, as a server that batched concurrent requests would do), beam 5 and greedy, at each batch size,
   with timestamp tokens as the server decodes; plus one control pass in the pipeline's default text-only
   mode. Transcripts are scored (WER, jiwer) against the sequential beam-5 and greedy ones.
3. A concurrency sweep through the real server and the openai SDK: 1, 2, 4, … client threads share the
   clips (each clip is sent once per level, some of them streamed), for each server layout:
   (a) ``max_concurrency=1`` with all cores for one CTranslate2 worker (the default), and
   (b) ``max_concurrency=2`` with ``cpu_threads=1``: two CTranslate2 workers of one thread each, and
   (p) layout (a) with ``OMP_WAIT_POLICY=PASSIVE`` in the server's environment (OpenMP threads sleep
   instead of spinning while they wait).
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import jiwer
import numpy as np
import yaml
from faster_whisper import BatchedInferencePipeline
from openai import APIStatusError, OpenAI, OpenAIError

from app.api.errors import APIError
from app.serving.protocol import AudioRequest
from app.settings import DEFAULT_CONFIG, PROJECT_ROOT, Settings, load_settings
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
from engines.models import available_cores, resolve_device
from engines.types import DecodeOptions
from engines.vad import VadParams, group_regions, speech_regions
from engines.whisper import WhisperEngine

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
DEFAULT_LEVELS = (1, 2, 4, 8, 16)
DEFAULT_CLIPS = 16
DEFAULT_BATCH_SIZES = (4, 8)
DEFAULT_MAX_QUEUE = 64
DEFAULT_STREAM_EVERY = 2
CLIP_MIN_SECONDS = 4.5
CLIP_MAX_SECONDS = 15.0
# Cut the longer recordings at pauses: speech regions joined into chunks of at most CLIP_MAX_SECONDS.
CLIP_VAD = VadParams(threshold=0.5, silence_duration_ms=300, prefix_padding_ms=200, max_chunk_seconds=CLIP_MAX_SECONDS)
CLIENT_TIMEOUT_SECONDS = 1800
BUSY_SAMPLE_SECONDS = 2.0

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
    """One distinct input: 16 kHz mono 16-bit WAV bytes (what is uploaded) and where it came from."""

    index: int
    name: str
    source: str
    data: bytes
    seconds: float
    reference: str | None = None  # the text espeak-ng spoke; None for recordings

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "name": self.name,
            "source": self.source,
            "seconds": round(self.seconds, 3),
            "reference": self.reference,
        }


def _wav_bytes(samples: Samples, path: Path) -> bytes:
    write_wav(path, samples)
    return path.read_bytes()


def recording_clips(directory: Path) -> list[tuple[str, str, Samples]]:
    """English recordings up to CLIP_MAX_SECONDS whole, longer ones cut at pauses into ≤15 s pieces."""
    found: list[tuple[str, str, Samples]] = []
    for path in long_file_sources(directory):
        audio = decode_audio(path.read_bytes())
        seconds = audio.size / SAMPLE_RATE
        if seconds <= CLIP_MAX_SECONDS:
            if seconds >= CLIP_MIN_SECONDS:
                found.append((path.stem, path.name, audio))
            continue
        chunks = group_regions(speech_regions(audio, CLIP_VAD), CLIP_MAX_SECONDS)
        for number, chunk in enumerate(c for c in chunks if c.length >= CLIP_MIN_SECONDS * SAMPLE_RATE):
            start, end = chunk.start / SAMPLE_RATE, chunk.end / SAMPLE_RATE
            found.append(
                (
                    f"{path.stem}_part{number + 1}",
                    f"{path.name} {start:.1f}-{end:.1f} s",
                    audio[chunk.start : chunk.end],
                )
            )
    return found


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


# --- measurements -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipResult:
    """One clip's transcript and timings within one pass or level."""

    clip: int
    text: str
    latency_s: float  # server: from sending the request to the whole answer; in-process: from the pass start
    call_s: float | None = None  # in-process sequential: the transcribe call alone
    sent_at_s: float = 0.0  # server: when the request was sent, from the start of the level
    streamed: bool = False
    first_delta_s: float | None = None
    deltas: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"clip": self.clip, "latency_s": round(self.latency_s, 4)}
        if self.call_s is not None:
            out["call_s"] = round(self.call_s, 4)
        if self.streamed:
            out["streamed"] = True
            out["sent_at_s"] = round(self.sent_at_s, 4)
            out["first_delta_s"] = None if self.first_delta_s is None else round(self.first_delta_s, 4)
            out["deltas"] = self.deltas
        elif self.sent_at_s:
            out["sent_at_s"] = round(self.sent_at_s, 4)
        if self.error is not None:
            out["error"] = self.error
        out["text"] = self.text
        return out


@dataclass
class Pass:
    """Every clip once, in one configuration: in-process (sequential or batched) or through the server."""

    label: str
    group: str  # "in-process" or the server layout's key
    width: int  # clients (server), batch size (batched) or 1 (sequential)
    beam_size: int
    wall_s: float
    cpu_s: float  # in-process: this process; server: the server process
    peak_rss_mib: float
    peak_rss_reset: bool  # the peak was reset before the pass (else it covers everything before)
    load_after: list[float]
    results: list[ClipResult] = field(default_factory=list)

    def ok(self) -> list[ClipResult]:
        return [r for r in self.results if r.error is None]

    def texts(self) -> dict[int, str]:
        return {r.clip: r.text for r in self.ok()}


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None


_PUNCTUATION = re.compile(r"[^\w\s']")


def normalize_text(text: str) -> str:
    """Lower case, punctuation dropped (apostrophes kept), single spaces: what WER is computed on."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def corpus_wer(references: dict[int, str], hypotheses: dict[int, str]) -> float | None:
    """Word error rate of ``hypotheses`` against ``references`` over the clips both have (non-empty references)."""
    pairs = [(normalize_text(references[k]), normalize_text(hypotheses[k])) for k in references if k in hypotheses]
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


# --- 1 + 2: in-process sequential and batched -------------------------------------------------------------


def transcribe_text(engine: WhisperEngine, options: DecodeOptions, data: bytes) -> str:
    """Decode the uploaded bytes and transcribe them, consuming every segment (as bench.run does)."""
    _, segments = engine.transcribe(decode_audio(data), options)
    return "".join(segment.text for segment in segments).strip()


def sequential_pass(label: str, engine: WhisperEngine, options: DecodeOptions, clips: Sequence[Clip]) -> Pass:
    """Every clip in turn; latency = when its text was complete, from the start of the pass."""
    print(f"in-process: {label} over {len(clips)} clips …", flush=True)
    reset = reset_peak_rss(os.getpid())
    cpu_start = own_cpu_seconds()
    start = time.perf_counter()
    results = []
    for clip in clips:
        call_start = time.perf_counter()
        text = transcribe_text(engine, options, clip.data)
        now = time.perf_counter()
        results.append(ClipResult(clip.index, text, now - start, call_s=now - call_start))
    wall = time.perf_counter() - start
    return Pass(
        label=label,
        group="in-process",
        width=1,
        beam_size=options.beam_size,
        wall_s=wall,
        cpu_s=own_cpu_seconds() - cpu_start,
        peak_rss_mib=process_peak_rss_mib(os.getpid()),
        peak_rss_reset=reset,
        load_after=load_average(),
        results=results,
    )


def batched_pass(
    engine: WhisperEngine, clips: Sequence[Clip], batch_size: int, beam_size: int, *, timestamps: bool = True
) -> Pass:
    """``BatchedInferencePipeline`` over all clips at once: each clip is one batch element (``clip_timestamps``).

    The clips are decoded and joined end to end; the pipeline cuts them apart again, pads each to 30 s and
    runs ``batch_size`` of them through the encoder and decoder together. Temperature 0 only (the pipeline
    has no fallback). ``timestamps``: decode with timestamp tokens, as the sequential path and the server do
    (``without_timestamps=False``); else the pipeline's default, text tokens only. Latency = when the clip's
    text came out of the pipeline, from the start of the pass.
    """
    greedy = "greedy" if beam_size == 1 else f"beam {beam_size}"
    label = f"in-proc batched, {greedy}" + ("" if timestamps else ", text only")
    print(f"in-process: batched, batch size {batch_size}, {greedy}, timestamps {timestamps} …", flush=True)
    pipeline = BatchedInferencePipeline(engine.model)
    reset = reset_peak_rss(os.getpid())
    cpu_start = own_cpu_seconds()
    start = time.perf_counter()
    audios = [decode_audio(clip.data) for clip in clips]
    offsets = np.cumsum([0, *(a.size for a in audios)])[:-1]
    starts = [float(o) / SAMPLE_RATE for o in offsets]
    stamps = [{"start": s, "end": s + a.size / SAMPLE_RATE} for s, a in zip(starts, audios, strict=True)]
    segments, _info = pipeline.transcribe(
        np.concatenate(audios),
        language=None,
        task="transcribe",
        beam_size=beam_size,
        temperature=0.0,
        clip_timestamps=stamps,
        batch_size=batch_size,
        vad_filter=False,
        without_timestamps=not timestamps,
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
    return Pass(
        label=label,
        group="in-process",
        width=batch_size,
        beam_size=beam_size,
        wall_s=wall,
        cpu_s=own_cpu_seconds() - cpu_start,
        peak_rss_mib=process_peak_rss_mib(os.getpid()),
        peak_rss_reset=reset,
        load_after=load_average(),
        results=results,
    )


def _in_process(
    settings: Settings, requested: str, clips: Sequence[Clip], batch_sizes: Sequence[int]
) -> tuple[list[Pass], int]:
    service = server_service(settings)  # the server's own WhisperSpec: threads, compute type, beam size
    model_id = service.resolve(requested).model_id
    print(f"in-process: loading model {model_id!r} …", flush=True)
    passes = []
    with service.manager.lease(model_id) as leased:
        engine = whisper_engine(leased)
        request = AudioRequest(task="transcribe", file=clips[0].data, model=requested)
        options = service.decode_options(request, engine, model_id)  # a default json request's options
        transcribe_text(engine, options, clips[0].data)  # warm-up
        greedy = replace(options, beam_size=1)
        passes.append(sequential_pass(f"in-proc sequential, beam {options.beam_size} (floor)", engine, options, clips))
        passes.append(sequential_pass("in-proc sequential, greedy", engine, greedy, clips))
        for batch_size in batch_sizes:
            for beam in (options.beam_size, 1):
                passes.append(batched_pass(engine, clips, batch_size, beam))
        if batch_sizes:  # the pipeline's own default: no timestamp tokens (a control for the transcripts)
            passes.append(batched_pass(engine, clips, max(batch_sizes), options.beam_size, timestamps=False))
        beam_size = options.beam_size
    return passes, beam_size


def bench_in_process(
    settings: Settings, requested: str, clips: Sequence[Clip], batch_sizes: Sequence[int]
) -> tuple[list[Pass], int]:
    """The model is referenced only inside ``_in_process``: it is freed before any server starts."""
    result = _in_process(settings, requested, clips, batch_sizes)
    gc.collect()
    return result


# --- 3: the server under concurrent clients ---------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """A server configuration for the model under test."""

    key: str
    label: str
    max_concurrency: int
    cpu_threads: int  # 0: all available cores
    env: tuple[tuple[str, str], ...] = ()  # extra environment of the server process


# CTranslate2's wheels use GNU OpenMP, whose threads spin between parallel regions by default. With more
# threads than free cores (other processes on a 2-core machine) the spinning eats the CPU the work needs;
# OMP_WAIT_POLICY=PASSIVE makes them sleep instead.
PASSIVE = (("OMP_WAIT_POLICY", "PASSIVE"),)
LAYOUTS = {
    "a": Layout("a", "server (a) 1 worker x all threads", 1, 0),
    "b": Layout("b", "server (b) 2 workers x 1 thread", 2, 1),
    "p": Layout("p", "server (a) + OMP_WAIT_POLICY=PASSIVE", 1, 0, PASSIVE),
}


def write_server_config(
    settings: Settings, model_id: str, layout: Layout, max_queue: int, workdir: Path, path: Path
) -> Path:
    """A YAML config with the model under test alone (and the aliases that point at it), preloaded.

    The usage ledger goes to the temporary folder, not to the checkout's var/usage.db.
    """
    model = settings.models[model_id].model_copy(
        update={"max_concurrency": layout.max_concurrency, "cpu_threads": layout.cpu_threads, "max_queue": max_queue}
    )
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
        "models": {model_id: model.model_dump(mode="json")},
        "aliases": {
            name: alias.model_dump(mode="json") for name, alias in settings.aliases.items() if alias.model == model_id
        },
        "preload_models": [model_id],
        "ledger_url": f"sqlite:///{workdir / 'usage.db'}",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _sdk(base_url: str) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=CLIENT_TIMEOUT_SECONDS)


def send(sdk: OpenAI, model: str, clip: Clip, streamed: bool, level_start: float) -> ClipResult:
    """One request; a streamed one also times the first ``transcript.text.delta`` (from sending the request)."""
    sent = time.perf_counter()
    try:
        if not streamed:
            response = sdk.audio.transcriptions.create(model=model, file=(clip.name, clip.data), response_format="json")
            return ClipResult(
                clip.index, response.text.strip(), time.perf_counter() - sent, sent_at_s=sent - level_start
            )
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
            sent_at_s=sent - level_start,
            streamed=True,
            first_delta_s=first_delta,
            deltas=deltas,
        )
    except (OpenAIError, BenchError) as exc:
        status = f"HTTP {exc.status_code}: " if isinstance(exc, APIStatusError) else ""
        return ClipResult(
            clip.index, "", time.perf_counter() - sent, sent_at_s=sent - level_start, streamed=streamed,
            error=f"{status}{exc}"[:300],
        )  # fmt: skip


def is_streamed(position: int, stream_every: int) -> bool:
    return stream_every > 0 and position % stream_every == stream_every - 1


def run_level(
    base_url: str, pid: int, model: str, clips: Sequence[Clip], clients: int, stream_every: int, layout: Layout
) -> Pass:
    """``clients`` threads start together; client k sends clips k, k + clients, … one after the other."""
    plans = [[(p, c) for p, c in enumerate(clips) if p % clients == k] for k in range(clients)]
    sdks = [_sdk(base_url) for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    lock = threading.Lock()
    results: list[ClipResult] = []
    level_start = [0.0]

    def client(k: int) -> None:
        barrier.wait()
        for position, clip in plans[k]:
            result = send(sdks[k], model, clip, is_streamed(position, stream_every), level_start[0])
            with lock:
                results.append(result)

    threads = [threading.Thread(target=client, args=(k,), name=f"client-{k}") for k in range(clients)]
    for thread in threads:
        thread.start()
    reset = reset_peak_rss(pid)
    cpu_start = process_cpu_seconds(pid)
    level_start[0] = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - level_start[0]
    cpu = process_cpu_seconds(pid) - cpu_start
    for sdk in sdks:
        sdk.close()
    return Pass(
        label=layout.label,
        group=layout.key,
        width=clients,
        beam_size=0,  # filled in by the caller
        wall_s=wall,
        cpu_s=cpu,
        peak_rss_mib=process_peak_rss_mib(pid),
        peak_rss_reset=reset,
        load_after=load_average(),
        results=sorted(results, key=lambda r: r.clip),
    )


def bench_server(
    config: Path,
    model: str,
    model_id: str,
    layout: Layout,
    clips: Sequence[Clip],
    levels: Sequence[int],
    stream_every: int,
    beam_size: int,
    workdir: Path,
) -> tuple[list[Pass], dict[str, float]]:
    """One fresh server for this layout; an untimed warm-up of every worker, then each level in turn."""
    print(f"http: {layout.label}: starting the server (preloading {model_id!r}) …", flush=True)
    with run_server(config, workdir, preload=model_id, env=dict(layout.env)) as server:
        pid = server.process.pid
        memory = {"startup_peak_rss_mib": process_peak_rss_mib(pid)}
        warm = clips[: max(1, layout.max_concurrency)]
        print(f"http: {layout.label}: warm-up ({len(warm)} at once, then one streamed) …", flush=True)
        run_level(server.base_url, pid, model, warm, len(warm), 0, layout)
        with _sdk(server.base_url) as sdk:
            send(sdk, model, clips[0], True, time.perf_counter())
        memory["after_warmup_peak_rss_mib"] = process_peak_rss_mib(pid)
        passes = []
        for clients in levels:
            print(f"http: {layout.label}: {clients} concurrent client(s) …", flush=True)
            result = run_level(server.base_url, pid, model, clips, clients, stream_every, layout)
            result.beam_size = beam_size
            passes.append(result)
        memory["lifetime_peak_rss_mib"] = _lifetime_peak(passes, memory)
    return passes, memory


def _lifetime_peak(passes: Sequence[Pass], memory: dict[str, float]) -> float:
    return max([*memory.values(), *(p.peak_rss_mib for p in passes)])


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


@dataclass(frozen=True)
class Baselines:
    """What every pass is compared with: the clips and the sequential in-process transcripts."""

    clips: Sequence[Clip]
    beam: dict[int, str]
    greedy: dict[int, str]
    floor_rate: float


def audio_seconds(p: Pass, clips: Sequence[Clip]) -> float:
    return sum(clips[r.clip].seconds for r in p.ok())


def summarize(p: Pass, base: Baselines) -> dict[str, object]:
    ok = p.ok()
    audio = audio_seconds(p, base.clips)
    latencies = [r.latency_s for r in ok]
    firsts = [r.first_delta_s for r in ok if r.first_delta_s is not None]
    same = sum(1 for r in ok if base.beam.get(r.clip) == r.text)
    wer_beam, wer_greedy = corpus_wer(base.beam, p.texts()), corpus_wer(base.greedy, p.texts())
    references = {c.index: c.reference for c in base.clips if c.reference is not None}
    return {
        "label": p.label,
        "group": p.group,
        "width": p.width,
        "beam_size": p.beam_size,
        "requests": len(p.results),
        "errors": len(p.results) - len(ok),
        "http_429": sum(1 for r in p.results if r.error is not None and r.error.startswith("HTTP 429")),
        "wall_s": round(p.wall_s, 3),
        "requests_per_s": round(len(ok) / p.wall_s, 4),
        "audio_s": round(audio, 3),
        "audio_s_per_wall_s": round(audio / p.wall_s, 4),
        "vs_floor": round(audio / p.wall_s / base.floor_rate, 4),
        "latency_p50_s": _round(percentile(latencies, 50)),
        "latency_p95_s": _round(percentile(latencies, 95)),
        "first_delta_p50_s": _round(percentile(firsts, 50)),
        "first_delta_p95_s": _round(percentile(firsts, 95)),
        "streamed": sum(1 for r in p.results if r.streamed),
        "cpu_s": round(p.cpu_s, 3),
        "cpu_s_per_audio_s": round(p.cpu_s / audio, 4) if audio else None,
        "peak_rss_mib": round(p.peak_rss_mib, 1),
        "peak_rss_reset_before": p.peak_rss_reset,
        "wer_vs_sequential_beam": _round(wer_beam, 5),
        "wer_vs_sequential_greedy": _round(wer_greedy, 5),
        "wer_vs_espeak_text": _round(corpus_wer(references, p.texts()), 5),
        "same_text_as_floor": same,
        "load_after": p.load_after,
        "results": [r.as_dict() for r in p.results],
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


TABLE_HEADERS = (
    "run",
    "width",
    "req/s",
    "audio s/s",
    "x floor",
    "lat p50 s",
    "lat p95 s",
    "1st delta p50/p95 s",
    "CPU s/audio s",
    "peak RSS MiB",
    "WER% vs beam seq",
    "WER% vs greedy seq",
    "same text",
    "load 1m",
)


def _cell(value: object, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _pct(value: object) -> str:
    return "-" if not isinstance(value, float) else f"{100 * value:.1f}"


def table_row(s: dict[str, object]) -> tuple[str, ...]:
    width = s["width"]
    sequential = "sequential" in str(s["label"])
    shown = f"{width} cl" if s["group"] != "in-process" else "1" if sequential else f"bs {width}"
    if s["errors"]:
        shown += f" ({s['errors']} err)"
    first = f"{_cell(s['first_delta_p50_s'], '.2f')} / {_cell(s['first_delta_p95_s'], '.2f')}" if s["streamed"] else "-"
    requests = s["requests"]
    load = s["load_after"]
    assert isinstance(load, list)
    return (
        str(s["label"]),
        shown,
        _cell(s["requests_per_s"], ".2f"),
        _cell(s["audio_s_per_wall_s"], ".2f"),
        _cell(s["vs_floor"], ".2f"),
        _cell(s["latency_p50_s"], ".1f"),
        _cell(s["latency_p95_s"], ".1f"),
        first,
        _cell(s["cpu_s_per_audio_s"], ".3f"),
        _cell(s["peak_rss_mib"], ".0f"),
        _pct(s["wer_vs_sequential_beam"]),
        _pct(s["wer_vs_sequential_greedy"]),
        f"{s['same_text_as_floor']}/{requests}",
        f"{load[0]:.2f}",
    )


def decision_lines(summaries: Sequence[dict[str, object]]) -> list[str]:
    """Throughput at 4+ clients per server layout and of the batched passes, against the floor."""

    def rate(s: dict[str, object]) -> float:
        value = s["audio_s_per_wall_s"]
        return float(value) if isinstance(value, float | int) else 0.0

    lines = []
    groups = sorted({str(s["group"]) for s in summaries} - {"in-process"})
    for group in groups:
        rows = [s for s in summaries if s["group"] == group]
        high = [s for s in rows if isinstance(s["width"], int) and s["width"] >= 4]
        if high:
            best = max(high, key=rate)
            lines.append(
                f"{best['label']}: best at 4+ clients {rate(best):.2f} audio s/s with {best['width']} clients "
                f"({best['vs_floor']}x the floor), 1 client {rate(rows[0]):.2f}"
            )
    batched = [s for s in summaries if "batched" in str(s["label"])]
    for s in batched:
        lines.append(
            f"{s['label']} bs {s['width']}: {rate(s):.2f} audio s/s ({s['vs_floor']}x the floor), "
            f"WER vs beam seq {_pct(s['wer_vs_sequential_beam'])} %, "
            f"vs greedy seq {_pct(s['wer_vs_sequential_greedy'])} %"
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


def _layouts(text: str) -> tuple[Layout, ...]:
    keys = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [k for k in keys if k not in LAYOUTS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"server layouts are {', '.join(LAYOUTS)}; got {text!r}")
    return tuple(LAYOUTS[k] for k in keys)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.concurrency", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="whisper-1", help="model name sent to the API: an alias or a local id")
    parser.add_argument("--clips", type=int, default=DEFAULT_CLIPS, help="distinct clips of 4.5–15 s (default 16)")
    parser.add_argument(
        "--levels", type=_int_list, default=DEFAULT_LEVELS, help="concurrent clients per level (default 1,2,4,8,16)"
    )
    parser.add_argument(
        "--batch-sizes",
        type=_batch_sizes,
        default=DEFAULT_BATCH_SIZES,
        help="in-process BatchedInferencePipeline batch sizes (default 4,8; 'none' to skip)",
    )
    parser.add_argument(
        "--servers", type=_layouts, default=tuple(LAYOUTS.values()), help="server layouts (default a,b,p)"
    )
    parser.add_argument(
        "--stream-every", type=int, default=DEFAULT_STREAM_EVERY, help="stream every Nth request (0: none; default 2)"
    )
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE, help="server max_queue (default 64)")
    parser.add_argument(
        "--out", type=Path, help="JSON results file (default: bench/results/concurrency-<timestamp>.json)"
    )
    parser.add_argument("--config", type=Path, help="server YAML config (default: $STT_CONFIG or configs/default.yaml)")
    return parser


def _load(config: Path) -> Settings:
    try:
        return load_settings(config)
    except FileNotFoundError as exc:
        raise BenchError(str(exc)) from exc


def run(args: argparse.Namespace, emit: Callable[[str], None] = print) -> int:
    if args.clips < 1:
        raise BenchError("--clips must be at least 1")
    if args.stream_every < 0:
        raise BenchError("--stream-every must be 0 or more")
    if max(args.levels) > args.clips:
        raise BenchError("every level sends each clip once: --levels may not exceed --clips")
    if max(args.levels) > args.max_queue + 1:
        raise BenchError("--max-queue must leave room for the largest level, or requests get 429")
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
    started = datetime.now(UTC)
    load: dict[str, list[float]] = {"before": load_average()}
    busy_before = busy_processes()
    print(f"other processes on the CPU: {describe_busy(busy_before)}", flush=True)
    layouts: tuple[Layout, ...] = args.servers
    batch_sizes: tuple[int, ...] = args.batch_sizes
    levels: tuple[int, ...] = args.levels
    servers: dict[str, dict[str, object]] = {}
    server_passes: list[Pass] = []

    with tempfile.TemporaryDirectory(prefix="stt-bench-concurrency-") as tmp:
        workdir = Path(tmp)
        clips = build_clips(source_dir, workdir, args.clips)
        total_audio = sum(c.seconds for c in clips)
        print(f"clips: {len(clips)} distinct, {total_audio:.1f} s of audio in all", flush=True)
        if max(levels) > len(clips):
            raise BenchError(f"only {len(clips)} clips: --levels may not exceed that")

        configs = {}
        for layout in layouts:
            server_dir = workdir / f"server-{layout.key}"
            server_dir.mkdir()
            configs[layout.key] = write_server_config(
                settings, model_id, layout, args.max_queue, server_dir, server_dir / "config.yaml"
            )
        # In-process with layout (a)'s settings: the default threads, one worker.
        base_layout = LAYOUTS["a"]
        base_dir = workdir / "in-process"
        base_dir.mkdir()
        base_config = write_server_config(
            settings, model_id, base_layout, args.max_queue, base_dir, base_dir / "c.yaml"
        )
        in_process, beam_size = bench_in_process(_load(base_config), requested, clips, batch_sizes)
        load["after_in_process"] = load_average()

        for layout in layouts:
            passes, memory = bench_server(
                configs[layout.key],
                requested,
                model_id,
                layout,
                clips,
                levels,
                args.stream_every,
                beam_size,
                configs[layout.key].parent,
            )
            server_passes.extend(passes)
            threads = layout.cpu_threads or available_cores()
            servers[layout.key] = {
                "label": layout.label,
                "max_concurrency": layout.max_concurrency,
                "num_workers": layout.max_concurrency,
                "cpu_threads": threads,
                "max_queue": args.max_queue,
                "env": dict(layout.env),
                **{k: round(v, 1) for k, v in memory.items()},
            }
            load[f"after_server_{layout.key}"] = load_average()

    floor = in_process[0]
    base = Baselines(
        clips=clips,
        beam=floor.texts(),
        greedy=next((p.texts() for p in in_process if "sequential, greedy" in p.label), {}),
        floor_rate=audio_seconds(floor, clips) / floor.wall_s,
    )
    summaries = [summarize(p, base) for p in [*in_process, *server_passes]]
    busy_after = busy_processes()
    elapsed = time.perf_counter() - wall_start
    threads = model_cfg.cpu_threads or available_cores()
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 1),
        "git_commit": git_commit(),
        "config": str(config),
        "model_requested": requested,
        "model_id": model_id,
        "model": {
            "source": model_cfg.source,
            "device": device,
            "compute_type": compute_type,
            "cpu_threads": threads,
            "beam_size": beam_size,
        },
        "levels": list(levels),
        "batch_sizes": list(batch_sizes),
        "stream_every": args.stream_every,
        "servers": servers,
        "machine": machine_info(available_cores(), {**load, "after": load_average()}),
        "other_processes_before": busy_before,
        "other_processes_after": busy_after,
        "audio_dir": str(source_dir),
        "clips": [c.as_dict() for c in clips],
        "passes": summaries,
    }
    out: Path = args.out or RESULTS_DIR / f"concurrency-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    emit("")
    emit(
        f"model {requested} -> {model_id} ({model_cfg.source}, {device}/{compute_type}, beam {beam_size}); "
        f"{len(clips)} clips, {total_audio:.1f} s of audio; every clip once per row; "
        f"{f'1 request in {args.stream_every} streamed' if args.stream_every else 'nothing streamed'}"
    )
    emit(
        "in-process rows use the server's default layout (1 worker, "
        f"{model_cfg.cpu_threads or available_cores()} threads); their latency is the time from the start of the "
        "pass until the clip's text is complete (all clips queued at t=0)"
    )
    emit(render_table(TABLE_HEADERS, [table_row(s) for s in summaries]))
    emit("")
    for line in decision_lines(summaries):
        emit(line)
    emit("")
    emit(f"load average (1/5/15 min): {' | '.join(f'{k} {v[0]:.2f}/{v[1]:.2f}/{v[2]:.2f}' for k, v in load.items())}")
    emit(f"other processes on the CPU before: {describe_busy(busy_before)}")
    emit(f"other processes on the CPU after: {describe_busy(busy_after)}")
    warning = busy_warning(load["before"])
    if warning is not None:
        emit(warning)
    emit(f"\ntook {elapsed / 60:.1f} min; results written to {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
