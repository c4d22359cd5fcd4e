"""engines.longform with VAD chunks: speech left after Whisper's early end of a chunk is decoded again."""

from __future__ import annotations

import threading
from collections.abc import Generator

import numpy as np
import pytest

import engines.longform as longform
from engines.audio import SAMPLE_RATE, Samples
from engines.longform import LongFormConfig, LongFormRun, unheard_tail
from engines.types import DecodeOptions, Segment, TranscriptInfo, Word
from engines.vad import Span, VadParams, widen_chunks
from tests.fake_capabilities import ENGLISH_ONLY, FakeRecogniser


class EarlyEnder(FakeRecogniser):
    """Hears only the first ``heard_seconds`` of whatever it is given (an early end of text), never more."""

    name = "early"
    capabilities = ENGLISH_ONLY

    def __init__(self, heard_seconds: float) -> None:
        self.heard_seconds = heard_seconds
        self.calls: list[float] = []

    def transcribe(
        self, audio: Samples, options: DecodeOptions, cancel: threading.Event | None = None
    ) -> tuple[TranscriptInfo, Generator[Segment, None, None]]:
        seconds = audio.size / SAMPLE_RATE
        self.calls.append(round(seconds, 2))
        info = TranscriptInfo("transcribe", "en", 1.0, seconds, 0, 0)

        def segments() -> Generator[Segment, None, None]:
            end = min(seconds, self.heard_seconds)
            yield Segment(0, 0, 0.0, end, f" heard {len(self.calls)}", [1, 2], 0.0, -0.1, 1.0, 0.0)

        return info, segments()


def speech(seconds: float) -> Samples:
    """A tone; the tests set the VAD's regions themselves."""
    tone: Samples = (0.3 * np.sin(np.arange(int(seconds * SAMPLE_RATE)) * 0.05)).astype(np.float32)
    return tone


def test_unheard_tail_is_the_first_long_enough_speech_after_the_last_segment() -> None:
    second = SAMPLE_RATE
    regions = [Span(0, 4 * second), Span(5 * second, 5 * second + second // 2), Span(7 * second, 12 * second)]
    assert unheard_tail(regions, heard_until=3 * second, chunk_end=12 * second) == 3 * second
    assert unheard_tail(regions, heard_until=int(3.5 * second), chunk_end=12 * second) == 7 * second
    assert unheard_tail(regions, heard_until=int(11.5 * second), chunk_end=12 * second) is None
    assert unheard_tail(regions, heard_until=3 * second, chunk_end=int(3.5 * second)) is None


def test_a_chunk_that_whisper_ends_early_is_decoded_again_from_where_it_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    audio = speech(20.0)
    monkeypatch.setattr(longform, "speech_regions", lambda audio, params: [Span(0, audio.size)])
    engine = EarlyEnder(heard_seconds=6.0)
    run = LongFormRun(engine, DecodeOptions(), [audio], LongFormConfig(vad=VadParams()))
    segments = list(run.segments())
    # 0-6 s, then 6-12 s, then 12-18 s (two re-decodes at most); 18-20 s stays unheard
    assert [(s.start, s.end) for s in segments] == [(0.0, 6.0), (6.0, 12.0), (12.0, 18.0)]
    assert engine.calls == [20.0, 14.0, 8.0]
    assert [s.id for s in segments] == [0, 1, 2]


def test_no_second_decode_when_whisper_heard_the_whole_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(longform, "speech_regions", lambda audio, params: [Span(0, audio.size)])
    engine = EarlyEnder(heard_seconds=30.0)
    list(LongFormRun(engine, DecodeOptions(), [speech(20.0)], LongFormConfig(vad=VadParams())).segments())
    assert engine.calls == [20.0]


def test_chunks_widen_into_the_silence_around_them_but_never_past_half_a_gap() -> None:
    second = SAMPLE_RATE
    chunks = [Span(2 * second, 5 * second), Span(6 * second, 9 * second), Span(12 * second, 14 * second)]
    widened = widen_chunks(chunks, total=int(14.5 * second), context=second)
    assert widened == [
        Span(1 * second, int(5.5 * second)),  # 1 s before; half the 1-s gap after
        Span(int(5.5 * second), 10 * second),
        Span(11 * second, int(14.5 * second)),  # the end of the audio is nearer than 1 s
    ]
    assert widen_chunks(chunks, total=14 * second, context=0) == chunks


class LeadInTimer(EarlyEnder):
    """Times its first word from the window's start, as Whisper does after leading silence."""

    def transcribe(
        self, audio: Samples, options: DecodeOptions, cancel: threading.Event | None = None
    ) -> tuple[TranscriptInfo, Generator[Segment, None, None]]:
        seconds = audio.size / SAMPLE_RATE
        words = [Word(" early", 0.0, 1.5, 0.9), Word(" late", 1.5, seconds, 0.9)]

        def segments() -> Generator[Segment, None, None]:
            yield Segment(0, 0, 0.0, seconds, " early late", [1, 2], 0.0, -0.1, 1.0, 0.0, words)

        return TranscriptInfo("transcribe", "en", 1.0, seconds, 0, 0), segments()


def test_times_stay_inside_the_speech_of_a_chunk_widened_with_context(monkeypatch: pytest.MonkeyPatch) -> None:
    second = SAMPLE_RATE
    monkeypatch.setattr(longform, "speech_regions", lambda audio, params: [Span(3 * second, 6 * second)])
    run = LongFormRun(
        LeadInTimer(30.0), DecodeOptions(), [speech(10.0)], LongFormConfig(vad=VadParams(context_ms=1000))
    )
    (segment,) = run.segments()
    assert (segment.start, segment.end) == (3.0, 6.0)  # the window was 2-7 s
    assert [(w.start, w.end) for w in segment.words] == [(3.0, 3.5), (3.5, 6.0)]
