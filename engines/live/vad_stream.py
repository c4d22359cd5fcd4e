"""Silero VAD run incrementally on a live stream: samples in, one speech probability per 32 ms frame out."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from faster_whisper.vad import get_vad_model

from engines.audio import Samples

FRAME_SAMPLES = 512  # 32 ms at 16 kHz, Silero's window
CONTEXT_SAMPLES = 64  # each window also sees the last 64 samples of the one before
STATE_SHAPE = (1, 1, 128)

Probabilities = npt.NDArray[np.float32]


class FrameScorer(Protocol):
    """Scores whole frames, carrying the recurrent state between calls (Silero, or a fake in tests)."""

    def __call__(self, frames: npt.NDArray[np.float32], state: Any) -> tuple[Probabilities, Any]: ...


class SileroScorer:
    """The Silero ONNX model that ships with faster-whisper; one shared session, thread-safe."""

    def __init__(self) -> None:
        self._session = get_vad_model().session

    def __call__(self, frames: npt.NDArray[np.float32], state: Any) -> tuple[Probabilities, Any]:
        h, c = state if state is not None else (np.zeros(STATE_SHAPE, np.float32), np.zeros(STATE_SHAPE, np.float32))
        probs, h, c = self._session.run(None, {"input": frames, "h": h, "c": c})
        return np.asarray(probs, dtype=np.float32).reshape(-1), (h, c)


class StreamingVad:
    """Feeds a growing stream to a frame scorer, exactly as the batch VAD would see it whole.

    Frames are 512 samples, each prefixed by the last 64 samples of the previous frame (zeros
    for the first), and the LSTM state carries across calls: the probabilities equal those of
    faster-whisper's ``get_speech_timestamps`` over the same audio.
    """

    def __init__(self, scorer: FrameScorer) -> None:
        self._scorer = scorer
        self._state: Any = None
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self.frames = 0  # frames scored so far

    def feed(self, samples: Samples) -> Probabilities:
        audio = np.concatenate([self._pending, samples]) if self._pending.size else samples
        count = audio.size // FRAME_SAMPLES
        self._pending = audio[count * FRAME_SAMPLES :].copy()
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        frames = audio[: count * FRAME_SAMPLES].reshape(count, FRAME_SAMPLES)
        contexts = np.concatenate([self._context[None, :], frames[:-1, -CONTEXT_SAMPLES:]])
        self._context = frames[-1, -CONTEXT_SAMPLES:].copy()
        batch = np.concatenate([contexts, frames], axis=1).astype(np.float32, copy=False)
        probs, self._state = self._scorer(batch, self._state)
        self.frames += count
        return probs
