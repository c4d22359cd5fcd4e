"""From per-chunk local speakers to one timeline: speech runs, their clusters, overlap-aware and exclusive frames.

A segmentation model sees the audio in overlapping chunks and labels up to three *local* speakers
per chunk, one frame at a time (several at once where speech overlaps). The identity of a local
speaker holds only inside its chunk, and even there a long silence can separate two voices that
the model filed under one label. So every local speaker's activity is cut into *runs* at silences;
each run is embedded and clustered on its own, and the clustered runs are laid back onto the
global frame grid, where the per-frame speaker count (averaged over chunks) decides how many
speakers are active: the most active clusters win, which is also how overlapped speech goes to
the dominant voice in the exclusive (one speaker at a time) view.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Activity = npt.NDArray[np.float32]  # (chunks, frames, local speakers) in {0, 1}
Binary = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Grid:
    """Where chunk frames sit in time: chunk c starts at ``c * chunk_step`` s, its frame j at ``+ j * frame_step``."""

    chunk_step: float
    frame_step: float
    frame_duration: float
    frames_per_chunk: int

    def chunk_offset(self, chunk: int) -> int:
        """Index on the global frame grid of the chunk's first frame."""
        return round(chunk * self.chunk_step / self.frame_step)

    def global_frames(self, num_chunks: int) -> int:
        return self.chunk_offset(num_chunks - 1) + self.frames_per_chunk if num_chunks else 0

    def boundary(self, index: int) -> float:
        """Time between global frames ``index - 1`` and ``index`` (the middle of the frame centres)."""
        return index * self.frame_step + self.frame_duration / 2 - self.frame_step / 2


@dataclass(frozen=True)
class Run:
    """A local speaker's continuous speech inside one chunk: frames [start, end) of that chunk."""

    chunk: int
    speaker: int
    start: int
    end: int
    active: int  # frames where this local speaker speaks
    clean: int  # of which no other local speaker speaks


def local_runs(activity: Activity, max_gap: int, max_length: int = 0) -> list[Run]:
    """Each local speaker's activity per chunk, cut where it pauses for more than ``max_gap`` frames.

    With ``max_length`` > 0, a longer run is cut into equal parts of at most that many frames: the
    segmentation can hear two voices that follow each other without a pause as one local speaker.
    """
    runs: list[Run] = []
    others = activity.sum(axis=2)
    for chunk, speaker in zip(*np.nonzero(activity.any(axis=1)), strict=True):
        mask = activity[chunk, :, speaker] > 0
        clean = mask & (others[chunk] == 1)
        on = np.flatnonzero(mask)
        breaks = np.flatnonzero(np.diff(on) > max_gap + 1)
        starts = [on[0], *on[breaks + 1].tolist()]
        ends = [*(on[breaks] + 1).tolist(), on[-1] + 1]
        for start, end in zip(starts, ends, strict=True):
            parts = -(-(end - start) // max_length) if max_length > 0 else 1
            edges = np.linspace(start, end, parts + 1).round().astype(np.int64).tolist()
            for first, last in itertools.pairwise(edges):
                if mask[first:last].any():
                    active, quiet = int(mask[first:last].sum()), int(clean[first:last].sum())
                    runs.append(Run(int(chunk), int(speaker), first, last, active, quiet))
    return runs


def chunks_per_frame(num_chunks: int, grid: Grid) -> npt.NDArray[np.float32]:
    """How many of the overlapping chunks see each global frame."""
    seen = np.zeros(grid.global_frames(num_chunks), dtype=np.float32)
    for chunk in range(num_chunks):
        offset = grid.chunk_offset(chunk)
        seen[offset : offset + grid.frames_per_chunk] += 1
    return seen


def run_seconds(activity: Activity, runs: list[Run], grid: Grid) -> npt.NDArray[np.float32]:
    """The speech each run stands for, in seconds: a frame heard by n overlapping chunks counts 1/n per chunk.

    So a cluster's weight is the seconds it speaks, also at the ends of a recording, where fewer
    chunks see each frame.
    """
    seen = chunks_per_frame(activity.shape[0], grid)
    out = np.zeros(len(runs), dtype=np.float32)
    for index, run in enumerate(runs):
        offset = grid.chunk_offset(run.chunk)
        heard = activity[run.chunk, run.start : run.end, run.speaker] > 0
        out[index] = float((heard / seen[offset + run.start : offset + run.end]).sum()) * grid.frame_step
    return out


def run_mask(activity: Activity, run: Run, *, clean: bool) -> Binary:
    """The run's frames (only those without other local speakers when ``clean``), as a chunk-length mask."""
    mask = np.zeros(activity.shape[1], dtype=bool)
    frames = activity[run.chunk, run.start : run.end, run.speaker] > 0
    if clean:
        frames &= activity[run.chunk, run.start : run.end].sum(axis=1) == 1
    mask[run.start : run.end] = frames
    return mask


def constrained_assignment(
    runs: list[Run], similarity: npt.NDArray[np.float32], usable: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """Each usable run → its most similar cluster, but two runs of different local speakers that
    overlap in time inside one chunk never share a cluster (the segmentation heard two voices).

    Within a chunk, longer runs choose first. Unusable runs get -1.
    """
    labels = np.full(len(runs), -1, dtype=np.int64)
    by_chunk: dict[int, list[int]] = {}
    for index, run in enumerate(runs):
        if usable[index]:
            by_chunk.setdefault(run.chunk, []).append(index)
    for members in by_chunk.values():
        taken: list[tuple[int, int]] = []  # (run index, cluster)
        for index in sorted(members, key=lambda i: -runs[i].active):
            run = runs[index]
            blocked = {
                cluster
                for other, cluster in taken
                if runs[other].speaker != run.speaker and runs[other].start < run.end and run.start < runs[other].end
            }
            order = np.argsort(-similarity[index])
            choice = next((int(k) for k in order if int(k) not in blocked), int(order[0]))
            labels[index] = choice
            taken.append((index, choice))
    return labels


def inherit_labels(runs: list[Run], labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Runs too short to embed take the cluster of the nearest labelled run of the same local speaker and chunk."""
    out = labels.copy()
    for index, run in enumerate(runs):
        if out[index] >= 0:
            continue
        siblings = [
            (min(abs(other.start - run.end), abs(run.start - other.end)), j)
            for j, other in enumerate(runs)
            if labels[j] >= 0 and other.chunk == run.chunk and other.speaker == run.speaker
        ]
        if siblings:
            out[index] = labels[min(siblings)[1]]
    return out


def speaker_count(activity: Activity, grid: Grid) -> npt.NDArray[np.int64]:
    """Speakers active in each global frame: the number of local speakers, averaged over the chunks that see it."""
    num_chunks = activity.shape[0]
    total = np.zeros(grid.global_frames(num_chunks), dtype=np.float32)
    per_chunk = activity.sum(axis=2)
    for chunk in range(num_chunks):
        offset = grid.chunk_offset(chunk)
        total[offset : offset + grid.frames_per_chunk] += per_chunk[chunk]
    return np.rint(total / np.maximum(chunks_per_frame(num_chunks, grid), 1)).astype(np.int64)


def cluster_activation(
    activity: Activity, runs: list[Run], labels: npt.NDArray[np.int64], num_clusters: int, grid: Grid
) -> npt.NDArray[np.float32]:
    """(global frames, clusters): in how many chunks each cluster is heard at each frame."""
    num_chunks = activity.shape[0]
    out = np.zeros((grid.global_frames(num_chunks), max(num_clusters, 1)), dtype=np.float32)
    by_chunk: dict[int, list[tuple[Run, int]]] = {}
    for run, label in zip(runs, labels.tolist(), strict=True):
        if label >= 0:
            by_chunk.setdefault(run.chunk, []).append((run, label))
    for chunk, members in by_chunk.items():
        # Within a chunk a cluster counts once per frame, however many of its local speakers are there.
        local = np.zeros((grid.frames_per_chunk, out.shape[1]), dtype=np.float32)
        for run, label in members:
            target = local[run.start : run.end, label]
            np.maximum(target, activity[chunk, run.start : run.end, run.speaker], out=target)
        offset = grid.chunk_offset(chunk)
        out[offset : offset + grid.frames_per_chunk] += local
    return out


def select_speakers(activation: npt.NDArray[np.float32], count: npt.NDArray[np.int64]) -> Binary:
    """Per frame, the ``count`` most active clusters (only clusters actually heard there)."""
    frames = min(len(activation), len(count))
    activation, count = activation[:frames], count[:frames]
    ranked = np.argsort(-activation, axis=1, kind="stable")
    binary = np.zeros(activation.shape, dtype=bool)
    for rank in range(min(int(count.max(initial=0)), activation.shape[1])):
        rows = np.flatnonzero(count > rank)
        picked = ranked[rows, rank]
        heard = activation[rows, picked] > 0
        binary[rows[heard], picked[heard]] = True
    return binary


def frames_to_turns(binary: Binary, grid: Grid, *, min_off: float = 0.0) -> list[tuple[float, float, int]]:
    """(start s, end s, cluster) per run of active frames; same-speaker gaps up to ``min_off`` s are bridged."""
    pieces: list[tuple[float, float, int]] = []
    for cluster in range(binary.shape[1]):
        column = binary[:, cluster].astype(np.int8)
        edges = np.diff(np.concatenate([[0], column, [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        spans: list[tuple[float, float]] = []
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            begin, finish = max(0.0, grid.boundary(start)), grid.boundary(end)
            if spans and begin - spans[-1][1] <= min_off:
                spans[-1] = (spans[-1][0], finish)
            else:
                spans.append((begin, finish))
        pieces += [(begin, finish, cluster) for begin, finish in spans]
    return sorted(pieces)
