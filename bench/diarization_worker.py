"""One diarization engine in its own process (its peak memory is its own): load, warm up, time each case, print JSON.

Run by ``bench.diarization``; by hand: ``python -m bench.diarization_worker --engine embedded --runs 1 a.wav b.wav``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")  # before any pyannote import

from bench.common import own_cpu_seconds, own_peak_rss_mib
from engines.audio import SAMPLE_RATE, decode_audio
from engines.diarization.factory import load_diarizer
from engines.diarization.types import Diarization, DiarizationOptions, SpeakerTurn


def turns(items: Sequence[SpeakerTurn]) -> list[list[Any]]:
    return [[t.start, t.end, t.speaker] for t in items]


def run(engine: str, paths: Sequence[Path], runs: int) -> dict[str, Any]:
    began = time.perf_counter()
    diarizer = load_diarizer(engine, None, None, "cpu")  # type: ignore[arg-type]
    load_s = time.perf_counter() - began
    began = time.perf_counter()
    warm_up_s = diarizer.warm_up() if hasattr(diarizer, "warm_up") else 0.0
    warm_up_s = time.perf_counter() - began if warm_up_s == 0.0 else warm_up_s
    cases: dict[str, Any] = {}
    for path in paths:
        audio = decode_audio(path.read_bytes())
        began = time.perf_counter()
        result: Diarization = diarizer.diarize(audio, DiarizationOptions())
        first_s = time.perf_counter() - began
        walls, cpus = [], []
        for _ in range(runs):
            cpu, began = own_cpu_seconds(), time.perf_counter()
            result = diarizer.diarize(audio, DiarizationOptions())
            walls.append(time.perf_counter() - began)
            cpus.append(own_cpu_seconds() - cpu)
        cases[path.stem] = {
            "audio_s": round(audio.size / SAMPLE_RATE, 3),
            "first_call_s": round(first_s, 4),
            "wall_s": [round(w, 4) for w in walls],
            "cpu_s": [round(c, 4) for c in cpus],
            "wall_median_s": round(statistics.median(walls), 4),
            "cpu_median_s": round(statistics.median(cpus), 4),
            "turns": turns(result.turns),
            "exclusive": turns(result.exclusive),
        }
    return {
        "engine": engine,
        "implementation": type(diarizer).__name__,
        "load_s": round(load_s, 3),
        "warm_up_s": round(warm_up_s, 3),
        "peak_rss_mib": round(own_peak_rss_mib(), 1),
        "cases": cases,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.diarization_worker", description=__doc__)
    parser.add_argument("--engine", required=True, choices=["embedded", "resemblyzer", "pyannote"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("files", nargs="+", type=Path, help="16 kHz WAV files (any container works)")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.engine, args.files, args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
