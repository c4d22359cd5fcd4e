"""Public speaker names: letters in order of first appearance, or known names matched by voice."""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from engines.audio import SAMPLE_RATE
from engines.diarization.types import Diarizer, Embedding, Samples, SpeakerTurn

# Enough speech for a stable centroid; more only costs time.
CENTROID_SECONDS = 30.0


def letters() -> Iterator[str]:
    """A, B, … Z, AA, AB, … like spreadsheet columns."""
    width = 1
    while True:
        for index in range(len(string.ascii_uppercase) ** width):
            name = ""
            for _ in range(width):
                index, digit = divmod(index, len(string.ascii_uppercase))
                name = string.ascii_uppercase[digit] + name
            yield name
        width += 1


def appearance_order(turns: Sequence[SpeakerTurn]) -> list[str]:
    """Cluster labels in the order their first turn starts."""
    order: dict[str, None] = {}
    for turn in sorted(turns, key=lambda t: (t.start, t.end)):
        order.setdefault(turn.speaker, None)
    return list(order)


def relabel(turns: Sequence[SpeakerTurn], names: Mapping[str, str]) -> list[SpeakerTurn]:
    """The turns sorted by time, each cluster label replaced by its public name."""
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    return [SpeakerTurn(start=t.start, end=t.end, speaker=names[t.speaker]) for t in ordered]


def letter_names(turns: Sequence[SpeakerTurn], taken: Mapping[str, str] | None = None) -> dict[str, str]:
    """cluster → public name: ``taken`` entries kept, every other cluster gets the next free letter.

    Letters go out in order of first appearance and skip any letter already used as a name.
    """
    taken = dict(taken or {})
    used = set(taken.values())
    free = (letter for letter in letters() if letter not in used)
    return {cluster: taken[cluster] if cluster in taken else next(free) for cluster in appearance_order(turns)}


def match_known_speakers(
    references: Mapping[str, Embedding],
    clusters: Mapping[str, Embedding],
    *,
    threshold: float,
) -> dict[str, str]:
    """cluster → known name, best cosine similarity first, each name and cluster used at most once.

    A pair is accepted only at or above ``threshold``; the right value depends on the embedding
    model (see each engine's ``match_threshold``). Greedy best-first is optimal for the ≤ 4
    references the API allows in all but contrived cases, and easy to explain in a log line.
    """
    pairs = []
    for name, reference in references.items():
        ref = _unit(reference)
        for cluster, centroid in clusters.items():
            pairs.append((float(ref @ _unit(centroid)), name, cluster))
    pairs.sort(key=lambda p: -p[0])
    named: dict[str, str] = {}
    used: set[str] = set()
    for similarity, name, cluster in pairs:
        if similarity < threshold:
            break
        if cluster in named or name in used:
            continue
        named[cluster] = name
        used.add(name)
    return named


def cluster_embeddings(
    diarizer: Diarizer,
    audio: Samples,
    turns: Sequence[SpeakerTurn],
    *,
    max_seconds: float = CENTROID_SECONDS,
) -> dict[str, Embedding]:
    """One embedding per cluster, from its longest turns joined (up to ``max_seconds`` of audio)."""
    by_cluster: dict[str, list[SpeakerTurn]] = {}
    for turn in turns:
        by_cluster.setdefault(turn.speaker, []).append(turn)
    out: dict[str, Embedding] = {}
    for cluster, own in by_cluster.items():
        pieces, total = [], 0.0
        for turn in sorted(own, key=lambda t: -t.duration):
            start, end = int(turn.start * SAMPLE_RATE), int(turn.end * SAMPLE_RATE)
            piece = audio[start:end]
            if piece.size == 0:
                continue
            pieces.append(piece)
            total += piece.size / SAMPLE_RATE
            if total >= max_seconds:
                break
        if pieces:
            out[cluster] = diarizer.embed(np.concatenate(pieces).astype(np.float32, copy=False))
    return out


def name_speakers(
    turns: Sequence[SpeakerTurn],
    *,
    diarizer: Diarizer | None = None,
    audio: Samples | None = None,
    references: Mapping[str, Embedding] | None = None,
    threshold: float | None = None,
) -> list[SpeakerTurn]:
    """Turns with public names: matched known names where references are given, letters elsewhere."""
    names = speaker_names(turns, diarizer=diarizer, audio=audio, references=references, threshold=threshold)
    return relabel(turns, names)


def speaker_names(
    turns: Sequence[SpeakerTurn],
    *,
    diarizer: Diarizer | None = None,
    audio: Samples | None = None,
    references: Mapping[str, Embedding] | None = None,
    threshold: float | None = None,
) -> dict[str, str]:
    """cluster → public name (see ``name_speakers``)."""
    matched: dict[str, str] = {}
    if references:
        if diarizer is None or audio is None:
            raise ValueError("known-speaker matching needs the diarizer and the audio")
        centroids = cluster_embeddings(diarizer, audio, turns)
        limit = diarizer.match_threshold if threshold is None else threshold
        matched = match_known_speakers(references, centroids, threshold=limit)
    return letter_names(turns, matched)


def _unit(vector: Embedding) -> Embedding:
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else vector.astype(np.float32)
