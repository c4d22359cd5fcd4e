"""Render one transcript as json, text, srt, vtt or verbose_json, with the right Content-Type.

The text, srt and vtt answers (``render_text``) serve transcripts with speakers too (render_diarized.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from app.api.languages import language_name
from app.api.openai_usage import duration_usage, usage_for
from app.serving.protocol import AudioRequest, Rendered, ResponseFormat
from app.settings import UsageKind
from engines.types import Segment, TokenLogprob, Transcript, TranscriptResult

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
VTT_TYPE = "text/vtt; charset=utf-8"

Cue = tuple[float, float, str]  # start, end, text


def render_text(fmt: ResponseFormat, text: str, cues: Callable[[bool], list[Cue]]) -> Rendered | None:
    """The text, srt or vtt answer, or None for the JSON formats; ``cues(vtt)`` gives the subtitle cues."""
    if fmt is ResponseFormat.TEXT:
        return Rendered((text + "\n").encode(), TEXT_TYPE)
    if fmt is ResponseFormat.SRT:
        return Rendered(srt_document(cues(False)).encode(), TEXT_TYPE)
    if fmt is ResponseFormat.VTT:
        return Rendered(vtt_document(cues(True)).encode(), VTT_TYPE)
    return None


def render(transcript: Transcript, request: AudioRequest, usage_kind: UsageKind) -> Rendered:
    fmt = request.response_format
    text = render_text(fmt, transcript.text, lambda _vtt: segment_cues(transcript.segments))
    if text is not None:
        return text
    if fmt is ResponseFormat.VERBOSE_JSON:
        return json_response(verbose_json(transcript, request))
    return json_response(json_body(transcript, request, usage_kind))


def json_response(body: dict[str, Any]) -> Rendered:
    return Rendered(json.dumps(body, ensure_ascii=False).encode(), JSON_TYPE)


def logprobs_body(logprobs: list[TokenLogprob]) -> list[dict[str, Any]]:
    return [{"token": lp.token, "logprob": lp.logprob, "bytes": list(lp.bytes)} for lp in logprobs]


def languages_body(transcript: TranscriptResult) -> list[dict[str, str]]:
    """OpenAI's ``languages``: the language the transcript was decoded in (reported when ``languages[]`` was sent)."""
    return [{"code": transcript.info.language}] if transcript.text else []


def json_body(transcript: Transcript, request: AudioRequest, usage_kind: UsageKind) -> dict[str, Any]:
    body: dict[str, Any] = {"text": transcript.text}
    if request.logprobs:
        body["logprobs"] = logprobs_body(transcript.logprobs)
    if request.languages:
        body["languages"] = languages_body(transcript)
    if request.task == "transcribe":
        body["usage"] = usage_for(usage_kind, transcript)
    return body


def segment_body(segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.id,
        "seek": segment.seek,
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": segment.tokens,
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }


def verbose_json(transcript: Transcript, request: AudioRequest) -> dict[str, Any]:
    translate = request.task == "translate"
    body: dict[str, Any] = {
        "task": request.task,
        # A translation's language is that of its output, as OpenAI reports it.
        "language": "english" if translate else language_name(transcript.info.language),
        "duration": round(transcript.info.duration, 3),
        "text": transcript.text,
    }
    if request.segment_timestamps:
        body["segments"] = [segment_body(s) for s in transcript.segments]
    if request.word_timestamps:
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end} for w in transcript.words]
    if not translate:
        body["usage"] = duration_usage(transcript)
    return body


def format_timestamp(seconds: float, *, decimal: str) -> str:
    """HH:MM:SS<decimal>mmm, rounded to the millisecond; hours grow past 99 if they must."""
    millis = max(0, math.floor(seconds * 1000 + 0.5))  # half-up, not banker's rounding
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def cue_times(start: float, end: float, *, decimal: str) -> str:
    """A cue's time line; a cue never ends before it starts (Whisper can report such segments)."""
    return f"{format_timestamp(start, decimal=decimal)} --> {format_timestamp(max(start, end), decimal=decimal)}"


def srt_document(cues: list[Cue]) -> str:
    """Numbered SRT cues from (start, end, text); empty texts are left out."""
    kept = [(start, end, text) for start, end, text in cues if text]
    blocks = [f"{n}\n{cue_times(s, e, decimal=',')}\n{text}\n" for n, (s, e, text) in enumerate(kept, start=1)]
    return "\n".join(blocks)


def vtt_document(cues: list[Cue]) -> str:
    """A WebVTT document from (start, end, text); empty texts are left out."""
    blocks = [f"{cue_times(s, e, decimal='.')}\n{text}\n" for s, e, text in cues if text]
    return "WEBVTT\n\n" + "\n".join(blocks)


def segment_cues(segments: list[Segment]) -> list[Cue]:
    return [(s.start, s.end, s.text.strip()) for s in segments]


def srt(segments: list[Segment]) -> str:
    return srt_document(segment_cues(segments))


def vtt(segments: list[Segment]) -> str:
    return vtt_document(segment_cues(segments))
