"""The realtime wire protocol: client events validated into errors that name the parameter, session updates
merged as the SDK documents, and server events that parse as the SDK's own types."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.beta.realtime import TranscriptionSessionUpdatedEvent
from openai.types.realtime import (
    ConversationItemAdded,
    ConversationItemDone,
    ConversationItemInputAudioTranscriptionCompletedEvent,
    ConversationItemInputAudioTranscriptionDeltaEvent,
    ConversationItemInputAudioTranscriptionFailedEvent,
    InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferTimeoutTriggered,
    RealtimeErrorEvent,
    SessionUpdatedEvent,
)
from openai.types.realtime.realtime_transcription_session_create_response import (
    RealtimeTranscriptionSessionCreateResponse,
)

from app.api.realtime import client_events as wire
from app.api.realtime.client_events import EventError, parse_client_event
from app.api.realtime.server_events import EventRenderer, exception_error
from app.api.realtime.session_config import apply_beta_update, apply_update, default_config
from app.serving.errors import InvalidInput
from app.serving.realtime import SemanticVadConfig, ServerVadConfig
from app.serving.realtime import events as ev
from engines.types import TokenLogprob


def error_of(raw: str | bytes) -> EventError:
    with pytest.raises(EventError) as caught:
        parse_client_event(raw)
    return caught.value


@pytest.mark.parametrize(
    ("raw", "code", "param"),
    [
        ("{not json", "invalid_json", None),
        ("[1, 2]", "invalid_json", None),
        ('{"event_id": "e1"}', "missing_required_parameter", "type"),
        ('{"type": "no.such.event", "event_id": "e1"}', "invalid_value", "type"),
        ('{"type": "response.create", "event_id": "e1"}', "unsupported_event", "type"),
        ('{"type": "input_audio_buffer.append", "audio": 5, "event_id": "e1"}', "invalid_type", "audio"),
        ('{"type": "input_audio_buffer.append", "event_id": "e1"}', "missing_required_parameter", "audio"),
        ('{"type": "input_audio_buffer.commit", "extra": 1, "event_id": "e1"}', "unknown_parameter", "extra"),
        (
            '{"type": "session.update", "event_id": "e1", "session": {"type": "transcription", "audio": {"input": '
            '{"turn_detection": {"type": "server_vad", "threshold": "high"}}}}}',
            "invalid_type",
            "session.audio.input.turn_detection.threshold",
        ),
        (
            '{"type": "session.update", "event_id": "e1", "session": {"type": "transcription", "audio": {"input": '
            '{"format": {"type": "audio/pcm", "rate": 16000}}}}}',
            "invalid_value",
            "session.audio.input.format.rate",
        ),
        (
            '{"type": "session.update", "event_id": "e1", "session": {"type": "transcription", "audio": {"input": '
            '{"transcription": {"modle": "whisper-1"}}}}}',
            "unknown_parameter",
            "session.audio.input.transcription.modle",
        ),
    ],
)
def test_bad_events_name_their_problem(raw: str, code: str, param: str | None) -> None:
    error = error_of(raw)
    assert (error.code, error.param) == (code, param)
    if "e1" in raw:
        assert error.event_id == "e1"


def _session(**input_fields: Any) -> wire.TranscriptionSession:
    return wire.TranscriptionSession.model_validate({"type": "transcription", "audio": {"input": input_fields}})


def test_a_ga_update_changes_only_what_it_names() -> None:
    config = default_config("whisper-1")
    config = apply_update(config, _session(transcription={"model": "gpt-4o-transcribe", "language": "German"}))
    config = apply_update(config, _session(transcription={"prompt": "names", "keywords": [" Siobhan "]}))
    transcription = config.transcription
    assert (transcription.model, transcription.language, transcription.prompt) == ("gpt-4o-transcribe", "de", "names")
    assert transcription.keywords == ("Siobhan",)
    assert config.turn_detection == ServerVadConfig()
    config = apply_update(config, _session(turn_detection=None, format={"type": "audio/pcmu"}))
    assert config.turn_detection is None and config.format == "pcmu"
    config = apply_update(config, _session(turn_detection={"type": "semantic_vad", "eagerness": "high"}))
    assert config.turn_detection == SemanticVadConfig(eagerness="high")
    config = apply_update(config, wire.TranscriptionSession(type="transcription", include=[
        "item.input_audio_transcription.logprobs"]))  # fmt: skip
    assert config.include_logprobs and config.format == "pcmu"
    config = apply_update(config, _session(noise_reduction={"type": "far_field"}))
    assert config.noise_reduction is not None and config.noise_reduction.strength == 1.0


def test_an_unknown_language_is_refused_with_its_parameter() -> None:
    with pytest.raises(InvalidInput) as caught:
        apply_update(default_config("whisper-1"), _session(transcription={"language": "klingon"}))
    assert caught.value.param == "session.audio.input.transcription.language"


def test_a_beta_update_maps_its_flat_fields() -> None:
    event = parse_client_event(json.dumps({
        "type": "transcription_session.update",
        "session": {
            "input_audio_format": "g711_alaw",
            "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
            "include": ["item.input_audio_transcription.logprobs"],
        },
    }))  # fmt: skip
    assert isinstance(event, wire.BetaSessionUpdate)
    config = apply_beta_update(default_config("whisper-1"), event.session)
    assert config.format == "pcma" and config.include_logprobs
    assert config.transcription.model == "gpt-4o-transcribe"
    assert config.turn_detection == ServerVadConfig(silence_duration_ms=300)


def test_server_events_parse_as_the_sdk_types() -> None:
    renderer = EventRenderer(beta=False, session_id="sess_1", expires_at=None)
    config = apply_update(default_config("whisper-1"), _session(transcription={"languages": ["en", "fr"]}))
    created, updated = renderer.session(config), renderer.session(config)
    assert created["type"] == "session.created"
    SessionUpdatedEvent.model_validate(updated)
    RealtimeTranscriptionSessionCreateResponse.model_validate(updated["session"])
    usage = ev.TurnUsage(seconds=2.5, prompt_tokens=3, audio_tokens=125, output_tokens=9)
    logprob = TokenLogprob(token=" Hi", logprob=-0.1, bytes=(32, 72, 105))
    rendered = {
        "speech": renderer.render(ev.SpeechStarted("item_1", 120)),
        "timeout": renderer.render(ev.TimeoutTriggered("item_1", 0, 5000)),
        "committed": renderer.render(ev.Committed("item_1", None)),
        "added": renderer.render(ev.ItemAdded("item_1", None)),
        "delta": renderer.render(ev.TranscriptDelta("item_1", "Hi")),
        "completed": renderer.render(ev.TranscriptCompleted("item_1", None, "Hi there", "en", usage, [logprob], True)),
        "failed": renderer.render(ev.TranscriptFailed("item_2", "item_1", InvalidInput("x", "bad"))),
    }
    InputAudioBufferSpeechStartedEvent.model_validate(rendered["speech"][0])
    InputAudioBufferTimeoutTriggered.model_validate(rendered["timeout"][0])
    InputAudioBufferCommittedEvent.model_validate(rendered["committed"][0])
    ConversationItemAdded.model_validate(rendered["added"][0])
    ConversationItemInputAudioTranscriptionDeltaEvent.model_validate(rendered["delta"][0])
    completed, done = rendered["completed"]
    parsed = ConversationItemInputAudioTranscriptionCompletedEvent.model_validate(completed)
    assert parsed.usage.type == "tokens" and parsed.usage.total_tokens == 137
    assert parsed.logprobs is not None and parsed.logprobs[0].bytes == [32, 72, 105]
    assert parsed.languages is not None and parsed.languages[0].code == "en"
    assert ConversationItemDone.model_validate(done).item.content[0].transcript == "Hi there"  # type: ignore[union-attr]
    failed = ConversationItemInputAudioTranscriptionFailedEvent.model_validate(rendered["failed"][0])
    assert failed.error.code == "invalid_value"
    RealtimeErrorEvent.model_validate(exception_error(InvalidInput("audio", "bad"), "evt_9"))


def test_beta_events_use_the_beta_names() -> None:
    renderer = EventRenderer(beta=True, session_id="sess_1", expires_at=None)
    config = default_config("whisper-1")
    assert renderer.session(config)["type"] == "transcription_session.created"
    updated = renderer.session(config)
    secret = {"client_secret": {"value": "ek_x", "expires_at": 1}}  # the SDK type requires what only REST sends
    TranscriptionSessionUpdatedEvent.model_validate({**updated, "session": {**updated["session"], **secret}})
    assert updated["session"]["input_audio_format"] == "pcm16"
    assert renderer.render(ev.ItemAdded("item_1", None))[0]["type"] == "conversation.item.created"
    usage = ev.TurnUsage(seconds=1.0, prompt_tokens=0, audio_tokens=50, output_tokens=2)
    assert len(renderer.render(ev.TranscriptCompleted("item_1", None, "Hi", "en", usage))) == 1  # no item.done
