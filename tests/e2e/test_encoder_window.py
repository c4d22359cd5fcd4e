"""Shortened encoder windows on the real `base` model: less encoding, the same kind of answer.

The model's CTranslate2 calls are counted: a clip without a language is encoded once (language
detection's encoding is reused), at the audio's length plus the padding; a window whose result
looks wrong is decoded again on the full 30 s; word times and log-probs stay inside the audio.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from app.serving.protocol import ChunkingStrategy
from app.serving.service import chunking_vad
from app.settings import Settings
from bench.speech import SYNTH_SENTENCE, espeak, repeat_audio, wer
from engines.audio import SAMPLE_RATE, decode_audio
from engines.longform import LongFormConfig, LongFormRun
from engines.types import DecodeOptions
from engines.whisper.adapter import WINDOW_BUCKET_FRAMES
from engines.whisper.engine import WhisperEngine
from tests.recorded_whisper import recorder

FULL_WINDOW_FRAMES = 3000
PADDING = 10.0


@pytest.fixture(scope="module")
def sentence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return espeak(tmp_path_factory.mktemp("speech") / "sentence.wav", SYNTH_SENTENCE)


def transcribe(engine: WhisperEngine, path: Path, options: DecodeOptions) -> tuple[str, list[Any], str]:
    info, segments = engine.transcribe(decode_audio(path.read_bytes()), options)
    listed = list(segments)
    return "".join(s.text for s in listed).strip(), listed, info.language


@pytest.mark.parametrize("padding", [PADDING, None])
def test_a_clip_without_a_language_is_encoded_once(
    engine: WhisperEngine, sentence: Path, padding: float | None
) -> None:
    model = recorder(engine)
    text, _, language = transcribe(engine, sentence, DecodeOptions(encoder_padding_seconds=padding))
    seconds = decode_audio(sentence.read_bytes()).size / SAMPLE_RATE
    assert language == "en"
    assert len(model.encoded) == 1, f"encoded {model.encoded}: language detection's encoding was not reused"
    if padding is None:
        assert model.encoded[0] == FULL_WINDOW_FRAMES
    else:  # the audio and the padding, rounded up to the next of 10, 20 or 30 s
        assert model.encoded[0] == min(b for b in WINDOW_BUCKET_FRAMES if b >= (seconds + padding) * 100)
        assert model.encoded[0] < FULL_WINDOW_FRAMES
    assert wer(SYNTH_SENTENCE, text) <= 0.15, text


def test_word_times_and_logprobs_stay_right_on_a_shortened_window(engine: WhisperEngine, sentence: Path) -> None:
    seconds = decode_audio(sentence.read_bytes()).size / SAMPLE_RATE
    asked = DecodeOptions(language="en", word_timestamps=True, logprobs=True)
    full_text, full, _ = transcribe(engine, sentence, asked)
    short_text, short, _ = transcribe(
        engine, sentence, DecodeOptions(**{**asked.__dict__, "encoder_padding_seconds": PADDING})
    )
    words = [w for s in short for w in s.words]
    assert words and all(0.0 <= w.start <= w.end <= seconds + 0.05 for w in words)
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))
    logprobs = [p for s in short for p in s.logprobs]
    assert len(logprobs) >= len(words) and all(p.logprob <= 0.0 for p in logprobs)
    full_words = [w for s in full for w in s.words]
    if [w.word for w in words] == [w.word for w in full_words]:  # the same words: the same times
        drift = max(abs(a.start - b.start) + abs(a.end - b.end) for a, b in zip(words, full_words, strict=True))
        assert drift <= 0.3, f"word times moved by up to {drift:.2f} s"
    assert wer(full_text, short_text) <= 0.2


def test_a_skipped_repeat_is_decoded_again_on_the_full_window(
    engine: WhisperEngine, sentence: Path, tmp_path: Path
) -> None:
    """The same sentence three times, VAD-chunked: on a window shortened to 20 s Whisper stretches
    one sentence over two and says the speech ended; the guard sees it and decodes that window on
    the full 30 s (without the guard, a repetition is lost)."""
    repeated = repeat_audio(sentence, tmp_path / "repeated.wav", 3)
    vad = chunking_vad(Settings(), ChunkingStrategy(type="auto"))
    model = recorder(engine)
    # 5 s of padding: the 13.7-s rest of the chunk is encoded at 20 s (at 10 s of padding, at 30 s)
    options = DecodeOptions(language="en", encoder_padding_seconds=5.0)
    run = LongFormRun(engine, options, [decode_audio(repeated.read_bytes())], LongFormConfig(vad=vad))
    text = "".join(s.text for s in run.segments())
    assert wer(" ".join([SYNTH_SENTENCE] * 3), text) <= 0.15, text
    shortened = [frames for frames in model.encoded if frames < FULL_WINDOW_FRAMES]
    assert shortened, f"no window was shortened: {model.encoded}"
