"""The 2026 form fields of the file endpoint: keywords[] and languages[]."""

from __future__ import annotations

import pytest

from app.api.errors import APIError
from app.api.form import MAX_KEYWORDS, parse_keywords, parse_languages
from tests.unit.test_form import parse


def test_keywords_and_languages_as_bracket_lists() -> None:
    request = parse(("keywords[]", " Siobhan "), ("keywords[]", "Kowalczyk"), ("languages[]", "fr"),
                    ("languages[]", "English"), ("languages[]", "fr"))  # fmt: skip
    assert request.keywords == ("Siobhan", "Kowalczyk")
    assert request.languages == ("fr", "en")  # normalised, without duplicates


def test_a_json_array_string_works_too() -> None:
    request = parse(("keywords", '["a b", "c"]'), ("languages", '["de"]'))
    assert request.keywords == ("a b", "c") and request.languages == ("de",)


def test_translations_take_no_languages() -> None:
    assert parse(("languages[]", "fr"), task="translate").languages == ()


def test_bad_values_name_their_parameter() -> None:
    with pytest.raises(APIError) as caught:
        parse_languages(["fr", "klingon"])
    assert caught.value.param == "languages" and caught.value.code == "unsupported_value"
    with pytest.raises(APIError) as caught:
        parse_keywords(["x"] * (MAX_KEYWORDS + 1), "session.keywords")
    assert caught.value.param == "session.keywords"
    assert parse_keywords(["", "  "]) == ()
