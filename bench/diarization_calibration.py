"""Known-speaker threshold of the embedded diarizer, measured on real voices: same speaker against different speakers.

Each speaker of the shared recordings (the RTTM files; overlapped speech removed) and each single-speaker
recording gives a voice: a reference (up to 8 s of their speech, at most half of it) and "the rest" (their
other speech, as the server embeds a found speaker: ``diarizer.embed`` of that speaker's audio). A pair is a
reference and a rest: the same-speaker pair of a voice is its reference with its own rest, its
different-speaker pairs are its reference with every other voice's rest. The rest is scored again after a
telephone band limit (8 kHz), the usual mismatch between a reference clip and a call recording.

The AMI excerpts trn00 and trn03 share people (their labels are AMI's corpus-wide speaker ids), so a pair of
one person's voices from the two recordings is neither "same" nor "different" here and is left out, and the
two recordings are one group below: holding one out while the other trains would leak that person.

The threshold is chosen held-out: the recording groups are dealt round-robin (sorted names) into ``FOLDS``
folds; each fold chooses among ``CANDIDATES`` on the pairs whose two voices are both in the other folds, and
is scored on the pairs whose reference is one of its own voices (the rest may come from any recording).
Every voice is held out once, so the held-out counts add up to one pooled figure. The choice on all voices
(in-sample) is reported beside it, so the optimism of choosing and measuring on the same voices is visible.

A threshold's cost is ``miss rate + 5 × false-name rate`` (``FALSE_NAME_WEIGHT``), ties to the higher
threshold. A miss only falls back to a letter ("speaker A"), which the reader sees and can fix; a false
name silently puts one person's words under another person's name, which nobody notices, so it costs
more. Rates, not counts: there are about as many different-speaker pairs per voice as there are voices, so
with 19 voices one false name (1/340) weighs less than one miss (1/19). The false-name rate is per reference
and stranger; the server compares a found speaker with every reference it holds, so its chance of a wrong
name grows with the number of references, which the weight of 5 stands in for.
The telephone-band figures use the thresholds chosen on full-band pairs; they are reported, never chosen on.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal

from bench.der import rttm_truth
from bench.tables import render_table
from engines.audio import SAMPLE_RATE, Samples, decode_audio

THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7)
SINGLE = ("en_jfk.flac", "en_osr_harvard72_8k.wav", "en_librispeech_1272-128104-0000.wav", "fr_picovoice_leopard.wav")
CANDIDATES = tuple(round(0.4 + 0.025 * i, 3) for i in range(17))  # 0.40 … 0.80
FALSE_NAME_WEIGHT = 5.0
FOLDS = 4
# Recordings whose speaker labels name the same people in every recording (AMI's corpus speaker ids).
CORPUS_WIDE_LABELS = "diar_ami_"

Pair = tuple[str, str]  # (voice whose reference is used, voice whose rest is used)


def own_speech(audio: Samples, truth: list[tuple[float, float, str]], speaker: str) -> Samples:
    """The speaker's turns without any part another speaker overlaps, joined."""
    pieces = []
    for start, end, who in truth:
        if who != speaker:
            continue
        spans = [(start, end)]
        for other_start, other_end, other in truth:
            if other != speaker:
                spans = [
                    piece
                    for a, b in spans
                    for piece in ((a, min(b, other_start)), (max(a, other_end), b))
                    if piece[1] - piece[0] > 0.05
                ]
        pieces += [audio[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b in spans]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def voices(shared: Path) -> dict[str, tuple[Samples, Samples]]:
    out: dict[str, tuple[Samples, Samples]] = {}
    for wav in sorted(shared.glob("diar_*.wav")):
        audio = decode_audio(wav.read_bytes())
        truth = rttm_truth(wav.with_suffix(".rttm"))
        for speaker in sorted({who for _, _, who in truth}):
            speech = own_speech(audio, truth, speaker)
            split = int(min(8.0, speech.size / SAMPLE_RATE / 2) * SAMPLE_RATE)
            if split >= 2 * SAMPLE_RATE:
                out[f"{wav.stem}:{speaker}"] = (speech[:split], speech[split:])
    for name in SINGLE:
        if (shared / name).is_file():
            audio = decode_audio((shared / name).read_bytes())
            half = audio.size // 2
            out[name] = (audio[: min(half, 10 * SAMPLE_RATE)], audio[half:])
    return out


def recording_of(voice: str) -> str:
    return voice.split(":", 1)[0]


def person_of(voice: str) -> str:
    """Who speaks: the voice itself, except where labels are corpus-wide (then the label)."""
    recording, _, label = voice.partition(":")
    return f"{CORPUS_WIDE_LABELS}{label}" if label and recording.startswith(CORPUS_WIDE_LABELS) else voice


def telephone(audio: Samples) -> Samples:
    narrow = scipy.signal.resample_poly(scipy.signal.resample_poly(audio, 1, 2), 2, 1)
    return np.asarray(narrow, dtype=np.float32)


# --- cross-validation on plain numbers (no models) ---------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """Pairs judged at one threshold: same-speaker pairs below it are misses, different ones at or above it
    are false names."""

    same: int
    missed: int
    different: int
    false_named: int

    @property
    def miss_rate(self) -> float:
        return self.missed / self.same if self.same else 0.0

    @property
    def false_name_rate(self) -> float:
        return self.false_named / self.different if self.different else 0.0

    def cost(self, weight: float = FALSE_NAME_WEIGHT) -> float:
        return self.miss_rate + weight * self.false_name_rate

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.same + other.same,
            self.missed + other.missed,
            self.different + other.different,
            self.false_named + other.false_named,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "same_pairs": self.same,
            "missed": self.missed,
            "miss_rate": round(self.miss_rate, 4),
            "different_pairs": self.different,
            "false_named": self.false_named,
            "false_name_rate": round(self.false_name_rate, 4),
        }


def counts_at(same: Sequence[float], different: Sequence[float], threshold: float) -> Counts:
    return Counts(
        same=len(same),
        missed=sum(value < threshold for value in same),
        different=len(different),
        false_named=sum(value >= threshold for value in different),
    )


def choose_threshold(
    same: Sequence[float],
    different: Sequence[float],
    candidates: Sequence[float] = CANDIDATES,
    weight: float = FALSE_NAME_WEIGHT,
) -> float:
    """The candidate of lowest cost; among equal costs the highest (a false name is the worse mistake)."""
    if not candidates:
        raise ValueError("no candidate thresholds")
    costs = {t: counts_at(same, different, t).cost(weight) for t in candidates}
    lowest = min(costs.values())
    return max(t for t, c in costs.items() if np.isclose(c, lowest, rtol=0.0, atol=1e-12))


def split_pairs(
    scores: Mapping[Pair, float], references: Collection[str], rests: Collection[str] | None = None
) -> tuple[list[float], list[float]]:
    """Same- and different-speaker similarities of the pairs whose reference is in ``references`` (and whose
    rest is in ``rests``, when given). ``scores`` holds only the pairs to judge."""
    same: list[float] = []
    different: list[float] = []
    for (reference, rest), value in scores.items():
        if reference in references and (rests is None or rest in rests):
            (same if reference == rest else different).append(value)
    return same, different


def recording_groups(voice_names: Iterable[str]) -> dict[str, str]:
    """Each voice's group: its recording, joined with every recording that shares one of its people."""
    names = list(voice_names)
    group = {recording_of(v): recording_of(v) for v in names}

    def root(recording: str) -> str:
        while group[recording] != recording:
            recording = group[recording]
        return recording

    first_seen: dict[str, str] = {}
    for voice in names:
        person, recording = person_of(voice), recording_of(voice)
        if person in first_seen:
            a, b = sorted((root(first_seen[person]), root(recording)))
            group[b] = a
        else:
            first_seen[person] = recording
    members: dict[str, list[str]] = {}
    for recording in group:
        members.setdefault(root(recording), []).append(recording)
    label = {r: "+".join(sorted(rs)) for r, rs in members.items()}
    return {v: label[root(recording_of(v))] for v in names}


def assign_folds(groups: Iterable[str], k: int) -> dict[str, int]:
    """Fold of each group: sorted names dealt round-robin, so the same names always give the same folds and
    every fold gets at least one group (each group has at least one voice)."""
    names = sorted(set(groups))
    if not 2 <= k <= len(names):
        raise ValueError(f"{k} folds need 2 to {len(names)} groups; there are {len(names)}")
    return {name: i % k for i, name in enumerate(names)}


@dataclass(frozen=True)
class FoldResult:
    fold: int
    held_out: list[str]  # groups
    voices: list[str]
    threshold: float  # chosen without them
    counts: Counts  # on pairs with a held-out reference
    telephone: Counts  # the same pairs, the rest band-limited, at the same threshold


def cross_validate(
    scores: Mapping[Pair, float],
    telephone_scores: Mapping[Pair, float],
    group_of: Mapping[str, str],
    k: int = FOLDS,
    candidates: Sequence[float] = CANDIDATES,
    weight: float = FALSE_NAME_WEIGHT,
) -> list[FoldResult]:
    """Per fold: threshold chosen on pairs of training voices only, judged on pairs with a held-out reference."""
    folds = assign_folds(group_of.values(), k)
    results = []
    for fold in range(k):
        held = sorted(v for v, g in group_of.items() if folds[g] == fold)
        train = [v for v in group_of if folds[group_of[v]] != fold]
        threshold = choose_threshold(*split_pairs(scores, train, train), candidates=candidates, weight=weight)
        results.append(
            FoldResult(
                fold=fold,
                held_out=sorted({group_of[v] for v in held}),
                voices=held,
                threshold=threshold,
                counts=counts_at(*split_pairs(scores, held), threshold),
                telephone=counts_at(*split_pairs(telephone_scores, held), threshold),
            )
        )
    return results


def pooled(counts: Iterable[Counts]) -> Counts:
    return sum(counts, Counts(0, 0, 0, 0))


def cv_report(
    scores: Mapping[Pair, float],
    telephone_scores: Mapping[Pair, float],
    group_of: Mapping[str, str],
    k: int = FOLDS,
    candidates: Sequence[float] = CANDIDATES,
    weight: float = FALSE_NAME_WEIGHT,
) -> dict[str, Any]:
    """Held-out and in-sample choices with their rates, JSON-ready."""
    folds = cross_validate(scores, telephone_scores, group_of, k, candidates, weight)
    everyone = list(group_of)
    in_sample = choose_threshold(*split_pairs(scores, everyone), candidates=candidates, weight=weight)
    in_counts = counts_at(*split_pairs(scores, everyone), in_sample)
    in_tel = counts_at(*split_pairs(telephone_scores, everyone), in_sample)
    held, held_tel = pooled(f.counts for f in folds), pooled(f.telephone for f in folds)
    chosen = [f.threshold for f in folds]
    return {
        "folds": k,
        "candidates": list(candidates),
        "cost": f"miss rate + {weight:g} × false-name rate, ties to the higher threshold",
        "false_name_weight": weight,
        "per_fold": [
            {
                "fold": f.fold,
                "held_out": f.held_out,
                "voices": f.voices,
                "threshold": f.threshold,
                **f.counts.as_dict(),
                "cost": round(f.counts.cost(weight), 4),
                "telephone": f.telephone.as_dict(),
            }
            for f in folds
        ],
        "held_out": {**held.as_dict(), "cost": round(held.cost(weight), 4), "telephone": held_tel.as_dict()},
        "in_sample": {
            "threshold": in_sample,
            **in_counts.as_dict(),
            "cost": round(in_counts.cost(weight), 4),
            "telephone": in_tel.as_dict(),
        },
        "spread": {"min": min(chosen), "max": max(chosen), "chosen": sorted(set(chosen))},
    }


# --- measuring ---------------------------------------------------------------------------------------------


def calibrate(shared: Path) -> dict[str, Any]:
    from engines.diarization.campp_engine import CamppDiarizer

    print("calibration: embedding references and speakers …", flush=True)
    diarizer = CamppDiarizer()
    clips = voices(shared)
    refs = {name: diarizer.embed(ref) for name, (ref, _) in clips.items()}
    rest = {name: diarizer.embed(other) for name, (_, other) in clips.items()}
    narrow = {name: diarizer.embed(telephone(other)) for name, (_, other) in clips.items()}
    # one person's voices in two recordings are neither same nor different: left out
    pairs = [(a, b) for a in clips for b in clips if a == b or person_of(a) != person_of(b)]
    scores = {(a, b): float(refs[a] @ rest[b]) for a, b in pairs}
    tel_scores = {(a, b): float(refs[a] @ narrow[b]) for a, b in pairs}
    same = {name: scores[name, name] for name in clips}
    same_tel = {name: tel_scores[name, name] for name in clips}
    different = [v for (a, b), v in scores.items() if a != b]
    other_recording = {
        f"{a} / {b}": round(float(refs[a] @ rest[b]), 3)
        for a in clips
        for b in clips
        if a != b and person_of(a) == person_of(b)
    }
    rows = [
        {
            "threshold": t,
            "same_accepted": float(np.mean([v >= t for v in same.values()])),
            "same_telephone_accepted": float(np.mean([v >= t for v in same_tel.values()])),
            "different_accepted": float(np.mean([v >= t for v in different])),
            "cost": round(counts_at(list(same.values()), different, t).cost(), 4),
        }
        for t in THRESHOLDS
    ]
    group_of = recording_groups(clips)
    return {
        "speakers": len(clips),
        "groups": group_of,
        "same": {k: round(v, 3) for k, v in same.items()},
        "same_telephone": {k: round(v, 3) for k, v in same_tel.items()},
        "same_person_other_recording": other_recording,
        "different_pairs": len(different),
        "different_max": round(max(different), 3),
        "different_p99": round(float(np.percentile(different, 99)), 3),
        "different_mean": round(float(np.mean(different)), 3),
        # the closest impostors: where a false name would come from
        "different_highest": [
            {"reference": a, "rest": b, "similarity": round(v, 3)}
            for (a, b), v in sorted(scores.items(), key=lambda item: -item[1])
            if a != b
        ][:5],
        "threshold_in_use": diarizer.match_threshold,
        "by_threshold": rows,
        "cross_validation": cv_report(scores, tel_scores, group_of),
    }


def _rates(entry: Mapping[str, Any]) -> tuple[str, str]:
    return (
        f"{100 * entry['miss_rate']:.0f}% ({entry['missed']}/{entry['same_pairs']})",
        f"{100 * entry['false_name_rate']:.1f}% ({entry['false_named']}/{entry['different_pairs']})",
    )


def calibration_table(result: dict[str, Any]) -> str:
    same, tel = list(result["same"].values()), list(result["same_telephone"].values())
    head = (
        f"{result['speakers']} real voices; same speaker: min {min(same):.2f}, median {np.median(same):.2f} "
        f"(telephone-band recording: min {min(tel):.2f}, median {np.median(tel):.2f}); "
        f"different speakers ({result['different_pairs']} pairs): max {result['different_max']:.2f}, "
        f"99th percentile {result['different_p99']:.2f}, mean {result['different_mean']:.2f}; "
        f"threshold in use {result['threshold_in_use']:.2f}\n"
    )
    rows = [
        (
            f"{r['threshold']:.2f}",
            f"{100 * r['same_accepted']:.0f}%",
            f"{100 * r['same_telephone_accepted']:.0f}%",
            f"{100 * r['different_accepted']:.1f}%",
            f"{r['cost']:.3f}",
        )
        for r in result["by_threshold"]
    ]
    headers = ("threshold", "same speaker named", "same, telephone-band", "different speaker named", "cost")
    parts = [head + render_table(headers, rows)]
    cv = result.get("cross_validation")
    if cv:
        fold_rows = [
            (
                str(f["fold"]),
                str(len(f["voices"])),
                f"{f['threshold']:.3f}",
                *_rates(f),
                *_rates(f["telephone"]),
            )
            for f in cv["per_fold"]
        ]
        held, ins = cv["held_out"], cv["in_sample"]
        fold_rows.append(("held-out, pooled", str(result["speakers"]), "", *_rates(held), *_rates(held["telephone"])))
        in_label = ("in-sample (all voices)", str(result["speakers"]), f"{ins['threshold']:.3f}")
        fold_rows.append((*in_label, *_rates(ins), *_rates(ins["telephone"])))
        fold_headers = (
            "fold",
            "voices",
            "threshold",
            "missed",
            "false name",
            "missed, telephone",
            "false name, telephone",
        )
        spread = cv["spread"]
        parts.append(
            f"Held-out choice, {cv['folds']} folds by recording; cost = {cv['cost']}; "
            f"candidates {cv['candidates'][0]:.2f}–{cv['candidates'][-1]:.2f}\n"
            + render_table(fold_headers, fold_rows)
            + "".join(f"\nfold {f['fold']} holds out {', '.join(f['held_out'])}" for f in cv["per_fold"])
            + f"\nchosen thresholds across folds: {', '.join(f'{t:.3f}' for t in spread['chosen'])} "
            f"(spread {spread['max'] - spread['min']:.3f}); in-sample choice {ins['threshold']:.3f}; "
            f"held-out cost {held['cost']:.3f} against in-sample {ins['cost']:.3f}"
        )
    if result.get("different_highest"):
        parts.append(
            "closest different speakers (reference / rest): "
            + "; ".join(f"{d['reference']} / {d['rest']} {d['similarity']:.3f}" for d in result["different_highest"])
        )
    if result.get("same_person_other_recording"):
        parts.append(
            "same person, other recording (left out of the pairs): "
            + "; ".join(f"{k} {v:.2f}" for k, v in result["same_person_other_recording"].items())
        )
    return "\n\n".join(parts)
