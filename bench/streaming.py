"""Streaming latency, VAD chunking cost and server memory on long audio, through the real server and the openai SDK.

1. Time to the first text delta and to the done event with ``stream=True``, against the time to the
   whole answer without streaming, on a short and a ~5-minute file.
2. What ``chunking_strategy="auto"`` costs: Silero VAD (and loudness normalisation) timed in this
   process per minute of audio, and the end-to-end wall time of chunked against unchunked requests.
3. Peak resident memory of a fresh server process per file on 10- and 60-minute uploads (tiny.en),
   to show that memory grows far slower than the audio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import yaml
from openai import OpenAI, omit

from app.serving.protocol import ChunkingStrategy
from bench.common import (
    LONG_FILE,
    LONG_TARGET_SECONDS,
    SHORT_FILE,
    BenchError,
    BenchFile,
    add_file_options,
    audio_dir,
    bench_main,
    build_long_file,
    encode_mp3,
    finish,
    git_commit,
    load_average,
    load_config,
    machine_info,
    own_cpu_seconds,
    process_cpu_seconds,
    process_peak_rss_mib,
    process_rss_mib,
    run_server,
    served_model,
    write_results,
)
from bench.stats import median
from bench.tables import render_table
from engines.audio import SAMPLE_RATE, AudioFile, decode_audio
from engines.cores import available_cores
from engines.vad import VadParams, group_regions, normalize_loudness, speech_regions

DEFAULT_RUNS = 2
# The memory runs use the smallest model so that an hour of audio takes minutes on a CPU.
RSS_MODEL = "tiny.en"
RSS_ALIAS = "whisper-1"
RSS_POLL_SECONDS = 0.5
# Decoded audio as the server holds it: 16 kHz mono float32.
PCM_MIB_PER_MINUTE = SAMPLE_RATE * 4 * 60 / 2**20
CLIENT_TIMEOUT_SECONDS = 4 * 3600

Chunking = Literal["auto"] | None


@dataclass(frozen=True)
class RssInput:
    """A long compressed upload for the memory runs: its name, length and MP3 bit rate."""

    name: str
    seconds: float
    kbps: int


RSS_INPUTS = (RssInput("long_10min.mp3", 600.0, 32), RssInput("long_60min.mp3", 3600.0, 24))


# --- statistics -------------------------------------------------------------------------------------------


def audio_duration(data: bytes) -> float:
    audio = AudioFile(data)
    try:
        return audio.duration if audio.duration is not None else audio.samples().size / SAMPLE_RATE
    finally:
        audio.close()


def series(values: Sequence[float]) -> dict[str, object]:
    """Every run, their median and minimum, for the JSON file."""
    return {
        "runs_s": [round(v, 4) for v in values],
        "median_s": round(median(values), 4),
        "min_s": round(min(values), 4),
    }


def med_min(values: Sequence[float], digits: int = 2) -> str:
    """``median (min)`` for a table cell; ``-`` when there is nothing to show."""
    if not values:
        return "-"
    return f"{median(values):.{digits}f} ({min(values):.{digits}f})"


# --- HTTP requests ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One timed request: wall and CPU seconds, the text, and for a stream when its events came."""

    wall_s: float
    cpu_s: float
    text: str
    response_s: float | None = None  # stream: the SDK call returned (response headers received)
    first_delta_s: float | None = None  # stream: the first transcript.text.delta arrived
    deltas: int = 0
    deltas_join_to_text: bool = True

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"wall_s": round(self.wall_s, 4), "cpu_s": round(self.cpu_s, 4)}
        if self.response_s is not None:
            out["response_s"] = round(self.response_s, 4)
            out["first_delta_s"] = None if self.first_delta_s is None else round(self.first_delta_s, 4)
            out["deltas"] = self.deltas
            out["deltas_join_to_text"] = self.deltas_join_to_text
        return out


@dataclass
class Variant:
    """The runs of one kind of request on one file (json, stream or json with auto chunking)."""

    label: str
    requests: list[Request] = field(default_factory=list)

    @property
    def walls(self) -> list[float]:
        return [r.wall_s for r in self.requests]

    @property
    def cpus(self) -> list[float]:
        return [r.cpu_s for r in self.requests]

    @property
    def first_deltas(self) -> list[float]:
        return [r.first_delta_s for r in self.requests if r.first_delta_s is not None]

    @property
    def text(self) -> str:
        return self.requests[-1].text if self.requests else ""

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"wall": series(self.walls), "cpu": series(self.cpus)}
        if self.first_deltas:
            out["first_delta"] = series(self.first_deltas)
        out["requests"] = [r.as_dict() for r in self.requests]
        out["words"] = len(self.text.split())
        return out


class Client:
    """The openai SDK pointed at the benchmark server, with a CPU clock for the server plus this process."""

    def __init__(self, base_url: str, server_pid: int, model: str) -> None:
        self.sdk = OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=CLIENT_TIMEOUT_SECONDS)
        self.server_pid = server_pid
        self.model = model

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.server_pid) + own_cpu_seconds()

    def json(self, item: BenchFile, chunking: Chunking = None) -> Request:
        """Not streamed: from the start of the call to the parsed answer."""
        cpu_start = self.cpu_seconds()
        start = time.perf_counter()
        response = self.sdk.audio.transcriptions.create(
            model=self.model,
            file=(item.name, item.data),
            response_format="json",
            chunking_strategy=chunking if chunking is not None else omit,
        )
        wall = time.perf_counter() - start
        return Request(wall, self.cpu_seconds() - cpu_start, response.text.strip())

    def stream(self, item: BenchFile) -> Request:
        """``stream=True``: when the first delta and the done event arrive, counted from the start of the call."""
        cpu_start = self.cpu_seconds()
        start = time.perf_counter()
        first_delta: float | None = None
        done: float | None = None
        text: str | None = None
        deltas: list[str] = []
        with self.sdk.audio.transcriptions.create(model=self.model, file=(item.name, item.data), stream=True) as events:
            response = time.perf_counter() - start
            for event in events:
                now = time.perf_counter() - start
                if event.type == "transcript.text.delta":
                    if first_delta is None:
                        first_delta = now
                    deltas.append(event.delta)
                elif event.type == "transcript.text.done":
                    done, text = now, event.text
        cpu = self.cpu_seconds() - cpu_start
        if done is None or text is None:
            raise BenchError(f"{item.name}: the stream ended without a transcript.text.done event")
        return Request(
            done,
            cpu,
            text.strip(),
            response_s=response,
            first_delta_s=first_delta,
            deltas=len(deltas),
            deltas_join_to_text="".join(deltas) == text,
        )


# --- 1 + 2 (HTTP): streaming latency, chunked against unchunked -------------------------------------------


@dataclass
class FileLatency:
    """Every variant measured on one file."""

    item: BenchFile
    json: Variant = field(default_factory=lambda: Variant("json"))
    stream: Variant = field(default_factory=lambda: Variant("stream"))
    auto: Variant | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "file": self.item.name,
            "audio_s": round(self.item.audio_seconds, 3),
            "json": self.json.as_dict(),
            "stream": self.stream.as_dict(),
            "stream_text_equals_json_text": self.stream.text == self.json.text,
        }
        if self.auto is not None:
            out["json_chunking_auto"] = self.auto.as_dict()
        return out


def bench_http(
    config: Path, requested: str, model_id: str, short: BenchFile, long: BenchFile, runs: int, workdir: Path
) -> list[FileLatency]:
    """One server (``model_id`` preloaded): json against stream on both files, and auto chunking on the long one.

    The variants of a file take turns run by run, so a change in the machine's load hits them alike.
    """
    print(f"http: starting the server (preloading {model_id!r}) …", flush=True)
    with run_server(config, workdir, preload=model_id) as server:
        client = Client(server.base_url, server.process.pid, requested)
        # Untimed warm-up of every path, on the short file; the first auto request also loads Silero.
        print(f"http: warm-up on {short.name} (json, stream, auto) …", flush=True)
        client.json(short)
        client.stream(short)
        client.json(short, "auto")
        results = [FileLatency(short), FileLatency(long, auto=Variant("json, chunking auto"))]
        for result in results:
            item = result.item
            for run in range(1, runs + 1):
                print(f"http: {item.name} run {run}/{runs}: json …", flush=True)
                result.json.requests.append(client.json(item))
                print(f"http: {item.name} run {run}/{runs}: stream …", flush=True)
                result.stream.requests.append(client.stream(item))
                if result.auto is not None:
                    print(f"http: {item.name} run {run}/{runs}: json, chunking auto …", flush=True)
                    result.auto.requests.append(client.json(item, "auto"))
    return results


# --- 2 (in-process): Silero VAD per minute of audio -------------------------------------------------------


@dataclass(frozen=True)
class VadCost:
    """The VAD pass of ``chunking_strategy="auto"``, timed in this process on one file."""

    item: BenchFile
    params: VadParams
    first_call_s: float  # the first call ever: builds the ONNX session
    normalize_s: tuple[float, ...]
    regions_s: tuple[float, ...]
    cpu_s: tuple[float, ...]
    speech_samples: int
    total_samples: int
    regions: int
    chunks: int
    chunk_samples: int

    @property
    def audio_minutes(self) -> float:
        return self.total_samples / SAMPLE_RATE / 60

    @property
    def total_s(self) -> list[float]:
        return [a + b for a, b in zip(self.normalize_s, self.regions_s, strict=True)]

    @property
    def ms_per_audio_minute(self) -> float:
        return 1000 * median(self.total_s) / self.audio_minutes

    @property
    def speech_fraction(self) -> float:
        return self.speech_samples / self.total_samples

    @property
    def chunk_fraction(self) -> float:
        return self.chunk_samples / self.total_samples

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.item.name,
            "audio_s": round(self.total_samples / SAMPLE_RATE, 3),
            "params": {
                "threshold": self.params.threshold,
                "silence_duration_ms": self.params.silence_duration_ms,
                "prefix_padding_ms": self.params.prefix_padding_ms,
                "max_chunk_seconds": self.params.max_chunk_seconds,
                "normalize_loudness": self.params.normalize_loudness,
            },
            "first_call_s": round(self.first_call_s, 4),
            "normalize_loudness": series(self.normalize_s),
            "speech_regions": series(self.regions_s),
            "total": series(self.total_s),
            "cpu": series(self.cpu_s),
            "ms_per_audio_minute": round(self.ms_per_audio_minute, 2),
            "speech_fraction": round(self.speech_fraction, 4),
            "regions": self.regions,
            "chunks": self.chunks,
            "chunked_audio_fraction": round(self.chunk_fraction, 4),
        }


def bench_vad(item: BenchFile, params: VadParams, runs: int) -> VadCost:
    """``normalize_loudness`` + ``speech_regions`` over the whole file, as the server runs them per block."""
    audio = decode_audio(item.data)
    print(f"vad: {item.name} (first call + {runs} runs) …", flush=True)
    start = time.perf_counter()
    speech_regions(audio[:SAMPLE_RATE], params)  # the first call ever builds the ONNX session
    first_call = time.perf_counter() - start
    normalize_s, regions_s, cpu_s = [], [], []
    regions = []
    for _ in range(runs):
        cpu_start = own_cpu_seconds()
        start = time.perf_counter()
        normalized = normalize_loudness(audio) if params.normalize_loudness else audio
        middle = time.perf_counter()
        regions = speech_regions(normalized, params)
        end = time.perf_counter()
        cpu_s.append(own_cpu_seconds() - cpu_start)
        normalize_s.append(middle - start)
        regions_s.append(end - middle)
    chunks = group_regions(regions, params.max_chunk_seconds)
    return VadCost(
        item=item,
        params=params,
        first_call_s=first_call,
        normalize_s=tuple(normalize_s),
        regions_s=tuple(regions_s),
        cpu_s=tuple(cpu_s),
        speech_samples=sum(r.length for r in regions),
        total_samples=int(audio.size),
        regions=len(regions),
        chunks=len(chunks),
        chunk_samples=sum(c.length for c in chunks),
    )


# --- 3: peak server memory on long uploads ----------------------------------------------------------------


class RssSampler:
    """Polls a process's VmRSS in a background thread while a request runs (for the timeline in the JSON)."""

    def __init__(self, pid: int, interval: float = RSS_POLL_SECONDS) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="rss-sampler", daemon=True)
        self._start = 0.0

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.samples.append((time.perf_counter() - self._start, process_rss_mib(self.pid)))
            except (OSError, BenchError):
                return

    def __enter__(self) -> RssSampler:
        self._start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def max_mib(self) -> float:
        return max((mib for _, mib in self.samples), default=0.0)


@dataclass(frozen=True)
class RssResult:
    """Memory of a fresh server process before and during one request on one long upload."""

    spec: RssInput
    upload_bytes: int
    audio_seconds: float
    baseline_rss_mib: float  # VmRSS once the server is ready (model loaded), before any request
    startup_peak_mib: float  # VmHWM at the same moment: the peak of start-up and model loading
    peak_mib: float  # VmHWM after the request
    rss_after_mib: float  # VmRSS after the request
    sampled_max_mib: float
    wall_s: float
    cpu_s: float
    words: int
    samples: tuple[tuple[float, float], ...]

    @property
    def audio_minutes(self) -> float:
        return self.audio_seconds / 60

    @property
    def growth_mib(self) -> float:
        return self.peak_mib - self.baseline_rss_mib

    @property
    def growth_per_minute(self) -> float:
        return self.growth_mib / self.audio_minutes

    @property
    def pcm_mib(self) -> float:
        return self.audio_minutes * PCM_MIB_PER_MINUTE

    @property
    def quarter_max_mib(self) -> list[float]:
        """The highest sampled VmRSS in each quarter of the request: flat when memory does not creep."""
        if not self.samples:
            return []
        end = max(t for t, _ in self.samples)
        quarters: list[list[float]] = [[], [], [], []]
        for t, mib in self.samples:
            quarters[min(3, int(4 * t / end))].append(mib)
        return [max(q, default=0.0) for q in quarters]

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.spec.name,
            "audio_s": round(self.audio_seconds, 3),
            "upload_bytes": self.upload_bytes,
            "mp3_kbps": self.spec.kbps,
            "baseline_rss_mib": round(self.baseline_rss_mib, 1),
            "startup_peak_rss_mib": round(self.startup_peak_mib, 1),
            "peak_rss_mib": round(self.peak_mib, 1),
            "rss_after_mib": round(self.rss_after_mib, 1),
            "sampled_max_rss_mib": round(self.sampled_max_mib, 1),
            "sampled_max_rss_mib_by_quarter": [round(mib, 1) for mib in self.quarter_max_mib],
            "growth_mib": round(self.growth_mib, 1),
            "growth_mib_per_audio_minute": round(self.growth_per_minute, 3),
            "decoded_pcm_mib": round(self.pcm_mib, 1),
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "rtf": round(self.audio_seconds / self.wall_s, 3),
            "words": self.words,
            "rss_samples": [[round(t, 2), round(mib, 1)] for t, mib in self.samples],
        }


def write_rss_config(path: Path) -> Path:
    """A server config with tiny.en alone, served as whisper-1 and preloaded."""
    config = {
        "models": {RSS_MODEL: {"source": f"embedded:{RSS_MODEL}"}},
        "aliases": {RSS_ALIAS: {"model": RSS_MODEL, "usage": "duration"}},
        "preload_models": [RSS_MODEL],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def build_rss_uploads(source_dir: Path, workdir: Path, inputs: Sequence[RssInput], limit: int) -> list[Path]:
    """The compressed long files: 10 minutes of recordings as WAV, looped and encoded to each length as MP3."""
    longest = max(spec.seconds for spec in inputs)
    base_seconds = min(longest, RSS_INPUTS[0].seconds)
    print(f"rss: building {base_seconds / 60:.0f} minutes of recordings and encoding the uploads …", flush=True)
    wav = build_long_file(source_dir, workdir / "rss_base.wav", base_seconds)
    paths = []
    for spec in inputs:
        path = encode_mp3(wav, workdir / spec.name, seconds=spec.seconds, bitrate_kbps=spec.kbps)
        size = path.stat().st_size
        if size > limit:
            raise BenchError(f"{spec.name} is {size / 2**20:.1f} MiB, over the server's upload limit")
        paths.append(path)
    wav.unlink()
    return paths


def bench_rss(config: Path, spec: RssInput, path: Path, workdir: Path) -> RssResult:
    """A fresh server for this one file, so that its VmHWM belongs to this file alone."""
    data = path.read_bytes()
    audio_seconds = audio_duration(data)
    print(f"rss: {spec.name} ({audio_seconds / 60:.1f} min, {len(data) / 2**20:.1f} MiB): fresh server …", flush=True)
    with run_server(config, workdir, preload=RSS_MODEL) as server:
        pid = server.process.pid
        baseline, startup_peak = process_rss_mib(pid), process_peak_rss_mib(pid)
        client = Client(server.base_url, pid, RSS_ALIAS)
        print(f"rss: {spec.name}: transcribing (baseline RSS {baseline:.0f} MiB) …", flush=True)
        item = BenchFile(spec.name, path, data, audio_seconds)
        with RssSampler(pid) as sampler:
            request = client.json(item)
        peak, after = process_peak_rss_mib(pid), process_rss_mib(pid)
    return RssResult(
        spec=spec,
        upload_bytes=len(data),
        audio_seconds=audio_seconds,
        baseline_rss_mib=baseline,
        startup_peak_mib=startup_peak,
        peak_mib=peak,
        rss_after_mib=after,
        sampled_max_mib=sampler.max_mib,
        wall_s=request.wall_s,
        cpu_s=request.cpu_s,
        words=len(request.text.split()),
        samples=tuple(sampler.samples),
    )


def rss_slope(results: Sequence[RssResult]) -> float | None:
    """MiB of extra peak RSS per extra minute of audio between the shortest and the longest file."""
    if len(results) < 2:
        return None
    first, last = results[0], results[-1]
    return (last.peak_mib - first.peak_mib) / (last.audio_minutes - first.audio_minutes)


# --- tables -----------------------------------------------------------------------------------------------


def ratio(numerator: Sequence[float], denominator: Sequence[float]) -> str:
    if not numerator or not denominator:
        return "-"
    return f"{median(numerator) / median(denominator):.3f}"


LATENCY_HEADERS = (
    "file",
    "audio s",
    "json: answer s",
    "stream: 1st delta s",
    "stream: done s",
    "1st delta/json",
    "done/json",
    "deltas",
    "CPU s json / stream",
    "same text",
)


def latency_row(result: FileLatency) -> tuple[str, ...]:
    json_, stream = result.json, result.stream
    deltas = sorted({r.deltas for r in stream.requests})
    return (
        result.item.name,
        f"{result.item.audio_seconds:.1f}",
        med_min(json_.walls),
        med_min(stream.first_deltas),
        med_min(stream.walls),
        ratio(stream.first_deltas, json_.walls),
        ratio(stream.walls, json_.walls),
        "/".join(str(d) for d in deltas),
        f"{median(json_.cpus):.1f} / {median(stream.cpus):.1f}",
        "yes" if stream.text == json_.text and all(r.deltas_join_to_text for r in stream.requests) else "NO",
    )


VAD_HEADERS = (
    "file",
    "audio s",
    "1st call ms",
    "normalize ms",
    "speech_regions ms",
    "VAD ms / audio min",
    "speech %",
    "regions",
    "chunks",
    "chunked audio %",
)


def vad_row(cost: VadCost) -> tuple[str, ...]:
    return (
        cost.item.name,
        f"{cost.total_samples / SAMPLE_RATE:.1f}",
        f"{1000 * cost.first_call_s:.0f}",
        f"{1000 * median(cost.normalize_s):.1f}",
        f"{1000 * median(cost.regions_s):.0f}",
        f"{cost.ms_per_audio_minute:.0f}",
        f"{100 * cost.speech_fraction:.1f}",
        str(cost.regions),
        str(cost.chunks),
        f"{100 * cost.chunk_fraction:.1f}",
    )


CHUNKING_HEADERS = (
    "file",
    "audio s",
    "unchunked s",
    "auto s",
    "auto/unchunked",
    "CPU s unchunked / auto",
    "VAD % of auto",
    "words unchunked / auto",
)


def chunking_row(result: FileLatency, cost: VadCost) -> tuple[str, ...]:
    assert result.auto is not None
    unchunked, auto = result.json, result.auto
    return (
        result.item.name,
        f"{result.item.audio_seconds:.1f}",
        med_min(unchunked.walls),
        med_min(auto.walls),
        ratio(auto.walls, unchunked.walls),
        f"{median(unchunked.cpus):.1f} / {median(auto.cpus):.1f}",
        f"{100 * median(cost.total_s) / median(auto.walls):.2f}",
        f"{len(unchunked.text.split())} / {len(auto.text.split())}",
    )


RSS_HEADERS = (
    "file",
    "audio min",
    "upload MiB (kbps)",
    "baseline RSS MiB",
    "start-up peak MiB",
    "peak RSS MiB",
    "growth MiB",
    "growth MiB / audio min",
    "decoded PCM MiB",
    "VmRSS max by quarter MiB",
    "wall s",
    "RTF",
)


def rss_row(result: RssResult) -> tuple[str, ...]:
    return (
        result.spec.name,
        f"{result.audio_minutes:.1f}",
        f"{result.upload_bytes / 2**20:.1f} ({result.spec.kbps})",
        f"{result.baseline_rss_mib:.0f}",
        f"{result.startup_peak_mib:.0f}",
        f"{result.peak_mib:.0f}",
        f"{result.growth_mib:.0f}",
        f"{result.growth_per_minute:.2f}",
        f"{result.pcm_mib:.0f}",
        "/".join(f"{mib:.0f}" for mib in result.quarter_max_mib) or "-",
        f"{result.wall_s:.1f}",
        f"{result.audio_seconds / result.wall_s:.1f}x",
    )


# --- command line -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.streaming",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="whisper-1", help="model name sent to the API for parts 1 and 2")
    parser.add_argument(
        "--runs", type=int, default=DEFAULT_RUNS, help="timed runs per file and variant (and of the in-process VAD)"
    )
    parser.add_argument(
        "--skip-long-rss", action="store_true", help="leave out the 60-minute memory run (the 10-minute one stays)"
    )
    parser.add_argument(
        "--long-seconds",
        type=float,
        default=LONG_TARGET_SECONDS,
        help=f"length of the long file made of the recordings (default {LONG_TARGET_SECONDS:g})",
    )
    parser.add_argument(
        "--latency-only", action="store_true", help="part 1 only: leave out the in-process VAD and the memory runs"
    )
    add_file_options(parser, "streaming-")
    return parser


def _print_tables(
    header: str,
    latency: Sequence[FileLatency],
    vad: VadCost | None,
    rss: Sequence[RssResult],
    slope: float | None,
    emit: Callable[[str], None] = print,
) -> None:
    emit("")
    emit(header)
    emit("")
    emit("1. Streaming latency through HTTP, seconds from the start of the call, median (min) of the runs")
    emit(render_table(LATENCY_HEADERS, [latency_row(r) for r in latency]))
    if vad is None:
        return
    emit("")
    emit("2a. VAD of chunking_strategy=auto, in-process (normalize_loudness + speech_regions), median of the runs")
    emit(render_table(VAD_HEADERS, [vad_row(vad)]))
    emit("")
    emit("2b. chunking_strategy=auto against unchunked through HTTP (json, not streamed), median (min)")
    emit(render_table(CHUNKING_HEADERS, [chunking_row(r, vad) for r in latency if r.auto is not None]))
    emit("")
    emit(f"3. Server memory per upload, a fresh server each (model {RSS_ALIAS} -> {RSS_MODEL}, json)")
    emit(render_table(RSS_HEADERS, [rss_row(r) for r in rss]))
    if slope is not None:
        emit(
            f"peak RSS from {rss[0].audio_minutes:.0f} to {rss[-1].audio_minutes:.0f} audio minutes: "
            f"{slope:+.2f} MiB per extra audio minute (the decoded audio alone would be "
            f"{PCM_MIB_PER_MINUTE:.2f} MiB per minute)"
        )


def run(args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise BenchError("--runs must be at least 1")
    source_dir = audio_dir()
    served = served_model(args.config, args.model)
    settings, requested, model_id, model_cfg = served.settings, served.requested, served.model_id, served.model
    vad_params = served.service.vad_params(ChunkingStrategy(type="auto"))
    if vad_params is None:
        raise BenchError("the server returned no VAD settings for chunking_strategy=auto")
    threads = model_cfg.cpu_threads or available_cores()
    rss_inputs: tuple[RssInput, ...] = RSS_INPUTS[:1] if args.skip_long_rss else RSS_INPUTS
    started = datetime.now(UTC)
    load: dict[str, list[float]] = {"before": load_average()}

    with tempfile.TemporaryDirectory(prefix="stt-bench-streaming-") as tmp:
        workdir = Path(tmp)
        short = BenchFile.from_wav(source_dir / SHORT_FILE)
        long = BenchFile.from_wav(build_long_file(source_dir, workdir / LONG_FILE, args.long_seconds))

        vad = None if args.latency_only else bench_vad(long, vad_params, args.runs)
        load["after_vad"] = load_average()

        (workdir / "http").mkdir()
        latency = bench_http(served.config, requested, model_id, short, long, args.runs, workdir / "http")
        load["after_http"] = load_average()

        rss_config = write_rss_config(workdir / "rss.yaml")
        rss_settings = load_config(rss_config)
        if args.latency_only:
            rss_inputs = ()
        uploads = (
            build_rss_uploads(source_dir, workdir, rss_inputs, rss_settings.max_upload_bytes) if rss_inputs else []
        )
        rss = []
        for spec, path in zip(rss_inputs, uploads, strict=True):
            server_dir = workdir / f"rss-{spec.name}"
            server_dir.mkdir()
            rss.append(bench_rss(rss_config, spec, path, server_dir))
            load[f"after_rss_{spec.name.removesuffix('.mp3')}"] = load_average()

    slope = rss_slope(rss)
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        **served.report(cpu_threads=threads, beam_size=model_cfg.beam_size),
        "block_seconds": settings.block_seconds,
        "runs": args.runs,
        "machine": machine_info(available_cores(), load),
        "audio_dir": str(source_dir),
        "latency": [r.as_dict() for r in latency],
        "first_piece_seconds": settings.first_piece_seconds,
        "vad_in_process": None if vad is None else vad.as_dict(),
        "rss": {
            "model": RSS_MODEL,
            "block_seconds": rss_settings.block_seconds,
            "results": [r.as_dict() for r in rss],
            "peak_mib_per_extra_audio_minute": None if slope is None else round(slope, 3),
            "decoded_pcm_mib_per_audio_minute": round(PCM_MIB_PER_MINUTE, 3),
        },
    }
    out = write_results(args.out, "streaming-", started, report)

    header = (
        f"{served.title()}, {threads} threads, "
        f"beam {model_cfg.beam_size}), first_piece_seconds {settings.first_piece_seconds}, "
        f"{args.runs} timed runs per variant after 1 warm-up; "
        f"load average {' / '.join(f'{x:.2f}' for x in load['before'])} before, "
        f"{' / '.join(f'{x:.2f}' for x in load_average())} after"
    )
    _print_tables(header, latency, vad, rss, slope)
    return finish(out, load["before"])


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
