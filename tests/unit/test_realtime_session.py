"""A realtime session end to end without a network or Whisper: a fake recogniser and an energy VAD."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt
import pytest

from app.api.presenters import API_PRESENTERS
from app.serving.errors import InvalidInput
from app.serving.factory import build_service
from app.serving.realtime import RealtimeSession, ServerVadConfig, SessionConfig, TranscriptionConfig
from app.serving.realtime import events as ev
from app.serving.service import TranscriptionService
from app.settings import AliasConfig, ModelConfig, RealtimeConfig, Settings
from engines.audio import SAMPLE_RATE
from engines.errors import DecodingCancelled
from engines.types import DecodeOptions, Segment, TranscriptInfo
from tests.fake_capabilities import FakeRecogniser

WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
    "hotel", "india", "juliet", "kilo", "lima", "mike", "november",
]  # fmt: skip
BLOCK = SAMPLE_RATE // 4


class FakeEngine(FakeRecogniser):
    """Hears one word per loud quarter second, so a growing turn gives growing, agreeing hypotheses."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[tuple[float, DecodeOptions]] = []

    def transcribe(
        self, audio: npt.NDArray[np.float32], options: DecodeOptions, cancel: threading.Event | None = None
    ) -> tuple[TranscriptInfo, Generator[Segment, None, None]]:
        self.calls.append((audio.size / SAMPLE_RATE, options))
        deadline = time.monotonic() + self.delay
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                raise DecodingCancelled("cancelled")
            time.sleep(0.005)
        blocks = [audio[i : i + BLOCK] for i in range(0, audio.size - BLOCK + 1, BLOCK)]
        loud = sum(1 for b in blocks if float(np.sqrt(np.mean(b**2))) > 0.05)
        text = " ".join(WORDS[: min(loud, len(WORDS))])
        info = TranscriptInfo("transcribe", options.language or "en", 0.99, audio.size / SAMPLE_RATE, 0, 0)

        def segments() -> Generator[Segment, None, None]:
            if text:
                yield Segment(0, 0, 0.0, audio.size / SAMPLE_RATE, " " + text, [1] * loud, 0.0, -0.1, 1.0, 0.0)

        return info, segments()


class TimedEngine(FakeEngine):
    """Like FakeEngine, but each word is a segment timed at its loud quarter second, and a decode whose
    prompt already holds words goes on from there (as Whisper does after the words of its previous text)."""

    def transcribe(
        self, audio: npt.NDArray[np.float32], options: DecodeOptions, cancel: threading.Event | None = None
    ) -> tuple[TranscriptInfo, Generator[Segment, None, None]]:
        self.calls.append((audio.size / SAMPLE_RATE, options))
        blocks = [audio[i : i + BLOCK] for i in range(0, audio.size - BLOCK + 1, BLOCK)]
        loud = [j for j, b in enumerate(blocks) if float(np.sqrt(np.mean(b**2))) > 0.05]
        skip = len(options.prompt.split()) if options.prompt else 0
        info = TranscriptInfo("transcribe", options.language or "en", 0.99, audio.size / SAMPLE_RATE, 0, 0)

        def segments() -> Generator[Segment, None, None]:
            for k, j in enumerate(loud[: max(0, len(WORDS) - skip)]):
                start, end = j * BLOCK / SAMPLE_RATE, (j + 1) * BLOCK / SAMPLE_RATE
                yield Segment(k, 0, start, end, " " + WORDS[skip + k], [1], 0.0, -0.1, 1.0, 0.0)

        return info, segments()


class EnergyScorer:
    """A VAD that calls every loud frame speech."""

    def __call__(self, frames: npt.NDArray[np.float32], state: Any) -> tuple[npt.NDArray[np.float32], Any]:
        rms = np.sqrt(np.mean(frames[:, 64:] ** 2, axis=1))
        return np.where(rms > 0.05, 0.95, 0.02).astype(np.float32), state


def pcm(*parts: tuple[str, float]) -> bytes:
    """24 kHz PCM16: ('speech', seconds) is loud noise, ('quiet', seconds) is silence."""
    rng = np.random.default_rng(7)
    pieces = []
    for kind, seconds in parts:
        n = int(24_000 * seconds)
        pieces.append(rng.uniform(-0.4, 0.4, n) if kind == "speech" else np.zeros(n))
    return (np.concatenate(pieces) * 32767).astype("<i2").tobytes()


@pytest.fixture
def service(tmp_path: Path) -> Callable[[FakeEngine], TranscriptionService]:
    def make(engine: FakeEngine) -> TranscriptionService:
        settings = Settings(
            models={"fake": ModelConfig(source="fake", beam_size=3)},
            aliases={"gpt-realtime-whisper": AliasConfig(model="fake")},
            data_dir=tmp_path,
        )
        return build_service(settings, API_PRESENTERS, loader=lambda spec: engine)

    return make


def config(**changes: Any) -> SessionConfig:
    base = SessionConfig(transcription=TranscriptionConfig(model="gpt-realtime-whisper"))
    return SessionConfig(**{**base.__dict__, **changes})


def run(
    service: TranscriptionService,
    session_config: SessionConfig,
    audio: bytes,
    *,
    script: Callable[[RealtimeSession], None] | None = None,
    limits: RealtimeConfig | None = None,
    pace: float = 0.002,
    completions: int = 1,
) -> tuple[list[ev.SessionEvent], RealtimeSession]:
    events: list[ev.SessionEvent] = []

    async def main() -> RealtimeSession:
        session = RealtimeSession(service, limits or RealtimeConfig(), session_config, events.append, EnergyScorer())
        await session.start()
        async with anyio.create_task_group() as group:
            group.start_soon(session.run)
            chunk = 2400 * 2  # 100 ms
            for i in range(0, len(audio), chunk):
                session.append(audio[i : i + chunk])
                await anyio.sleep(pace)
            if script is not None:
                script(session)
            with anyio.fail_after(10):
                while sum(isinstance(e, ev.TranscriptCompleted | ev.TranscriptFailed) for e in events) < completions:
                    await anyio.sleep(0.01)
            session.stop()
            group.cancel_scope.cancel()
        await session.aclose()
        return session

    return events, anyio.run(main)


def deltas_of(events: list[ev.SessionEvent], item_id: str) -> str:
    return "".join(e.delta for e in events if isinstance(e, ev.TranscriptDelta) and e.item_id == item_id)


def test_server_vad_turns_in_order_with_deltas_joining_to_the_transcript(service: Any) -> None:
    svc = service(FakeEngine())
    audio = pcm(("quiet", 0.5), ("speech", 2.0), ("quiet", 1.0), ("speech", 1.5), ("quiet", 1.0))
    events, _ = run(svc, config(), audio, completions=2, pace=0.02)
    kinds = [type(e).__name__ for e in events if not isinstance(e, ev.TranscriptDelta)]
    assert kinds == [
        "SessionChanged",
        "SpeechStarted", "SpeechStopped", "Committed", "ItemAdded",
        "SpeechStarted", "SpeechStopped", "Committed", "ItemAdded",
        "TranscriptCompleted", "TranscriptCompleted",
    ] or kinds.index("TranscriptCompleted") > kinds.index("ItemAdded")  # fmt: skip
    completed = [e for e in events if isinstance(e, ev.TranscriptCompleted)]
    first, second = completed
    assert first.transcript == deltas_of(events, first.item_id)
    assert second.transcript == deltas_of(events, second.item_id)
    assert first.previous_item_id is None and second.previous_item_id == first.item_id
    assert len(first.transcript.split()) in (8, 9, 10)  # 2 s of speech, plus the padding's quarter
    started = next(e for e in events if isinstance(e, ev.SpeechStarted))
    assert 500 - 300 - 32 <= started.audio_start_ms <= 500 - 300  # the prefix padding, to a 32 ms frame
    assert first.usage.audio_tokens > 0 and first.usage.output_tokens > 0


def test_deltas_arrive_while_the_turn_is_still_going(service: Any) -> None:
    svc = service(FakeEngine())
    audio = pcm(("quiet", 0.3), ("speech", 3.0), ("quiet", 1.0))
    events, _ = run(svc, config(), audio, pace=0.05)
    stopped = next(i for i, e in enumerate(events) if isinstance(e, ev.SpeechStopped))
    assert any(isinstance(e, ev.TranscriptDelta) for e in events[:stopped])
    first = next(e for e in events if isinstance(e, ev.TranscriptDelta))
    assert first.first_after is not None


def test_a_speculative_decode_at_the_pause_becomes_the_final(service: Any) -> None:
    engine = FakeEngine()
    svc = service(engine)
    audio = pcm(("speech", 1.5), ("quiet", 1.2))
    _, session = run(svc, config(), audio, pace=0.05)
    assert session.stats.speculative_used == 1
    assert session.stats.final == 0
    finals = [options for _, options in engine.calls if options.beam_size == 3]
    assert finals, "the speculative decode uses the final's settings (beam, fallback)"


def test_later_decodes_of_a_long_turn_start_after_its_shown_words(service: Any) -> None:
    engine = TimedEngine()
    audio = pcm(("quiet", 0.3), ("speech", 4.5), ("quiet", 1.0))
    events, session = run(service(engine), config(), audio, pace=0.05, limits=RealtimeConfig(anchor_turns=True))
    (completed,) = [e for e in events if isinstance(e, ev.TranscriptCompleted)]
    assert completed.transcript == deltas_of(events, completed.item_id)
    words = completed.transcript.split()
    assert words == WORDS  # every word (4.5 s hold more than the fake knows), in order, none twice or lost
    anchored = [(seconds, options.prompt) for seconds, options in engine.calls if options.prompt]
    assert session.stats.anchored == len(anchored) > 0
    seconds, prompt = anchored[-1]
    assert prompt == " ".join(WORDS[: len(prompt.split())])
    assert seconds < 4.5, "a decode from the anchor hears less than the whole turn"


def test_every_decode_hears_the_whole_turn_without_anchors(service: Any) -> None:
    engine = TimedEngine()
    audio = pcm(("quiet", 0.3), ("speech", 4.5), ("quiet", 1.0))
    events, session = run(service(engine), config(), audio, pace=0.05)  # anchors are off by default
    (completed,) = [e for e in events if isinstance(e, ev.TranscriptCompleted)]
    assert completed.transcript.split() == WORDS[: len(completed.transcript.split())]
    assert session.stats.anchored == 0 and not any(options.prompt for _, options in engine.calls)


def test_manual_commits_with_turn_detection_null(service: Any) -> None:
    svc = service(FakeEngine())
    audio = pcm(("speech", 1.0), ("quiet", 0.5))
    events, _ = run(svc, config(turn_detection=None), audio, script=lambda s: s.commit())
    assert not any(isinstance(e, ev.SpeechStarted | ev.SpeechStopped) for e in events)
    completed = next(e for e in events if isinstance(e, ev.TranscriptCompleted))
    assert completed.transcript.split() == WORDS[:4]
    committed = next(e for e in events if isinstance(e, ev.Committed))
    assert committed.item_id == completed.item_id


def test_a_commit_of_silence_is_not_decoded(service: Any) -> None:
    engine = FakeEngine()
    events, _ = run(service(engine), config(turn_detection=None), pcm(("quiet", 1.0)), script=lambda s: s.commit())
    completed = next(e for e in events if isinstance(e, ev.TranscriptCompleted))
    assert completed.transcript == "" and engine.calls == []


def test_commit_of_an_empty_buffer_and_clear(service: Any) -> None:
    errors: list[InvalidInput] = []

    def script(session: RealtimeSession) -> None:
        session.clear()
        try:
            session.commit()
        except InvalidInput as exc:
            errors.append(exc)
        session.append(pcm(("speech", 0.8)))
        session.commit()

    events, _ = run(service(FakeEngine()), config(turn_detection=None), pcm(("speech", 1.0)), script=script)
    assert errors and errors[0].code == "input_audio_buffer_commit_empty"
    assert any(isinstance(e, ev.Cleared) for e in events)
    completed = [e for e in events if isinstance(e, ev.TranscriptCompleted)]
    assert len(completed) == 1 and len(completed[0].transcript.split()) == 3


def test_append_and_buffer_limits(service: Any) -> None:
    limits = RealtimeConfig(max_append_bytes=4800 * 3, max_buffer_seconds=1.0)
    failures: list[str] = []

    def script(session: RealtimeSession) -> None:
        for data in [pcm(("speech", 0.5))] + [pcm(("speech", 0.3))] * 3:
            try:
                session.append(data)
            except InvalidInput as exc:
                failures.append(exc.code)
        session.commit()

    run(service(FakeEngine()), config(turn_detection=None), pcm(("speech", 0.3)), script=script, limits=limits)
    assert failures == ["audio_too_large", "input_audio_buffer_full"]


def test_stopping_cancels_a_running_decode_within_a_window(service: Any) -> None:
    engine = FakeEngine(delay=5.0)
    svc = service(engine)

    async def main() -> float:
        session = RealtimeSession(svc, RealtimeConfig(), config(turn_detection=None), lambda e: None, EnergyScorer())
        await session.start()
        async with anyio.create_task_group() as group:
            group.start_soon(session.run)
            session.append(pcm(("speech", 1.0)))
            session.commit()
            await anyio.sleep(0.3)
            assert svc.slots["fake"].running == 1
            started = time.monotonic()
            session.stop()
            group.cancel_scope.cancel()
        await session.aclose()
        assert svc.slots["fake"].running == 0
        assert svc.manager.status()[0].in_use == 0
        return time.monotonic() - started

    assert anyio.run(main) < 1.0


def test_a_final_goes_before_live_decodes_and_live_decodes_take_turns(service: Any) -> None:
    svc = service(FakeEngine())
    slots = svc.slots["fake"]

    async def main() -> list[str]:
        order: list[str] = []
        async with anyio.create_task_group() as group:
            await slots.semaphore.acquire()  # somebody is running

            async def live(name: str) -> None:
                async with slots.run_in_background():
                    order.append(name)

            async def final() -> None:
                async with slots.reserve(admitted=True).running():
                    order.append("final")

            group.start_soon(live, "live 1")
            await anyio.sleep(0.02)
            group.start_soon(live, "live 2")
            await anyio.sleep(0.02)
            group.start_soon(final)  # arrives last, goes first
            await anyio.sleep(0.02)
            slots.semaphore.release()
        return order

    assert anyio.run(main) == ["final", "live 1", "live 2"]


def test_admitted_work_is_never_refused_by_the_queue_limit(service: Any) -> None:
    slots = service(FakeEngine()).slots["fake"]
    slots.max_queue = 0
    first = slots.reserve()
    second = slots.reserve(admitted=True)
    assert slots.reserved == 2
    first.release()
    second.release()


def test_server_vad_idle_timeout_commits_an_empty_item(service: Any) -> None:
    detection = ServerVadConfig(idle_timeout_ms=1000)
    events, _ = run(service(FakeEngine()), config(turn_detection=detection), pcm(("quiet", 1.5)))
    timeout = next(e for e in events if isinstance(e, ev.TimeoutTriggered))
    assert timeout.audio_end_ms - timeout.audio_start_ms >= 1000
    completed = next(e for e in events if isinstance(e, ev.TranscriptCompleted))
    assert completed.item_id == timeout.item_id and completed.transcript == ""


def test_noise_reduction_puts_a_denoiser_on_the_input(service: Any) -> None:
    from app.serving.realtime import NoiseReductionConfig

    svc = service(FakeEngine())
    noisy = config(noise_reduction=NoiseReductionConfig(type="far_field", strength=0.5))
    session = RealtimeSession(svc, RealtimeConfig(), noisy, lambda e: None, EnergyScorer())
    assert session.converter.denoise is not None
    assert session.converter.denoise.reduction_db == 6.0 and session.converter.denoise.floor_db == -40.0
    assert RealtimeSession(svc, RealtimeConfig(), config(), lambda e: None, EnergyScorer()).converter.denoise is None
