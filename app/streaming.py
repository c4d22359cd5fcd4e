"""Server-sent events for `stream=true`: text deltas as segments are decoded, then one done event."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from app.jobs import TranscriptionJob
from app.protocol import AudioRequest
from app.render import logprobs_body
from app.render_diarized import segment_event
from app.service import engine_error_to_api
from app.settings import UsageKind
from app.usage import tokens_usage
from engines.diarized import DiarizedTranscript, SpeakerSegment
from engines.types import Segment, Transcript, TranscriptResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamEvent:
    """One SSE payload, plus what the server needs to account for it (never sent)."""

    payload: dict[str, Any]
    status: int | None = None  # set on the last event: 200 for done, the error's status otherwise
    transcript: TranscriptResult | None = None


def _delta_event(delta: str, segment: Segment, request: AudioRequest) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "transcript.text.delta", "delta": delta}
    if request.logprobs:
        event["logprobs"] = logprobs_body(segment.logprobs)
    return event


async def transcript_events(
    job: TranscriptionJob[Segment], request: AudioRequest, usage_kind: UsageKind
) -> AsyncIterator[StreamEvent]:
    """Events as JSON-able dicts. Joined deltas equal the done text, which equals the json answer's text."""
    segments: list[Segment] = []
    emitted = ""
    stream = job.segments()
    try:
        async for segment in stream:
            segments.append(segment)
            # Deltas are cut from the stripped running text, so they join to exactly the final text.
            text = "".join(s.text for s in segments).strip()
            delta = text[len(emitted) :]
            if delta:
                emitted = text
                yield StreamEvent(_delta_event(delta, segment, request))
    except Exception as exc:  # after the stream has started the error can only travel as an event
        error = engine_error_to_api(exc)
        if error.status >= 500:
            log.exception("stream failed")
        yield StreamEvent(error.body(), status=error.status)
        return
    finally:
        await stream.aclose()
    transcript = Transcript(info=job.run.info, segments=segments)
    done: dict[str, Any] = {"type": "transcript.text.done", "text": transcript.text}
    if request.logprobs:
        done["logprobs"] = logprobs_body(transcript.logprobs)
    if usage_kind == "tokens":
        done["usage"] = tokens_usage(transcript)
    yield StreamEvent(done, status=200, transcript=transcript)


async def diarized_events(
    job: TranscriptionJob[SpeakerSegment], request: AudioRequest, usage_kind: UsageKind
) -> AsyncIterator[StreamEvent]:
    """Per speaker segment: its text as a delta carrying ``segment_id``, then the segment itself."""
    segments: list[SpeakerSegment] = []
    emitted = ""
    stream = job.segments()
    try:
        async for segment in stream:
            segments.append(segment)
            text = "".join(s.text for s in segments).strip()
            delta = text[len(emitted) :]
            emitted = text
            if delta:
                yield StreamEvent({"type": "transcript.text.delta", "delta": delta, "segment_id": segment.id})
            yield StreamEvent(segment_event(segment))
    except Exception as exc:
        error = engine_error_to_api(exc)
        if error.status >= 500:
            log.exception("stream failed")
        yield StreamEvent(error.body(), status=error.status)
        return
    finally:
        await stream.aclose()
    transcript = DiarizedTranscript(info=job.run.info, segments=segments)
    done: dict[str, Any] = {"type": "transcript.text.done", "text": transcript.text}
    if usage_kind == "tokens":
        done["usage"] = tokens_usage(transcript)
    yield StreamEvent(done, status=200, transcript=transcript)
