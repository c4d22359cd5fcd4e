"""Translation sessions on the wire: client events, session updates and the session body, against the SDK's types."""

from __future__ import annotations

import json

import pytest
from openai.types.realtime.realtime_translation_client_event_param import RealtimeTranslationClientEventParam
from openai.types.realtime.realtime_translation_session import RealtimeTranslationSession
from pydantic import TypeAdapter

from app.api.realtime.client_events import EventError
from app.api.realtime.translation import DeltaJoiner
from app.api.realtime.translation_events import (
    Append,
    Close,
    SessionUpdate,
    apply_translation_update,
    default_translation,
    parse_translation_event,
    translation_session_body,
)
from app.serving.realtime.decode_options import decode_options
from app.serving.realtime.events import TranscriptDelta
from app.settings import RealtimeConfig


def test_the_sdks_client_events_parse() -> None:
    events: list[RealtimeTranslationClientEventParam] = [
        {"type": "session.input_audio_buffer.append", "audio": "AAAA", "event_id": "e1"},
        {"type": "session.close"},
        {"type": "session.update", "session": {"audio": {"input": {"noise_reduction": {"type": "far_field",
         "strength": 0.5}, "transcription": {"model": "base"}}, "output": {"language": "en"}}}},
    ]  # fmt: skip
    parsed = [parse_translation_event(json.dumps(event)) for event in events]
    assert [type(p) for p in parsed] == [Append, Close, SessionUpdate]


def test_an_update_changes_only_what_it_names() -> None:
    config = default_translation("base")
    assert config.decode.task == "translate" and config.input_model is None
    update = parse_translation_event(json.dumps({"type": "session.update", "session": {"audio": {"input": {
        "noise_reduction": {"type": "near_field"}, "transcription": {"model": "tiny"}}}}}))  # fmt: skip
    assert isinstance(update, SessionUpdate)
    changed = apply_translation_update(config, update.session, None)
    assert changed.input_model == "tiny" and changed.decode.noise_reduction is not None
    assert changed.decode.task == "translate" and changed.decode.transcription.model == "base"
    off = parse_translation_event(json.dumps({"type": "session.update", "session": {"audio": {"input": {
        "noise_reduction": None, "transcription": None}}}}))  # fmt: skip
    assert isinstance(off, SessionUpdate)
    assert apply_translation_update(changed, off.session, None) == config


@pytest.mark.parametrize(
    ("output", "param"),
    [({"language": "fr"}, "session.audio.output.language"), ({"voice": "alloy"}, "session.audio.output.voice")],
)
def test_output_other_than_english_text_is_refused_by_name(output: dict[str, str], param: str) -> None:
    update = parse_translation_event(json.dumps({"type": "session.update", "session": {"audio": {"output": output}}}))
    assert isinstance(update, SessionUpdate)
    with pytest.raises(EventError) as caught:
        apply_translation_update(default_translation("base"), update.session, "ev")
    assert (caught.value.code, caught.value.param, caught.value.event_id) == ("unsupported_value", param, "ev")


def test_transcription_events_are_not_translation_events() -> None:
    with pytest.raises(EventError) as caught:
        parse_translation_event(json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA"}))
    assert caught.value.param == "type"


def test_the_session_body_is_the_sdks() -> None:
    config = default_translation("base")
    body = translation_session_body(config, "sess_1", 123)
    session = TypeAdapter(RealtimeTranslationSession).validate_python(body)
    assert session.type == "translation" and session.audio.output is not None
    assert session.audio.output.language == "en"


def test_translation_decodes_use_the_translate_task_and_no_pinned_language() -> None:
    options = decode_options(default_translation("base").decode, RealtimeConfig(), seconds=3.0, final=False,
                             beam_size=5, detected_language="ja")  # fmt: skip
    assert options.task == "translate" and options.language is None


def test_deltas_join_across_turns_without_a_missing_space() -> None:
    join = DeltaJoiner()
    pieces = [TranscriptDelta("a", "Hello", 1.0), TranscriptDelta("a", " there."), TranscriptDelta("b", "Next", 2.0)]
    assert "".join(join(p) for p in pieces) == "Hello there. Next"
