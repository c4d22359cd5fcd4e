"""How each kind of job is answered: plain transcripts and transcripts with speakers, whole or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator

from app.api.render import render
from app.api.render_diarized import render_diarized
from app.api.sse import diarized_events, transcript_events
from app.serving.jobs import Presenters, TranscriptionJob
from app.serving.protocol import Rendered, StreamEvent
from engines.diarized import DiarizedTranscript, SpeakerSegment
from engines.types import Segment, Transcript, TranscriptInfo


class PlainPresenter:
    def result(self, info: TranscriptInfo, segments: list[Segment]) -> Transcript:
        return Transcript(info, segments)

    def render(self, job: TranscriptionJob[Segment], segments: list[Segment]) -> Rendered:
        return render(self.result(job.run.info, segments), job.request, job.route.usage)

    def events(self, job: TranscriptionJob[Segment]) -> AsyncIterator[StreamEvent]:
        return transcript_events(job)


class SpeakersPresenter:
    def result(self, info: TranscriptInfo, segments: list[SpeakerSegment]) -> DiarizedTranscript:
        return DiarizedTranscript(info, segments)

    def render(self, job: TranscriptionJob[SpeakerSegment], segments: list[SpeakerSegment]) -> Rendered:
        return render_diarized(self.result(job.run.info, segments), job.request, job.route.usage)

    def events(self, job: TranscriptionJob[SpeakerSegment]) -> AsyncIterator[StreamEvent]:
        return diarized_events(job)


API_PRESENTERS = Presenters(plain=PlainPresenter(), speakers=SpeakersPresenter())
