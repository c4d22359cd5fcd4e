"""temperature, language and prompt reach the model; translations turn French into English."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from openai.types.audio import TranslationVerbose

from tests.audio import SYNTH_SENTENCE, recording, reference, wer


def test_temperature_zero_uses_fallback_schedule_from_zero(client: openai.OpenAI, synth_wav: Path) -> None:
    result = client.audio.transcriptions.create(model="whisper-1", file=synth_wav, response_format="verbose_json")
    assert result.segments and all(s.temperature in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0) for s in result.segments)
    assert result.segments[0].temperature == 0.0


def test_positive_temperature_samples_at_that_temperature(client: openai.OpenAI, synth_wav: Path) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1", file=synth_wav, response_format="verbose_json", temperature=0.7
    )
    assert result.segments and all(s.temperature == pytest.approx(0.7) for s in result.segments)


def test_language_is_honoured(client: openai.OpenAI) -> None:
    path = recording("fr_picovoice_leopard.wav")
    detected = client.audio.transcriptions.create(model="whisper-1", file=path, response_format="verbose_json")
    assert detected.language == "french"
    assert wer(reference("fr_picovoice_leopard.wav"), detected.text) <= 0.2, detected.text
    forced = client.audio.transcriptions.create(
        model="whisper-1", file=path, response_format="verbose_json", language="en"
    )
    assert forced.language == "english"
    assert forced.text != detected.text


def test_prompt_is_honoured(client: openai.OpenAI, synth_wav: Path) -> None:
    plain = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=synth_wav)
    prompted = client.audio.transcriptions.create(
        model="gpt-4o-transcribe",
        file=synth_wav,
        prompt="the quick brown fox, mister quilter, all lowercase no punctuation",
    )
    assert plain.text.startswith("The") and plain.text.endswith(".")
    assert wer(SYNTH_SENTENCE, plain.text) <= 0.2, plain.text
    # Decoding is deterministic at temperature 0, so any change comes from the prompt: its
    # lower-case, unpunctuated style carries into the transcript.
    assert prompted.text != plain.text
    assert prompted.text[0].islower() or "." not in prompted.text, prompted.text
    assert wer(SYNTH_SENTENCE, prompted.text) <= 0.2, prompted.text  # the same words, in the prompt's style
    assert prompted.usage is not None and prompted.usage.type == "tokens"
    assert prompted.usage.input_token_details is not None
    assert (prompted.usage.input_token_details.text_tokens or 0) >= 8


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_translation_french_to_english(client: openai.OpenAI, fmt: str) -> None:
    path = recording("fr_picovoice_leopard.wav")
    result = client.audio.translations.create(model="whisper-1", file=path, response_format=fmt)  # type: ignore[call-overload]
    text = result if isinstance(result, str) else result.text
    lowered = text.lower()
    assert "consul" in lowered, text
    assert not any(word in lowered.split() for word in ("sous", "le", "il", "devient", "des", "et")), text
    if isinstance(result, TranslationVerbose):
        assert result.language == "english"
        assert result.segments and result.segments[0].text.startswith(" ")
        assert result.model_dump()["task"] == "translate"


def test_english_only_model_refuses_translation(client: openai.OpenAI, synth_wav: Path) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.translations.create(model="tiny.en", file=synth_wav)
    assert info.value.param == "model"
