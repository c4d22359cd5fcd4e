"""Render a transcript with speakers: diarized_json, json, text, and srt/vtt cues that name the speaker."""

from __future__ import annotations

from typing import Any

from app.api.openai_usage import usage_for
from app.api.render import JSON_TYPE, TEXT_TYPE, VTT_TYPE, json_response, srt_document, vtt_document
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


def _cues(transcript: DiarizedTranscript, voice: bool) -> list[tuple[float, float, str]]:
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
    if fmt is ResponseFormat.TEXT:
        return Rendered((transcript.text + "\n").encode(), TEXT_TYPE)
    if fmt is ResponseFormat.SRT:
        return Rendered(srt_document(_cues(transcript, voice=False)).encode(), TEXT_TYPE)
    if fmt is ResponseFormat.VTT:
        return Rendered(vtt_document(_cues(transcript, voice=True)).encode(), VTT_TYPE)
    if fmt is ResponseFormat.DIARIZED_JSON:
        return json_response(diarized_json(transcript, usage_kind))
    return json_response({"text": transcript.text, "usage": usage_for(usage_kind, transcript)})


__all__ = ["JSON_TYPE", "render_diarized", "segment_event"]
