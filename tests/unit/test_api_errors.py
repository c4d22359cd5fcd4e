"""app.api.errors.to_api_error: every domain error the serving, accounting and engine layers define has an
OpenAI-shaped answer, and only the server's own failures are 500s."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable

import pytest

import app.accounting
import app.serving.realtime
from app.accounting.shared_state import SharedStateUnavailable
from app.api.errors import to_api_error
from app.serving import errors as serving
from engines import errors as engine
from engines.diarization import types as diarization

# Where the domain errors live: every exception class defined in these modules must be listed below.
ERROR_MODULES = [
    "app.serving.errors",
    "engines.errors",
    "engines.diarization.types",
    *(f"app.accounting.{m.name}" for m in pkgutil.iter_modules(app.accounting.__path__)),
    *(f"app.serving.realtime.{m.name}" for m in pkgutil.iter_modules(app.serving.realtime.__path__)),
]

# One instance of each error a client can cause or meet, with the status it is answered with.
ANSWERED: dict[type[BaseException], tuple[Callable[[], BaseException], int]] = {
    serving.InvalidInput: (lambda: serving.InvalidInput("language", "Unsupported language."), 400),
    serving.ModelNotFound: (lambda: serving.ModelNotFound("nope"), 400),
    serving.QueueFull: (lambda: serving.QueueFull("m", 1, 4, retry_after=3), 429),
    serving.RateLimited: (lambda: serving.RateLimited("slow down", limit_type="requests", wait_seconds=2.5), 429),
    serving.SessionLimitReached: (lambda: serving.SessionLimitReached("too many sessions"), 429),
    serving.TimedOut: (lambda: serving.TimedOut(30.0), 504),
    serving.ClientGone: (serving.ClientGone, 499),
    engine.AudioDecodeError: (lambda: engine.AudioDecodeError("not audio"), 400),
    engine.AudioTooLongError: (lambda: engine.AudioTooLongError(7300.0, 7200.0), 400),
    engine.DecodingCancelled: (lambda: engine.DecodingCancelled("stop"), 499),
    SharedStateUnavailable: (SharedStateUnavailable, 503),
}

# The server's own failures: a 500 (server_error, x-should-retry: false) that keeps the message.
INTERNAL: dict[type[BaseException], str] = {
    serving.ServingError: "the base class: raised bare, it is a bug in the serving layer",
    serving.ModelUnavailable: "a configured model or the diarizer failed to load: the server's fault",
    engine.EngineError: "the base class: raised bare, it is a bug in an engine",
    engine.ModelLoadError: "a model's files are missing or broken: the server's fault (the service says "
    "ModelUnavailable)",
    diarization.DiarizationError: "an engine failure (pyannote, an empty clip); the speaker counts it also "
    "checks are refused by the form first",
}


def _defined_errors() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for name in ERROR_MODULES:
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                found.add(value)
    return found


def test_every_domain_error_is_listed() -> None:
    defined = _defined_errors()
    assert serving.SessionLimitReached in defined  # the scan sees the realtime session limits
    assert not ANSWERED.keys() & INTERNAL.keys()
    unlisted = defined - ANSWERED.keys() - INTERNAL.keys()
    assert not unlisted, f"add these to ANSWERED (with their status) or to INTERNAL (with a reason): {unlisted}"


@pytest.mark.parametrize("kind", list(ANSWERED), ids=lambda kind: kind.__name__)
def test_domain_errors_get_their_own_answer(kind: type[BaseException]) -> None:
    make, status = ANSWERED[kind]
    exc = make()
    assert type(exc) is kind
    error = to_api_error(exc)
    assert error.status == status != 500
    body = error.body()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["type"], str) and body["type"]


@pytest.mark.parametrize("kind", list(INTERNAL), ids=lambda kind: kind.__name__)
def test_internal_errors_are_500s_with_their_message(kind: type[BaseException]) -> None:
    error = to_api_error(kind("what went wrong"))
    assert error.status == 500
    assert error.type == "server_error"
    assert error.message == "what went wrong"
    assert error.headers == {"x-should-retry": "false"}


def test_anything_else_is_an_anonymous_500() -> None:
    error = to_api_error(KeyError("secret detail"))
    assert error.status == 500
    assert "secret" not in error.message


def test_session_limit_matches_the_realtime_close_event() -> None:
    """The same type and code as the error event sent before a 1013 close (app/api/realtime/connection.py)."""
    error = to_api_error(serving.SessionLimitReached("This API key already has 2 open realtime sessions."))
    assert (error.status, error.type, error.code, error.param) == (
        429,
        "server_overloaded",
        "session_limit_reached",
        None,
    )


def test_retry_hints() -> None:
    assert to_api_error(serving.QueueFull("m", 1, 4, retry_after=3)).headers == {"Retry-After": "3"}
    short = to_api_error(serving.RateLimited("x", limit_type="tokens", wait_seconds=0.2))
    assert short.headers == {"retry-after": "1"} and short.type == "tokens"
    long = to_api_error(serving.RateLimited("x", limit_type="tokens", wait_seconds=3600))
    assert long.headers["x-should-retry"] == "false"
