"""Speaker diarization: DER (miss / false alarm / confusion), speakers found, real-time factor and peak memory of
each engine on every multi-speaker recording, and per-channel WER on stereo calls. See bench/DIARIZATION.md."""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

from app.settings import DEFAULT_CONFIG, PROJECT_ROOT
from bench.common import (
    BenchError,
    bench_main,
    busy_warning,
    git_commit,
    load_average,
    machine_info,
    render_table,
    run_server,
    write_wav,
)
from engines.audio import SAMPLE_RATE, decode_audio
from engines.models import available_cores

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
COLLAR = 0.25  # pyannote.metrics: the collar's *total* width (±0.125 s), as the issue measured
ENGINES = ("embedded", "resemblyzer")
Turns = list[tuple[float, float, str]]


@dataclass(frozen=True)
class Case:
    name: str
    wav: Path
    truth: Turns
    seconds: float

    @property
    def speakers(self) -> int:
        return len({s for _, _, s in self.truth})


def shared_dir() -> Path:
    from tests.audio import shared_audio_dir

    directory = shared_audio_dir()
    if directory is None:
        raise BenchError("the shared recordings folder is missing (set STT_TEST_AUDIO_DIR)")
    return directory


def build_cases(workdir: Path, synthetic: bool) -> list[Case]:
    """Every diar_*.wav with an .rttm in the shared folder, pyannote.audio's sample.wav, and (optionally) espeak."""
    from tests.diarization_audio import DIALOGUE, MEETING, conversation, pyannote_sample, rttm_truth

    cases = []
    for wav in sorted(shared_dir().glob("diar_*.wav")):
        if wav.with_suffix(".rttm").is_file():
            seconds = decode_audio(wav.read_bytes()).size / SAMPLE_RATE
            cases.append(Case(wav.stem, wav, rttm_truth(wav.with_suffix(".rttm")), seconds))
    audio, truth = pyannote_sample()  # the copy inside the pyannote.audio package
    path = workdir / "pyannote_package_sample.wav"
    write_wav(path, audio)
    cases.append(Case(path.stem, path, truth, audio.size / SAMPLE_RATE))
    if synthetic:
        voices = workdir / "voices"
        voices.mkdir()
        for name, lines, seed in (("espeak_dialogue", DIALOGUE, 0), ("espeak_meeting", MEETING, 1)):
            audio, truth = conversation(voices, lines, seed=seed)
            write_wav(workdir / f"{name}.wav", audio)
            cases.append(Case(name, workdir / f"{name}.wav", truth, audio.size / SAMPLE_RATE))
    return cases


def annotation(turns: Sequence[Sequence[Any]]) -> Annotation:
    result = Annotation()
    for track, (start, end, speaker) in enumerate(turns):
        if end > start:
            result[Segment(start, end), track] = speaker
    return result


def score(case: Case, turns: Sequence[Sequence[Any]]) -> dict[str, float]:
    metric = DiarizationErrorRate(collar=COLLAR, skip_overlap=False)
    parts = metric.compute_components(
        annotation(case.truth), annotation(turns), uem=Timeline([Segment(0.0, case.seconds)])
    )
    total = parts["total"] or 1.0
    missed, false_alarm, confusion = (parts[k] / total for k in ("missed detection", "false alarm", "confusion"))
    return {
        "der": round(missed + false_alarm + confusion, 4),
        "missed": round(missed, 4),
        "false_alarm": round(false_alarm, 4),
        "confusion": round(confusion, 4),
        "speakers_found": len({t[2] for t in turns}),
    }


def bench_engine(engine: str, cases: Sequence[Case], runs: int) -> dict[str, Any]:
    """The engine in a fresh process (bench.diarization_worker): its peak RSS is the engine's alone."""
    print(f"engine {engine}: {len(cases)} files, first call + {runs} timed runs each …", flush=True)
    command = [sys.executable, "-m", "bench.diarization_worker", "--engine", engine, "--runs", str(runs)]
    done = subprocess.run(
        [*command, *(str(c.wav) for c in cases)], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"the {engine} worker failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    for case in cases:
        entry = result["cases"][case.wav.stem]
        entry["score"] = score(case, entry["turns"])
        entry["score_exclusive"] = score(case, entry["exclusive"])
        entry["x_realtime"] = round(case.seconds / entry["wall_median_s"], 1)
        entry["x_realtime_cpu"] = round(case.seconds / max(entry["cpu_median_s"], 1e-6), 1)
    return result


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def der_table(cases: Sequence[Case], results: Mapping[str, Mapping[str, Any]]) -> str:
    headers = (
        "engine",
        "file",
        "audio s",
        "speakers true/found",
        "DER",
        "missed",
        "false alarm",
        "confusion",
        "DER exclusive",
        "xRT wall",
        "xRT CPU",
    )
    rows = []
    for engine, result in results.items():
        for case in cases:
            entry = result["cases"][case.wav.stem]
            s, x = entry["score"], entry["score_exclusive"]
            rows.append(
                (
                    engine,
                    case.name,
                    f"{case.seconds:.1f}",
                    f"{case.speakers}/{s['speakers_found']}",
                    pct(s["der"]),
                    pct(s["missed"]),
                    pct(s["false_alarm"]),
                    pct(s["confusion"]),
                    pct(x["der"]),
                    f"{entry['x_realtime']:.1f}x",
                    f"{entry['x_realtime_cpu']:.1f}x",
                )
            )
    return render_table(headers, rows)


def summary_table(cases: Sequence[Case], results: Mapping[str, Mapping[str, Any]]) -> str:
    shared = [c for c in cases if c.name.startswith("diar_")]
    headers = ("engine", "mean DER shared files", "mean DER all", "load s", "warm-up s", "peak RSS MiB")
    rows = []
    for engine, result in results.items():
        mean = [result["cases"][c.wav.stem]["score"]["der"] for c in shared]
        every = [result["cases"][c.wav.stem]["score"]["der"] for c in cases]
        rows.append(
            (
                engine,
                pct(sum(mean) / max(1, len(mean))),
                pct(sum(every) / len(every)),
                f"{result['load_s']:.1f}",
                f"{result['warm_up_s']:.1f}",
                f"{result['peak_rss_mib']:.0f}",
            )
        )
    return render_table(headers, rows)


def bench_server(cases: Sequence[Case], workdir: Path, engine: str) -> dict[str, Any]:
    """DER of the diarized_json segments through the real server (chunking_strategy=auto), and the first request."""
    import time

    from openai import OpenAI

    env = {
        "STT_LEDGER_URL": f"sqlite:///{workdir / f'usage-{engine}.db'}",
        "STT_DIARIZATION__PRELOAD": "true",
        "STT_DIARIZATION__ENGINE": engine,
    }
    out: dict[str, Any] = {}
    print(f"server ({engine} diarizer): starting (base and the diarizer preloaded) …", flush=True)
    with run_server(DEFAULT_CONFIG, workdir, preload="base", env=env) as server:
        client = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=3600)
        for index, case in enumerate(cases):
            began = time.perf_counter()
            result = client.audio.transcriptions.create(
                model="gpt-4o-transcribe-diarize",
                file=(case.wav.name, case.wav.read_bytes()),
                response_format="diarized_json",
                chunking_strategy="auto",
            )
            turns = [(s.start, s.end, s.speaker) for s in result.segments]
            out[case.name] = {
                "score": score(case, turns),
                "seconds": round(time.perf_counter() - began, 2),
                "segments": [list(t) for t in turns],
            }
            if index == 0:
                out["first_request"] = {"file": case.name, "seconds": out[case.name]["seconds"]}
    return out


def server_table(cases: Sequence[Case], servers: Mapping[str, Mapping[str, Any]]) -> str:
    headers = ("engine", "file", "speakers true/found", "DER", "missed", "false alarm", "confusion", "request s")
    rows = []
    for (engine, server), case in itertools.product(servers.items(), cases):
        entry = server[case.name]
        s = entry["score"]
        rows.append(
            (
                engine,
                case.name,
                f"{case.speakers}/{s['speakers_found']}",
                pct(s["der"]),
                pct(s["missed"]),
                pct(s["false_alarm"]),
                pct(s["confusion"]),
                f"{entry['seconds']:.1f}",
            )
        )
    return render_table(headers, rows)


def run(args: argparse.Namespace) -> int:
    from bench.diarization_calibration import calibrate, calibration_table
    from bench.diarization_channels import channel_table, channel_wer

    started = datetime.now(UTC)
    loads: dict[str, list[float]] = {"before": load_average()}
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    with tempfile.TemporaryDirectory(prefix="stt-bench-diar-") as tmp:
        workdir = Path(tmp)
        cases = build_cases(workdir, synthetic=not args.no_synthetic)
        results = {engine: bench_engine(engine, cases, args.runs) for engine in engines}
        loads["after_engines"] = load_average()
        calibration = None if args.no_calibration else calibrate(shared_dir())
        channels = [] if args.no_channels else channel_wer(shared_dir(), workdir)
        loads["after_channels"] = load_average()
        server = {engine: bench_server(cases, workdir, engine) for engine in engines} if args.server else None
        if server is not None:
            loads["after_server"] = load_average()
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "runs": args.runs,
        "metric": f"pyannote.metrics DiarizationErrorRate(collar={COLLAR}, skip_overlap=False), uem=[0, duration]",
        "machine": machine_info(available_cores(), loads),
        "cases": [{"name": c.name, "audio_s": round(c.seconds, 3), "speakers": c.speakers} for c in cases],
        "engines": results,
        "known_speaker_calibration": calibration,
        "channels": channels,
        "server": server,
    }
    out: Path = args.out or RESULTS_DIR / f"diarization-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nDER per engine (collar {COLLAR} s total, overlaps scored; xRT = audio s / diarization s, median)")
    print(der_table(cases, results))
    print()
    print(summary_table(cases, results))
    if calibration is not None:
        print("\nKnown-speaker threshold (embedded engine): cosine of a reference clip and a speaker's speech")
        print(calibration_table(calibration))
    if channels:
        print("\nPer-channel transcription (Whisper base): WER down-mixed vs each channel alone")
        print(channel_table(channels))
    if server is not None:
        print("\nThrough the server: gpt-4o-transcribe-diarize, diarized_json, chunking_strategy=auto")
        print(server_table(cases, server))
        for engine, entry in server.items():
            first = entry["first_request"]
            print(f"{engine}: first diarized request after start-up ({first['file']}): {first['seconds']:.1f} s")
    print("\nload average (1, 5, 15 min): " + "; ".join(f"{k} {v}" for k, v in loads.items()))
    warning = busy_warning(loads["before"])
    if warning:
        print(warning)
    print(f"results written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.diarization", description=__doc__)
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated: embedded, resemblyzer")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per file, after one first call")
    parser.add_argument("--server", action="store_true", help="also measure DER through the real server")
    parser.add_argument("--no-channels", action="store_true", help="skip the per-channel WER part (needs Whisper)")
    parser.add_argument("--no-calibration", action="store_true", help="skip the known-speaker threshold part")
    parser.add_argument("--no-synthetic", action="store_true", help="leave out the espeak conversations")
    parser.add_argument("--out", type=Path, help="JSON results (default: bench/results/diarization-<ts>.json)")
    return parser


def checked_run(args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise BenchError("--runs must be at least 1")
    if shutil.which("espeak-ng") is None and not args.no_synthetic:
        raise BenchError("espeak-ng is needed for the generated conversations (or --no-synthetic)")
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(build_parser(), checked_run, argv)


if __name__ == "__main__":
    sys.exit(main())
