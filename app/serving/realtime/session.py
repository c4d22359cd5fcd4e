"""One realtime transcription session: audio in (any append size), turns detected, items committed.

Client events arrive as method calls (``append``, ``commit``, ``clear``, ``update``), which act at
once and report through ``emit``; the session's ``TurnDecoder`` (``run``) turns the audio into
deltas and transcripts in the background. Everything here runs on the event loop, except the
decoding itself. The connection drives a session through its methods only (``start``, ``run``,
``stop``, ``aclose``, ``stats``), never through its decoder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

from app.serving.errors import InvalidInput
from app.serving.protocol import ModelRoute
from app.serving.realtime import events as ev
from app.serving.realtime.audio_buffer import AudioBuffer
from app.serving.realtime.config import SessionConfig, denoise_params, turn_params
from app.serving.realtime.decoder import DecodeStats, TurnDecoder
from app.serving.realtime.turn import CommittedAudio, Turn, new_item_id, to_ms
from app.serving.scheduler import ModelSlots
from app.serving.service import TranscriptionService
from app.settings import RealtimeConfig
from engines.audio import SAMPLE_RATE, Samples
from engines.live import turns
from engines.live.codecs import StreamConverter
from engines.live.vad_stream import FrameScorer, StreamingVad
from engines.types import Transcriber

log = logging.getLogger(__name__)

MIN_COMMIT_SECONDS = 0.1  # as OpenAI: a commit needs at least 100 ms of audio


class ServiceModels:
    """The service's models as a session's decoder uses them (``decoder.ModelAccess``)."""

    def __init__(self, service: TranscriptionService) -> None:
        self._service = service

    def lease(self, model_id: str) -> AbstractContextManager[Transcriber]:
        return self._service.manager.lease(model_id)

    def slots(self, model_id: str) -> ModelSlots:
        return self._service.slots[model_id]

    def beam_size(self, model_id: str) -> int:
        return self._service.settings.models[model_id].beam_size


class RealtimeSession:
    def __init__(
        self,
        service: TranscriptionService,
        limits: RealtimeConfig,
        config: SessionConfig,
        emit: Callable[[ev.SessionEvent], None],
        scorer: FrameScorer,
    ) -> None:
        self.service = service
        self.limits = limits
        self.config = config
        self.route: ModelRoute = service.resolve(config.transcription.model)
        self.emit = emit
        self.converter = StreamConverter(config.format, denoise_params(config.noise_reduction))
        self.buffer = AudioBuffer()
        self.vad = StreamingVad(scorer)
        self.detector = turns.TurnDetector(turn_params(config.turn_detection, limits.max_turn_seconds))
        self.floor = 0  # start of the uncommitted audio on the session's timeline
        self.open: Turn | None = None
        self.last_item_id: str | None = None
        self.turns_committed = 0
        self._decoder = TurnDecoder(config, source=self, models=ServiceModels(service), limits=limits, emit=emit)

    # --- what the decoder reads (decoder.TurnSource) ---------------------------------------------

    @property
    def audio_end(self) -> int:
        return self.buffer.end

    def audio(self, start: int) -> Samples:
        return self.buffer.span(start)

    @property
    def manual(self) -> bool:
        return self.config.turn_detection is None

    @property
    def audio_seconds(self) -> float:
        return self.buffer.end / SAMPLE_RATE

    @property
    def stats(self) -> DecodeStats:
        """The decodes run so far (for the session's log line and the benchmark)."""
        return self._decoder.stats

    # --- client events ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the session's model (or fail) before the session is announced."""
        await self._decoder.use_model(self.route, self.config)
        self.emit(ev.SessionChanged(self.config))

    async def update(self, config: SessionConfig) -> None:
        route = self.service.resolve(config.transcription.model)
        await self._decoder.use_model(route, config)
        if config.format != self.config.format or config.noise_reduction != self.config.noise_reduction:
            self.converter = StreamConverter(config.format, denoise_params(config.noise_reduction))
        self.detector.params = turn_params(config.turn_detection, self.limits.max_turn_seconds)
        if (config.turn_detection is None) != self.manual:
            self.detector.reset(self.buffer.end)
            if self.open is not None and not self.open.speech.heard:
                self.open = None
        self.config, self.route = config, route
        self.emit(ev.SessionChanged(config))

    def append(self, data: bytes) -> None:
        if len(data) > self.limits.max_append_bytes:
            raise InvalidInput(
                "audio",
                f"One append may carry at most {self.limits.max_append_bytes} bytes of audio, got {len(data)}.",
                code="audio_too_large",
            )
        incoming = self.converter.samples_in(data) / self.converter.rate
        buffered = (self.buffer.end - self.floor) / SAMPLE_RATE
        if buffered + incoming > self.limits.max_buffer_seconds:
            raise InvalidInput(
                "audio",
                f"The input audio buffer would hold more than {self.limits.max_buffer_seconds:g} s of uncommitted "
                "audio; commit or clear it first.",
                code="input_audio_buffer_full",
            )
        samples = self.converter.convert(data)
        if samples.size == 0:
            return
        self.buffer.append(samples)
        if self.manual and self.open is None:
            self.open = self._new_turn(self.floor)
        for event in self.detector.feed(self.vad.feed(samples)):
            self._on_turn_event(event)
        if not self.manual and self.open is None:
            # Idle: keep only what a turn starting now could reach back to (its prefix padding).
            keep = self.buffer.end - self.detector.params.prefix_padding_ms * SAMPLE_RATE // 1000 - 512
            self.floor = max(self.floor, keep)
            self.buffer.drop_before(self.floor)
        self._decoder.wake()

    def commit(self) -> None:
        end = self.buffer.end
        if end - self.floor < MIN_COMMIT_SECONDS * SAMPLE_RATE:
            have = (end - self.floor) * 1000 / SAMPLE_RATE
            raise InvalidInput(
                "",
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {have:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        turn = self.open or self._new_turn(self.floor)
        if self.detector.in_speech and not turn.speech.paused:
            turn.speech.end = end
        self._commit(turn, end, gate=not turn.speech.heard)
        self.detector.reset(end)

    def clear(self) -> None:
        if self.open is not None:
            self._decoder.cancel_live(self.open)
            self.open = None
        self.floor = self.buffer.end
        self.buffer.drop_before(self.floor)
        self.detector.reset(self.floor)
        self.emit(ev.Cleared())

    # --- turns -------------------------------------------------------------------------------------

    def _new_turn(self, start: int) -> Turn:
        return Turn(new_item_id(), start, self._decoder.new_decoding(start))

    def _on_turn_event(self, event: turns.TurnEvent) -> None:
        turn = self.open
        if isinstance(event, turns.SpeechStarted):
            if turn is None:
                turn = self.open = self._new_turn(max(event.start, self.floor))
                if not self.manual:
                    self.emit(ev.SpeechStarted(turn.item_id, to_ms(turn.start)))
            speech = turn.speech
            speech.heard, speech.paused = True, False
            speech.epoch += 1
            speech.end = max(speech.end, event.start)
        elif isinstance(event, turns.IdleTimeout):
            item = self._new_turn(max(event.start, self.floor))
            self.emit(ev.TimeoutTriggered(item.item_id, to_ms(event.start), to_ms(event.end)))
            self._commit(item, event.end, gate=True)
        elif turn is None:
            return
        elif isinstance(event, turns.PauseStarted):
            turn.speech.paused, turn.speech.end = True, event.speech_end
        elif isinstance(event, turns.SpeechResumed):
            turn.speech.paused = False
            turn.speech.epoch += 1
        elif isinstance(event, turns.SpeechStopped):
            turn.speech.end = event.speech_end
            turn.speech.paused = True
            if not self.manual:
                self.emit(ev.SpeechStopped(turn.item_id, to_ms(event.end)))
                self._commit(turn, event.end)

    def _commit(self, turn: Turn, end: int, *, gate: bool = False) -> None:
        """End ``turn`` at ``end``: it becomes an item, and its final decode is queued."""
        turn.committed = CommittedAudio(self.buffer.span(turn.start, end), self.last_item_id, gate)
        self.last_item_id = turn.item_id
        self.turns_committed += 1
        self.emit(ev.Committed(turn.item_id, turn.committed.previous_item_id))
        self.emit(ev.ItemAdded(turn.item_id, turn.committed.previous_item_id))
        was_open = turn is self.open
        if was_open:
            self.open = None
        self._decoder.add_final(turn, was_open=was_open)
        self.floor = max(self.floor, end)
        self.buffer.drop_before(self.floor)

    # --- life ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Decode until stopped or cancelled; the caller cancels it when the connection ends."""
        await self._decoder.run()

    def stop(self) -> None:
        """Stop decoding: a running decode ends at its next window, and ``run`` returns."""
        self._decoder.stop()

    async def aclose(self) -> None:
        """Stop any decoding at its next window and give the model back."""
        await self._decoder.aclose()
