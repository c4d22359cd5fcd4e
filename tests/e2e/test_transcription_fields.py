"""The 2026 fields of the file endpoint, through the real SDK: keywords[], languages[], the new model names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.audio import espeak, recording, reference, wer

RARE_NAME = "Please forward the quarterly report to Siobhan Kowalczyk before Friday."


@pytest.fixture(scope="module")
def rare_name_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return espeak(tmp_path_factory.mktemp("keywords") / "rare.wav", RARE_NAME)


def test_keywords_fix_a_rare_name(client: openai.OpenAI, rare_name_wav: Path) -> None:
    answer = client.audio.transcriptions.create(model="gpt-transcribe", file=rare_name_wav, language="en")
    assert answer.languages is None  # reported only when languages[] is sent
    plain = answer.text
    assert "siobhan" not in plain.lower() and "kowalczyk" not in plain.lower(), plain
    assert wer(RARE_NAME, plain) <= 0.3, plain  # right but for the name
    guided = client.audio.transcriptions.create(
        model="gpt-transcribe", file=rare_name_wav, language="en", keywords=["Siobhan", "Kowalczyk"]
    ).text
    assert "siobhan" in guided.lower() and "kowalczyk" in guided.lower(), guided
    assert wer(RARE_NAME, guided) <= 0.1, guided


def test_languages_restrict_detection_and_are_reported(client: openai.OpenAI) -> None:
    french = recording("fr_picovoice_leopard.wav")
    allowed = client.audio.transcriptions.create(model="gpt-transcribe", file=french, languages=["fr", "en"])
    assert allowed.languages is not None and [lang.code for lang in allowed.languages] == ["fr"]
    assert wer(reference("fr_picovoice_leopard.wav"), allowed.text) <= 0.2, allowed.text
    # French heard as German or Spanish: one sampling temperature, so no fallback rounds on the bad fit.
    restricted = client.audio.transcriptions.create(
        model="gpt-transcribe", file=french, languages=["de", "es"], temperature=0.3
    )
    assert restricted.languages is not None and restricted.languages[0].code in ("de", "es")
    assert restricted.text != allowed.text


def test_languages_on_the_stream_done_event(client: openai.OpenAI) -> None:
    french = recording("fr_picovoice_leopard.wav")
    stream = client.audio.transcriptions.create(model="gpt-transcribe", file=french, languages=["fr"], stream=True)
    done = [event for event in stream if event.type == "transcript.text.done"]
    assert done and done[0].languages is not None and done[0].languages[0].code == "fr"
    assert wer(reference("fr_picovoice_leopard.wav"), done[0].text) <= 0.2, done[0].text


def test_bad_languages_and_keywords_are_400s(client: openai.OpenAI, rare_name_wav: Path) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="gpt-transcribe", file=rare_name_wav, languages=["klingon"])
    assert caught.value.param == "languages"
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="gpt-transcribe", file=rare_name_wav, keywords=["x" * 201])
    assert caught.value.param == "keywords"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"keywords": ["Siobhan\nKowalczyk"]}, "keywords"),
        ({"keywords": ["<b>Siobhan</b>"]}, "keywords"),
        ({"keywords": [" "]}, "keywords"),
        ({"language": "en", "languages": ["en", "fr"]}, "languages"),
    ],
    ids=["keyword with a line break", "keyword with markup", "blank keyword", "language with languages"],
)
def test_the_request_rules_are_400s_with_their_param(
    client: openai.OpenAI, rare_name_wav: Path, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="gpt-transcribe", file=rare_name_wav, **fields)
    assert caught.value.param == param
    assert caught.value.code == "invalid_value"


def test_the_2026_model_names_are_served() -> None:
    import yaml

    from app.settings import PROJECT_ROOT

    for config in ("default.yaml", "gpu.yaml"):
        aliases = yaml.safe_load((PROJECT_ROOT / "configs" / config).read_text())["aliases"]
        assert {"gpt-transcribe", "gpt-live-transcribe", "gpt-realtime-whisper"} <= set(aliases)
