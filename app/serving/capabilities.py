"""One check of a request against what its model can do, for file requests and realtime sessions
alike: an option the model cannot honour is a 400 that names the option and the model."""

from __future__ import annotations

from dataclasses import dataclass

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
    live: bool = False


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
    live: str = "model"


def check_supported(asked: Asked, capabilities: Capabilities, model: str, params: Params = Params()) -> None:
    """Raise InvalidInput (code ``unsupported_value``) for the first option ``model`` cannot honour."""
    for param, problem in _problems(asked, capabilities, params):
        raise InvalidInput(param, f"Model '{model}' {problem}", code="unsupported_value")


def _problems(asked: Asked, caps: Capabilities, params: Params) -> list[tuple[str, str]]:
    spoken = "English only" if caps.languages == frozenset({"en"}) else ", ".join(sorted(caps.languages or ()))
    found: list[tuple[str, str]] = []
    if asked.task == "translate" and not caps.translation:
        found.append((params.task, "cannot translate."))
    if asked.language is not None and not caps.speaks(asked.language):
        found.append((params.language, f"transcribes {spoken}; language {asked.language!r} is not supported."))
    if asked.languages and not any(caps.speaks(code) for code in asked.languages):
        found.append((params.languages, f"transcribes {spoken}; languages must include one of them."))
    if asked.prompt and not caps.prompt:
        found.append((params.prompt, "does not take a prompt."))
    if asked.keywords and not caps.keywords:
        found.append((params.keywords, "does not take keywords."))
    if asked.word_timestamps and not caps.word_timestamps:
        found.append((params.word_timestamps, "does not give word timestamps."))
    if asked.logprobs and not caps.logprobs:
        found.append((params.logprobs, "does not give log-probabilities."))
    if asked.speakers and not caps.diarization:
        found.append((params.speakers, "cannot be paired with speaker diarization."))
    if asked.live and not caps.live:
        found.append((params.live, "does not serve realtime transcription sessions."))
    return found
