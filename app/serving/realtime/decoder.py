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
take turns for what is left, turns that have shown no words yet first; the decodes of turns already
showing words leave one slot free for finals and first words. Decoding happens in a worker thread;
stopping the session cancels it at its next window.

The decoder sees its session only through ``TurnSource`` (the open turn and the audio so far) and
the service only through ``ModelAccess``; committed turns are handed to it (``add_final``), and it
reports through ``emit``. Of a turn it writes only the decode state (``TurnDecoding``).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import Literal, Protocol

import anyio
import anyio.to_thread

from app.serving.errors import InvalidInput, ModelUnavailable
from app.serving.protocol import ModelRoute
from app.serving.realtime.config import SessionConfig, live_policy, turn_params
from app.serving.realtime.decode_options import check_config, decode_options
from app.serving.realtime.events import SessionEvent, TranscriptCompleted, TranscriptDelta, TranscriptFailed, TurnUsage
from app.serving.realtime.turn import Turn, TurnDecoding
from app.serving.scheduler import ModelSlots
from app.settings import RealtimeConfig
from engines.audio import SAMPLE_RATE, Samples
from engines.errors import DecodingCancelled, ModelLoadError
from engines.live.agreement import LocalAgreement, cut_loop, join_delta
from engines.live.anchor import Anchor, advance
from engines.live.decoding import Hypothesis, decode_turn
from engines.types import DecodeOptions, Transcriber

log = logging.getLogger(__name__)

MIN_LIVE_SECONDS = 0.6  # audio a turn needs before its first live decode
POLL_SECONDS = 0.1  # how often an open turn is checked for enough new audio
LIVE_PACING = 1.0  # new audio a live decode waits for, in multiples of how long the last one took
LANGUAGE_PIN_PROBABILITY = 0.5  # a turn keeps the language of its first detection at least this sure
# A speculative final waits for this much of the pause (at most half the silence that ends a turn):
# Whisper mishears a last word that the audio cuts off right after.
SPECULATE_AFTER_PAUSE_SECONDS = 0.25
SPECULATION_POLL_SECONDS = 0.02  # how often a final checks whether its turn's speculative decode is done

Kind = Literal["live", "speculative", "final"]


class TurnSource(Protocol):
    """What a decoder reads of its session: the turn being spoken, and the audio on the session's timeline."""

    @property
    def open(self) -> Turn | None: ...

    @property
    def audio_end(self) -> int: ...

    def audio(self, start: int) -> Samples:
        """The audio from ``start`` to now."""
        ...


class ModelAccess(Protocol):
    """The service's models as a decoder uses them."""

    def lease(self, model_id: str) -> AbstractContextManager[Transcriber]:
        """The model, loaded if needed (blocking), held until the context exits."""
        ...

    def slots(self, model_id: str) -> ModelSlots: ...

    def beam_size(self, model_id: str) -> int: ...


@dataclass
class _Running:
    turn: Turn
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
    anchored: int = 0  # live decodes that started at the turn's anchor, past its start
    decode_seconds: float = 0.0


class TurnDecoder:
    """One session's decoding: the live decodes of its open turn, and the final of each committed turn."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        source: TurnSource,
        models: ModelAccess,
        limits: RealtimeConfig,
        emit: Callable[[SessionEvent], None],
    ) -> None:
        self.stats = DecodeStats()
        self._source = source
        self._models = models
        self._limits = limits
        self._emit = emit
        self._adopt(config)
        self._finals: deque[Turn] = deque()  # committed turns, in order, until their final is out
        self._wake = anyio.Event()
        self._lease = ExitStack()
        self._engine: Transcriber | None = None
        self._model_id: str | None = None
        self._running: dict[Literal["final", "open turn"], _Running] = {}  # each loop's decode in progress
        self._waiting: anyio.CancelScope | None = None  # a live decode waiting for a model slot
        self._speculating: Turn | None = None  # the turn whose speculative final is being decoded
        self._stopped = False

    def _adopt(self, config: SessionConfig) -> None:
        """Decode with ``config`` from now on (and the live policy and pause length it implies)."""
        self._config = config
        self._policy = live_policy(config.transcription, self._limits.live_partials)
        self._silence_ms = turn_params(config.turn_detection, self._limits.max_turn_seconds).silence_duration_ms

    # --- the model and the config ----------------------------------------------------------------

    async def use_model(self, route: ModelRoute, config: SessionConfig) -> None:
        """Lease the route's model (loading it if needed) and check the config against it; then decode with both."""
        if route.model_id == self._model_id and self._engine is not None:
            check_config(config, self._engine, route.requested)
            self._adopt(config)
            return
        lease = ExitStack()
        try:
            engine: Transcriber = await anyio.to_thread.run_sync(
                lease.enter_context, self._models.lease(route.model_id)
            )
            check_config(config, engine, route.requested)
        except ModelLoadError as exc:
            lease.close()
            raise ModelUnavailable(f"Model '{route.model_id}' is not available: {exc}") from exc
        except BaseException:
            lease.close()
            raise
        previous, self._lease = self._lease, lease
        self._engine, self._model_id = engine, route.model_id
        self._adopt(config)
        previous.close()

    def new_decoding(self, start: int) -> TurnDecoding:
        """The decode state of a turn starting at ``start``, agreeing on words as the session's delay asks."""
        return TurnDecoding(LocalAgreement(self._policy.agree, self._policy.holdback), decoded_to=start)

    # --- what the session tells it -------------------------------------------------------------------

    def wake(self) -> None:
        """Something happened (audio, a commit): look again now."""
        self._wake.set()

    async def _wait(self, timeout: float) -> None:
        """Until ``wake`` or ``timeout``; for both loops at once."""
        wake = self._wake
        with anyio.move_on_after(timeout):
            await wake.wait()
        if self._wake is wake and wake.is_set():
            self._wake = anyio.Event()

    def add_final(self, turn: Turn, *, was_open: bool) -> None:
        """Queue a committed turn's final decode.

        If it was the open turn, a live decode of it is no longer worth finishing (a speculative one may be).
        """
        self._finals.append(turn)
        if was_open:
            if self._waiting is not None:
                self._waiting.cancel()
            running = self._running.get("open turn")
            if running is not None and running.turn is turn and running.kind == "live":
                running.cancel.set()
        self.wake()

    def cancel_live(self, turn: Turn) -> None:
        """The open turn was cleared: drop its live or speculative decode."""
        if self._waiting is not None:
            self._waiting.cancel()
        running = self._running.get("open turn")
        if running is not None and running.turn is turn:
            running.cancel.set()

    # --- the loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        async with anyio.create_task_group() as loops:
            loops.start_soon(self._finals_loop)
            await self._open_turn_loop()
            loops.cancel_scope.cancel()

    async def _finals_loop(self) -> None:
        while not self._stopped:
            if self._finals:
                await self._finalize(self._finals[0])
                self._finals.popleft()
            else:
                await self._wait(1.0)

    async def _open_turn_loop(self) -> None:
        while not self._stopped:
            job = self._live_job()
            if job is None:
                await self._wait(POLL_SECONDS if self._source.open is not None else 1.0)
            else:
                await self._live(*job)

    def _live_job(self) -> tuple[Turn, Kind] | None:
        turn, step_seconds = self._source.open, self._policy.step_seconds
        if turn is None or not turn.speech.heard or step_seconds is None:
            return None
        speech, decoding, end = turn.speech, turn.decoding, self._source.audio_end
        if end - turn.start < MIN_LIVE_SECONDS * SAMPLE_RATE:
            return None
        pause_needed = min(SPECULATE_AFTER_PAUSE_SECONDS * SAMPLE_RATE, self._silence_ms * SAMPLE_RATE // 2000)
        if speech.paused and decoding.speculative_epoch != speech.epoch and end - speech.end >= pause_needed:
            return turn, "speculative"
        # A long turn's live decode takes longer than a step on a slow machine: wait for as much new
        # audio as the last decode took, so live decodes use at most about half of the time and a
        # final (this session's or another's) finds the model free soon.
        step = max(step_seconds, LIVE_PACING * decoding.live_seconds)
        if end - decoding.decoded_to >= step * SAMPLE_RATE:
            return turn, "live"
        return None

    async def _live(self, turn: Turn, kind: Kind) -> None:
        """One live or speculative decode of the open turn, once a model slot is free for background work.

        The wait is given up when the turn ends (its final comes first); what to decode is decided
        again once the slot is ours, on the audio as it is then.
        """
        slots = self._models.slots(self._model_id or "")
        if slots.running >= slots.concurrency:
            self.stats.background_waits += 1
        decoding = turn.decoding
        hypothesis: Hypothesis | None = None
        heard: Hypothesis | None = None
        anchor, said = Anchor(), []
        try:
            with anyio.CancelScope() as waiting:
                self._waiting = waiting
                async with slots.run_in_background(urgent=decoding.deltas_sent == 0):
                    self._waiting = None
                    job = self._live_job()
                    if job is None or job[0] is not turn:
                        return
                    kind = job[1]
                    # Only live decodes start at the anchor: a speculative one may become the final, and a final
                    # from an anchor could stop at a sentence's end, its speech after it left unheard.
                    anchor = decoding.anchor if kind == "live" and self._anchoring else Anchor()
                    said = decoding.agreement.committed[: anchor.words]
                    audio = self._source.audio(turn.start + anchor.samples)
                    if anchor.samples:
                        self.stats.anchored += 1
                    if kind == "speculative":
                        decoding.speculative_epoch = turn.speech.epoch
                        self._speculating = turn
                        self.stats.speculative += 1
                    else:
                        self.stats.live += 1
                    options = self._options(
                        turn, audio.size / SAMPLE_RATE, final=kind == "speculative", anchor=anchor, said=said
                    )
                    started = time.perf_counter()
                    heard = await self._decode(turn, kind, audio, options)
                    if kind == "live":
                        decoding.live_seconds = time.perf_counter() - started
            self._waiting = None
            if heard is None:
                return
            hypothesis = self._whole_turn(heard, said, anchor)
            decoding.decoded_to = turn.start + hypothesis.samples
            self._pin_language(turn, hypothesis)
            if kind == "speculative":
                decoding.speculative = hypothesis
        finally:
            self._speculating = None
        if turn is self._source.open or turn in self._finals:
            words = hypothesis.words if kind == "speculative" else cut_loop(hypothesis.words)
            self._emit_words(turn, decoding.agreement.update(words))
            if kind == "live" and self._anchoring and anchor == decoding.anchor:
                decoding.anchor = advance(anchor, heard, decoding.agreement.committed)

    async def _finalize(self, turn: Turn) -> None:
        committed = turn.committed
        assert committed is not None
        try:
            while self._speculating is turn:  # its speculative final is being decoded: it may be the final
                await anyio.sleep(SPECULATION_POLL_SECONDS)
            if _speculation_covers_turn(turn):
                assert turn.decoding.speculative is not None
                hypothesis = turn.decoding.speculative
                self.stats.speculative_used += 1
            else:
                reservation = self._models.slots(self._model_id or "").reserve(admitted=True)
                async with reservation.running():
                    self.stats.final += 1
                    options = self._options(turn, committed.audio.size / SAMPLE_RATE, final=True)
                    decoded = await self._decode(turn, "final", committed.audio, options, gate=committed.gate)
                if decoded is None:
                    raise DecodingCancelled("the session ended before the turn was transcribed")
                hypothesis = decoded
            agreement = turn.decoding.agreement
            self._emit_words(turn, agreement.finish(hypothesis.words))
            seconds = committed.audio.size / SAMPLE_RATE
            usage = TurnUsage(
                seconds=seconds,
                prompt_tokens=hypothesis.prompt_tokens,
                audio_tokens=self._audio_tokens(seconds),
                output_tokens=hypothesis.output_tokens,
            )
            config = self._config
            self._emit(
                TranscriptCompleted(
                    turn.item_id,
                    committed.previous_item_id,
                    " ".join(agreement.committed),
                    hypothesis.language,
                    usage,
                    logprobs=hypothesis.logprobs if config.include_logprobs else None,
                    languages_requested=bool(config.transcription.languages),
                    latency=time.perf_counter() - committed.at,
                )
            )
        except Exception as exc:
            if not self._stopped:
                log.warning(
                    "realtime turn %s failed: %s", turn.item_id, exc, exc_info=not isinstance(exc, InvalidInput)
                )
            self._emit(TranscriptFailed(turn.item_id, committed.previous_item_id, exc))

    # --- helpers -------------------------------------------------------------------------------------

    def _options(
        self,
        turn: Turn,
        seconds: float,
        *,
        final: bool,
        anchor: Anchor | None = None,
        said: list[str] | None = None,
    ) -> DecodeOptions:
        """Options for a decode of ``turn`` from ``anchor`` on, after the shown words ``said`` (its prompt)."""
        assert self._model_id is not None
        decoding = turn.decoding
        return decode_options(
            self._config,
            self._limits,
            seconds=seconds,
            final=final,
            beam_size=self._models.beam_size(self._model_id),
            detected_language=decoding.language or (anchor.language if anchor else None),
            said=said,
        )

    @property
    def _anchoring(self) -> bool:
        """Whether live decodes start at turn anchors: not when turns are translated (each decode detects the
        spoken language again, on the whole turn)."""
        return self._limits.anchor_turns and self._config.task == "transcribe"

    def _whole_turn(self, heard: Hypothesis, said: list[str], anchor: Anchor) -> Hypothesis:
        """The turn's hypothesis from a decode of its audio from ``anchor`` on, after the words ``said``."""
        if not anchor.samples:
            return heard
        assert self._engine is not None
        prompt = self._config.transcription.prompt
        return heard.after(
            said,
            anchor.samples,
            word_tokens=self._engine.count_tokens(" ".join(said)) if said else 0,
            prompt_tokens=self._engine.count_tokens(prompt) if prompt else 0,
        )

    def _audio_tokens(self, seconds: float) -> int:
        assert self._engine is not None
        return self._engine.audio_tokens(seconds)

    async def _decode(
        self, turn: Turn, kind: Kind, audio: Samples, options: DecodeOptions, *, gate: bool = False
    ) -> Hypothesis | None:
        engine = self._engine
        assert engine is not None
        running = _Running(turn, kind, threading.Event())
        if self._stopped:
            return None
        loop: Literal["final", "open turn"] = "final" if kind == "final" else "open turn"
        self._running[loop] = running
        started = time.perf_counter()
        try:
            work = functools.partial(decode_turn, engine, audio, options, running.cancel, gate=gate)
            return await anyio.to_thread.run_sync(work)
        except DecodingCancelled:
            self.stats.cancelled += 1
            return None
        finally:
            del self._running[loop]
            self.stats.decode_seconds += time.perf_counter() - started

    def _pin_language(self, turn: Turn, hypothesis: Hypothesis) -> None:
        decoding = turn.decoding
        if (
            decoding.language is None
            and hypothesis.text
            and hypothesis.language_probability >= LANGUAGE_PIN_PROBABILITY
        ):
            decoding.language = hypothesis.language

    def _emit_words(self, turn: Turn, words: list[str]) -> None:
        if not words:
            return
        decoding = turn.decoding
        first = decoding.deltas_sent == 0
        decoding.deltas_sent += 1
        since = time.perf_counter() - turn.opened_at if first else None
        self._emit(TranscriptDelta(turn.item_id, join_delta(words, first=first), first_after=since))

    # --- stopping ------------------------------------------------------------------------------------

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


def _speculation_covers_turn(turn: Turn) -> bool:
    """Whether the speculative decode heard every bit of the turn's speech (and nothing came after)."""
    speculative, speech = turn.decoding.speculative, turn.speech
    return (
        speculative is not None
        and turn.decoding.speculative_epoch == speech.epoch
        and turn.start + speculative.samples >= speech.end
    )
