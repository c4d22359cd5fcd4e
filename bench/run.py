"""Time Whisper in-process against the same model through the HTTP server, and print and save the results."""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from openai import OpenAI

from app.serving.protocol import AudioRequest
from app.settings import Settings
from bench.common import (
    LONG_FILE,
    SHORT_FILE,
    BenchError,
    BenchFile,
    Timings,
    add_file_options,
    audio_dir,
    bench_main,
    build_long_file,
    finish,
    git_commit,
    load_average,
    machine_info,
    own_cpu_seconds,
    own_peak_rss_mib,
    process_cpu_seconds,
    process_peak_rss_mib,
    run_server,
    served_model,
    server_service,
    wav_seconds,
    whisper_engine,
    write_results,
)
from bench.tables import render_table
from engines.audio import decode_audio
from engines.cores import available_cores
from engines.types import DecodeOptions
from engines.whisper.engine import WhisperEngine


@dataclass(frozen=True)
class Measured:
    """Timed runs of one file on one path, the text produced, and the peak RSS of the measured process."""

    timings: Timings
    text: str
    peak_rss_mib: float


def time_runs(runs: int, once: Callable[[], str], cpu_clock: Callable[[], float]) -> tuple[Timings, str]:
    """Call ``once`` for a warm-up and then ``runs`` timed times; return the timings and the last text.

    ``cpu_clock`` gives the CPU seconds used so far by the processes doing the work.
    """
    text = once()
    times = []
    cpu_times = []
    for _ in range(runs):
        cpu_start = cpu_clock()
        start = time.perf_counter()
        text = once()
        times.append(time.perf_counter() - start)
        cpu_times.append(cpu_clock() - cpu_start)
    return Timings(tuple(times), tuple(cpu_times)), text


def transcribe_once(engine: WhisperEngine, options: DecodeOptions, data: bytes, max_duration: float) -> str:
    """Decode the uploaded bytes and transcribe them, consuming every segment; return the text."""
    audio = decode_audio(data, max_duration=max_duration)
    _, segments = engine.transcribe(audio, options)
    return "".join(segment.text for segment in segments).strip()


def _in_process_runs(settings: Settings, requested: str, files: Sequence[BenchFile], runs: int) -> list[Measured]:
    service = server_service(settings)  # the same ModelSpec (beam size, threads, compute type) as the server
    model_id = service.resolve(requested).model_id
    print(f"in-process: loading model {model_id!r} …", flush=True)
    results = []
    with service.manager.lease(model_id) as leased:
        engine = whisper_engine(leased)
        for item in files:
            request = AudioRequest(task="transcribe", file=item.data, model=requested)
            options = service.decode_options(request, engine, model_id)  # as the service builds them for this request
            once = partial(transcribe_once, engine, options, item.data, settings.max_audio_seconds)
            print(f"in-process: {item.name} (warm-up + {runs} runs) …", flush=True)
            timings, text = time_runs(runs, once, own_cpu_seconds)
            results.append(Measured(timings, text, own_peak_rss_mib()))
    return results


def bench_in_process(settings: Settings, requested: str, files: Sequence[BenchFile], runs: int) -> list[Measured]:
    """Decode and transcribe each file in this process as the service does for a default json request.

    The model is referenced only inside ``_in_process_runs``, so it is freed when that returns.
    """
    results = _in_process_runs(settings, requested, files, runs)
    gc.collect()
    return results


def bench_http(
    config: Path, requested: str, model_id: str, files: Sequence[BenchFile], runs: int, workdir: Path
) -> list[Measured]:
    """Start the real server (``model_id`` preloaded) and POST each file to /v1/audio/transcriptions."""
    print(f"http: starting the server (preloading {model_id!r}) …", flush=True)
    with run_server(config, workdir, preload=model_id) as server:
        client = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=3600)
        pid = server.process.pid

        def cpu_clock() -> float:
            return process_cpu_seconds(pid) + own_cpu_seconds()  # server + this client

        results = []
        for item in files:

            def once(item: BenchFile = item) -> str:
                response = client.audio.transcriptions.create(
                    model=requested, file=(item.name, item.data), response_format="json"
                )
                return response.text.strip()

            print(f"http: {item.name} (warm-up + {runs} runs) …", flush=True)
            timings, text = time_runs(runs, once, cpu_clock)
            results.append(Measured(timings, text, process_peak_rss_mib(pid)))
    return results


@dataclass(frozen=True)
class FileResult:
    """Both measurements of one file, and the figures derived from them."""

    item: BenchFile
    local: Measured
    http: Measured

    @property
    def overhead_ratio(self) -> float:
        return self.http.timings.median / self.local.timings.median

    @property
    def cpu_overhead_ratio(self) -> float:
        return self.http.timings.cpu_median / self.local.timings.cpu_median

    def rtf(self, measured: Measured) -> float:
        """Real-time factor: seconds of audio per second of wall time (higher is faster)."""
        return self.item.audio_seconds / measured.timings.median

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.item.name,
            "audio_s": round(self.item.audio_seconds, 3),
            "in_process": {
                **self.local.timings.as_dict(),
                "rtf": round(self.rtf(self.local), 3),
                "bench_peak_rss_mib": round(self.local.peak_rss_mib, 1),
            },
            "http": {
                **self.http.timings.as_dict(),
                "rtf": round(self.rtf(self.http), 3),
                "server_peak_rss_mib": round(self.http.peak_rss_mib, 1),
            },
            "overhead_ratio": round(self.overhead_ratio, 4),
            "cpu_overhead_ratio": round(self.cpu_overhead_ratio, 4),
            "texts_match": self.local.text == self.http.text,
            "words": len(self.http.text.split()),
        }


TABLE_HEADERS = (
    "file",
    "audio s",
    "in-proc s med (min)",
    "HTTP s med (min)",
    "HTTP/in-proc",
    "CPU s in-proc / HTTP",
    "CPU ratio",
    "RTF in-proc",
    "RTF HTTP",
    "server peak RSS MiB",
    "in-proc peak RSS MiB",
)


def table_row(result: FileResult) -> tuple[str, ...]:
    local, http = result.local, result.http
    return (
        result.item.name,
        f"{result.item.audio_seconds:.1f}",
        f"{local.timings.median:.2f} ({local.timings.min:.2f})",
        f"{http.timings.median:.2f} ({http.timings.min:.2f})",
        f"{result.overhead_ratio:.3f}",
        f"{local.timings.cpu_median:.1f} / {http.timings.cpu_median:.1f}",
        f"{result.cpu_overhead_ratio:.3f}",
        f"{result.rtf(local):.2f}x",
        f"{result.rtf(http):.2f}x",
        f"{http.peak_rss_mib:.0f}",
        f"{local.peak_rss_mib:.0f}",
    )


def format_table(results: Sequence[FileResult]) -> str:
    return render_table(TABLE_HEADERS, [table_row(result) for result in results])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--model", default="whisper-1", help="model name sent to the API (alias or local id)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per file and path, after one warm-up")
    add_file_options(parser, "")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise BenchError("--runs must be at least 1")
    source_dir = audio_dir()
    served = served_model(args.config, args.model)
    settings, requested, model_id, model_cfg = served.settings, served.requested, served.model_id, served.model
    threads = model_cfg.cpu_threads or available_cores()
    started = datetime.now(UTC)
    load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="stt-bench-") as tmp:
        workdir = Path(tmp)
        long_path = build_long_file(source_dir, workdir / LONG_FILE)
        short_path = source_dir / SHORT_FILE
        files = [
            BenchFile(SHORT_FILE, short_path, short_path.read_bytes(), wav_seconds(short_path)),
            BenchFile(LONG_FILE, long_path, long_path.read_bytes(), wav_seconds(long_path)),
        ]
        # One after the other, never both at once: the in-process model is freed before the server starts.
        local = bench_in_process(settings, requested, files, args.runs)
        load_between = load_average()
        http = bench_http(served.config, requested, model_id, files, args.runs, workdir)

    results = [FileResult(item, a, b) for item, a, b in zip(files, local, http, strict=True)]
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        **served.report(cpu_threads=threads, beam_size=model_cfg.beam_size, max_concurrency=model_cfg.max_concurrency),
        "runs": args.runs,
        "machine": machine_info(
            available_cores(), {"before": load_before, "between": load_between, "after": load_average()}
        ),
        "audio_dir": str(source_dir),
        "results": [result.as_dict() for result in results],
    }
    out = write_results(args.out, "", started, report)

    print()
    print(f"{served.title()}, {threads} threads, beam {model_cfg.beam_size}), {args.runs} timed runs after 1 warm-up")
    print(format_table(results))
    for result in results:
        if result.local.text != result.http.text:
            print(f"note: {result.item.name}: the in-process and HTTP transcripts differ")
    return finish(out, load_before)


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
