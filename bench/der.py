"""Scoring speaker turns against a reference (read from RTTM): DER and its parts (pyannote.metrics), speech coverage,
speaker counts."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

COLLAR = 0.25  # pyannote.metrics: the collar's *total* width (±0.125 s), as the issue measured
Truth = list[tuple[float, float, str]]
Turns = Sequence[Sequence[Any]]  # (start, end, speaker) rows


def annotation(turns: Turns) -> Any:
    from pyannote.core import Annotation, Segment

    result = Annotation()
    for track, (start, end, speaker) in enumerate(turns):
        if end > start:
            result[Segment(start, end), track] = speaker
    return result


def der_parts(truth: Turns, turns: Turns, seconds: float) -> dict[str, float]:
    """DER over [0, seconds] with overlaps scored, and its parts as shares of the reference speech."""
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate(collar=COLLAR, skip_overlap=False)
    parts = metric.compute_components(annotation(truth), annotation(turns), uem=Timeline([Segment(0.0, seconds)]))
    total = parts["total"] or 1.0
    missed, false_alarm, confusion = (parts[k] / total for k in ("missed detection", "false alarm", "confusion"))
    return {
        "der": round(missed + false_alarm + confusion, 4),
        "missed": round(missed, 4),
        "false_alarm": round(false_alarm, 4),
        "confusion": round(confusion, 4),
    }


def rttm_truth(path: Path) -> Truth:
    """(start, end, speaker) turns of an RTTM file."""
    truth = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            truth.append((float(fields[3]), float(fields[3]) + float(fields[4]), fields[7]))
    return truth


def speakers_in(turns: Turns) -> int:
    return len({turn[2] for turn in turns})


def coverage(truth: Turns, turns: Turns) -> float:
    """Share of the reference speech time (10-ms frames) that lies inside some turn."""
    if not truth:
        return 1.0
    frames = round(max(float(t[1]) for t in [*truth, *turns]) * 100) + 1
    reference = np.zeros(frames, dtype=bool)
    covered = np.zeros(frames, dtype=bool)
    for start, end, _ in truth:
        reference[round(start * 100) : round(end * 100)] = True
    for start, end, _ in turns:
        covered[round(start * 100) : round(end * 100)] = True
    return float((reference & covered).sum() / max(1, reference.sum()))


def pct(value: float) -> str:
    """A share as a percentage with one decimal."""
    return f"{100 * value:.1f}%"


__all__ = ["COLLAR", "Truth", "annotation", "coverage", "der_parts", "pct", "rttm_truth", "speakers_in"]
