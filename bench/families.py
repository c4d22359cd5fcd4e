"""Two engine families side by side: Moonshine base (English) against Whisper base, in one run.

On the shared English recordings with reference transcripts (JFK, LibriSpeech, the Harvard
sentences over a telephone band, the pyannote conversation, and each channel of the stereo
LibriSpeech file), per model:

* file requests, in process, as the server calls each engine (default decode options; Whisper with
  the server's beam size): WER against the reference, and process CPU seconds and wall seconds per
  second of audio (after one warm-up decode);
* realtime, through the real server and the openai SDK's realtime client: each of the Harvard,
  JFK and pyannote recordings streamed alone at 1x real time with server VAD; first delta after
  speech start (turns over 3 s) and completion after speech end (p50/p95), CPU s per audio s, and
  the WER of the live transcript.

    .venv/bin/python -m bench.families                  # base and moonshine-base
    .venv/bin/python -m bench.families --skip-realtime  # file requests only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from app.serving.factory import model_specs
from app.settings import DEFAULT_CONFIG, PROJECT_ROOT, load_settings
from bench import common
from bench.common import BenchError, load_average, run_server
from bench.der import pct
from bench.realtime import fmt, pcm24, run_level, wer_of
from engines.audio import AudioFile, decode_audio
from engines.cores import available_cores
from engines.families import load_model
from engines.spec import LoadContext
from engines.types import DecodeOptions, Transcriber

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
MODELS = ("base", "moonshine-base")
# (label, file, channel or None for the down-mix, reference file)
FILES = (
    ("jfk", "en_jfk.flac", None, "en_jfk.txt"),
    ("librispeech", "en_librispeech_1272-128104-0000.wav", None, "en_librispeech_1272-128104-0000.txt"),
    ("harvard 8k", "en_osr_harvard72_8k.wav", None, "en_osr_harvard72_8k.txt"),
    ("pyannote sample", "diar_pyannote_sample.wav", None, "diar_pyannote_sample.txt"),
    ("stereo ch0", "en_stereo_2ch_librispeech.wav", 0, "en_stereo_2ch_librispeech.ch0.txt"),
    ("stereo ch1", "en_stereo_2ch_librispeech.wav", 1, "en_stereo_2ch_librispeech.ch1.txt"),
)
LIVE_RECORDINGS = ("en_osr_harvard72_8k.wav", "en_jfk.flac", "diar_pyannote_sample.wav")


@dataclass(frozen=True)
class FileRow:
    model: str
    label: str
    audio_seconds: float
    wer: float | None
    cpu_per_audio_second: float
    wall_per_audio_second: float


def channel_samples(path: Path, channel: int | None) -> np.ndarray:
    if channel is None:
        return decode_audio(path.read_bytes())
    audio = AudioFile(path.read_bytes())
    try:
        return np.concatenate([block[channel] for block in audio.channel_blocks(600.0)])
    finally:
        audio.close()


def transcribe(engine: Transcriber, samples: np.ndarray, options: DecodeOptions) -> str:
    _, segments = engine.transcribe(samples, options)
    return "".join(segment.text for segment in segments).strip()


def file_rows(engine: Transcriber, model: str, options: DecodeOptions, directory: Path) -> list[FileRow]:
    rows = []
    transcribe(engine, decode_audio((directory / FILES[0][1]).read_bytes()), options)  # warm-up
    for label, name, channel, reference in FILES:
        samples = channel_samples(directory / name, channel)
        seconds = samples.size / 16_000
        cpu, wall = time.process_time(), time.perf_counter()
        text = transcribe(engine, samples, options)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        rows.append(FileRow(model, label, seconds, wer_of(directory / reference, text), cpu / seconds, wall / seconds))
        print(f"{model:15} {label:16} WER {rows[-1].wer or 0:.1%}  CPU/audio {cpu / seconds:.3f}", flush=True)
    return rows


def measure_files(models: Sequence[str], directory: Path) -> list[FileRow]:
    settings = load_settings(DEFAULT_CONFIG)
    specs = model_specs(settings)
    rows: list[FileRow] = []
    for model in models:
        spec = specs[model]
        engine = load_model(spec, LoadContext(settings.model_cache, offline=True))
        rows += file_rows(engine, model, DecodeOptions(beam_size=spec.beam_size), directory)
        del engine
    return rows


def measure_realtime(models: Sequence[str], directory: Path) -> list[dict[str, Any]]:
    shipped = yaml.safe_load(DEFAULT_CONFIG.read_text())["models"]
    config = {
        "models": {name: shipped[name] for name in models},
        "realtime": {"max_sessions_per_key": 64, "max_sessions_per_model": 64},
    }
    audio = {name: pcm24(directory / name) for name in LIVE_RECORDINGS}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config_path = workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        env = {
            "STT_MODEL_CACHE_DIR": str(PROJECT_ROOT / "var" / "models"),
            "STT_LEDGER_URL": "sqlite://",
            "STT_PRELOAD_MODELS": json.dumps(list(models)),
        }
        with run_server(config_path, workdir, preload=models[0], env=env) as server:
            url, pid = f"{server.base_url}/v1", server.process.pid
            for model in models:
                asyncio.run(run_level(url, pid, model, 1, {n: a[: 48_000 * 3] for n, a in audio.items()}))  # warm-up
                for name in LIVE_RECORDINGS:
                    level = asyncio.run(run_level(url, pid, model, 1, audio, name))
                    row = level.row()
                    reference = directory / (Path(name).stem + ".txt")
                    row |= {"recording": name, "live_wer": wer_of(reference, level.results[0].transcript)}
                    rows.append(row)
                    print(f"{model:15} live {name:28} first delta p50 {row['first_delta_p50_s']}", flush=True)
    return rows


def file_table(rows: Sequence[FileRow]) -> str:
    headers = ["model", "recording", "audio s", "WER", "CPU s / audio s", "wall s / audio s"]
    cells = [
        [r.model, r.label, f"{r.audio_seconds:.1f}", "-" if r.wer is None else pct(r.wer),
         f"{r.cpu_per_audio_second:.3f}", f"{r.wall_per_audio_second:.3f}"]
        for r in rows
    ]  # fmt: skip
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        audio = sum(r.audio_seconds for r in mine)
        scored = [r for r in mine if r.wer is not None]
        pooled = sum(r.wer * r.audio_seconds for r in scored if r.wer is not None) / max(
            1e-9, sum(r.audio_seconds for r in scored)
        )
        cells.append([
            model, "all (audio-weighted)", f"{audio:.1f}", f"{pooled:.1%}",
            f"{sum(r.cpu_per_audio_second * r.audio_seconds for r in mine) / audio:.3f}",
            f"{sum(r.wall_per_audio_second * r.audio_seconds for r in mine) / audio:.3f}",
        ])  # fmt: skip
    return common.render_table(headers, cells)


def live_table(rows: Sequence[dict[str, Any]]) -> str:
    headers = ["model", "recording", "turns", "first delta p50/p95 s", "completed p50/p95 s", "CPU s / audio s",
               "live WER"]  # fmt: skip
    cells = [
        [row["model"], row["recording"], str(row["turns"]),
         f"{fmt(row['first_delta_p50_s'])} / {fmt(row['first_delta_p95_s'])}",
         f"{fmt(row['completion_p50_s'])} / {fmt(row['completion_p95_s'])}",
         fmt(row["cpu_s_per_audio_s"]), "-" if row["live_wer"] is None else pct(row["live_wer"])]
        for row in rows
    ]  # fmt: skip
    return common.render_table(headers, cells)


def run(args: argparse.Namespace) -> int:
    directory = common.audio_dir()
    needed = {name for _, name, _, _ in FILES} | set(LIVE_RECORDINGS)
    missing = sorted(name for name in needed if not (directory / name).is_file())
    if missing:
        raise BenchError(f"missing recordings in {directory}: {', '.join(missing)}")
    load_before = load_average()
    warning = common.busy_warning(load_before)
    if warning:
        print(warning, file=sys.stderr)
    files = measure_files(args.models, directory)
    live = [] if args.skip_realtime else measure_realtime(args.models, directory)
    print("\nFile requests (in process)\n" + file_table(files))
    if live:
        print("\nRealtime sessions (server, 1x real time, one session)\n" + live_table(live))
    out = args.out or RESULTS_DIR / f"families-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "families", "commit": common.git_commit(),
        "files": [vars(r) for r in files], "realtime": live,
        "machine": common.machine_info(available_cores(), {"before": load_before, "after": load_average()}),
    }, indent=2))  # fmt: skip
    print(f"\nresults: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.families", description=__doc__)
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="models of the default config")
    parser.add_argument("--skip-realtime", action="store_true", help="file requests only")
    parser.add_argument("--out", type=Path, help="JSON results file (default: bench/results/families-<time>.json)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(build_parser().parse_args(argv))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
