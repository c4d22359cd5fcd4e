"""engines.diarized.DiarizedRun: a cancel while the diarizer is still working frees the request at once."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engines.audio import decode_audio
from engines.diarization.types import Diarization, DiarizationOptions, Embedding, Samples, SpeakerTurn
from engines.diarized import DiarizedRun
from engines.errors import DecodingCancelled
from engines.longform import LongFormConfig, LongFormRun
from engines.types import DecodeOptions
from tests.audio import SYNTH_SENTENCE, espeak
from tests.inprocess import FakeEngine


class SlowDiarizer:
    """Takes ``seconds`` for any audio, and cannot be interrupted (like the real engines)."""

    name = "slow"
    match_threshold = 0.8

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def diarize(self, audio: Samples, options: DiarizationOptions) -> Diarization:
        time.sleep(self.seconds)
        return Diarization.single([SpeakerTurn(0.0, audio.size / 16_000, "0")])

    def embed(self, audio: Samples) -> Embedding:
        return np.full(4, 0.5, dtype=np.float32)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    return decode_audio(espeak(tmp_path_factory.mktemp("speech") / "s.wav", SYNTH_SENTENCE).read_bytes())


def _run(speech: Samples, diarizer: SlowDiarizer, cancel: threading.Event) -> DiarizedRun:
    plain = LongFormRun(FakeEngine(), DecodeOptions(word_timestamps=True), [speech], LongFormConfig(), cancel)
    return DiarizedRun(plain, diarizer, speech, DiarizationOptions())


def test_cancel_while_diarizing_stops_within_a_poll(speech: Samples) -> None:
    cancel = threading.Event()
    run = _run(speech, SlowDiarizer(seconds=20.0), cancel)
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(DecodingCancelled):
        list(run.segments())
    assert time.monotonic() - started < 2.0


def test_uncancelled_run_waits_for_the_diarizer(speech: Samples) -> None:
    run = _run(speech, SlowDiarizer(seconds=0.3), threading.Event())
    segments = list(run.segments())
    assert segments and all(s.speaker == "A" for s in segments)
