"""app.api.form: OpenAI's multipart audio form parsed into an AudioRequest, and every 400 it must give."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
from starlette.datastructures import FormData, UploadFile

from app.api.errors import APIError
from app.api.form import Fields, parse_audio_form
from app.serving.protocol import AudioRequest, ChunkingStrategy, ResponseFormat, ServerVad

AUDIO = b"RIFF fake audio bytes"
MAX_UPLOAD = 1_000

Item = tuple[str, str | UploadFile]


def upload(data: bytes = AUDIO, filename: str | None = "upload") -> UploadFile:
    return UploadFile(file=io.BytesIO(data), filename=filename)


def form(*items: Item, file: bytes | None = AUDIO, model: str | None = "whisper-1") -> FormData:
    """A form like the SDKs send: file and model first, then ``items`` in order."""
    head: list[Item] = []
    if file is not None:
        head.append(("file", upload(file)))
    if model is not None:
        head.append(("model", model))
    return FormData([*head, *items])


def parse(
    *items: Item,
    task: str = "transcribe",
    file: bytes | None = AUDIO,
    model: str | None = "whisper-1",
    max_upload_bytes: int = MAX_UPLOAD,
) -> AudioRequest:
    return asyncio.run(
        parse_audio_form(form(*items, file=file, model=model), task=task, max_upload_bytes=max_upload_bytes)
    )


def refuse(
    *items: Item, task: str = "transcribe", file: bytes | None = AUDIO, model: str | None = "whisper-1"
) -> APIError:
    with pytest.raises(APIError) as caught:
        parse(*items, task=task, file=file, model=model)
    return caught.value


# --- Fields ---------------------------------------------------------------------------------


def test_fields_merges_bracket_and_plain_keys_into_one_list() -> None:
    fields = Fields(
        FormData(
            [
                ("include[]", "logprobs"),
                ("timestamp_granularities[]", "word"),
                ("timestamp_granularities", "segment"),
                ("model", "whisper-1"),
            ]
        )
    )
    assert fields.lists["include"] == ["logprobs"]
    assert fields.lists["timestamp_granularities"] == ["word", "segment"]
    assert fields.texts("timestamp_granularities") == ["word", "segment"]
    assert fields.text("model") == "whisper-1"
    assert fields.text("absent") is None
    assert fields.texts("absent") == []


def test_fields_key_sub_becomes_object() -> None:
    fields = Fields(
        FormData(
            [
                ("chunking_strategy[type]", "server_vad"),
                ("chunking_strategy[threshold]", "0.3"),
                ("chunking_strategy[silence_duration_ms]", "500"),
            ]
        )
    )
    assert fields.objects == {
        "chunking_strategy": {"type": "server_vad", "threshold": "0.3", "silence_duration_ms": "500"}
    }
    assert "chunking_strategy" not in fields.lists


def test_fields_json_array_string_is_a_list() -> None:
    fields = Fields(FormData([("timestamp_granularities", '["word", "segment"]'), ("include[]", "[not json")]))
    assert fields.texts("timestamp_granularities") == ["word", "segment"]
    # Not valid JSON: kept as the one literal value.
    assert fields.texts("include") == ["[not json"]


def test_fields_last_scalar_wins_and_upload_is_found() -> None:
    audio = upload(b"abc", filename="a.wav")
    fields = Fields(FormData([("language", "de"), ("language", "fr"), ("file", audio)]))
    assert fields.text("language") == "fr"
    assert fields.upload("file") is audio
    assert fields.upload("language") is None


def test_fields_text_refuses_a_file() -> None:
    fields = Fields(FormData([("prompt", upload())]))
    with pytest.raises(APIError) as caught:
        fields.text("prompt")
    assert caught.value.status == 400
    assert caught.value.param == "prompt"
    with pytest.raises(APIError):
        fields.texts("prompt")


# --- the happy path -------------------------------------------------------------------------


def test_minimal_form_defaults() -> None:
    request = parse()
    assert request == AudioRequest(
        task="transcribe",
        file=AUDIO,
        model="whisper-1",
        response_format=ResponseFormat.JSON,
        language=None,
        prompt=None,
        temperature=0.0,
        word_timestamps=False,
        segment_timestamps=True,
        logprobs=False,
        stream=False,
        chunking=None,
        known_speakers=(),
    )


def test_filename_missing_is_accepted() -> None:
    data = FormData([("file", upload(filename=None)), ("model", "m")])
    request = asyncio.run(parse_audio_form(data, task="transcribe", max_upload_bytes=MAX_UPLOAD))
    assert request.file == AUDIO


def test_model_is_stripped() -> None:
    assert parse(model="  gpt-4o-transcribe \n").model == "gpt-4o-transcribe"


def test_bracket_granularities_word_and_segment() -> None:
    request = parse(
        ("response_format", "verbose_json"),
        ("timestamp_granularities[]", "word"),
        ("timestamp_granularities[]", "segment"),
    )
    assert request.response_format is ResponseFormat.VERBOSE_JSON
    assert request.word_timestamps is True
    assert request.segment_timestamps is True


def test_word_granularity_alone_drops_segments() -> None:
    request = parse(("response_format", "verbose_json"), ("timestamp_granularities[]", "word"))
    assert request.word_timestamps is True
    assert request.segment_timestamps is False


def test_plain_key_and_json_array_granularities() -> None:
    plain = parse(("response_format", "verbose_json"), ("timestamp_granularities", "word"))
    assert (plain.word_timestamps, plain.segment_timestamps) == (True, False)
    array = parse(("response_format", "verbose_json"), ("timestamp_granularities", '["word","segment"]'))
    assert (array.word_timestamps, array.segment_timestamps) == (True, True)


def test_include_logprobs_bracket_and_plain() -> None:
    assert parse(("include[]", "logprobs")).logprobs is True
    assert parse(("include", "logprobs"), ("response_format", "json")).logprobs is True
    assert parse(("include", '["logprobs"]')).logprobs is True


def test_string_scalars() -> None:
    request = parse(("temperature", "0.0"), ("stream", "false"), ("prompt", "Glossary: Kubernetes"))
    assert request.temperature == 0.0
    assert request.stream is False
    assert request.prompt == "Glossary: Kubernetes"
    request = parse(("temperature", "0.7"), ("stream", "true"))
    assert request.temperature == pytest.approx(0.7)
    assert request.stream is True
    assert parse(("stream", "True")).stream is True
    assert parse(("stream", "")).stream is False
    assert parse(("temperature", "")).temperature == 0.0


def test_bad_stream_value() -> None:
    error = refuse(("stream", "maybe"))
    assert (error.status, error.param) == (400, "stream")


def test_unknown_extra_fields_are_ignored() -> None:
    request = parse(
        ("foo", "bar"),
        ("extra_thing[]", "x"),
        ("vendor[option]", "1"),
        ("another_file", upload(b"zzz")),
    )
    assert request.model == "whisper-1"
    assert request.file == AUDIO


# --- chunking_strategy ----------------------------------------------------------------------


def test_chunking_server_vad_object_fields() -> None:
    request = parse(
        ("chunking_strategy[type]", "server_vad"),
        ("chunking_strategy[threshold]", "0.25"),
        ("chunking_strategy[silence_duration_ms]", "700"),
        ("chunking_strategy[prefix_padding_ms]", "150"),
    )
    assert request.chunking == ChunkingStrategy(
        type="server_vad", vad=ServerVad(threshold=0.25, silence_duration_ms=700, prefix_padding_ms=150)
    )


def test_chunking_object_defaults() -> None:
    request = parse(("chunking_strategy[type]", "server_vad"))
    assert request.chunking == ChunkingStrategy(
        type="server_vad", vad=ServerVad(threshold=0.5, silence_duration_ms=200, prefix_padding_ms=300)
    )


def test_chunking_as_json_string() -> None:
    request = parse(("chunking_strategy", '{"type": "server_vad", "threshold": 0.8, "prefix_padding_ms": 0}'))
    assert request.chunking == ChunkingStrategy(
        type="server_vad", vad=ServerVad(threshold=0.8, silence_duration_ms=200, prefix_padding_ms=0)
    )


@pytest.mark.parametrize("value", ["auto", '"auto"', " auto "])
def test_chunking_auto(value: str) -> None:
    assert parse(("chunking_strategy", value)).chunking == ChunkingStrategy(type="auto")


@pytest.mark.parametrize("value", ["", "null", "none"])
def test_chunking_unset(value: str) -> None:
    assert parse(("chunking_strategy", value)).chunking is None


@pytest.mark.parametrize("threshold", ["1.5", "-0.1", "nan"])
def test_chunking_threshold_out_of_range(threshold: str) -> None:
    error = refuse(("chunking_strategy[type]", "server_vad"), ("chunking_strategy[threshold]", threshold))
    assert error.status == 400
    assert error.param == "chunking_strategy.threshold"
    assert error.code == "invalid_value"


def test_chunking_threshold_out_of_range_in_json() -> None:
    error = refuse(("chunking_strategy", '{"type":"server_vad","threshold":2}'))
    assert (error.status, error.param) == (400, "chunking_strategy.threshold")


def test_chunking_threshold_not_a_number() -> None:
    error = refuse(("chunking_strategy[threshold]", "loud"))
    assert (error.status, error.param) == (400, "chunking_strategy.threshold")


def test_chunking_bad_type_and_bad_json() -> None:
    error = refuse(("chunking_strategy[type]", "semantic"))
    assert (error.status, error.param, error.code) == (400, "chunking_strategy.type", "unsupported_value")
    error = refuse(("chunking_strategy", "{broken"))
    assert (error.status, error.param) == (400, "chunking_strategy")
    error = refuse(("chunking_strategy", "[1, 2]"))
    assert (error.status, error.param) == (400, "chunking_strategy")


# --- missing / invalid fields ---------------------------------------------------------------


def test_missing_file() -> None:
    error = refuse(file=None)
    assert (error.status, error.param, error.code) == (400, "file", "missing_required_parameter")


def test_file_sent_as_text() -> None:
    error = refuse(("file", "not an upload"), file=None)
    assert (error.status, error.param) == (400, "file")
    assert error.code != "missing_required_parameter"


@pytest.mark.parametrize("model", [None, "", "   "])
def test_missing_model(model: str | None) -> None:
    error = refuse(model=model)
    assert (error.status, error.param, error.code) == (400, "model", "missing_required_parameter")


@pytest.mark.parametrize("fmt", ["xml", "JSON", "mp3"])
def test_bad_response_format(fmt: str) -> None:
    error = refuse(("response_format", fmt))
    assert (error.status, error.param, error.code) == (400, "response_format", "unsupported_value")


@pytest.mark.parametrize("fmt", list(ResponseFormat))
def test_every_response_format_accepted_for_transcription(fmt: ResponseFormat) -> None:
    assert parse(("response_format", fmt.value)).response_format is fmt


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt"])
def test_word_granularity_needs_verbose_json(fmt: str) -> None:
    error = refuse(("response_format", fmt), ("timestamp_granularities[]", "word"))
    assert (error.status, error.param) == (400, "timestamp_granularities")


def test_word_granularity_default_format_refused() -> None:
    error = refuse(("timestamp_granularities[]", "word"))
    assert (error.status, error.param) == (400, "timestamp_granularities")


def test_unknown_granularity() -> None:
    error = refuse(("response_format", "verbose_json"), ("timestamp_granularities[]", "char"))
    assert (error.status, error.param, error.code) == (400, "timestamp_granularities", "unsupported_value")


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt", "verbose_json", "diarized_json"])
def test_logprobs_needs_json(fmt: str) -> None:
    error = refuse(("response_format", fmt), ("include[]", "logprobs"))
    assert (error.status, error.param) == (400, "include")


def test_unknown_include() -> None:
    error = refuse(("include[]", "audio"))
    assert (error.status, error.param, error.code) == (400, "include", "unsupported_value")


@pytest.mark.parametrize("temperature", ["1.01", "-0.5", "hot", "nan", "inf"])
def test_bad_temperature(temperature: str) -> None:
    error = refuse(("temperature", temperature))
    assert (error.status, error.param) == (400, "temperature")


def test_temperature_bounds_inclusive() -> None:
    assert parse(("temperature", "1")).temperature == 1.0
    assert parse(("temperature", "0")).temperature == 0.0


# --- language -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["en", "EN", " en ", "english", "English"])
def test_language_normalised(value: str) -> None:
    assert parse(("language", value)).language == "en"


def test_language_names_and_codes() -> None:
    assert parse(("language", "German")).language == "de"
    assert parse(("language", "yue")).language == "yue"
    assert parse(("language", "")).language is None


@pytest.mark.parametrize("value", ["klingon", "xx", "en-US"])
def test_unknown_language(value: str) -> None:
    error = refuse(("language", value))
    assert (error.status, error.param, error.code) == (400, "language", "unsupported_value")


# --- translation ----------------------------------------------------------------------------


def test_translate_ignores_language_stream_chunking_and_speakers() -> None:
    request = parse(
        ("language", "klingon"),
        ("stream", "true"),
        ("chunking_strategy", "auto"),
        ("known_speaker_names[]", "a"),
        ("known_speaker_references[]", "not a data url"),
        task="translate",
    )
    assert request.task == "translate"
    assert request.language is None
    assert request.stream is False
    assert request.chunking is None
    assert request.known_speakers == ()


def test_translate_refuses_diarized_json() -> None:
    error = refuse(("response_format", "diarized_json"), task="translate")
    assert (error.status, error.param, error.code) == (400, "response_format", "unsupported_value")
    assert "diarized_json" not in error.message.split("use one of:")[1]


def test_translate_accepts_verbose_json() -> None:
    request = parse(("response_format", "verbose_json"), task="translate")
    assert request.response_format is ResponseFormat.VERBOSE_JSON


# --- known speakers -------------------------------------------------------------------------


def data_url(payload: bytes, mime: str = "audio/wav") -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode()}"


def test_known_speakers_decoded() -> None:
    request = parse(
        ("response_format", "diarized_json"),
        ("known_speaker_names[]", "Alice"),
        ("known_speaker_names[]", " Bob "),
        ("known_speaker_references[]", data_url(b"alice-wav")),
        ("known_speaker_references[]", data_url(b"\x00\xffbob", mime="audio/mpeg")),
    )
    assert [(s.name, s.reference) for s in request.known_speakers] == [
        ("Alice", b"alice-wav"),
        ("Bob", b"\x00\xffbob"),
    ]


def test_known_speakers_unequal_counts() -> None:
    error = refuse(
        ("known_speaker_names[]", "Alice"),
        ("known_speaker_names[]", "Bob"),
        ("known_speaker_references[]", data_url(b"a")),
    )
    assert (error.status, error.param) == (400, "known_speaker_references")


def test_known_speakers_names_without_references() -> None:
    error = refuse(("known_speaker_names[]", "Alice"))
    assert error.status == 400


def test_five_known_speakers_refused() -> None:
    items: list[Item] = [("known_speaker_names[]", f"S{i}") for i in range(5)]
    items += [("known_speaker_references[]", data_url(bytes([i]))) for i in range(5)]
    error = refuse(*items)
    assert (error.status, error.param) == (400, "known_speaker_names")


def test_four_known_speakers_accepted() -> None:
    items: list[Item] = [("known_speaker_names[]", f"S{i}") for i in range(4)]
    items += [("known_speaker_references[]", data_url(bytes([i]))) for i in range(4)]
    assert [s.reference for s in parse(*items).known_speakers] == [b"\x00", b"\x01", b"\x02", b"\x03"]


@pytest.mark.parametrize(
    "reference",
    [
        "https://example.com/a.wav",
        "data:audio/wav,plain-not-base64",
        "data:audio/wav;base64,!!!not base64!!!",
        "data:audio/wav;base64,QUJ",
        "QUJD",
    ],
)
def test_bad_data_url(reference: str) -> None:
    error = refuse(("known_speaker_names[]", "Alice"), ("known_speaker_references[]", reference))
    assert (error.status, error.param) == (400, "known_speaker_references")


def test_empty_known_speaker_name() -> None:
    error = refuse(("known_speaker_names[]", "  "), ("known_speaker_references[]", data_url(b"a")))
    assert (error.status, error.param) == (400, "known_speaker_names")


# --- upload size ----------------------------------------------------------------------------


def test_file_over_limit_is_413() -> None:
    with pytest.raises(APIError) as caught:
        parse(file=b"x" * (MAX_UPLOAD + 1))
    assert caught.value.status == 413
    assert caught.value.param == "file"


def test_file_at_limit_is_accepted() -> None:
    assert parse(file=b"x" * MAX_UPLOAD).file == b"x" * MAX_UPLOAD


def test_empty_file() -> None:
    error = refuse(file=b"")
    assert (error.status, error.param) == (400, "file")


# --- hostile input: every field answers 400 with its param, never a crash ------------------

DEEP_JSON = "[" * 10_000 + "]" * 10_000  # 20 kB, deeper than Python's recursion limit
HUGE_NUMBER = "9" * 5_000  # past Python's integer-string digit limit


@pytest.mark.parametrize(
    ("items", "param"),
    [
        ((("chunking_strategy", DEEP_JSON),), "chunking_strategy"),
        ((("chunking_strategy", '{"type": "server_vad", "threshold": ' + HUGE_NUMBER + "}"),), "chunking_strategy"),
        ((("chunking_strategy[silence_duration_ms]", HUGE_NUMBER),), "chunking_strategy.silence_duration_ms"),
        ((("chunking_strategy", '{"type": ' + DEEP_JSON[:2000] + "}"),), "chunking_strategy"),
        ((("chunking_strategy", '{"type": "server_vad", "threshold": [0.5]}'),), "chunking_strategy.threshold"),
        ((("chunking_strategy", '{"type": "server_vad", "threshold": true}'),), "chunking_strategy.threshold"),
        ((("chunking_strategy[threshold]", "٠٫٥"),), "chunking_strategy.threshold"),
        ((("temperature", "٠"),), "temperature"),  # Arabic-Indic zero: float() would take it
        ((("temperature", "0_0"),), "temperature"),
        ((("temperature", HUGE_NUMBER),), "temperature"),
        ((("temperature", "nan"),), "temperature"),
        ((("temperature", "infinity"),), "temperature"),
        ((("num_speakers", "²"),), "num_speakers"),
        ((("num_speakers", HUGE_NUMBER),), "num_speakers"),
        ((("include[]", "[" + '["logprobs"],' * 3 + '"x"]'),), "include"),
        ((("include[]", DEEP_JSON),), "include"),
        ((("timestamp_granularities[]", "x" * 100_000),), "timestamp_granularities"),
        ((("prompt", "p" * 70_000),), "prompt"),
        ((("language", "x" * 100_000),), "language"),
        ((("response_format", "x" * 100_000),), "response_format"),
        ((("stream", "x" * 100_000),), "stream"),
    ],
)
def test_hostile_values_get_400_with_param(items: tuple[Item, ...], param: str) -> None:
    error = refuse(*items)
    assert (error.status, error.param) == (400, param)
    assert len(error.message) < 300  # never echoes the whole input


def test_over_long_model_name_is_refused_without_echo() -> None:
    error = refuse(model="m" * 100_000)
    assert (error.status, error.param) == (400, "model")
    assert len(error.message) < 300


def test_over_long_speaker_name_is_refused() -> None:
    reference = "data:audio/wav;base64," + base64.b64encode(b"x").decode()
    error = refuse(("known_speaker_names[]", "n" * 1_000), ("known_speaker_references[]", reference))
    assert (error.status, error.param) == (400, "known_speaker_names")


def test_plain_ascii_numbers_still_parse() -> None:
    request = parse(("temperature", " 0.25 "), ("chunking_strategy", '{"type": "server_vad", "threshold": 1e-1}'))
    assert request.temperature == 0.25
    assert request.chunking is not None and request.chunking.vad.threshold == pytest.approx(0.1)
