"""engines.longform's first piece: unchunked audio over 30 s starts with a short piece cut at a pause."""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path

import numpy as np
import pytest

import engines.longform as longform
from bench.speech import espeak
from engines.audio import SAMPLE_RATE, Samples, decode_audio
from engines.longform import LongFormConfig, LongFormRun
from engines.types import DecodeOptions, Segment, TranscriptInfo
from engines.vad import pause_between
from tests.fake_capabilities import ENGLISH_ONLY, FakeRecogniser

PAUSE_AT = 6.0


class WholeHearer(FakeRecogniser):
    """Says one segment over all the audio it is given; detects its language with ``probability``."""

    name = "whole"
    capabilities = ENGLISH_ONLY

    def __init__(self, probability: float = 0.95) -> None:
        self.probability = probability
        self.calls: list[tuple[float, str | None]] = []

    def transcribe(
        self, audio: Samples, options: DecodeOptions, cancel: threading.Event | None = None
    ) -> tuple[TranscriptInfo, Generator[Segment, None, None]]:
        seconds = audio.size / SAMPLE_RATE
        self.calls.append((round(seconds, 2), options.prompt))
        probability = 1.0 if options.language else self.probability
        info = TranscriptInfo("transcribe", "en", probability, seconds, 0, 0)

        def segments() -> Generator[Segment, None, None]:
            yield Segment(0, 0, 0.0, seconds, f" part {len(self.calls)}", [1], 0.0, -0.1, 1.0, 0.0)

        return info, segments()


def tone(seconds: float) -> Samples:
    samples: Samples = (0.3 * np.sin(np.arange(int(seconds * SAMPLE_RATE)) * 0.05)).astype(np.float32)
    return samples


@pytest.fixture
def pause_at_six(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(longform, "pause_between", lambda audio, earliest, latest: int(PAUSE_AT * SAMPLE_RATE))
    monkeypatch.setattr(longform, "has_speech", lambda audio: True)  # a tone: the VAD would hear none


def run(engine: WholeHearer, seconds: float, piece: float | None, options: DecodeOptions) -> list[Segment]:
    config = LongFormConfig(first_piece_seconds=piece)
    return list(LongFormRun(engine, options, [tone(seconds)], config).segments())


@pytest.mark.usefixtures("pause_at_six")
def test_long_audio_starts_with_a_piece_cut_at_the_pause() -> None:
    engine = WholeHearer()
    segments = run(engine, 40.0, 8.0, DecodeOptions(prompt="Glossary"))
    assert [seconds for seconds, _ in engine.calls] == [PAUSE_AT, 40.0 - PAUSE_AT]
    assert [(s.start, s.end) for s in segments] == [(0.0, PAUSE_AT), (PAUSE_AT, 40.0)]
    # the piece's text is not handed on as a prompt: a text-only prompt pulls the next window
    # towards text without timestamps; the caller's prompt is kept
    assert [prompt for _, prompt in engine.calls] == ["Glossary", "Glossary"]


@pytest.mark.usefixtures("pause_at_six")
@pytest.mark.parametrize(("seconds", "piece"), [(25.0, 8.0), (40.0, None)])
def test_no_piece_for_audio_of_one_window_or_when_off(seconds: float, piece: float | None) -> None:
    engine = WholeHearer()
    run(engine, seconds, piece, DecodeOptions())
    assert [s for s, _ in engine.calls] == [seconds]


@pytest.mark.usefixtures("pause_at_six")
def test_an_unsure_language_on_the_piece_drops_it_unless_the_language_is_given() -> None:
    unsure = WholeHearer(probability=0.4)
    segments = run(unsure, 40.0, 8.0, DecodeOptions())
    assert [s for s, _ in unsure.calls] == [PAUSE_AT, 40.0]  # detected on the piece, then decoded whole
    assert [(s.start, s.end) for s in segments] == [(0.0, 40.0)]
    given = WholeHearer(probability=0.4)
    run(given, 40.0, 8.0, DecodeOptions(language="en"))
    assert [s for s, _ in given.calls] == [PAUSE_AT, 40.0 - PAUSE_AT]


def test_the_pause_is_found_between_two_sentences(tmp_path: Path) -> None:
    first = decode_audio(espeak(tmp_path / "a.wav", "The long journey home took a year.").read_bytes())
    second = decode_audio(espeak(tmp_path / "b.wav", "She saw a cat in the house.").read_bytes())
    silence = np.zeros(int(0.8 * SAMPLE_RATE), dtype=np.float32)
    audio = np.concatenate([first, silence, second, silence, first])
    cut = pause_between(audio, 1.0, (first.size + silence.size + second.size) / SAMPLE_RATE - 0.5)
    assert cut is not None
    assert first.size - 0.1 * SAMPLE_RATE <= cut <= first.size + silence.size + 0.1 * SAMPLE_RATE
    assert pause_between(audio, 0.2, 0.5) is None  # no pause that early
