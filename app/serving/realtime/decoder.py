"""A session's decoding: live hypotheses of the open turn, and the final transcript of each committed turn.

Two loops per session, each one decode at a time:

1. finals: the final decode of each committed turn in order (it waits for a model slot like a
   file request);
2. the open turn: a speculative final when its speech pauses (decoded like a final, so if the
   pause becomes the turn's end, the transcript is ready, or nearly, when the turn commits), else
   a live decode once ``step_seconds`` of new audio arrived (greedy, one temperature), whose words
   pass through local agreement to become deltas.

They run side by side, so the turn that follows a long one gets its first deltas while the long
one's final is decoded (on a model with two slots; with one, the live decode waits for it).

Live and speculative decodes wait for a model slot behind everything else (``run_in_background``),
so a final decode, of this session or any other, and file requests always go first, and sessions
take turns for what is left. Decoding happens in a worker thread; stopping the session cancels it
at its next window.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.to_thread

from app.serving.capabilities import Asked, Params, check_supported
from app.serving.errors import InvalidInput, ModelUnavailable
from app.serving.protocol import ModelRoute
from app.serving.realtime.config import SessionConfig
from app.serving.realtime.events import TranscriptCompleted, TranscriptDelta, TranscriptFailed, TurnUsage
from app.serving.realtime.turn import LiveTurn
from engines.audio import SAMPLE_RATE, Samples
from engines.errors import DecodingCancelled, ModelLoadError
from engines.live.agreement import cut_loop, join_delta
from engines.live.decoding import Hypothesis, decode_turn
from engines.types import FALLBACK_TEMPERATURES, BatchPriority, DecodeOptions, Transcriber

if TYPE_CHECKING:
    from app.serving.realtime.session import RealtimeSession

log = logging.getLogger(__name__)

MIN_LIVE_SECONDS = 0.6  # audio a turn needs before its first live decode
POLL_SECONDS = 0.1  # how often an open turn is checked for enough new audio
LIVE_PACING = 1.0  # new audio a live decode waits for, in multiples of how long the last one took
# Token budgets per decode: speech needs about 5 tokens a second; a decode looping on cut-off audio
# would otherwise run to Whisper's limit (and take seconds).
LIVE_TOKENS_PER_SECOND, LIVE_TOKENS_EXTRA = 8, 16
FINAL_TOKENS_PER_SECOND, FINAL_TOKENS_EXTRA = 12, 32
MAX_TOKENS_PER_WINDOW = 180
WHISPER_MAX_TOKENS = 448  # prompt and output together, per window
PROMPT_PART_MAX_TOKENS = 223  # faster-whisper keeps at most this much of the prompt and of the hotwords
LANGUAGE_PIN_PROBABILITY = 0.5  # a turn keeps the language of its first detection at least this sure
# A speculative final waits for this much of the pause (at most half the silence that ends a turn):
# Whisper mishears a last word that the audio cuts off right after.
SPECULATE_AFTER_PAUSE_SECONDS = 0.25
SPECULATION_POLL_SECONDS = 0.02  # how often a final checks whether its turn's speculative decode is done

Kind = Literal["live", "speculative", "final"]


@dataclass
class _Running:
    turn: LiveTurn
    kind: Kind
    cancel: threading.Event


@dataclass
class DecodeStats:
    """Decodes a session ran (and their seconds of wall time), for its log line and the benchmark."""

    live: int = 0
    speculative: int = 0
    speculative_used: int = 0
    final: int = 0
    background_waits: int = 0  # live decodes that had to queue behind other sessions' work
    cancelled: int = 0
    decode_seconds: float = 0.0


class TurnDecoder:
    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self.stats = DecodeStats()
        self._lease = ExitStack()
        self._engine: Transcriber | None = None
        self._model_id: str | None = None
        self._running: dict[Literal["final", "open turn"], _Running] = {}  # each loop's decode in progress
        self._waiting: anyio.CancelScope | None = None  # a live decode waiting for a model slot
        self._speculating: LiveTurn | None = None  # the turn whose speculative final is being decoded
        self._stopped = False

    # --- the model ---------------------------------------------------------------------------------

    async def use_model(self, route: ModelRoute, config: SessionConfig) -> None:
        """Lease the route's model for the session (loading it if needed); check the config against it."""
        if route.model_id == self._model_id and self._engine is not None:
            _check(config, self._engine, route.requested)
            return
        lease = ExitStack()
        try:
            engine: Transcriber = await anyio.to_thread.run_sync(
                lease.enter_context, self.session.service.manager.lease(route.model_id)
            )
            _check(config, engine, route.requested)
        except ModelLoadError as exc:
            lease.close()
            raise ModelUnavailable(f"Model '{route.model_id}' is not available: {exc}") from exc
        except BaseException:
            lease.close()
            raise
        previous, self._lease = self._lease, lease
        self._engine, self._model_id = engine, route.model_id
        previous.close()

    # --- the loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        async with anyio.create_task_group() as loops:
            loops.start_soon(self._finals_loop)
            await self._open_turn_loop()
            loops.cancel_scope.cancel()

    async def _finals_loop(self) -> None:
        session = self.session
        while not self._stopped:
            if session.finals:
                await self._finalize(session.finals[0])
                session.finals.popleft()
            else:
                await session.wait(1.0)

    async def _open_turn_loop(self) -> None:
        session = self.session
        while not self._stopped:
            job = self._live_job()
            if job is None:
                await session.wait(POLL_SECONDS if session.open is not None else 1.0)
            else:
                await self._live(*job)

    def _live_job(self) -> tuple[LiveTurn, Kind] | None:
        session, turn = self.session, self.session.open
        if turn is None or not turn.heard_speech or session.policy.step_seconds is None:
            return None
        end = session.buffer.end
        if end - turn.start < MIN_LIVE_SECONDS * SAMPLE_RATE:
            return None
        silence_ms = session.detector.params.silence_duration_ms
        pause_needed = min(SPECULATE_AFTER_PAUSE_SECONDS * SAMPLE_RATE, silence_ms * SAMPLE_RATE // 2000)
        if turn.paused and turn.speculative_epoch != turn.speech_epoch and end - turn.speech_end >= pause_needed:
            return turn, "speculative"
        # A long turn's live decode takes longer than a step on a slow machine: wait for as much new
        # audio as the last decode took, so live decodes use at most about half of the time and a
        # final (this session's or another's) finds the model free soon.
        step = max(session.policy.step_seconds, LIVE_PACING * turn.live_seconds)
        if end - turn.decoded_to >= step * SAMPLE_RATE:
            return turn, "live"
        return None

    async def _live(self, turn: LiveTurn, kind: Kind) -> None:
        """One live or speculative decode of the open turn, once a model slot is free for background work.

        The wait is given up when the turn ends (its final comes first); what to decode is decided
        again once the slot is ours, on the audio as it is then.
        """
        session = self.session
        slots = session.service.slots[self._model_id or ""]
        if slots.running >= slots.concurrency:
            self.stats.background_waits += 1
        hypothesis: Hypothesis | None = None
        try:
            with anyio.CancelScope() as waiting:
                self._waiting = waiting
                async with slots.run_in_background():
                    self._waiting = None
                    job = self._live_job()
                    if job is None or job[0] is not turn:
                        return
                    kind = job[1]
                    audio = session.buffer.span(turn.start)
                    if kind == "speculative":
                        turn.speculative_epoch = turn.speech_epoch
                        self._speculating = turn
                        self.stats.speculative += 1
                    else:
                        self.stats.live += 1
                    options = self._options(turn, audio.size / SAMPLE_RATE, final=kind == "speculative")
                    started = time.perf_counter()
                    hypothesis = await self._decode(turn, kind, audio, options)
                    if kind == "live":
                        turn.live_seconds = time.perf_counter() - started
            self._waiting = None
            if hypothesis is None:
                return
            turn.decoded_to = turn.start + hypothesis.samples
            self._pin_language(turn, hypothesis)
            if kind == "speculative":
                turn.speculative = hypothesis
        finally:
            self._speculating = None
        if turn is session.open or turn in session.finals:
            words = hypothesis.words if kind == "speculative" else cut_loop(hypothesis.words)
            self._emit_words(turn, turn.agreement.update(words))

    async def _finalize(self, turn: LiveTurn) -> None:
        session = self.session
        assert turn.audio is not None
        try:
            while self._speculating is turn:  # its speculative final is being decoded: it may be the final
                await anyio.sleep(SPECULATION_POLL_SECONDS)
            if turn.speculation_covers_turn():
                assert turn.speculative is not None
                hypothesis = turn.speculative
                self.stats.speculative_used += 1
            else:
                reservation = session.service.slots[self._model_id or ""].reserve(admitted=True)
                async with reservation.running():
                    self.stats.final += 1
                    options = self._options(turn, turn.audio.size / SAMPLE_RATE, final=True)
                    decoded = await self._decode(turn, "final", turn.audio, options)
                if decoded is None:
                    raise DecodingCancelled("the session ended before the turn was transcribed")
                hypothesis = decoded
            self._emit_words(turn, turn.agreement.finish(hypothesis.words))
            seconds = turn.audio.size / SAMPLE_RATE
            usage = TurnUsage(
                seconds=seconds,
                prompt_tokens=hypothesis.prompt_tokens,
                audio_tokens=self._audio_tokens(seconds),
                output_tokens=hypothesis.output_tokens,
            )
            config = session.config
            session.emit(
                TranscriptCompleted(
                    turn.item_id,
                    turn.previous_item_id,
                    " ".join(turn.agreement.committed),
                    hypothesis.language,
                    usage,
                    logprobs=hypothesis.logprobs if config.include_logprobs else None,
                    languages_requested=bool(config.transcription.languages),
                    latency=time.perf_counter() - (turn.committed_at or time.perf_counter()),
                )
            )
        except Exception as exc:
            if not self._stopped:
                log.warning(
                    "realtime turn %s failed: %s", turn.item_id, exc, exc_info=not isinstance(exc, InvalidInput)
                )
            session.emit(TranscriptFailed(turn.item_id, turn.previous_item_id, exc))

    # --- helpers -------------------------------------------------------------------------------------

    def _options(self, turn: LiveTurn, seconds: float, *, final: bool) -> DecodeOptions:
        session = self.session
        per_second, extra = (FINAL_TOKENS_PER_SECOND, FINAL_TOKENS_EXTRA) if final else (
            LIVE_TOKENS_PER_SECOND, LIVE_TOKENS_EXTRA)  # fmt: skip
        transcription = session.config.transcription
        language = transcription.language or turn.language
        return DecodeOptions(
            task="transcribe",
            language=language,
            prompt=transcription.prompt,
            temperatures=FALLBACK_TEMPERATURES if final else (0.0,),
            logprobs=final and session.config.include_logprobs,
            beam_size=session.service.settings.models[self._model_id or ""].beam_size if final else 1,
            keywords=transcription.keywords,
            languages=() if language else transcription.languages,
            encoder_padding_seconds=(
                session.limits.encoder_padding_seconds if final else session.limits.live_encoder_padding_seconds
            ),
            max_new_tokens=self._token_budget(math.ceil(per_second * seconds) + extra),
            priority=BatchPriority.FINAL if final else BatchPriority.BACKGROUND,
        )

    def _audio_tokens(self, seconds: float) -> int:
        assert self._engine is not None
        return self._engine.audio_tokens(seconds)

    def _token_budget(self, wanted: int) -> int | None:
        """``wanted`` new tokens, or fewer so that the prompt still fits Whisper's window (None: no room to cap)."""
        engine, transcription = self._engine, self.session.config.transcription
        assert engine is not None
        prompt = engine.count_tokens(transcription.prompt) if transcription.prompt else 0
        hotwords = engine.count_tokens(", ".join(transcription.keywords)) if transcription.keywords else 0
        room = WHISPER_MAX_TOKENS - 8 - min(prompt, PROMPT_PART_MAX_TOKENS) - min(hotwords, PROMPT_PART_MAX_TOKENS)
        budget = min(wanted, MAX_TOKENS_PER_WINDOW, room)
        return budget if budget >= 16 else None

    async def _decode(self, turn: LiveTurn, kind: Kind, audio: Samples, options: DecodeOptions) -> Hypothesis | None:
        engine = self._engine
        assert engine is not None
        running = _Running(turn, kind, threading.Event())
        if self._stopped:
            return None
        loop: Literal["final", "open turn"] = "final" if kind == "final" else "open turn"
        self._running[loop] = running
        started = time.perf_counter()
        try:
            work = functools.partial(decode_turn, engine, audio, options, running.cancel, gate=turn.gate)
            return await anyio.to_thread.run_sync(work)
        except DecodingCancelled:
            self.stats.cancelled += 1
            return None
        finally:
            del self._running[loop]
            self.stats.decode_seconds += time.perf_counter() - started

    def _pin_language(self, turn: LiveTurn, hypothesis: Hypothesis) -> None:
        if turn.language is None and hypothesis.text and hypothesis.language_probability >= LANGUAGE_PIN_PROBABILITY:
            turn.language = hypothesis.language

    def _emit_words(self, turn: LiveTurn, words: list[str]) -> None:
        if not words:
            return
        first = turn.deltas_sent == 0
        turn.deltas_sent += 1
        since = time.perf_counter() - turn.opened_at if first else None
        self.session.emit(TranscriptDelta(turn.item_id, join_delta(words, first=first), first_after=since))

    # --- stopping ------------------------------------------------------------------------------------

    def on_commit(self, turn: LiveTurn) -> None:
        """A turn just ended: a live decode of it is no longer worth finishing (a speculative one may be)."""
        if self._waiting is not None:
            self._waiting.cancel()
        running = self._running.get("open turn")
        if running is not None and running.turn is turn and running.kind == "live":
            running.cancel.set()

    def cancel_live(self, turn: LiveTurn) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
        running = self._running.get("open turn")
        if running is not None and running.turn is turn:
            running.cancel.set()

    def stop(self) -> None:
        """Stop decoding: the running decode ends at its next window, and the loop exits."""
        self._stopped = True
        if self._waiting is not None:
            self._waiting.cancel()
        for running in list(self._running.values()):
            running.cancel.set()

    async def aclose(self) -> None:
        self.stop()
        self._lease.close()


# Session options are named by their path in the session config.
SESSION_PARAMS = Params(
    task="session.audio.input.transcription.model",
    language="session.audio.input.transcription.language",
    languages="session.audio.input.transcription.languages",
    prompt="session.audio.input.transcription.prompt",
    keywords="session.audio.input.transcription.keywords",
    logprobs="session.include",
    live="session.audio.input.transcription.model",
)


def _check(config: SessionConfig, engine: Transcriber, model: str) -> None:
    transcription = config.transcription
    wanted = Asked(
        language=transcription.language,
        languages=transcription.languages,
        prompt=transcription.prompt,
        keywords=transcription.keywords,
        logprobs=config.include_logprobs,
        live=True,
    )
    check_supported(wanted, engine.capabilities, model, SESSION_PARAMS)
