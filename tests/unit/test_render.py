"""app.api.render: timestamps, subtitles, and each response format's body and Content-Type."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.api.render import JSON_TYPE, TEXT_TYPE, format_timestamp, render, srt, vtt
from app.api.render_diarized import render_diarized
from app.serving.protocol import AudioRequest, ResponseFormat
from app.settings import UsageKind
from engines.diarized import DiarizedTranscript, SpeakerSegment
from engines.types import Segment, TokenLogprob, Transcript, TranscriptInfo, Word

SEGMENT_KEYS = {
    "id",
    "seek",
    "start",
    "end",
    "text",
    "tokens",
    "temperature",
    "avg_logprob",
    "compression_ratio",
    "no_speech_prob",
}


def segment(
    id: int,
    start: float,
    end: float,
    text: str,
    *,
    tokens: list[int] | None = None,
    words: list[Word] | None = None,
    logprobs: list[TokenLogprob] | None = None,
) -> Segment:
    return Segment(
        id=id,
        seek=id * 3000,
        start=start,
        end=end,
        text=text,
        tokens=tokens if tokens is not None else [50364 + id, 400 + id, 50464 + id],
        temperature=0.2,
        avg_logprob=-0.25,
        compression_ratio=1.5,
        no_speech_prob=0.01,
        words=words or [],
        logprobs=logprobs or [],
    )


def transcript(
    segments: list[Segment] | None = None,
    *,
    task: str = "transcribe",
    language: str = "en",
    duration: float = 8.47,
    prompt_tokens: int = 3,
    audio_tokens: int = 424,
) -> Transcript:
    info = TranscriptInfo(
        task="translate" if task == "translate" else "transcribe",
        language=language,
        language_probability=0.98,
        duration=duration,
        prompt_tokens=prompt_tokens,
        audio_tokens=audio_tokens,
    )
    if segments is None:
        segments = [
            segment(
                0,
                0.0,
                2.5,
                " Hello there.",
                words=[Word(" Hello", 0.0, 0.9, 0.9), Word(" there.", 1.0, 2.5, 0.8)],
                logprobs=[TokenLogprob(" Hello", -0.01, (32, 72, 101, 108, 108, 111))],
            ),
            segment(
                1,
                2.5,
                4.0,
                " How are you?",
                words=[Word(" How", 2.5, 2.8, 0.9)],
                logprobs=[TokenLogprob(" How", -0.5, (32, 72, 111, 119))],
            ),
        ]
    return Transcript(info=info, segments=segments)


def request(fmt: ResponseFormat = ResponseFormat.JSON, **kwargs: Any) -> AudioRequest:
    fields: dict[str, Any] = {"task": "transcribe", "file": b"x", "model": "whisper-1"}
    fields.update(kwargs)
    return AudioRequest(response_format=fmt, **fields)


def body_of(fmt: ResponseFormat, usage: UsageKind = "duration", t: Transcript | None = None, **kw: Any) -> Any:
    rendered = render(t or transcript(), request(fmt, **kw), usage)
    assert rendered.media_type == JSON_TYPE
    return json.loads(rendered.body)


# --- format_timestamp -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "00:00:00,000"),
        (0.0, "00:00:00,000"),
        (0.0004, "00:00:00,000"),
        (0.0005, "00:00:00,001"),
        (0.0025, "00:00:00,003"),
        (0.0006, "00:00:00,001"),
        (1.2344, "00:00:01,234"),
        (1.2346, "00:00:01,235"),
        (59.9994, "00:00:59,999"),
        (59.9996, "00:01:00,000"),
        (61.5, "00:01:01,500"),
        (3599.9996, "01:00:00,000"),
        (3600, "01:00:00,000"),
        (3661.007, "01:01:01,007"),
        (36_000.25, "10:00:00,250"),
        (99 * 3600 + 59 * 60 + 59.999, "99:59:59,999"),
        (100 * 3600, "100:00:00,000"),
        (123 * 3600 + 4 * 60 + 5.678, "123:04:05,678"),
        (-1.0, "00:00:00,000"),
        (-0.0004, "00:00:00,000"),
    ],
)
def test_format_timestamp(seconds: float, expected: str) -> None:
    assert format_timestamp(seconds, decimal=",") == expected
    assert format_timestamp(seconds, decimal=".") == expected.replace(",", ".")


# --- srt / vtt ------------------------------------------------------------------------------


def test_srt_numbering_and_times() -> None:
    segments = [segment(0, 0.0, 1.5, " Hello."), segment(1, 1.5, 3723.004, " World.")]
    assert srt(segments) == ("1\n00:00:00,000 --> 00:00:01,500\nHello.\n\n2\n00:00:01,500 --> 01:02:03,004\nWorld.\n")


def test_vtt_header_and_dot() -> None:
    segments = [segment(0, 0.0, 1.5, " Hello."), segment(1, 1.5, 3.25, " World.")]
    assert vtt(segments) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello.\n\n00:00:01.500 --> 00:00:03.250\nWorld.\n"
    )


def test_empty_segments_skipped_numbering_contiguous() -> None:
    segments = [
        segment(0, 0.0, 1.0, " One."),
        segment(1, 1.0, 2.0, "   "),
        segment(2, 2.0, 3.0, ""),
        segment(3, 3.0, 4.0, " Two."),
    ]
    out = srt(segments)
    assert out == "1\n00:00:00,000 --> 00:00:01,000\nOne.\n\n2\n00:00:03,000 --> 00:00:04,000\nTwo.\n"
    assert out.count("-->") == 2
    assert vtt(segments).count("-->") == 2


def test_end_before_start_is_clamped() -> None:
    segments = [segment(0, 5.0, 4.2, " Backwards.")]
    assert "00:00:05,000 --> 00:00:05,000" in srt(segments)
    assert "00:00:05.000 --> 00:00:05.000" in vtt(segments)


def test_speaker_cues_are_clamped_and_named_like_plain_ones() -> None:
    info = transcript().info
    pieces = [SpeakerSegment("seg_0", 5.0, 4.2, " Backwards.", "A", 2), SpeakerSegment("seg_1", 6.0, 7.0, " ", "B", 0)]
    diarized = DiarizedTranscript(info, pieces)
    srt_body = render_diarized(diarized, request(ResponseFormat.SRT), "tokens").body.decode()
    vtt_body = render_diarized(diarized, request(ResponseFormat.VTT), "tokens").body.decode()
    assert srt_body == "1\n00:00:05,000 --> 00:00:05,000\nA: Backwards.\n"
    assert vtt_body == "WEBVTT\n\n00:00:05.000 --> 00:00:05.000\n<v A>Backwards.\n"


def test_no_segments() -> None:
    assert srt([]) == ""
    assert vtt([]) == "WEBVTT\n\n"


# --- render: content types ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [
        (ResponseFormat.JSON, "application/json"),
        (ResponseFormat.VERBOSE_JSON, "application/json"),
        (ResponseFormat.TEXT, "text/plain; charset=utf-8"),
        (ResponseFormat.SRT, "text/plain; charset=utf-8"),
    ],
)
def test_media_types(fmt: ResponseFormat, media_type: str) -> None:
    assert render(transcript(), request(fmt), "duration").media_type == media_type


def test_vtt_media_type() -> None:
    media_type = render(transcript(), request(ResponseFormat.VTT), "duration").media_type
    assert media_type.split(";")[0] == "text/vtt"
    assert media_type in ("text/vtt", "text/vtt; charset=utf-8")
    assert TEXT_TYPE == "text/plain; charset=utf-8"


def test_text_body_is_raw_not_json() -> None:
    rendered = render(transcript(), request(ResponseFormat.TEXT), "tokens")
    assert rendered.body == b"Hello there. How are you?\n"


def test_srt_and_vtt_bodies() -> None:
    srt_body = render(transcript(), request(ResponseFormat.SRT), "duration").body.decode()
    assert srt_body.startswith("1\n00:00:00,000 --> 00:00:02,500\nHello there.\n")
    vtt_body = render(transcript(), request(ResponseFormat.VTT), "duration").body.decode()
    assert vtt_body.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n")


def test_non_ascii_kept_as_utf8() -> None:
    t = transcript([segment(0, 0.0, 1.0, " Grüße, 世界")])
    assert (
        render(t, request(), "duration").body
        == '{"text": "Grüße, 世界", "usage": {"type": "duration", "seconds": 9}}'.encode()
    )
    assert render(t, request(ResponseFormat.TEXT), "duration").body == "Grüße, 世界\n".encode()


# --- json -----------------------------------------------------------------------------------


def test_json_duration_usage_rounds_up() -> None:
    body = body_of(ResponseFormat.JSON, "duration")
    assert body == {"text": "Hello there. How are you?", "usage": {"type": "duration", "seconds": 9}}


@pytest.mark.parametrize(("duration", "seconds"), [(8.0, 8), (8.001, 9), (0.2, 1), (0.0, 0)])
def test_duration_seconds_ceil(duration: float, seconds: int) -> None:
    body = body_of(ResponseFormat.JSON, "duration", transcript(duration=duration))
    assert body["usage"] == {"type": "duration", "seconds": seconds}


def test_json_tokens_usage() -> None:
    body = body_of(ResponseFormat.JSON, "tokens")
    assert body["usage"] == {
        "type": "tokens",
        "input_tokens": 3 + 424,
        "input_token_details": {"text_tokens": 3, "audio_tokens": 424},
        "output_tokens": 6,
        "total_tokens": 3 + 424 + 6,
    }


def test_json_logprobs_only_when_requested() -> None:
    assert "logprobs" not in body_of(ResponseFormat.JSON)
    body = body_of(ResponseFormat.JSON, logprobs=True)
    assert body["logprobs"] == [
        {"token": " Hello", "logprob": -0.01, "bytes": [32, 72, 101, 108, 108, 111]},
        {"token": " How", "logprob": -0.5, "bytes": [32, 72, 111, 119]},
    ]


def test_json_translation_has_no_usage() -> None:
    body = body_of(ResponseFormat.JSON, "tokens", transcript(task="translate"), task="translate")
    assert body == {"text": "Hello there. How are you?"}


# --- verbose_json ---------------------------------------------------------------------------


def test_verbose_json_default_segments_only() -> None:
    body = body_of(ResponseFormat.VERBOSE_JSON, "tokens", transcript(language="de"))
    assert body["task"] == "transcribe"
    assert body["language"] == "german"
    assert body["duration"] == 8.47
    assert body["text"] == "Hello there. How are you?"
    assert "words" not in body
    # verbose_json always reports whisper-1's duration usage, whatever the alias's kind.
    assert body["usage"] == {"type": "duration", "seconds": 9}
    assert len(body["segments"]) == 2
    first = body["segments"][0]
    assert set(first) == SEGMENT_KEYS
    assert first == {
        "id": 0,
        "seek": 0,
        "start": 0.0,
        "end": 2.5,
        "text": " Hello there.",
        "tokens": [50364, 400, 50464],
        "temperature": 0.2,
        "avg_logprob": -0.25,
        "compression_ratio": 1.5,
        "no_speech_prob": 0.01,
    }
    assert isinstance(first["id"], int)
    assert isinstance(first["seek"], int)
    assert body["segments"][1]["id"] == 1
    assert body["segments"][1]["seek"] == 3000


def test_verbose_json_english_name() -> None:
    assert body_of(ResponseFormat.VERBOSE_JSON)["language"] == "english"


def test_verbose_json_duration_rounded() -> None:
    body = body_of(ResponseFormat.VERBOSE_JSON, t=transcript(duration=12.345678))
    assert body["duration"] == 12.346
    assert body["usage"] == {"type": "duration", "seconds": 13}


def test_verbose_json_words_and_segments() -> None:
    body = body_of(ResponseFormat.VERBOSE_JSON, word_timestamps=True, segment_timestamps=True)
    assert body["words"] == [
        {"word": "Hello", "start": 0.0, "end": 0.9},
        {"word": "there.", "start": 1.0, "end": 2.5},
        {"word": "How", "start": 2.5, "end": 2.8},
    ]
    assert len(body["segments"]) == 2


def test_verbose_json_word_only_omits_segments() -> None:
    body = body_of(ResponseFormat.VERBOSE_JSON, word_timestamps=True, segment_timestamps=False)
    assert "segments" not in body
    assert [w["word"] for w in body["words"]] == ["Hello", "there.", "How"]


def test_verbose_json_translation() -> None:
    t = transcript(task="translate", language="fr")
    body = body_of(ResponseFormat.VERBOSE_JSON, "tokens", t, task="translate")
    assert body["task"] == "translate"
    assert body["language"] == "english"
    assert "usage" not in body
    assert len(body["segments"]) == 2


def test_verbose_json_no_logprobs() -> None:
    assert "logprobs" not in body_of(ResponseFormat.VERBOSE_JSON)
