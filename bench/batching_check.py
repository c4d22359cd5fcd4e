"""Same transcripts with and without the batching engine: every clip decoded alone, then all at once.

    python -m bench.batching_check [--model base] [--dir ../shared/audio] [--synthetic 4]

Loads the model twice (a plain one, and one with its batching engine), decodes each clip alone on
the plain one, then sends every clip at once, each from its own thread, to the batched one, and
compares segment texts and tokens. Runs twice: with the server's default options (beam 5,
temperature fallback), and with word timestamps and log-probs (the align operation). Prints one
line per clip, the batch sizes seen, and the WER of each batched transcript against the alone one.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import jiwer

from app.serving.factory import model_specs
from app.settings import DEFAULT_CONFIG, load_settings
from bench.common import BenchError, audio_dir, bench_main
from bench.speech import espeak
from engines.audio import Samples, decode_audio
from engines.spec import LoadContext
from engines.types import DecodeOptions
from engines.whisper.engine import WhisperEngine
from engines.whisper.loading import load_whisper

SYNTHETIC = (
    "The quarterly report was finished late on Friday, so the team reviewed the numbers again on Monday.",
    "Please remember to water the tomato plants twice a week while we are away.",
    "Our train left the station ten minutes behind schedule, but the driver made up the time.",
    "Twelve students volunteered to clean the river bank on Saturday and collected forty bags of rubbish.",
    "A thin layer of snow covered the garden, and the children built a crooked snowman.",
    "The pilot announced that we would land in twenty minutes and asked everyone to stay seated.",
)
VOICES = ("en-us", "en+m3", "en+f3", "en-gb", "en-us+f2", "en-gb-scotland")


@dataclass(frozen=True)
class Decoded:
    text: str
    tokens: tuple[tuple[int, ...], ...]
    words: tuple[tuple[str, float, float], ...]


class BatchSizes:
    """Counts the batches the engine ran, by operation and size."""

    def __init__(self) -> None:
        self.seen: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()

    def batch_ran(self, op: str, size: int, seconds: float) -> None:
        with self._lock:
            self.seen[(op, size)] += 1


def decode(engine: WhisperEngine, audio: Samples, options: DecodeOptions) -> Decoded:
    _, segments = engine.transcribe(audio, options)
    decoded = list(segments)
    return Decoded(
        text="".join(s.text for s in decoded).strip(),
        tokens=tuple(tuple(s.tokens) for s in decoded),
        words=tuple((w.word, w.start, w.end) for s in decoded for w in s.words),
    )


def decode_together(engine: WhisperEngine, clips: Sequence[Samples], options: DecodeOptions) -> list[Decoded]:
    """Every clip at once, one thread each, released together."""
    results: list[Decoded | BaseException | None] = [None] * len(clips)
    start = threading.Barrier(len(clips))

    def worker(index: int) -> None:
        start.wait()
        try:
            results[index] = decode(engine, clips[index], options)
        except BaseException as exc:  # reported below, per clip
            results[index] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(clips))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out: list[Decoded] = []
    for result in results:
        if not isinstance(result, Decoded):
            raise BenchError(f"a batched decode failed: {result!r}")
        out.append(result)
    return out


def synthetic_clips(count: int, workdir: Path) -> list[tuple[str, Samples]]:
    clips = []
    for i in range(count):
        path = espeak(
            workdir / f"synthetic{i}.wav", SYNTHETIC[i % len(SYNTHETIC)], voice=VOICES[i % len(VOICES)], speed=160
        )
        clips.append((path.name, decode_audio(path.read_bytes())))
    return clips


def recorded_clips(directory: Path) -> list[tuple[str, Samples]]:
    paths = sorted(p for p in directory.iterdir() if p.suffix in {".wav", ".flac"})
    return [(p.name, decode_audio(p.read_bytes())) for p in paths]


def compare(
    plain: WhisperEngine,
    batched: WhisperEngine,
    clips: Sequence[tuple[str, Samples]],
    options: DecodeOptions,
) -> list[tuple[str, bool, float]]:
    """Per clip: its name, whether batched equals alone exactly, and the WER of batched against alone."""
    alone = [decode(plain, audio, options) for _, audio in clips]
    together = decode_together(batched, [audio for _, audio in clips], options)
    rows = []
    for (name, _), a, b in zip(clips, alone, together, strict=True):
        error = float(jiwer.wer(a.text or "<empty>", b.text or "<empty>"))
        rows.append((name, a == b, error))
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.batching_check", description=__doc__)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--model", default="base")
    parser.add_argument("--dir", type=Path, default=None, help="recordings (default: the shared audio folder)")
    parser.add_argument("--synthetic", type=int, default=4, help="generated clips added (espeak-ng)")
    parser.add_argument("--max-batch-size", type=int, default=8)
    return parser


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    spec = model_specs(settings)[args.model]
    plain = load_whisper(replace(spec, batching=False, num_workers=1), LoadContext(settings.model_cache, offline=True))
    sizes = BatchSizes()
    batched = load_whisper(
        replace(
            spec,
            batching=True,
            max_batch_size=args.max_batch_size,
            max_encoder_batch_size=args.max_batch_size,  # batched encoder forwards too (as on a GPU)
            batch_wait_ms=20.0,
        ),
        LoadContext(settings.model_cache, offline=True, observer=sizes),
    )
    with tempfile.TemporaryDirectory() as tmp:
        clips = recorded_clips(args.dir or audio_dir()) + synthetic_clips(args.synthetic, Path(tmp))
    failures = 0
    for label, options in (
        ("default options", DecodeOptions(beam_size=spec.beam_size)),
        ("words + log-probs", DecodeOptions(beam_size=spec.beam_size, word_timestamps=True, logprobs=True)),
    ):
        sizes.seen.clear()
        rows = compare(plain, batched, clips, options)
        print(f"\n## {args.model}, {label}: {len(clips)} clips at once, each against itself alone")
        for name, same, error in rows:
            print(f"- {name}: {'same' if same else 'DIFFERENT'} (WER vs alone {error:.3f})")
            failures += not same
        print("batches (op, size): " + ", ".join(f"{op}×{size}: {n}" for (op, size), n in sorted(sizes.seen.items())))
    batched.close()
    print(f"\n{failures} transcript(s) differ")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
