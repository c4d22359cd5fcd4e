"""Every non-diarized response format through the real openai SDK against the real server."""

from __future__ import annotations

import math
import re
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.audio import Transcription, TranscriptionVerbose

from tests.audio import SYNTH_SENTENCE, recording, reference, wer
from tests.server import RunningServer

SEGMENT_KEYS = {
    "id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob",
}  # fmt: skip
SRT_TIME = re.compile(r"^\d{2}:\d{2}:\d{2},\d{3} --> \d{2}:\d{2}:\d{2},\d{3}$")
VTT_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{3} --> \d{2}:\d{2}:\d{2}\.\d{3}$")


def test_json_on_generated_speech(client: openai.OpenAI, synth_wav: Path) -> None:
    result = client.audio.transcriptions.create(model="whisper-1", file=synth_wav)
    assert isinstance(result, Transcription)
    assert wer(SYNTH_SENTENCE, result.text) <= 0.2, result.text
    assert result.usage is not None and result.usage.type == "duration"
    assert result.usage.seconds == math.ceil(result.usage.seconds) >= 5


def test_json_on_real_recording(client: openai.OpenAI) -> None:
    path = recording("en_jfk.flac")
    result = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=path)
    assert wer(reference("en_jfk.flac"), result.text) <= 0.1, result.text
    assert result.logprobs is None


def test_tokens_usage_counts_real_tokens(client: openai.OpenAI, synth_wav: Path) -> None:
    result = client.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=synth_wav)
    usage = result.usage
    assert usage is not None and usage.type == "tokens"
    details = usage.input_token_details
    assert details is not None and details.text_tokens == 0
    # One audio token per 20 ms of audio.
    assert details.audio_tokens is not None and 250 <= details.audio_tokens <= 400
    assert usage.input_tokens == details.audio_tokens
    # Generated tokens: at least one per word, at most a handful per word.
    words = len(SYNTH_SENTENCE.split())
    assert words <= usage.output_tokens <= 4 * words
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_logprobs_are_real_per_token_values(client: openai.OpenAI) -> None:
    path = recording("en_jfk.flac")
    result = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=path, include=["logprobs"])
    assert result.logprobs, "logprobs were asked for"
    tokens = "".join(lp.token or "" for lp in result.logprobs)
    assert tokens.strip() == result.text
    values = [lp.logprob for lp in result.logprobs]
    assert all(v is not None and v <= 0.0 for v in values)
    assert len({round(v or 0.0, 6) for v in values}) > len(values) // 2, "values look like placeholders"
    assert any((v or 0.0) < -0.05 for v in values) and any((v or -1.0) > -0.05 for v in values)
    for lp in result.logprobs:
        assert bytes(int(b) for b in lp.bytes or []).decode("utf-8") == lp.token


def test_logprobs_do_not_change_the_transcript(client: openai.OpenAI, synth_wav: Path) -> None:
    plain = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=synth_wav)
    scored = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=synth_wav, include=["logprobs"])
    assert plain.text == scored.text


@pytest.mark.parametrize("model", ["whisper-1", "gpt-4o-transcribe"])
def test_verbose_json_segments(client: openai.OpenAI, model: str) -> None:
    path = recording("en_osr_harvard72_8k.wav")
    result = client.audio.transcriptions.create(model=model, file=path, response_format="verbose_json")
    assert isinstance(result, TranscriptionVerbose)
    assert result.language == "english"
    assert result.duration == pytest.approx(35.5, abs=0.2)
    assert result.words is None
    assert result.segments and len(result.segments) >= 3
    raw = result.model_dump()
    for segment in raw["segments"]:
        assert set(segment) == SEGMENT_KEYS
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and result.segments[-1].end <= result.duration + 0.5
    assert result.segments[0].text.startswith(" ")
    assert result.text == result.text.strip()
    assert wer(reference("en_osr_harvard72_8k.wav"), result.text) <= 0.25, result.text
    assert result.usage is not None and result.usage.seconds == 36


def test_verbose_json_words_only(client: openai.OpenAI, synth_wav: Path) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1", file=synth_wav, response_format="verbose_json", timestamp_granularities=["word"]
    )
    assert result.segments is None
    assert result.words and len(result.words) >= 12
    assert all(w.word == w.word.strip() and w.start <= w.end for w in result.words)
    assert [w.start for w in result.words] == sorted(w.start for w in result.words)
    assert wer(SYNTH_SENTENCE, " ".join(w.word for w in result.words)) <= 0.2


def test_verbose_json_words_and_segments(client: openai.OpenAI) -> None:
    path = recording("en_jfk.flac")
    result = client.audio.transcriptions.create(
        model="whisper-1", file=path, response_format="verbose_json", timestamp_granularities=["word", "segment"]
    )
    assert result.segments and result.words
    assert result.words[0].word.lower() == "and" and result.words[0].start < 1.0
    country = [w for w in result.words if w.word.lower().startswith("country")]
    # "...your country" closes the speech at about 10 s in the recording.
    assert country and 9.0 <= country[-1].end <= 11.0


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt"])
def test_plain_text_formats(client: openai.OpenAI, server: RunningServer, synth_wav: Path, fmt: str) -> None:
    text = client.audio.transcriptions.create(model="whisper-1", file=synth_wav, response_format=fmt)  # type: ignore[call-overload]
    assert isinstance(text, str)
    assert not text.startswith('"'), "must be raw text, not a JSON string"
    lines = text.strip().splitlines()
    if fmt == "text":
        assert wer(SYNTH_SENTENCE, text) <= 0.2
    elif fmt == "srt":
        assert lines[0] == "1" and SRT_TIME.match(lines[1])
        assert wer(SYNTH_SENTENCE, " ".join(line for line in lines[2:] if not SRT_TIME.match(line))) <= 0.3
    else:
        assert lines[0] == "WEBVTT" and VTT_TIME.match(lines[2])
    raw = httpx.post(
        f"{server.v1}/audio/transcriptions",
        headers={"Authorization": f"Bearer {server.api_key}"},
        files={"file": ("a.wav", synth_wav.read_bytes())},
        data={"model": "whisper-1", "response_format": fmt},
        timeout=120,
    )
    expected = "text/vtt" if fmt == "vtt" else "text/plain"
    assert raw.headers["content-type"].startswith(expected) and "charset=utf-8" in raw.headers["content-type"]


def test_srt_cues_on_long_recording(client: openai.OpenAI) -> None:
    path = recording("en_osr_harvard72_8k.wav")
    text = client.audio.transcriptions.create(model="whisper-1", file=path, response_format="srt")
    blocks = [b.splitlines() for b in text.strip().split("\n\n")]
    assert [int(b[0]) for b in blocks] == list(range(1, len(blocks) + 1))
    assert all(SRT_TIME.match(b[1]) for b in blocks)
