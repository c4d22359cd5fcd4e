"""Render a transcript with speakers: diarized_json, json, text, and srt/vtt cues that name the speaker."""

from __future__ import annotations

from typing import Any

from app.api.openai_usage import usage_for
from app.api.render import Cue, json_response, render_text
from app.serving.protocol import AudioRequest, Rendered, ResponseFormat
from app.settings import UsageKind
from engines.diarized import DiarizedTranscript, SpeakerSegment


def segment_event(segment: SpeakerSegment) -> dict[str, Any]:
    return {
        "type": "transcript.text.segment",
        "id": segment.id,
        "start": segment.start,
        "end": segment.end,
        "text": segment.text.strip(),
        "speaker": segment.speaker,
    }


def diarized_json(transcript: DiarizedTranscript, usage_kind: UsageKind) -> dict[str, Any]:
    return {
        "task": "transcribe",
        "duration": round(transcript.info.duration, 3),
        "text": transcript.text,
        "segments": [segment_event(s) for s in transcript.segments],
        "usage": usage_for(usage_kind, transcript),
    }


def _cues(transcript: DiarizedTranscript, voice: bool) -> list[Cue]:
    """Each segment's text marked with its speaker: a WebVTT voice tag, or "A: " in SRT."""
    cues = []
    for segment in transcript.segments:
        text = segment.text.strip()
        if text:
            text = f"<v {segment.speaker}>{text}" if voice else f"{segment.speaker}: {text}"
        cues.append((segment.start, segment.end, text))
    return cues


def render_diarized(transcript: DiarizedTranscript, request: AudioRequest, usage_kind: UsageKind) -> Rendered:
    fmt = request.response_format
    text = render_text(fmt, transcript.text, lambda vtt: _cues(transcript, voice=vtt))
    if text is not None:
        return text
    if fmt is ResponseFormat.DIARIZED_JSON:
        return json_response(diarized_json(transcript, usage_kind))
    return json_response({"text": transcript.text, "usage": usage_for(usage_kind, transcript)})


__all__ = ["render_diarized", "segment_event"]
