"""Speaker diarization: error rate of the embedded diarizer (in process and through the API) and its cost next to
Whisper, in process and end to end through the real server. See bench/DIARIZATION.md."""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from openai import OpenAI
from openai.types.audio import TranscriptionDiarized
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

from app.settings import DEFAULT_CONFIG, PROJECT_ROOT
from bench.common import (
    BenchError,
    Timings,
    busy_warning,
    git_commit,
    load_average,
    machine_info,
    own_cpu_seconds,
    process_cpu_seconds,
    render_table,
    run_server,
    write_wav,
)
from engines.audio import SAMPLE_RATE, Samples, decode_audio
from engines.diarization.factory import load_diarizer
from engines.diarization.types import DiarizationOptions, SpeakerTurn
from engines.models import WhisperSpec, available_cores, load_whisper
from engines.types import DecodeOptions
from engines.whisper import WhisperEngine

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
WHISPER_MODEL = "whisper-1"  # → base in configs/default.yaml, the model the diarize alias also uses
DIARIZE_MODEL = "gpt-4o-transcribe-diarize"
SERVER_MODEL_ID = "base"
COLLARS = (0.25, 0.0)  # pyannote.metrics: the collar's *total* width, i.e. ±0.125 s around each reference boundary

Truth = list[tuple[float, float, str]]
T = TypeVar("T")


@dataclass(frozen=True)
class Case:
    """One benchmark input: 16 kHz samples, the same samples as WAV bytes for the upload, and who speaks when."""

    name: str
    description: str
    audio: Samples
    wav: bytes
    truth: Truth

    @property
    def seconds(self) -> float:
        return self.audio.size / SAMPLE_RATE

    @property
    def speakers(self) -> int:
        return len({speaker for _, _, speaker in self.truth})


@dataclass(frozen=True)
class Timed:
    """The untimed first call (warm-up), the timed runs after it, and what the last run returned."""

    first_s: float
    timings: Timings


@dataclass(frozen=True)
class Score:
    """DER and its components (seconds) for one hypothesis against one reference at one collar."""

    collar: float
    total: float
    missed: float
    false_alarm: float
    confusion: float

    @property
    def der(self) -> float:
        return (self.missed + self.false_alarm + self.confusion) / self.total if self.total else 0.0

    def share(self, seconds: float) -> float:
        return seconds / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "collar_s": self.collar,
            "der": round(self.der, 4),
            "missed": round(self.share(self.missed), 4),
            "false_alarm": round(self.share(self.false_alarm), 4),
            "confusion": round(self.share(self.confusion), 4),
            "scored_speech_s": round(self.total, 3),
            "missed_s": round(self.missed, 3),
            "false_alarm_s": round(self.false_alarm, 3),
            "confusion_s": round(self.confusion, 3),
        }


@dataclass(frozen=True)
class Scored:
    """A hypothesis (turns or API segments) scored at every collar, with the speaker count it found."""

    scores: tuple[Score, ...]
    speakers_found: int
    turns: tuple[tuple[float, float, str], ...]

    def at(self, collar: float) -> Score:
        return next(score for score in self.scores if score.collar == collar)


# --- inputs -------------------------------------------------------------------------------------------------------


def build_cases(workdir: Path) -> list[Case]:
    """pyannote.audio's two-speaker sample and the two espeak-ng conversations of the diarization tests."""
    if shutil.which("espeak-ng") is None:
        raise BenchError("espeak-ng is needed to generate the dialogues (e.g. apt-get install espeak-ng)")
    # The test module is the single definition of the dialogues and of the sample's ground truth; it skips
    # itself (a BaseException) when an optional extra is missing, so import it only after the check above.
    try:
        from tests.diarization_audio import DIALOGUE, MEETING, conversation, pyannote_sample
    except ImportError as exc:
        raise BenchError(
            f"cannot import the dialogue builders from tests/e2e/test_diarization_engines.py: {exc}"
        ) from exc

    voices = workdir / "voices"
    voices.mkdir()
    sources: list[tuple[str, str, tuple[Samples, Truth]]] = [
        ("pyannote_sample", "real speech, 2 speakers, overlaps (pyannote.audio sample.wav + rttm)", pyannote_sample()),
        # Seeds as in the fixtures of tests/e2e/test_diarization_engines.py, so these are the tested files.
        ("espeak_dialogue", "espeak-ng, 2 voices (en+m3, en+f3), 8 turns", conversation(voices, DIALOGUE, seed=0)),
        ("espeak_meeting", "espeak-ng, 3 voices (+ en+kaukovalta), 7 turns", conversation(voices, MEETING, seed=1)),
    ]
    cases = []
    for name, description, (audio, truth) in sources:
        path = workdir / f"{name}.wav"
        write_wav(path, audio)
        wav = path.read_bytes()
        # Both paths get exactly the uploaded bytes' samples (16-bit quantised), decoded as the server does.
        cases.append(Case(name, description, decode_audio(wav), wav, truth))
    return cases


# --- scoring ------------------------------------------------------------------------------------------------------


def annotation(turns: Sequence[tuple[float, float, str]], uri: str) -> Annotation:
    """A pyannote Annotation with one track per turn (so overlapping turns of one speaker do not collide)."""
    result = Annotation(uri=uri)
    for track, (start, end, speaker) in enumerate(turns):
        if end > start:
            result[Segment(start, end), track] = speaker
    return result


def score(case: Case, turns: Sequence[tuple[float, float, str]]) -> Scored:
    """DER of ``turns`` against the case's truth at every collar, over the whole file (UEM = [0, duration])."""
    reference = annotation(case.truth, case.name)
    hypothesis = annotation(turns, case.name)
    uem = Timeline([Segment(0.0, case.seconds)], uri=case.name)
    scores = []
    for collar in COLLARS:
        metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
        parts: Mapping[str, float] = metric.compute_components(reference, hypothesis, uem=uem)
        scores.append(
            Score(collar, parts["total"], parts["missed detection"], parts["false alarm"], parts["confusion"])
        )
    return Scored(tuple(scores), len({speaker for _, _, speaker in turns}), tuple(turns))


def speaker_turns(turns: Sequence[SpeakerTurn]) -> list[tuple[float, float, str]]:
    return [(round(t.start, 3), round(t.end, 3), t.speaker) for t in turns]


def api_turns(result: TranscriptionDiarized) -> list[tuple[float, float, str]]:
    """diarized_json segments as turns: each spans its first to its last word, pauses between segments are silence."""
    return [(segment.start, segment.end, segment.speaker) for segment in result.segments]


# --- timing -------------------------------------------------------------------------------------------------------


def time_calls(runs: int, once: Callable[[], T], cpu_clock: Callable[[], float]) -> tuple[Timed, T]:
    """One untimed-for-the-median first call, then ``runs`` timed calls; the last call's result."""
    start = time.perf_counter()
    result = once()
    first = time.perf_counter() - start
    times, cpu_times = [], []
    for _ in range(runs):
        cpu_start = cpu_clock()
        start = time.perf_counter()
        result = once()
        times.append(time.perf_counter() - start)
        cpu_times.append(cpu_clock() - cpu_start)
    return Timed(first, Timings(tuple(times), tuple(cpu_times))), result


def timed_dict(timed: Timed, audio_seconds: float) -> dict[str, object]:
    return {
        "first_call_s": round(timed.first_s, 4),
        **timed.timings.as_dict(),
        "x_realtime": round(audio_seconds / timed.timings.median, 2),
    }


def transcribe(engine: WhisperEngine, audio: Samples, options: DecodeOptions) -> str:
    _, segments = engine.transcribe(audio, options)
    return "".join(segment.text for segment in segments).strip()


# --- the three phases ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InProcess:
    load_s: float
    warm_up_s: float
    diarize: dict[str, Timed]
    scored: dict[str, Scored]


def bench_diarizer(cases: Sequence[Case], runs: int) -> InProcess:
    print("diarizer: loading the embedded engine …", flush=True)
    start = time.perf_counter()
    diarizer = load_diarizer("embedded", None, None, "cpu")
    load_s = time.perf_counter() - start
    warm_up = getattr(diarizer, "warm_up", None)
    if not callable(warm_up):
        raise BenchError(f"the {diarizer.name} diarizer has no warm_up()")
    print("diarizer: warm-up (librosa JIT on first use) …", flush=True)
    warm_up_s = float(warm_up())
    timed: dict[str, Timed] = {}
    scored: dict[str, Scored] = {}
    for case in cases:
        print(f"diarizer: {case.name} (first call + {runs} runs) …", flush=True)

        def once(case: Case = case) -> list[SpeakerTurn]:
            return diarizer.diarize(case.audio, DiarizationOptions()).turns

        timed[case.name], turns = time_calls(runs, once, own_cpu_seconds)
        scored[case.name] = score(case, speaker_turns(turns))
    return InProcess(load_s, warm_up_s, timed, scored)


@dataclass(frozen=True)
class WhisperRuns:
    load_s: float
    plain: dict[str, Timed]
    words: dict[str, Timed]


def bench_whisper(cases: Sequence[Case], runs: int) -> WhisperRuns:
    """Whisper base in process: the options of a default whisper-1 request, and with word times as the diarized path."""
    print("whisper: loading base (embedded:base) …", flush=True)
    start = time.perf_counter()
    engine = load_whisper(WhisperSpec("base", "embedded:base"), cache_dir=PROJECT_ROOT / "var" / "models", offline=True)
    load_s = time.perf_counter() - start
    plain, words = whisper_runs(engine, cases, runs)
    return WhisperRuns(load_s, plain, words)  # the engine is freed on return, before the server starts


def whisper_runs(engine: WhisperEngine, cases: Sequence[Case], runs: int) -> tuple[dict[str, Timed], dict[str, Timed]]:
    plain_options = DecodeOptions()
    word_options = replace(plain_options, word_timestamps=True)
    plain: dict[str, Timed] = {}
    words: dict[str, Timed] = {}
    for case in cases:
        for label, options, into in (("plain", plain_options, plain), ("word times", word_options, words)):
            print(f"whisper: {case.name}, {label} (first call + {runs} runs) …", flush=True)

            def once(case: Case = case, options: DecodeOptions = options) -> str:
                return transcribe(engine, case.audio, options)

            into[case.name], _ = time_calls(runs, once, own_cpu_seconds)
    return plain, words


@dataclass(frozen=True)
class ServerRuns:
    first_diarized_s: float
    first_diarized_case: str
    whisper: dict[str, Timed]
    diarized: dict[str, Timed]
    scored: dict[str, Scored]
    texts: dict[str, str]


def bench_server(cases: Sequence[Case], runs: int, workdir: Path) -> ServerRuns:
    """The real server, diarizer preloaded (not warmed up, as in production), called with the openai SDK."""
    env = {
        "STT_LEDGER_URL": f"sqlite:///{workdir / 'usage.db'}",
        "STT_DIARIZATION__PRELOAD": "true",
        "STT_DIARIZATION__ENGINE": "embedded",
        "STT_DIARIZATION__DEVICE": "cpu",
    }
    print("server: starting (preloading base and the diarizer) …", flush=True)
    with run_server(DEFAULT_CONFIG, workdir, preload=SERVER_MODEL_ID, env=env) as server:
        client = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=3600)
        pid = server.process.pid

        def cpu_clock() -> float:
            return process_cpu_seconds(pid) + own_cpu_seconds()  # server + this client

        def diarized(case: Case) -> TranscriptionDiarized:
            result = client.audio.transcriptions.create(
                model=DIARIZE_MODEL, file=(f"{case.name}.wav", case.wav), response_format="diarized_json"
            )
            if not isinstance(result, TranscriptionDiarized):
                raise BenchError(f"diarized_json answered with {type(result).__name__}")
            return result

        def plain(case: Case) -> str:
            response = client.audio.transcriptions.create(
                model=WHISPER_MODEL, file=(f"{case.name}.wav", case.wav), response_format="json"
            )
            return response.text.strip()

        # The server loads the diarizer without warming it up: its first request pays the librosa JIT.
        print(f"server: first diarized request ({cases[0].name}) …", flush=True)
        start = time.perf_counter()
        diarized(cases[0])
        first_diarized_s = time.perf_counter() - start
        whisper: dict[str, Timed] = {}
        diarize: dict[str, Timed] = {}
        scored: dict[str, Scored] = {}
        texts: dict[str, str] = {}
        for case in cases:
            print(f"server: {case.name}, {WHISPER_MODEL} json (first call + {runs} runs) …", flush=True)

            def plain_once(case: Case = case) -> str:
                return plain(case)

            def diarized_once(case: Case = case) -> TranscriptionDiarized:
                return diarized(case)

            whisper[case.name], _ = time_calls(runs, plain_once, cpu_clock)
            print(f"server: {case.name}, {DIARIZE_MODEL} diarized_json (first call + {runs} runs) …", flush=True)
            diarize[case.name], result = time_calls(runs, diarized_once, cpu_clock)
            scored[case.name] = score(case, api_turns(result))
            texts[case.name] = result.text
    return ServerRuns(first_diarized_s, cases[0].name, whisper, diarize, scored, texts)


# --- report -------------------------------------------------------------------------------------------------------


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


DER_HEADERS = (
    "file",
    "audio s",
    "speakers true/found",
    "DER c=0.25",
    "missed",
    "false alarm",
    "confusion",
    "DER c=0",
    "missed c=0",
    "FA c=0",
    "conf c=0",
)


def der_table(cases: Sequence[Case], scored: Mapping[str, Scored]) -> str:
    rows = []
    for case in cases:
        found = scored[case.name]
        loose, strict = found.at(0.25), found.at(0.0)
        rows.append(
            (
                case.name,
                f"{case.seconds:.1f}",
                f"{case.speakers}/{found.speakers_found}",
                pct(loose.der),
                pct(loose.share(loose.missed)),
                pct(loose.share(loose.false_alarm)),
                pct(loose.share(loose.confusion)),
                pct(strict.der),
                pct(strict.share(strict.missed)),
                pct(strict.share(strict.false_alarm)),
                pct(strict.share(strict.confusion)),
            )
        )
    return render_table(DER_HEADERS, rows)


def med(timed: Timed) -> str:
    return f"{timed.timings.median:.2f} ({timed.timings.min:.2f})"


IN_PROCESS_HEADERS = (
    "file",
    "audio s",
    "diarize s med (min)",
    "Whisper s med (min)",
    "Whisper+words s",
    "diarize/Whisper",
    "CPU s diarize / Whisper",
    "diarize xRT",
    "Whisper xRT",
)


def in_process_table(cases: Sequence[Case], diar: InProcess, whisper: WhisperRuns) -> str:
    rows = []
    for case in cases:
        d, w, ww = diar.diarize[case.name], whisper.plain[case.name], whisper.words[case.name]
        rows.append(
            (
                case.name,
                f"{case.seconds:.1f}",
                med(d),
                med(w),
                med(ww),
                f"{d.timings.median / w.timings.median:.3f}",
                f"{d.timings.cpu_median:.2f} / {w.timings.cpu_median:.2f}",
                f"{case.seconds / d.timings.median:.0f}x",
                f"{case.seconds / w.timings.median:.1f}x",
            )
        )
    return render_table(IN_PROCESS_HEADERS, rows)


SERVER_HEADERS = (
    "file",
    "audio s",
    "whisper-1 s med (min)",
    "diarize s med (min)",
    "diarize/whisper-1",
    "CPU s whisper-1 / diarize",
    "whisper-1 xRT",
    "diarize xRT",
)


def server_table(cases: Sequence[Case], server: ServerRuns) -> str:
    rows = []
    for case in cases:
        w, d = server.whisper[case.name], server.diarized[case.name]
        rows.append(
            (
                case.name,
                f"{case.seconds:.1f}",
                med(w),
                med(d),
                f"{d.timings.median / w.timings.median:.3f}",
                f"{w.timings.cpu_median:.1f} / {d.timings.cpu_median:.1f}",
                f"{case.seconds / w.timings.median:.1f}x",
                f"{case.seconds / d.timings.median:.1f}x",
            )
        )
    return render_table(SERVER_HEADERS, rows)


def report_dict(
    args: argparse.Namespace,
    started: datetime,
    cases: Sequence[Case],
    diar: InProcess,
    whisper: WhisperRuns,
    server: ServerRuns | None,
    loads: Mapping[str, Sequence[float]],
) -> dict[str, Any]:
    files = []
    for case in cases:
        entry: dict[str, Any] = {
            "file": case.name,
            "description": case.description,
            "audio_s": round(case.seconds, 3),
            "speakers_true": case.speakers,
            "reference": [list(turn) for turn in case.truth],
            "in_process": {
                "speakers_found": diar.scored[case.name].speakers_found,
                "der": [s.as_dict() for s in diar.scored[case.name].scores],
                "turns": [list(turn) for turn in diar.scored[case.name].turns],
                "diarize": timed_dict(diar.diarize[case.name], case.seconds),
                "whisper": timed_dict(whisper.plain[case.name], case.seconds),
                "whisper_word_times": timed_dict(whisper.words[case.name], case.seconds),
            },
        }
        if server is not None:
            entry["api"] = {
                "speakers_found": server.scored[case.name].speakers_found,
                "der": [s.as_dict() for s in server.scored[case.name].scores],
                "segments": [list(turn) for turn in server.scored[case.name].turns],
                "text": server.texts[case.name],
                WHISPER_MODEL: timed_dict(server.whisper[case.name], case.seconds),
                DIARIZE_MODEL: timed_dict(server.diarized[case.name], case.seconds),
            }
        files.append(entry)
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "runs": args.runs,
        "diarizer": {"engine": "embedded", "device": "cpu", "load_s": round(diar.load_s, 3)},
        "diarizer_warm_up_s": round(diar.warm_up_s, 3),
        "whisper": {"model": "base", "source": "embedded:base", "load_s": round(whisper.load_s, 3)},
        "server": None
        if server is None
        else {
            "config": str(DEFAULT_CONFIG),
            "first_diarized_request_s": round(server.first_diarized_s, 3),
            "first_diarized_request_file": server.first_diarized_case,
        },
        "metric": "pyannote.metrics DiarizationErrorRate, skip_overlap=False, uem=[0, duration]; "
        "collar = total width (0.25 → ±0.125 s)",
        "machine": machine_info(available_cores(), loads),
        "results": files,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.diarization", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per file and path, after one first call")
    parser.add_argument("--no-server", action="store_true", help="skip the end-to-end runs through the server")
    parser.add_argument("--out", type=Path, help="JSON results file (default: bench/results/diarization-<ts>.json)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise BenchError("--runs must be at least 1")
    started = datetime.now(UTC)
    loads: dict[str, list[float]] = {"before": load_average()}
    server: ServerRuns | None = None
    with tempfile.TemporaryDirectory(prefix="stt-bench-diar-") as tmp:
        workdir = Path(tmp)
        cases = build_cases(workdir)
        diar = bench_diarizer(cases, args.runs)
        loads["after_diarizer"] = load_average()
        whisper = bench_whisper(cases, args.runs)
        gc.collect()  # both in-process models are gone before the server competes for the CPU
        loads["after_whisper"] = load_average()
        if not args.no_server:
            server = bench_server(cases, args.runs, workdir)
            loads["after_server"] = load_average()

    report = report_dict(args, started, cases, diar, whisper, server, loads)
    out: Path = args.out or RESULTS_DIR / f"diarization-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    print()
    print(
        f"embedded diarizer: load {diar.load_s:.1f} s, warm_up() {diar.warm_up_s:.1f} s (librosa JIT; not in the "
        f"timings below); Whisper base load {whisper.load_s:.1f} s; {args.runs} timed runs after one first call"
    )
    print("\nDER of the embedded diarizer, in process (pyannote.metrics; c = collar, total width in seconds)")
    print(der_table(cases, diar.scored))
    if server is not None:
        print(f"\nDER of the end-to-end API output ({DIARIZE_MODEL}, diarized_json segments as turns)")
        print(der_table(cases, server.scored))
    print("\nIn process: diarizer.diarize vs Whisper base transcription of the same samples (xRT = audio s / wall s)")
    print(in_process_table(cases, diar, whisper))
    if server is not None:
        print(f"\nThrough the server with the openai SDK: {WHISPER_MODEL} json vs {DIARIZE_MODEL} diarized_json")
        print(server_table(cases, server))
        print(
            f"first diarized request after start-up ({server.first_diarized_case}, diarizer preloaded but cold): "
            f"{server.first_diarized_s:.1f} s"
        )
    print("\nload average (1, 5, 15 min): " + "; ".join(f"{k} {v}" for k, v in loads.items()))
    warning = busy_warning(loads["before"])
    if warning is not None:
        print(warning)
    print(f"\nresults written to {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
