"""One realtime transcription session: audio in (any append size), turns detected, items committed.

Client events arrive as method calls (``append``, ``commit``, ``clear``, ``update``), which act at
once and report through ``emit``; the session's ``TurnDecoder`` (``run``) turns the audio into
deltas and transcripts in the background. Everything here runs on the event loop, except the
decoding itself.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import anyio

from app.serving.errors import InvalidInput
from app.serving.protocol import ModelRoute
from app.serving.realtime.audio_buffer import AudioBuffer
from app.serving.realtime.config import SessionConfig, denoise_params, live_policy, turn_params
from app.serving.realtime.decoder import TurnDecoder
from app.serving.realtime.events import (
    Cleared,
    Committed,
    ItemAdded,
    SessionChanged,
    SessionEvent,
    SpeechStarted,
    SpeechStopped,
    TimeoutTriggered,
)
from app.serving.realtime.turn import LiveTurn, new_item_id, to_ms
from app.serving.service import TranscriptionService
from app.settings import RealtimeConfig
from engines.audio import SAMPLE_RATE
from engines.live import turns
from engines.live.agreement import LocalAgreement
from engines.live.codecs import StreamConverter
from engines.live.vad_stream import FrameScorer, StreamingVad

log = logging.getLogger(__name__)

MIN_COMMIT_SECONDS = 0.1  # as OpenAI: a commit needs at least 100 ms of audio


class RealtimeSession:
    def __init__(
        self,
        service: TranscriptionService,
        limits: RealtimeConfig,
        config: SessionConfig,
        emit: Callable[[SessionEvent], None],
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
        self.policy = live_policy(config.transcription, limits.live_partials)
        self.floor = 0  # start of the uncommitted audio on the session's timeline
        self.open: LiveTurn | None = None
        self.finals: deque[LiveTurn] = deque()
        self.last_item_id: str | None = None
        self.turns_committed = 0
        self.decoder = TurnDecoder(self)
        self._wake = anyio.Event()

    # --- what the decoder waits on -------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def wait(self, timeout: float) -> None:
        """Until something happens (audio, a commit, a new config) or ``timeout``; for several waiters at once."""
        wake = self._wake
        with anyio.move_on_after(timeout):
            await wake.wait()
        if self._wake is wake and wake.is_set():
            self._wake = anyio.Event()

    @property
    def manual(self) -> bool:
        return self.config.turn_detection is None

    @property
    def audio_seconds(self) -> float:
        return self.buffer.end / SAMPLE_RATE

    # --- client events ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the session's model (or fail) before the session is announced."""
        await self.decoder.use_model(self.route, self.config)
        self.emit(SessionChanged(self.config))

    async def update(self, config: SessionConfig) -> None:
        route = self.service.resolve(config.transcription.model)
        await self.decoder.use_model(route, config)
        if config.format != self.config.format or config.noise_reduction != self.config.noise_reduction:
            self.converter = StreamConverter(config.format, denoise_params(config.noise_reduction))
        self.detector.params = turn_params(config.turn_detection, self.limits.max_turn_seconds)
        if (config.turn_detection is None) != self.manual:
            self.detector.reset(self.buffer.end)
            if self.open is not None and not self.open.heard_speech:
                self.open = None
        self.policy = live_policy(config.transcription, self.limits.live_partials)
        self.config, self.route = config, route
        self.emit(SessionChanged(config))

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
        self.wake()

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
        if self.detector.in_speech and not turn.paused:
            turn.speech_end = end
        turn.gate = not turn.heard_speech
        self._commit(turn, end)
        self.detector.reset(end)

    def clear(self) -> None:
        if self.open is not None:
            self.decoder.cancel_live(self.open)
            self.open = None
        self.floor = self.buffer.end
        self.buffer.drop_before(self.floor)
        self.detector.reset(self.floor)
        self.emit(Cleared())

    # --- turns -------------------------------------------------------------------------------------

    def _new_turn(self, start: int) -> LiveTurn:
        policy = self.policy
        return LiveTurn(new_item_id(), start, LocalAgreement(policy.agree, policy.holdback), decoded_to=start)

    def _on_turn_event(self, event: turns.TurnEvent) -> None:
        turn = self.open
        if isinstance(event, turns.SpeechStarted):
            if turn is None:
                turn = self.open = self._new_turn(max(event.start, self.floor))
                if not self.manual:
                    self.emit(SpeechStarted(turn.item_id, to_ms(turn.start)))
            turn.heard_speech, turn.paused = True, False
            turn.speech_epoch += 1
            turn.speech_end = max(turn.speech_end, event.start)
        elif isinstance(event, turns.IdleTimeout):
            item = self._new_turn(max(event.start, self.floor))
            self.emit(TimeoutTriggered(item.item_id, to_ms(event.start), to_ms(event.end)))
            item.gate = True
            self._commit(item, event.end)
        elif turn is None:
            return
        elif isinstance(event, turns.PauseStarted):
            turn.paused, turn.speech_end = True, event.speech_end
        elif isinstance(event, turns.SpeechResumed):
            turn.paused = False
            turn.speech_epoch += 1
        elif isinstance(event, turns.SpeechStopped):
            turn.speech_end = event.speech_end
            turn.paused = True
            if not self.manual:
                self.emit(SpeechStopped(turn.item_id, to_ms(event.end)))
                self._commit(turn, event.end)

    def _commit(self, turn: LiveTurn, end: int) -> None:
        turn.freeze(end, self.buffer.span(turn.start, end), self.last_item_id)
        self.last_item_id = turn.item_id
        self.turns_committed += 1
        self.emit(Committed(turn.item_id, turn.previous_item_id))
        self.emit(ItemAdded(turn.item_id, turn.previous_item_id))
        self.finals.append(turn)
        if turn is self.open:
            self.open = None
            self.decoder.on_commit(turn)
        self.floor = max(self.floor, end)
        self.buffer.drop_before(self.floor)
        self.wake()

    # --- life ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Decode until cancelled; the caller cancels it when the connection ends."""
        await self.decoder.run()

    async def aclose(self) -> None:
        """Stop any decoding at its next window and give the model back."""
        await self.decoder.aclose()
