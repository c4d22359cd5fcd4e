"""``POST /v1/realtime/translations/client_secrets``: the request's lifetime and translation session, checked.

The secret itself is the transcription sessions' (``ClientSecrets``): it stores the session's decode
config (task ``translate``), so the source-language transcript is not preset by a secret; a client
asks for it with ``session.update`` once connected.
"""

from __future__ import annotations

from pydantic import ValidationError

from app.api.errors import invalid_value
from app.api.realtime.client_events import EventError
from app.api.realtime.client_secrets import invalid_request, secret_request
from app.api.realtime.translation_events import (
    TranslationConfig,
    TranslationSession,
    apply_translation_update,
    default_translation,
)


def parse_translation_secret(body: object) -> tuple[int | None, TranslationConfig]:
    """The requested lifetime and the session a translation secret opens; APIError 400 names what is wrong."""
    request, seconds = secret_request(body)
    if request.session is None or not isinstance(request.session.get("model"), str):
        raise invalid_value("session.model", "Missing required parameter: 'session.model'.",
                            code="missing_required_parameter")  # fmt: skip
    try:
        session = TranslationSession.model_validate(request.session)
    except ValidationError as exc:
        raise invalid_request(exc, "session") from None
    assert session.model is not None
    if session.audio is not None and session.audio.input is not None and session.audio.input.transcription:
        raise invalid_value(
            "session.audio.input.transcription",
            "A client secret cannot preset the source transcript; send session.update once connected.",
            code="unsupported_value",
        )
    try:
        config = apply_translation_update(default_translation(session.model), session, None)
    except EventError as exc:
        raise invalid_value(exc.param or "session", exc.message, code=exc.code) from None
    return seconds, config
