"""Held-out DER of the embedded diarizer: tuned values chosen on the other real recordings, scored on the one left out.

The costly part of diarizing (segmentation and voice embeddings: ``CamppDiarizer.analyse``) runs
once per recording and per setting that changes it; every clustering candidate is then decided on
that evidence (``CamppDiarizer.decide``), so a few hundred candidates cost seconds each. Three ways
to count and group speakers are compared on the same evidence, each tuned the same way: the
engine's own average-linkage clustering, pyannote.audio's clustering and spectral clustering with
an eigengap estimate (``bench.clusterers``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.crossval import Candidate, CrossValidation, from_matrix, grid
from bench.der import Truth, der_parts, pct, rttm_truth, speakers_in
from bench.tables import render_table
from engines.audio import SAMPLE_RATE, Samples, decode_audio
from engines.diarization.clustering import Clusterer
from engines.diarization.types import Diarization, DiarizationOptions

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

# Settings that change the evidence (one analysis per recording each) and those decided on it.
# Each grid lists the engine's earlier value first: ties go to the earliest candidate.
EVIDENCE_GRID: list[dict[str, Any]] = grid(max_run_s=(5.0, 0.0, 3.0))
FIXED_RUNS = 5.0  # the run length of the main comparison (it wins at every threshold: bench/DIARIZATION.md)
# The values that shape the runs, set earlier on three of the recordings, in the CV too (for the engine only).
STRUCTURAL_GRID: list[dict[str, Any]] = grid(max_run_s=(5.0,), max_gap_s=(0.3, 0.5, 0.2), min_cluster_s=(1.0, 0.5, 2.0))
OWN_GRID = grid(
    threshold=(0.42, 0.35, 0.4, 0.45, 0.5, 0.55),
    min_speaker_s=(2.0, 0.0, 1.0, 3.0),
    keep_threshold=(0.6, 0.5, 0.7),
)
PYANNOTE_GRID = grid(threshold=(0.5, 0.6, 0.7, 0.7045654963945799, 0.8, 0.9), min_cluster_size=(1, 2, 4, 8, 12))
SPECTRAL_GRID = grid(pval=(0.01, 0.05, 0.1, 0.2, 0.3), min_pnum=(2, 4, 6, 8))
COUNTED_SECONDS = 2.0  # reference speakers with less speech than this are not counted for the ±1 check
OWN = "engine (average linkage)"
METHODS: dict[str, list[dict[str, Any]]] = {
    OWN: OWN_GRID,
    "pyannote AgglomerativeClustering": PYANNOTE_GRID,
    "spectral, eigengap": SPECTRAL_GRID,
}


@dataclass(frozen=True)
class Recording:
    name: str
    audio: Samples
    truth: Truth

    @property
    def seconds(self) -> float:
        return self.audio.size / SAMPLE_RATE

    @property
    def speakers(self) -> int:
        return len({s for _, _, s in self.truth})

    @property
    def counted_speakers(self) -> int:
        """Reference speakers with at least ``COUNTED_SECONDS`` of speech (a 0.4-s "yes" is hard to count)."""
        seconds: dict[str, float] = {}
        for start, end, who in self.truth:
            seconds[who] = seconds.get(who, 0.0) + end - start
        return sum(1 for value in seconds.values() if value >= COUNTED_SECONDS)


@dataclass(frozen=True)
class Outcome:
    """One candidate's diarization of one recording, scored."""

    der: float
    der_exclusive: float
    speakers: int


@dataclass(frozen=True)
class MethodResult:
    method: str
    cv: CrossValidation
    outcomes: dict[tuple[int, str], Outcome]  # (candidate index, recording) → outcome
    counted_speakers: dict[str, int]  # reference speakers with enough speech to count, per recording

    def held_out(self, recording: str) -> Outcome:
        fold = next(f for f in self.cv.folds if f.held_out == recording)
        return self.outcomes[fold.chosen, recording]

    def in_sample(self, recording: str) -> Outcome:
        return self.outcomes[self.cv.in_sample, recording]

    def count_errors(self) -> list[int]:
        """|speakers found − counted reference speakers| per recording, held out."""
        return [abs(self.held_out(r).speakers - truth) for r, truth in self.counted_speakers.items()]

    def restricted(self, keep: Callable[[Candidate], bool], method: str) -> MethodResult:
        """The same cross-validation over the candidates ``keep`` accepts (e.g. one evidence setting)."""
        kept = [i for i, c in enumerate(self.cv.candidates) if keep(c)]
        cv = from_matrix([self.cv.candidates[i] for i in kept], self.cv.recordings, self.cv.errors[kept])
        outcomes = {(new, r): self.outcomes[old, r] for new, old in enumerate(kept) for r in self.cv.recordings}
        return MethodResult(method, cv, outcomes, self.counted_speakers)


def real_recordings(shared: Path) -> list[Recording]:
    """Every ``diar_*.wav`` of the shared folder that has a reference ``.rttm``."""
    return [
        Recording(wav.stem, decode_audio(wav.read_bytes()), rttm_truth(wav.with_suffix(".rttm")))
        for wav in sorted(shared.glob("diar_*.wav"))
        if wav.with_suffix(".rttm").is_file()
    ]


def clusterer_for(method: str, values: Mapping[str, Any]) -> Clusterer | None:
    """None: the engine's own clustering with the candidate's settings."""
    from bench.clusterers import pyannote_clusterer, spectral_clusterer

    if method == OWN:
        return None
    if method.startswith("pyannote"):
        return pyannote_clusterer(values["threshold"], values["min_cluster_size"])
    return spectral_clusterer(values["pval"], values["min_pnum"])


def evaluate(
    recordings: Sequence[Recording],
    methods: Mapping[str, Sequence[Mapping[str, Any]]] = METHODS,
    evidence_grid: Sequence[Mapping[str, Any]] = EVIDENCE_GRID,
    progress: Callable[[str], None] = print,
) -> dict[str, MethodResult]:
    """Cross-validate every method over (evidence settings × its own grid) on the recordings."""
    from engines.diarization.campp_engine import CamppDiarizer, CamppSettings

    diarizer = CamppDiarizer()
    base = diarizer.settings
    evidence = {}
    for index, values in enumerate(evidence_grid):
        progress(f"held-out: analysing {len(recordings)} recordings with {dict(values)} …")
        settings = replace(base, **values)
        for recording in recordings:
            evidence[index, recording.name] = diarizer.analyse(recording.audio, settings)
    results = {}
    for method, own_grid in methods.items():
        candidates: list[Candidate] = [{**ev, **values} for ev in evidence_grid for values in own_grid]
        progress(f"held-out: {method}, {len(candidates)} candidates …")
        outcomes: dict[tuple[int, str], Outcome] = {}
        for c_index, candidate in enumerate(candidates):
            ev_index = c_index // len(own_grid)
            tuned = {k: v for k, v in candidate.items() if k in CamppSettings.__dataclass_fields__}
            settings = replace(base, **tuned)
            clusterer = clusterer_for(method, candidate)
            for recording in recordings:
                decided = diarizer.decide(evidence[ev_index, recording.name], DiarizationOptions(), settings, clusterer)
                outcomes[c_index, recording.name] = score(recording, decided)
        names = [r.name for r in recordings]
        matrix = np.array([[outcomes[c, name].der for name in names] for c in range(len(candidates))])
        cv = from_matrix(candidates, names, matrix.astype(np.float64))
        results[method] = MethodResult(method, cv, outcomes, {r.name: r.counted_speakers for r in recordings})
    return results


def score(recording: Recording, result: Diarization) -> Outcome:
    turns = [(t.start, t.end, t.speaker) for t in result.turns]
    exclusive = [(t.start, t.end, t.speaker) for t in result.exclusive]
    return Outcome(
        der_parts(recording.truth, turns, recording.seconds)["der"],
        der_parts(recording.truth, exclusive, recording.seconds)["der"],
        speakers_in(turns),
    )


def fixed_runs(results: Mapping[str, MethodResult]) -> dict[str, MethodResult]:
    """Each method with the run length fixed at ``FIXED_RUNS`` (the main comparison)."""
    return {name: result.restricted(lambda c: c["max_run_s"] == FIXED_RUNS, name) for name, result in results.items()}


def summary(results: Mapping[str, MethodResult], recordings: Sequence[Recording]) -> dict[str, Any]:
    """JSON-ready: per method the held-out and in-sample figures, the choices and their spread."""
    out: dict[str, Any] = {}
    for name, result in results.items():
        cv = result.cv
        out[name] = {
            **cv.summary(),  # errors are mean DER
            "count_errors": result.count_errors(),
            "recordings": {
                r.name: {
                    "speakers": r.speakers,
                    "counted_speakers": r.counted_speakers,
                    "chosen": dict(cv.chosen_in_fold(r.name)),
                    "held_out": vars(result.held_out(r.name)),
                    "in_sample": vars(result.in_sample(r.name)),
                }
                for r in recordings
            },
        }
    return out


def method_table(results: Mapping[str, MethodResult]) -> str:
    headers = ("method", "held-out DER", "in-sample DER", "gap", "count off by >1", "mean |count error|", "spread")
    rows = []
    for name, result in results.items():
        cv, errors = result.cv, result.count_errors()
        spread = "; ".join(f"{k} {'/'.join(str(v) for v in values)}" for k, values in cv.spread().items())
        rows.append(
            (
                name,
                pct(cv.held_out_mean),
                pct(cv.in_sample_mean),
                f"{100 * cv.gap:.1f}",
                str(sum(e > 1 for e in errors)),
                f"{np.mean(errors):.2f}",
                spread,
            )
        )
    return render_table(headers, rows)


def recording_table(result: MethodResult, recordings: Sequence[Recording]) -> str:
    headers = (
        "recording",
        "speakers (≥2 s)",
        "held-out DER",
        "DER exclusive",
        "found",
        "chosen without it",
        "in-sample DER",
        "found",
    )
    rows = []
    for r in recordings:
        held, inside = result.held_out(r.name), result.in_sample(r.name)
        chosen = result.cv.chosen_in_fold(r.name)
        rows.append(
            (
                r.name,
                f"{r.speakers} ({r.counted_speakers})",
                pct(held.der),
                pct(held.der_exclusive),
                str(held.speakers),
                " ".join(f"{v}" for v in chosen.values()),
                pct(inside.der),
                str(inside.speakers),
            )
        )
    return render_table(headers, rows)
