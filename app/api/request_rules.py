"""The rules for ``keywords``, ``languages`` and ``prompt``, shared by the file form and realtime sessions, so that
one value is accepted or refused alike on both surfaces (a 400, or an ``error`` event, naming ``param``).

OpenAI documents ``keywords`` only as "words or phrases" and ``languages`` as ISO-639-1 codes; the limits below
are this server's choice (README, *Request rules*).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from app.api.errors import invalid_value
from app.api.languages import normalize_language

MAX_KEYWORDS = 100
MAX_KEYWORD_CHARS = 200
MAX_LANGUAGES = 20
MAX_PROMPT_CHARS = 65_536
# Keywords are joined into the decoder's prompt: a line break or control character would reshape it,
# ``<``/``>`` would let a "word" pose as markup or a special token such as ``<|en|>``, and bidi embeddings,
# overrides and isolates only reorder how text is shown. Joiners (U+200C, U+200D) stay: words need them.
_BREAKING_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_FORBIDDEN = frozenset("<>\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _bad_char(text: str) -> str | None:
    for char in text:
        if char in _FORBIDDEN or unicodedata.category(char) in _BREAKING_CATEGORIES:
            return char
    return None


def check_keywords(values: Iterable[str], param: str = "keywords") -> tuple[str, ...]:
    """Words or phrases to favour: each stripped, non-blank, one line of plain text; exact repeats dropped."""
    keywords: list[str] = []
    for index, value in enumerate(values):
        keyword = value.strip()
        if not keyword:
            raise invalid_value(param, f"{param}[{index}] is empty; each keyword must be a word or phrase.")
        if len(keyword) > MAX_KEYWORD_CHARS:
            raise invalid_value(param, f"{param}[{index}] is longer than {MAX_KEYWORD_CHARS} characters.")
        char = _bad_char(keyword)
        if char is not None:
            raise invalid_value(
                param,
                f"{param}[{index}] contains {char!r}; keywords are plain words or phrases on one line "
                "(no line breaks, control or bidi characters, '<' or '>').",
            )
        if keyword not in keywords:
            keywords.append(keyword)
        if len(keywords) > MAX_KEYWORDS:
            raise invalid_value(param, f"At most {MAX_KEYWORDS} keywords are supported.")
    return tuple(keywords)


def check_languages(values: Iterable[str], param: str = "languages", *, allow_empty: bool = True) -> tuple[str, ...]:
    """The possible languages as Whisper codes (ISO-639-1 codes or English names in), without repeats.

    ``allow_empty=False``: an explicit empty list is refused (a realtime session's ``languages`` has minItems 1).
    """
    codes: list[str] = []
    for index, value in enumerate(values):
        if not value.strip():
            raise invalid_value(param, f"{param}[{index}] is empty; use ISO-639-1 codes such as 'en'.")
        code = normalize_language(value)
        if code is None:
            text = value if len(value) <= 40 else value[:37] + "…"
            raise invalid_value(
                param, f"Unsupported language {text!r}; use ISO-639-1 codes such as 'en'.", code="unsupported_value"
            )
        if code not in codes:
            codes.append(code)
        if len(codes) > MAX_LANGUAGES:
            raise invalid_value(param, f"At most {MAX_LANGUAGES} languages are supported.")
    if not codes and not allow_empty:
        raise invalid_value(param, f"'{param}' must list at least one language, or be null.")
    return tuple(codes)


def check_language_pair(language: str | None, languages: tuple[str, ...], param: str = "languages") -> None:
    """``language`` states the one language; ``languages`` lists candidates. Both at once contradict each other."""
    if language is not None and languages:
        raise invalid_value(
            param,
            "Set either 'language' (the language of the audio) or 'languages' (its possible languages), not both.",
        )


def check_prompt(prompt: str | None, param: str = "prompt") -> str | None:
    """A prompt of bounded size (it is tokenised before the decoder keeps only its tail); empty means none."""
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise invalid_value(param, f"'{param}' is too long: at most {MAX_PROMPT_CHARS} characters.")
    return prompt or None
