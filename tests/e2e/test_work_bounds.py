"""Work bounded by the audio's length: a hostile prompt or keyword list cannot make a short clip's decode run
to the model's token limit (real Whisper base, its CTranslate2 generate calls recorded), and the server still
answers such a request through the SDK with the clip's words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from engines.audio import SAMPLE_RATE, decode_audio
from engines.types import FALLBACK_TEMPERATURES, DecodeOptions
from engines.whisper import fallback
from engines.whisper.engine import WhisperEngine
from engines.whisper.fallback import audio_token_budget
from tests.audio import espeak, wer
from tests.recorded_whisper import Generation, RecordedModel, recorder

pytestmark = pytest.mark.e2e

CLIP_TEXT = "Hello there."
# The hostile request: a 1-s clip with 5,000 right-to-left overrides as its prompt; and its kin.
HOSTILE_PROMPTS = {"override characters": "\u202e" * 5000, "one word repeated": "hello " * 2000}
HOSTILE_KEYWORDS = {
    "override characters": tuple(["\u202e" * 40] * 100),
    "many keywords": tuple(f"keyword{i}" for i in range(100)),
}
# Attempts per window: the requested decode, up to two prompt-less re-decodes, six fallback
# temperatures, and the full-window guard's second pass of all of them.
MAX_GENERATE_CALLS = 2 * (3 + len(FALLBACK_TEMPERATURES))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return espeak(tmp_path_factory.mktemp("speech") / "clip.wav", CLIP_TEXT)


def decode(engine: WhisperEngine, path: Path, **options: Any) -> tuple[str, list[Generation], float]:
    model = recorder(engine)
    audio = decode_audio(path.read_bytes())
    _, segments = engine.transcribe(audio, DecodeOptions(task="transcribe", language="en", **options))
    text = "".join(s.text for s in segments).strip()
    return text, list(model.generations), audio.size / SAMPLE_RATE


@pytest.mark.parametrize("padding", [10.0, None], ids=["shortened window", "30-s window"])
@pytest.mark.parametrize(
    "hostile",
    [{"prompt": p} for p in HOSTILE_PROMPTS.values()] + [{"keywords": k} for k in HOSTILE_KEYWORDS.values()],
    ids=[f"prompt: {name}" for name in HOSTILE_PROMPTS] + [f"keywords: {name}" for name in HOSTILE_KEYWORDS],
)
def test_a_hostile_request_generates_no_more_than_the_audio_allows(
    engine: WhisperEngine, clip: Path, hostile: dict[str, Any], padding: float | None
) -> None:
    plain_text, plain_calls, seconds = decode(engine, clip, encoder_padding_seconds=padding)
    assert wer(CLIP_TEXT, plain_text) <= 0.5, plain_text
    budget = audio_token_budget(seconds)
    assert budget < 100  # far below the 448 tokens a window could otherwise take

    _, calls, _ = decode(engine, clip, encoder_padding_seconds=padding, **hostile)
    assert calls and len(calls) <= MAX_GENERATE_CALLS, calls
    # (CTranslate2's max_length lets one token more through than the prompt and the budget)
    assert all(call.generated <= budget + 1 for call in calls), (budget, calls)
    # Whisper's own cap on the prompt's share of the context: at most 223 tokens of each part.
    assert all(call.prompt <= 2 * 223 + 8 for call in calls), calls
    assert sum(call.generated for call in plain_calls) <= budget * len(plain_calls)


def test_a_prompt_that_is_only_copied_buys_no_full_window_decode(engine: WhisperEngine, clip: Path) -> None:
    """The decoder copies the repeated word of the prompt; the decode without the prompt is clean, and a 30-s
    window would fail the same way: the shortened window is kept (one encode, no second one on 30 s)."""
    text, _, _ = decode(
        engine, clip, encoder_padding_seconds=10.0, full_window_guard=True, prompt=HOSTILE_PROMPTS["one word repeated"]
    )
    assert wer(CLIP_TEXT, text) <= 0.5, text
    model = engine.model.model
    assert isinstance(model, RecordedModel)
    encoded = model.encoded  # of the decode above
    assert encoded and all(frames < 3000 for frames in encoded), encoded


def test_the_budget_leaves_ordinary_speech_whole(
    engine: WhisperEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fast speech (espeak at 260 words a minute) decodes to the same text as without any budget, in well under it."""
    text = "The quick brown fox jumps over the lazy dog while five wizards box and jump quickly."
    fast = espeak(tmp_path / "fast.wav", text, speed=260)
    decoded, calls, seconds = decode(engine, fast, encoder_padding_seconds=10.0, temperatures=FALLBACK_TEMPERATURES)
    assert max(call.generated for call in calls) < audio_token_budget(seconds) / 2, calls
    monkeypatch.setattr(fallback, "TOKENS_PER_AUDIO_SECOND", 1000)
    unbounded, _, _ = decode(engine, fast, encoder_padding_seconds=10.0, temperatures=FALLBACK_TEMPERATURES)
    assert decoded == unbounded
    assert wer(text, decoded) <= 0.5, decoded


def test_the_server_answers_a_hostile_prompt_with_the_clips_words(client: openai.OpenAI, clip: Path) -> None:
    with clip.open("rb") as audio:
        text = client.audio.transcriptions.create(
            model="whisper-1", file=audio, prompt=HOSTILE_PROMPTS["override characters"], language="en"
        ).text
    assert wer(CLIP_TEXT, text) <= 0.5, text
