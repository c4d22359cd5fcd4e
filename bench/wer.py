"""Word error rate of the server's decode path, in-process, per file, chunking mode and run, and whether runs agree."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.serving.channels import DECODE_BLOCK_SECONDS  # the blocks the service hands to LongFormRun
from app.serving.protocol import AudioRequest, ChunkingStrategy
from app.serving.service import TranscriptionService
from bench.common import (
    BenchError,
    add_file_options,
    audio_dir,
    audio_files,
    bench_main,
    config_path,
    finish,
    foreign_language,
    git_commit,
    load_average,
    load_config,
    server_service,
    write_results,
)
from bench.speech import LONG_TEXT, SYNTH_SENTENCE, espeak, repeat_audio, wer
from bench.tables import render_table
from engines.audio import AudioFile
from engines.longform import LongFormConfig, LongFormRun
from engines.types import Transcriber

MODES = ("default", "auto")


@dataclass(frozen=True)
class Item:
    """One input file with its reference transcript and the language to request (None: detect)."""

    name: str
    path: Path
    reference: str | None  # None: transcribed and compared between runs, but not scored
    language: str | None
    note: str = ""


def recordings(directory: Path) -> list[Item]:
    """Every recording; those without a single reference (`<stem>.txt`) are transcribed but not scored.

    `en_stereo_2ch_librispeech.wav` has a different speaker on each channel, talking over each
    other. The server hears the two mixed to mono and Whisper writes down one of them, and not
    the louder one (channel 1 has the higher RMS, but its speaker says 6 words against 17): no
    single reference fits. The diarization recordings have speaker turns but no transcript. Their
    transcripts are still compared between runs (and with ``--compare``, between versions).
    """
    items = []
    for path in audio_files(directory):
        language = foreign_language(path)
        plain = path.with_suffix(".txt")
        if plain.is_file():
            items.append(Item(path.name, path, plain.read_text().strip(), language))
        elif any(directory.glob(f"{path.stem}.ch*.txt")):
            items.append(Item(path.name, path, None, language, "per-channel references only: not scored"))
        else:
            items.append(Item(path.name, path, None, language, "no transcript reference: not scored"))
    return items


def generated(folder: Path) -> list[Item]:
    """Generated speech with known text: a sentence, a longer passage, and a sentence said three times."""
    sentence = espeak(folder / "synth_sentence.wav", SYNTH_SENTENCE)
    passage = espeak(folder / "synth_passage.wav", LONG_TEXT, speed=170)
    repeated = repeat_audio(sentence, folder / "synth_repeated3.wav", 3)
    return [
        Item(sentence.name, sentence, SYNTH_SENTENCE, None, "espeak-ng"),
        Item(passage.name, passage, LONG_TEXT, None, "espeak-ng"),
        Item(repeated.name, repeated, " ".join([SYNTH_SENTENCE] * 3), None, "espeak-ng, the same sentence 3 times"),
    ]


def transcribe(
    service: TranscriptionService,
    engine: Transcriber,
    config: LongFormConfig,
    item: Item,
    max_seconds: float,
    change: Mapping[str, Any] | None = None,
) -> str:
    """One default request as the server runs it: the upload opened once, fed block by block to LongFormRun.

    ``change``: decode options to set otherwise than the server would (a benchmark's candidate values)."""
    data = item.path.read_bytes()
    request = AudioRequest(task="transcribe", file=data, model=engine.name, language=item.language)
    options = replace(service.decode_options(request, engine, engine.name), **(change or {}))
    audio = AudioFile(data, max_duration=max_seconds)
    try:
        run = LongFormRun(engine, options, audio.blocks(min(DECODE_BLOCK_SECONDS, config.block_seconds)), config)
        return "".join(segment.text for segment in run.segments()).strip()
    finally:
        audio.close()


def load_texts(path: Path) -> dict[tuple[str, str], list[str]]:
    """The transcripts of an earlier results file, by (file, mode)."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"--compare {path}: {exc}") from exc
    return {(r["file"], r["mode"]): list(r["texts"]) for r in report["results"]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.wer", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per file and mode (default 3)")
    parser.add_argument("--model", default="base", help="local model id from the config (default: base)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: default (unchunked), auto")
    parser.add_argument("--only", default="", help="only files whose name contains this text")
    parser.add_argument("--no-generated", action="store_true", help="leave out the espeak-ng files")
    parser.add_argument(
        "--compare", type=Path, help="an earlier results JSON: say per file and mode if the text changed"
    )
    add_file_options(parser, "wer-")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise BenchError("--runs must be at least 1")
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - set(MODES):
        raise BenchError(f"--modes takes a comma-separated subset of {', '.join(MODES)}")
    config = config_path(args.config)
    settings = load_config(config)
    if args.model not in settings.models:
        raise BenchError(f"--model {args.model!r} is not a model of {config}")
    service = server_service(settings)
    configs = {
        "default": service.longform_config(None),
        "auto": service.longform_config(ChunkingStrategy("auto")),
    }
    previous = load_texts(args.compare) if args.compare else None
    started = datetime.now(UTC)
    load_before = load_average()
    rows: list[tuple[str, ...]] = []
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="stt-wer-") as tmp:
        items = recordings(audio_dir()) + ([] if args.no_generated else generated(Path(tmp)))
        items = [item for item in items if args.only in item.name]
        print(f"loading model {args.model!r} …", flush=True)
        with service.manager.lease(args.model) as engine:
            for item in items:
                for mode in modes:
                    texts, wers, seconds = [], [], []
                    for _ in range(args.runs):
                        start = time.perf_counter()
                        text = transcribe(service, engine, configs[mode], item, settings.max_audio_seconds)
                        seconds.append(time.perf_counter() - start)
                        texts.append(text)
                        if item.reference is not None:
                            wers.append(wer(item.reference, text))
                    identical = len(set(texts)) == 1
                    shown = [f"{w:.1%}" for w in wers] or ["-"] * args.runs
                    changed = ""
                    if previous is not None:
                        before = previous.get((item.name, mode))
                        changed = "?" if before is None else ("same" if before == texts else "CHANGED")
                    print(f"{item.name} [{mode}]: {' '.join(shown)} {changed}", flush=True)
                    rows.append(
                        (
                            item.name,
                            mode,
                            *shown,
                            "yes" if identical else "NO",
                            *([changed] if previous is not None else []),
                            f"{sum(seconds) / len(seconds):.1f}",
                        )
                    )
                    results.append(
                        {
                            "file": item.name,
                            "note": item.note,
                            "language": item.language,
                            "mode": mode,
                            "wer": [round(w, 4) for w in wers],
                            "identical": identical,
                            "seconds": [round(s, 2) for s in seconds],
                            "texts": texts,
                        }
                    )
    headers = (
        "file",
        "mode",
        *(f"WER run {i + 1}" for i in range(args.runs)),
        "identical",
        *(["vs --compare"] if previous is not None else []),
        "s/run",
    )
    print()
    print(f"model {args.model}, {args.runs} runs per file and mode, git {git_commit()}")
    print(render_table(headers, rows))
    for item in items:
        if item.note:
            print(f"note: {item.name}: {item.note}")
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "model": args.model,
        "runs": args.runs,
        "loadavg_before": load_before,
        "loadavg_after": load_average(),
        "results": results,
    }
    return finish(write_results(args.out, "wer-", started, report), load_before)


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
