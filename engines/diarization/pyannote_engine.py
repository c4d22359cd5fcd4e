"""pyannote.audio 4.x speaker diarization pipelines (e.g. community-1) behind the Diarizer protocol."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import numpy as np
import torch

from engines.audio import SAMPLE_RATE
from engines.diarization.clustering import build_turns
from engines.diarization.types import (
    Diarization,
    DiarizationError,
    DiarizationOptions,
    Embedding,
    Samples,
    SpeakerTurn,
)
from engines.errors import ModelLoadError

log = logging.getLogger(__name__)


# WeSpeaker ResNet embeddings (community-1) put one voice well above 0.5 cosine and different
# voices near 0-0.3. Not measurable here (the weights are gated); calibrate on real deployments.
DEFAULT_MATCH_THRESHOLD = 0.5


def disable_telemetry() -> None:
    # pyannote.audio 4 sends usage metrics unless this is set; it reads the variable on every call.
    os.environ["PYANNOTE_METRICS_ENABLED"] = "0"


def resolve_torch_device(device: str) -> torch.device:
    """auto → the first CUDA device when one is visible, else CPU; anything else as torch spells it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_pipeline(source: str, *, token: str | None, device: torch.device) -> Any:
    """``Pipeline.from_pretrained`` on a local directory (holding config.yaml) or a hub id."""
    disable_telemetry()
    try:
        from pyannote.audio import Pipeline
    except ImportError as exc:  # an optional dependency: the embedded diarizer needs none of it
        raise ModelLoadError(f"The pyannote diarizer needs pyannote.audio installed: {exc}") from exc
    try:
        pipeline = Pipeline.from_pretrained(source, token=token)
    except Exception as exc:  # hub, file and checkpoint errors come in many types
        raise ModelLoadError(f"Could not load pyannote pipeline from {source!r}: {exc}") from exc
    if pipeline is None:  # from_pretrained answers None for a gated or missing hub repo
        raise ModelLoadError(f"Could not load pyannote pipeline from {source!r} (gated, missing, or no token).")
    pipeline.to(device)
    return pipeline


class PyannoteDiarizer:
    """A loaded pyannote pipeline; calls are serialised because its inference objects keep state.

    ``embed()`` uses the pipeline's own speaker-embedding model, so references and clusters live
    in the embedding space the pipeline clusters in, and no second model is loaded.
    """

    def __init__(
        self,
        pipeline: Any,
        *,
        name: str = "pyannote",
        match_threshold: float = DEFAULT_MATCH_THRESHOLD,
    ) -> None:
        self._pipeline = pipeline
        self._name = name
        self._match_threshold = match_threshold
        self._lock = threading.Lock()

    @classmethod
    def load(cls, source: str, *, token: str | None = None, device: str = "auto") -> PyannoteDiarizer:
        torch_device = resolve_torch_device(device)
        pipeline = load_pipeline(source, token=token, device=torch_device)
        log.info("loaded pyannote pipeline %s on %s", source, torch_device)
        return cls(pipeline)

    @property
    def name(self) -> str:
        return self._name

    @property
    def match_threshold(self) -> float:
        return self._match_threshold

    def warm_up(self) -> float:
        """Run the pipeline once on 3 s of noise (first CUDA kernels, lazy buffers). Returns seconds."""
        began = time.perf_counter()
        noise = (0.1 * np.random.default_rng(0).standard_normal(3 * SAMPLE_RATE)).astype(np.float32)
        self.diarize(noise, DiarizationOptions())
        self.embed(noise)
        return time.perf_counter() - began

    def diarize(self, audio: Samples, options: DiarizationOptions) -> Diarization:
        if audio.size == 0:
            return Diarization([], [])
        waveform = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1))
        hints = {
            key: value
            for key, value in (
                ("num_speakers", options.num_speakers),
                ("min_speakers", options.min_speakers),
                ("max_speakers", options.max_speakers),
            )
            if value is not None
        }
        with self._lock:
            try:
                output = self._pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE}, **hints)
            except (RuntimeError, ValueError) as exc:
                raise DiarizationError(f"pyannote diarization failed: {exc}") from exc
        duration = waveform.shape[1] / SAMPLE_RATE
        overlapping = getattr(output, "speaker_diarization", output)  # legacy pipelines: an Annotation
        # Without overlaps (pyannote's own view for transcripts): one speaker at a time for the words.
        exclusive = getattr(output, "exclusive_speaker_diarization", None)
        ids: dict[str, int] = {}  # one naming for both views
        turns = annotation_to_turns(overlapping, duration=duration, ids=ids)
        if exclusive is None:
            return Diarization.single(turns)
        return Diarization(turns, annotation_to_turns(exclusive, duration=duration, ids=ids))

    def embed(self, audio: Samples) -> Embedding:
        model = self._pipeline._embedding  # the pipeline's PretrainedSpeakerEmbedding
        clip = np.asarray(audio, dtype=np.float32).reshape(-1)
        if clip.size == 0:
            raise DiarizationError("Cannot embed an empty clip.")
        with self._lock:
            # min_num_samples probes the model on first use, so it too stays under the lock.
            shortest = int(getattr(model, "min_num_samples", SAMPLE_RATE // 2))
            if clip.size < shortest:
                clip = np.tile(clip, -(-shortest // clip.size))  # repeat rather than pad with silence
            vectors = np.asarray(model(torch.from_numpy(clip).reshape(1, 1, -1)), dtype=np.float32)
        vector = vectors.reshape(-1)
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0:
            raise DiarizationError("The speaker-embedding model returned no usable embedding for this clip.")
        return (vector / norm).astype(np.float32)


def annotation_to_turns(annotation: Any, *, duration: float, ids: dict[str, int] | None = None) -> list[SpeakerTurn]:
    """pyannote Annotation → turns sorted by time, labels renamed SPEAKER_00… by first appearance.

    Turns are clipped to the audio: the last segmentation chunk is zero-padded, so pyannote can
    report speech a few frames past the end. Pass the same ``ids`` to name two views alike.
    """
    ids = {} if ids is None else ids
    pieces = []
    for segment, _, label in sorted(annotation.itertracks(yield_label=True), key=lambda t: (t[0].start, t[0].end)):
        start, end = max(0.0, float(segment.start)), min(duration, float(segment.end))
        if end > start:
            pieces.append((start, end, ids.setdefault(str(label), len(ids))))
    names = {index: f"SPEAKER_{index:02d}" for index in ids.values()}
    return [SpeakerTurn(t.start, t.end, names[int(t.speaker)]) for t in build_turns(pieces, merge_gap=0.0, named=False)]
