"""The request rules of keywords[], languages[] and prompt (app.api.request_rules), on the file form and on
realtime sessions alike: each accepted case, and each refused one with its ``param``."""

from __future__ import annotations

from typing import Any

import pytest

from app.api.errors import APIError
from app.api.realtime import client_events as wire
from app.api.realtime.server_events import exception_error
from app.api.realtime.session_config import apply_beta_update, apply_update, default_config
from app.api.request_rules import (
    MAX_KEYWORD_CHARS,
    MAX_KEYWORDS,
    MAX_LANGUAGES,
    MAX_PROMPT_CHARS,
    check_keywords,
    check_languages,
)
from app.serving.errors import InvalidInput
from app.serving.realtime import SessionConfig
from tests.unit.test_form import parse, refuse

SESSION = "session.audio.input.transcription"
# A Persian word with a zero-width non-joiner: a format character that belongs to the word, not markup.
PERSIAN = "می\u200cخواهم"


def update(config: SessionConfig | None = None, **transcription: Any) -> SessionConfig:
    session = wire.TranscriptionSession.model_validate(
        {"type": "transcription", "audio": {"input": {"transcription": transcription}}}
    )
    return apply_update(config or default_config("gpt-live-transcribe"), session)


def refused_update(config: SessionConfig | None = None, **transcription: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        update(config, **transcription)
    return caught.value


# --- keywords ------------------------------------------------------------------------------


def test_keywords_as_bracket_lists_are_stripped_and_repeats_dropped() -> None:
    request = parse(("keywords[]", " Siobhan "), ("keywords[]", "Kowalczyk"), ("keywords[]", "Siobhan"))
    assert request.keywords == ("Siobhan", "Kowalczyk")


@pytest.mark.parametrize("keyword", ["Zoë", "東京", "C++", "AT&T", "O'Brien", "ACME-42 Pro", PERSIAN, "x" * 200])
def test_plain_words_and_phrases_in_any_script_are_accepted(keyword: str) -> None:
    assert parse(("keywords[]", keyword)).keywords == (keyword,)
    assert update(keywords=[keyword]).transcription.keywords == (keyword,)


@pytest.mark.parametrize(
    "keyword",
    ["Siobhan\nKowalczyk", "a\rb", "tab\there", "nul\x00", "bell\x07", "del\x7f", "line\u2028sep", "para\u2029sep",
     "<b>bold</b>", "<|en|>", "a > b", "\u202e" * 40, "abc\u2067def", "", "   ", "x" * (MAX_KEYWORD_CHARS + 1)],
)  # fmt: skip
def test_line_breaks_controls_markup_blanks_and_long_keywords_are_refused(keyword: str) -> None:
    error = refuse(("keywords[]", "fine"), ("keywords[]", keyword))
    assert (error.status, error.param, error.code) == (400, "keywords", "invalid_value")
    assert "keywords[1]" in error.message
    assert refused_update(keywords=["fine", keyword]).param == f"{SESSION}.keywords"


def test_at_most_max_keywords_distinct_ones() -> None:
    distinct = [f"word{i}" for i in range(MAX_KEYWORDS)]
    assert len(check_keywords([*distinct, *distinct])) == MAX_KEYWORDS  # repeats do not count
    error = refuse(*(("keywords[]", word) for word in [*distinct, "one more"]))
    assert error.param == "keywords" and str(MAX_KEYWORDS) in error.message


def test_a_json_array_string_works_too() -> None:
    request = parse(("keywords", '["a b", "c"]'), ("languages", '["de"]'))
    assert request.keywords == ("a b", "c") and request.languages == ("de",)


# --- languages -----------------------------------------------------------------------------


def test_languages_are_normalised_without_repeats() -> None:
    request = parse(("languages[]", "fr"), ("languages[]", "English"), ("languages[]", " FR "))
    assert request.languages == ("fr", "en")


@pytest.mark.parametrize(("value", "code"), [("klingon", "unsupported_value"), ("xx", "unsupported_value"),
                                             ("", "invalid_value"), ("  ", "invalid_value")])  # fmt: skip
def test_unknown_and_blank_languages_are_refused(value: str, code: str) -> None:
    error = refuse(("languages[]", "fr"), ("languages[]", value))
    assert (error.param, error.code) == ("languages", code)
    refused = refused_update(languages=["fr", value])
    assert (refused.param, refused.code) == (f"{SESSION}.languages", code)


def test_at_most_max_languages() -> None:
    codes = ["en", "fr", "de", "es", "it", "pt", "nl", "pl", "sv", "da", "fi", "no", "cs", "sk", "hu", "ro", "bg",
             "el", "tr", "ru", "uk"]  # fmt: skip
    assert len(check_languages(codes[:MAX_LANGUAGES])) == MAX_LANGUAGES
    error = refuse(*(("languages[]", code) for code in codes[: MAX_LANGUAGES + 1]))
    assert error.param == "languages" and str(MAX_LANGUAGES) in error.message


def test_translations_take_no_languages() -> None:
    assert parse(("languages[]", "fr"), task="translate").languages == ()


def test_a_session_needs_one_language_in_a_list_or_null_to_clear_it() -> None:
    assert refused_update(languages=[]).param == f"{SESSION}.languages"
    config = update(languages=["fr", "en"])
    assert config.transcription.languages == ("fr", "en")
    assert update(config, languages=None).transcription.languages == ()


# --- language with languages ---------------------------------------------------------------


def test_language_and_languages_together_are_refused() -> None:
    error = refuse(("language", "fr"), ("languages[]", "fr"), ("languages[]", "en"))
    assert (error.status, error.param, error.code) == (400, "languages", "invalid_value")
    assert parse(("language", ""), ("languages[]", "fr")).languages == ("fr",)  # a blank language is no language
    assert parse(("language", "fr"), ("languages[]", "fr"), task="translate").languages == ()


def test_a_session_may_not_hold_both_whichever_update_brings_the_second() -> None:
    assert refused_update(language="fr", languages=["fr", "en"]).param == f"{SESSION}.languages"
    with_languages = update(languages=["fr", "en"])
    assert refused_update(with_languages, language="fr").param == f"{SESSION}.language"
    with_language = update(language="fr")
    assert refused_update(with_language, languages=["de"]).param == f"{SESSION}.languages"
    switched = update(with_languages, language="fr", languages=None)  # one update may swap one for the other
    assert (switched.transcription.language, switched.transcription.languages) == ("fr", ())


def test_the_beta_protocol_follows_the_same_rules() -> None:
    session = wire.BetaSession.model_validate(
        {"input_audio_transcription": {"model": "gpt-4o-transcribe", "prompt": "x" * (MAX_PROMPT_CHARS + 1)}}
    )
    with pytest.raises(InvalidInput) as caught:
        apply_beta_update(default_config("whisper-1"), session)
    assert caught.value.param == "session.input_audio_transcription.prompt"


def test_a_refused_session_update_is_an_error_event_naming_the_field() -> None:
    error = refused_update(keywords=["<script>"])
    event = exception_error(error, "evt_1")
    assert event["type"] == "error" and event["error"]["event_id"] == "evt_1"
    assert event["error"]["param"] == f"{SESSION}.keywords"
    assert event["error"]["type"] == "invalid_request_error" and event["error"]["code"] == "invalid_value"


# --- prompt --------------------------------------------------------------------------------


def test_prompt_is_bounded_on_both_surfaces() -> None:
    assert parse(("prompt", "x" * MAX_PROMPT_CHARS)).prompt == "x" * MAX_PROMPT_CHARS
    assert refuse(("prompt", "x" * (MAX_PROMPT_CHARS + 1))).param == "prompt"
    assert refused_update(prompt="x" * (MAX_PROMPT_CHARS + 1)).param == f"{SESSION}.prompt"
    assert update(prompt="Kowalczyk\nSiobhan").transcription.prompt == "Kowalczyk\nSiobhan"  # free text
    assert update(prompt="").transcription.prompt is None


def test_the_rules_raise_the_api_error_shape() -> None:
    with pytest.raises(APIError) as caught:
        check_keywords(["ok", "two\nlines"], "session.keywords")
    assert caught.value.body()["error"]["param"] == "session.keywords"
