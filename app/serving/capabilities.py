"""One check of a request against what its model can do, for file requests and realtime sessions
alike: an option the model cannot honour is a 400 that names the option and the model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from app.serving.errors import InvalidInput
from engines.capabilities import Capabilities


@dataclass(frozen=True)
class Asked:
    """The options of a request (or a session's transcription config) that depend on the model."""

    task: str = "transcribe"
    language: str | None = None
    languages: tuple[str, ...] = ()
    prompt: str | None = None
    keywords: tuple[str, ...] = ()
    word_timestamps: bool = False
    logprobs: bool = False
    speakers: bool = False
    timed: bool = False  # a response format that times segments (srt, vtt, verbose_json)
    stream: bool = False
    live: bool = False

    @classmethod
    def of(cls, source: object, **extra: Any) -> Asked:
        """The options that ``source`` (a request, or a session's transcription config) names alike, and ``extra``."""
        shared = {option.name: getattr(source, option.name) for option in fields(cls) if hasattr(source, option.name)}
        return cls(**(shared | extra))


@dataclass(frozen=True)
class Params:
    """What each option is called on one surface (form fields, or session config paths)."""

    task: str = "model"
    language: str = "language"
    languages: str = "languages"
    prompt: str = "prompt"
    keywords: str = "keywords"
    word_timestamps: str = "timestamp_granularities"
    logprobs: str = "include"
    speakers: str = "response_format"
    timed: str = "response_format"
    stream: str = "stream"
    live: str = "model"


def check_supported(asked: Asked, capabilities: Capabilities, model: str, params: Params = Params()) -> None:
    """Raise InvalidInput (code ``unsupported_value``) for the first option ``model`` cannot honour."""
    spoken = (
        "English only"
        if capabilities.languages == frozenset({"en"})
        else ", ".join(sorted(capabilities.languages or ()))
    )
    for option, lacks, problem in RULES:
        if lacks(asked, capabilities):
            message = problem.format(asked=asked, spoken=spoken)
            raise InvalidInput(getattr(params, option), f"Model '{model}' {message}", code="unsupported_value")


Rule = tuple[str, Callable[[Asked, Capabilities], bool], str]  # option, "asked for but lacking", message
RULES: tuple[Rule, ...] = (
    ("task", lambda a, c: a.task == "translate" and not c.translation, "cannot translate."),
    (
        "language",
        lambda a, c: a.language is not None and not c.speaks(a.language),
        "transcribes {spoken}; language {asked.language!r} is not supported.",
    ),
    (
        "languages",
        lambda a, c: bool(a.languages) and not any(c.speaks(code) for code in a.languages),
        "transcribes {spoken}; languages must include one of them.",
    ),
    ("prompt", lambda a, c: bool(a.prompt) and not c.prompt, "does not take a prompt."),
    ("keywords", lambda a, c: bool(a.keywords) and not c.keywords, "does not take keywords."),
    ("word_timestamps", lambda a, c: a.word_timestamps and not c.word_timestamps, "does not give word timestamps."),
    ("logprobs", lambda a, c: a.logprobs and not c.logprobs, "does not give log-probabilities."),
    ("speakers", lambda a, c: a.speakers and c.diarization is None, "cannot be paired with speaker diarization."),
    (
        "timed",
        lambda a, c: a.timed and not c.segment_timestamps,
        "does not time its segments (srt, vtt, verbose_json).",
    ),
    ("stream", lambda a, c: a.stream and not c.streaming, "does not stream."),
    ("live", lambda a, c: a.live and not c.live, "does not serve realtime transcription sessions."),
)
