"""The engine seam: the family registry, declared capabilities and the one check of requests
against them, Moonshine's tokenizer, and the speaker stretches of engines without word times."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.serving.capabilities import Asked, Params, check_supported
from app.serving.errors import InvalidInput
from engines.diarization.types import SpeakerTurn
from engines.families import FAMILIES, family
from engines.moonshine.tokenizer import MoonshineTokenizer
from engines.moonshine.weights import embedded_model_dir
from engines.speaker_pieces import PieceRules
from engines.turnwise import Stretch, stretches


def test_every_registered_family_declares_itself() -> None:
    for kind in FAMILIES:
        found = family(kind)
        assert found.kind == kind and found.description and callable(found.load)
    with pytest.raises(ValueError, match="unknown engine family 'parakeet'"):
        family("parakeet")


def test_moonshine_declares_english_only_without_word_times() -> None:
    caps = family("moonshine").capabilities
    assert caps.speaks("en") and not caps.speaks("fr")
    assert not caps.translation and not caps.word_timestamps and not caps.prompt and caps.logprobs and caps.live


@pytest.mark.parametrize(
    ("asked", "param", "words"),
    [
        (Asked(task="translate"), "model", "cannot translate"),
        (Asked(language="de"), "language", "English only"),
        (Asked(languages=("de", "fr")), "languages", "English only"),
        (Asked(prompt="Acme"), "prompt", "prompt"),
        (Asked(keywords=("Acme",)), "keywords", "keywords"),
        (Asked(word_timestamps=True), "timestamp_granularities", "word timestamps"),
    ],
)
def test_an_option_the_model_lacks_names_itself_and_the_model(asked: Asked, param: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_supported(asked, family("moonshine").capabilities, "moonshine-base")
    assert caught.value.param == param and "moonshine-base" in caught.value.message and words in caught.value.message


def test_what_the_model_can_do_passes_and_sessions_name_their_paths() -> None:
    caps = family("moonshine").capabilities
    check_supported(Asked(language="en", languages=("en", "fr"), logprobs=True, speakers=True), caps, "m")
    check_supported(Asked(task="translate", prompt="x", word_timestamps=True), family("whisper").capabilities, "w")
    with pytest.raises(InvalidInput) as caught:
        check_supported(Asked(prompt="x"), caps, "m", Params(prompt="session.audio.input.transcription.prompt"))
    assert caught.value.param == "session.audio.input.transcription.prompt"
    english = family("whisper").capabilities.english_only()
    with pytest.raises(InvalidInput, match="cannot translate"):
        check_supported(Asked(task="translate"), english, "tiny.en")


def test_the_moonshine_tokenizer_reads_the_wheel() -> None:
    tokenizer = MoonshineTokenizer.load(Path(embedded_model_dir("base-en")) / "tokenizer.bin")
    assert len(tokenizer.pieces) == 32000
    tokens = tokenizer.encode("Ever tried, ever failed.")
    assert 4 <= len(tokens) <= 10
    assert tokenizer.decode(tokens) == " Ever tried, ever failed."
    assert tokenizer.token_bytes(1) == b"" and tokenizer.token_bytes(2) == b""  # <s>, </s>


def test_speaker_stretches_join_one_speaker_and_cut_long_runs() -> None:
    turns = [
        SpeakerTurn(0.0, 3.0, "A"),
        SpeakerTurn(3.5, 6.0, "A"),  # joins: same speaker, 0.5 s apart
        SpeakerTurn(6.0, 6.2, "B"),  # wedged under 0.3 s between two A turns: joins A
        SpeakerTurn(6.3, 8.0, "A"),
        SpeakerTurn(9.0, 12.0, "B"),
        SpeakerTurn(14.0, 60.0, "A"),  # 46 s: three even stretches of at most 20 s
    ]
    got = stretches(turns, PieceRules())
    assert got[:2] == [Stretch(0.0, 8.0, "A"), Stretch(9.0, 12.0, "B")]
    assert [s.speaker for s in got[2:]] == ["A"] * 3
    assert got[2].start == 14.0 and got[-1].end == 60.0
    assert all(s.end - s.start <= 20.0 + 1e-9 for s in got)


def test_a_setting_the_family_cannot_honour_fails_at_start_up() -> None:
    from app.serving.factory import model_specs
    from app.settings import Settings

    ok = Settings(models={"m": {"engine": "moonshine", "source": "embedded:base-en"}})
    assert model_specs(ok)["m"].kind == "moonshine"
    batched = Settings(models={"m": {"engine": "moonshine", "source": "embedded:base-en", "batching": True}})
    with pytest.raises(ValueError, match=r"models\.m: the moonshine engine has no batching engine"):
        model_specs(batched)


def test_whisper_lowers_a_token_limit_to_leave_room_for_prompt_and_keywords() -> None:
    from engines.types import DecodeOptions
    from engines.whisper.engine import WhisperEngine

    engine = object.__new__(WhisperEngine)  # no model: only the limit's arithmetic
    engine.count_tokens = lambda text: len(text.split())  # type: ignore[method-assign]
    assert engine._token_limit(DecodeOptions()) is None
    assert engine._token_limit(DecodeOptions(max_new_tokens=100)) == 100
    assert engine._token_limit(DecodeOptions(max_new_tokens=500, prompt="a b c")) == 448 - 8 - 3
    long = " ".join(["w"] * 300)  # faster-whisper keeps 223 tokens of each part
    assert engine._token_limit(DecodeOptions(max_new_tokens=300, prompt=long, keywords=("k",))) == 448 - 8 - 223 - 1
    assert engine._token_limit(DecodeOptions(max_new_tokens=100, prompt=long, keywords=(long,))) is None  # none left
