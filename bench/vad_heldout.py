"""Held-out choice of the `auto` chunking VAD settings: chosen on the other real recordings, scored on the one left out.

The error of a setting on a recording is pyannote.metrics' detection error rate of the padded
speech regions (missed speech plus false alarm, as shares of the reference speech, 0.25-s collar)
against the union of the reference speaker turns: the regions are what `auto` hands to Whisper,
and both errors cost (lost words; Whisper output over non-speech). The settings in use come first
in each grid, so a tie keeps them; they are OpenAI's published server_vad defaults, never fitted
on these recordings, so their own score is a held-out figure too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bench.crossval import CrossValidation, from_matrix, grid
from bench.diarization_heldout import Recording
from bench.tables import render_table
from engines.audio import SAMPLE_RATE
from engines.vad import VadParams, normalize_loudness, speech_regions

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

VAD_GRID: list[dict[str, Any]] = grid(
    threshold=(0.5, 0.3, 0.4, 0.6),
    silence_duration_ms=(500, 300, 1000),
    prefix_padding_ms=(300, 100, 500, 800),
    max_gain_db=(20.0, 30.0),  # loudness normalisation's largest gain (quiet far-field meetings)
)


def detection_error(recording: Recording, params: VadParams, max_gain_db: float) -> dict[str, float]:
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.detection import DetectionErrorRate

    reference = Annotation()
    for track, (start, end, _) in enumerate(recording.truth):
        reference[Segment(start, end), track] = "speech"
    audio = normalize_loudness(recording.audio, max_gain=10 ** (max_gain_db / 20))
    hypothesis = Annotation()
    for track, region in enumerate(speech_regions(audio, params)):
        hypothesis[Segment(region.start / SAMPLE_RATE, region.end / SAMPLE_RATE), track] = "speech"
    parts = DetectionErrorRate(collar=0.25).compute_components(
        reference.support(), hypothesis, uem=Timeline([Segment(0.0, recording.seconds)])
    )
    total = parts["total"] or 1.0
    return {"miss": parts["miss"] / total, "false_alarm": parts["false alarm"] / total}


def evaluate(recordings: Sequence[Recording], candidates: Sequence[Mapping[str, Any]] = VAD_GRID) -> CrossValidation:
    errors = np.zeros((len(candidates), len(recordings)))
    for c_index, candidate in enumerate(candidates):
        params = VadParams(
            threshold=candidate["threshold"],
            silence_duration_ms=candidate["silence_duration_ms"],
            prefix_padding_ms=candidate["prefix_padding_ms"],
        )
        for r_index, recording in enumerate(recordings):
            parts = detection_error(recording, params, candidate["max_gain_db"])
            errors[c_index, r_index] = parts["miss"] + parts["false_alarm"]
    return from_matrix(list(candidates), [r.name for r in recordings], errors)


def summary(cv: CrossValidation) -> dict[str, Any]:
    per_recording = dict(zip(cv.recordings, np.round(cv.errors[0], 4).tolist(), strict=True))
    return {**cv.summary(), "per_recording_in_use": per_recording}


def vad_table(cv: CrossValidation) -> str:
    rows = [
        (
            fold.held_out,
            f"{100 * cv.errors[0, i]:.1f}%",
            " ".join(str(v) for v in cv.candidates[fold.chosen].values()),
            f"{100 * fold.error:.1f}%",
        )
        for i, fold in enumerate(cv.folds)
    ]
    rows.append(("mean", f"{100 * cv.errors[0].mean():.1f}%", "", f"{100 * cv.held_out_mean:.1f}%"))
    head = (
        f"in sample: {dict(cv.candidates[cv.in_sample])} → {100 * cv.in_sample_mean:.1f}% "
        f"(gap to held-out {100 * cv.gap:.1f} points); spread {cv.spread()}\n"
    )
    headers = ("recording", "in use (0.5/500/300/20 dB)", "chosen without it", "held-out error")
    return head + render_table(headers, rows)
