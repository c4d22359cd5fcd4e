"""Server-sent events for `stream=true`: text deltas as segments are decoded, then one done event."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

from app.api.errors import to_api_error
from app.api.openai_usage import tokens_usage
from app.api.render import languages_body, logprobs_body
from app.api.render_diarized import segment_event
from app.serving.jobs import TranscriptionJob
from app.serving.protocol import AudioRequest, StreamEvent
from app.settings import UsageKind
from engines.diarized import DiarizedTranscript, SpeakerSegment
from engines.types import Segment, Transcript, TranscriptResult

log = logging.getLogger(__name__)


def _delta_event(delta: str, segment: Segment, request: AudioRequest) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "transcript.text.delta", "delta": delta}
    if request.logprobs:
        event["logprobs"] = logprobs_body(segment.logprobs)
    return event


class _HasText(Protocol):
    @property
    def text(self) -> str: ...


S = TypeVar("S", bound=_HasText)


async def _events(
    job: TranscriptionJob[S],
    on_segment: Callable[[S, str], list[dict[str, Any]]],
    finish: Callable[[list[S]], StreamEvent],
) -> AsyncIterator[StreamEvent]:
    """The shared shape of a transcript stream: per-segment events, then done, or an error event.

    Deltas are cut from the stripped running text, so they join to exactly the final text.
    """
    segments: list[S] = []
    emitted = ""
    stream = job.segments()
    try:
        async for segment in stream:
            segments.append(segment)
            text = "".join(s.text for s in segments).strip()
            delta, emitted = text[len(emitted) :], text
            for payload in on_segment(segment, delta):
                yield StreamEvent(payload)
    except Exception as exc:  # after the stream has started the error can only travel as an event
        error = to_api_error(exc)
        if error.status >= 500:
            log.exception("stream failed")
        yield StreamEvent(error.body(), status=error.status)
        return
    finally:
        await stream.aclose()
    yield finish(segments)


def _done(transcript: TranscriptResult, usage_kind: UsageKind, **extra: Any) -> StreamEvent:
    done: dict[str, Any] = {"type": "transcript.text.done", "text": transcript.text, **extra}
    if usage_kind == "tokens":
        done["usage"] = tokens_usage(transcript)
    return StreamEvent(done, status=200, transcript=transcript)


def transcript_events(job: TranscriptionJob[Segment]) -> AsyncIterator[StreamEvent]:
    """Text deltas (with log-probs when asked), then done; the done text equals the json answer's."""
    request, usage_kind = job.request, job.route.usage

    def on_segment(segment: Segment, delta: str) -> list[dict[str, Any]]:
        return [_delta_event(delta, segment, request)] if delta else []

    def finish(segments: list[Segment]) -> StreamEvent:
        transcript = Transcript(info=job.run.info, segments=segments)
        extra = {"logprobs": logprobs_body(transcript.logprobs)} if request.logprobs else {}
        if request.languages:
            extra["languages"] = languages_body(transcript)
        return _done(transcript, usage_kind, **extra)

    return _events(job, on_segment, finish)


def diarized_events(job: TranscriptionJob[SpeakerSegment]) -> AsyncIterator[StreamEvent]:
    """Per speaker segment: its text as a delta carrying ``segment_id``, then the segment itself."""
    usage_kind = job.route.usage

    def on_segment(segment: SpeakerSegment, delta: str) -> list[dict[str, Any]]:
        events = [{"type": "transcript.text.delta", "delta": delta, "segment_id": segment.id}] if delta else []
        return [*events, segment_event(segment)]

    def finish(segments: list[SpeakerSegment]) -> StreamEvent:
        return _done(DiarizedTranscript(info=job.run.info, segments=segments), usage_kind)

    return _events(job, on_segment, finish)
