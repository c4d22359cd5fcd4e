"""Parse OpenAI's multipart audio form (bracket lists, ``key[sub]`` objects, string scalars).

This is the first of the file request's checks: each field, and the combinations the form alone decides. What
needs the model's route or the model itself is checked by the service; the order is listed in
app/serving/service.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Literal

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from app.api.errors import APIError, invalid_value
from app.api.languages import normalize_language
from app.api.middleware import body_too_large
from app.api.request_rules import check_keywords, check_language_pair, check_languages, check_prompt
from app.serving.protocol import (
    TRANSLATION_FORMATS,
    AudioRequest,
    ChunkingStrategy,
    KnownSpeaker,
    ResponseFormat,
    ServerVad,
)

MAX_KNOWN_SPEAKERS = 4
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
# Bounds on what a field may hold, so that no value makes parsing itself fail or run long:
# JSON nested deeper than Python's recursion limit, integers past its digit limit, huge names.
MAX_JSON_CHARS = 4096
MAX_NAME_CHARS = 256
MAX_NUMBER_CHARS = 64
# Plain ASCII decimals only: float() would also take "1_000", "١٢" (Arabic-Indic digits) and "infinity".
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
SHOWN_CHARS = 80


def shown(value: object) -> str:
    """A value for an error message: repr'd and cut short, so an error never echoes a huge input."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 4] + "…" + text[-3:]


async def json_object(request: Request) -> dict[str, Any]:
    """A request body that must be one JSON object (the admin endpoints, a job submitted by URL)."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        raise invalid_value("body", "The request body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise invalid_value("body", "The request body must be a JSON object.")
    return body


def load_json(param: str, raw: str) -> Any:
    """Parse a JSON field; anything unparseable, too long, too deep or with over-long numbers is a 400."""
    if len(raw) > MAX_JSON_CHARS:
        raise invalid_value(param, f"'{param}' is too long: at most {MAX_JSON_CHARS} characters of JSON.")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # ValueError covers JSONDecodeError and Python's int digit limit
        raise invalid_value(param, f"'{param}' is not valid JSON.") from None


class Fields:
    """The form as plain values: ``x[]`` and ``x`` are one list, ``x[a]`` becomes ``{"a": ...}``."""

    def __init__(self, form: FormData) -> None:
        self.lists: dict[str, list[str | UploadFile]] = {}
        self.objects: dict[str, dict[str, str]] = {}
        for key, value in form.multi_items():
            if key.endswith("[]"):
                key = key[:-2]
            elif "[" in key and key.endswith("]"):
                name, _, sub = key[:-1].partition("[")
                if isinstance(value, str):
                    self.objects.setdefault(name, {})[sub] = value
                continue
            self.lists.setdefault(key, []).append(value)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Fields:
        """A JSON request body read as the same form: lists as repeated values, objects as JSON text."""
        fields = cls(FormData())
        for key, value in body.items():
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            for item in values:
                if isinstance(item, dict):
                    fields.lists.setdefault(key, []).append(json.dumps(item))
                elif isinstance(item, bool):
                    fields.lists.setdefault(key, []).append("true" if item else "false")
                elif isinstance(item, str | int | float):
                    fields.lists.setdefault(key, []).append(str(item))
                else:
                    raise invalid_value(key, f"'{key}' must be a string, number, boolean, list or object.")
        return fields

    def text(self, key: str) -> str | None:
        values = self.lists.get(key)
        if not values:
            return None
        value = values[-1]
        if not isinstance(value, str):
            raise invalid_value(key, f"'{key}' must be a string, not a file.")
        return value

    def texts(self, key: str) -> list[str]:
        values: list[str] = []
        for value in self.lists.get(key, []):
            if not isinstance(value, str):
                raise invalid_value(key, f"'{key}' must be a string, not a file.")
            values.extend(_split_list(key, value))
        return values

    def upload(self, key: str) -> UploadFile | None:
        for value in self.lists.get(key, []):
            if isinstance(value, UploadFile):
                return value
        return None


def _split_list(key: str, value: str) -> list[str]:
    """Some clients send a list as one JSON array string; accept that too (of scalars only)."""
    stripped = value.strip()
    if not stripped.startswith("[") or len(stripped) > MAX_JSON_CHARS:
        return [value]
    try:
        parsed = json.loads(stripped)
    except (ValueError, RecursionError):
        return [value]
    if not isinstance(parsed, list):
        return [value]
    if not all(isinstance(item, str | int | float) for item in parsed):
        raise invalid_value(key, f"'{key}' must be a list of strings.")
    return [str(item) for item in parsed]


def parse_bool(key: str, value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise invalid_value(key, f"'{key}' must be true or false, got {shown(value)}.")


def parse_float(key: str, value: str | None, default: float, *, low: float, high: float) -> float:
    if value is None or value.strip() == "":
        return default
    text = value.strip()
    if len(text) > MAX_NUMBER_CHARS or not _NUMBER.fullmatch(text):
        raise invalid_value(key, f"'{key}' must be a number, got {shown(value)}.")
    number = float(text)
    if not low <= number <= high:
        raise invalid_value(key, f"'{key}' must be between {low:g} and {high:g}, got {number:g}.")
    return number


MAX_SPEAKERS = 32


def _speaker_count(fields: Fields, key: str) -> int | None:
    raw = fields.text(key)
    if raw is None or not raw.strip():
        return None
    value = parse_float(key, raw, 0, low=1, high=MAX_SPEAKERS)
    if value != int(value):
        raise invalid_value(key, f"'{key}' must be a whole number, got {shown(raw)}.")
    return int(value)


def _speaker_counts(fields: Fields) -> tuple[int | None, int | None, int | None]:
    num, low, high = (_speaker_count(fields, k) for k in ("num_speakers", "min_speakers", "max_speakers"))
    if low is not None and high is not None and low > high:
        raise invalid_value("min_speakers", f"min_speakers ({low}) is larger than max_speakers ({high}).")
    return num, low, high


CHANNEL_MODES = ("mix", "separate", "auto")


def _channels(fields: Fields) -> Literal["mix", "separate", "auto"] | None:
    """``channels`` (sent with ``extra_body``): how multi-channel audio is transcribed; unset: the server's default."""
    raw = fields.text("channels")
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value == "mix":
        return "mix"
    if value == "separate":
        return "separate"
    if value == "auto":
        return "auto"
    raise invalid_value(
        "channels", f"Unsupported channels {raw!r}; use one of: {', '.join(CHANNEL_MODES)}.", code="unsupported_value"
    )


def _required_text(fields: Fields, key: str) -> str:
    value = fields.text(key)
    if value is None or not value.strip():
        raise APIError(400, f"Missing required parameter: '{key}'.", code="missing_required_parameter", param=key)
    if len(value.strip()) > MAX_NAME_CHARS:
        raise invalid_value(key, f"'{key}' is too long: at most {MAX_NAME_CHARS} characters.")
    return value.strip()


def _response_format(fields: Fields, allowed: Iterable[ResponseFormat]) -> ResponseFormat:
    raw = fields.text("response_format")
    allowed = list(allowed)
    if raw is None or raw.strip() == "":
        return ResponseFormat.JSON
    try:
        fmt = ResponseFormat(raw.strip())
    except ValueError:
        fmt = None
    if fmt is None or fmt not in allowed:
        names = ", ".join(f.value for f in allowed)
        raise invalid_value(
            "response_format",
            f"Unsupported response_format {shown(raw)}; use one of: {names}.",
            code="unsupported_value",
        )
    return fmt


def _language(fields: Fields) -> str | None:
    raw = fields.text("language")
    if raw is None or not raw.strip():
        return None
    code = normalize_language(raw)
    if code is None:
        raise invalid_value(
            "language",
            f"Unsupported language {shown(raw)}; use an ISO-639-1 code such as 'en'.",
            code="unsupported_value",
        )
    return code


def _chunking(fields: Fields) -> ChunkingStrategy | None:
    obj: dict[str, Any] | None = fields.objects.get("chunking_strategy")
    raw = fields.text("chunking_strategy")
    if obj is None and raw is not None:
        stripped = raw.strip()
        if stripped in ("", "null", "none"):
            return None
        if stripped == "auto":
            return ChunkingStrategy(type="auto")
        parsed = load_json("chunking_strategy", stripped)
        if parsed == "auto":
            return ChunkingStrategy(type="auto")
        if not isinstance(parsed, dict):
            raise invalid_value("chunking_strategy", "chunking_strategy must be 'auto' or a server_vad object.")
        obj = parsed
    if obj is None:
        return None
    kind = obj.get("type", "server_vad")
    if kind not in ("server_vad", "auto"):
        raise invalid_value(
            "chunking_strategy.type", f"Unsupported chunking_strategy type {shown(kind)}.", code="unsupported_value"
        )
    defaults = ServerVad()
    vad = ServerVad(
        threshold=_object_float(obj, "threshold", defaults.threshold, 0.0, 1.0),
        silence_duration_ms=int(_object_float(obj, "silence_duration_ms", defaults.silence_duration_ms, 0, 60_000)),
        prefix_padding_ms=int(_object_float(obj, "prefix_padding_ms", defaults.prefix_padding_ms, 0, 60_000)),
    )
    return ChunkingStrategy(type="server_vad" if kind == "server_vad" else "auto", vad=vad)


def _object_float(obj: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = obj.get(key)
    param = f"chunking_strategy.{key}"
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise invalid_value(param, f"'{param}' must be a number, got {shown(value)}.")
    return parse_float(param, value if isinstance(value, str) else repr(value), default, low=low, high=high)


def _known_speakers(fields: Fields) -> tuple[KnownSpeaker, ...]:
    names = fields.texts("known_speaker_names")
    references = fields.texts("known_speaker_references")
    if not names and not references:
        return ()
    if len(names) != len(references):
        raise invalid_value(
            "known_speaker_references",
            f"known_speaker_names has {len(names)} entries but known_speaker_references has "
            f"{len(references)}; they must pair up one to one.",
        )
    if len(names) > MAX_KNOWN_SPEAKERS:
        raise invalid_value("known_speaker_names", f"At most {MAX_KNOWN_SPEAKERS} known speakers are supported.")
    speakers = []
    for index, (name, reference) in enumerate(zip(names, references, strict=True)):
        if not name.strip():
            raise invalid_value("known_speaker_names", f"known_speaker_names[{index}] is empty.")
        if len(name.strip()) > MAX_NAME_CHARS:
            raise invalid_value(
                "known_speaker_names", f"known_speaker_names[{index}] is longer than {MAX_NAME_CHARS} characters."
            )
        speakers.append(KnownSpeaker(name=name.strip(), reference=_data_url_bytes(reference, index)))
    return tuple(speakers)


def _data_url_bytes(url: str, index: int) -> bytes:
    param = "known_speaker_references"
    header, sep, payload = url.strip().partition(",")
    if not sep or not header.startswith("data:") or ";base64" not in header:
        raise invalid_value(
            param, f"known_speaker_references[{index}] must be a base64 data URL (data:audio/...;base64,...)."
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_value(param, f"known_speaker_references[{index}] is not valid base64.") from None


def required_upload(fields: Fields) -> UploadFile:
    upload = fields.upload("file")
    if upload is None:
        if fields.lists.get("file"):
            raise invalid_value("file", "'file' must be sent as a file upload in multipart/form-data.")
        raise APIError(400, "Missing required parameter: 'file'.", code="missing_required_parameter", param="file")
    return upload


async def parse_audio_form(form: FormData, *, task: str, max_upload_bytes: int) -> AudioRequest:
    """Validate the form of /audio/transcriptions or /audio/translations into an AudioRequest."""
    fields = Fields(form)
    upload = required_upload(fields)
    request = parse_audio_fields(fields, task=task)
    data = await upload.read()
    if len(data) > max_upload_bytes:
        raise body_too_large(max_upload_bytes)
    if not data:
        raise invalid_value("file", "The audio file is empty.")
    return replace(request, file=data)


def parse_audio_fields(fields: Fields, *, task: str) -> AudioRequest:
    """Every field of the request but the audio (``file`` is left empty)."""
    model = _required_text(fields, "model")
    translate = task == "translate"
    response_format = _response_format(fields, TRANSLATION_FORMATS if translate else ResponseFormat)
    granularities = set(fields.texts("timestamp_granularities")) or {"segment"}
    unknown = granularities - {"segment", "word"}
    if unknown:
        raise invalid_value(
            "timestamp_granularities",
            f"Unsupported timestamp granularity {shown(sorted(unknown)[0])}; use 'segment' and/or 'word'.",
            code="unsupported_value",
        )
    if "word" in granularities and response_format is not ResponseFormat.VERBOSE_JSON:
        raise invalid_value(
            "timestamp_granularities",
            "timestamp_granularities 'word' is only supported with response_format 'verbose_json'.",
        )
    include = set(fields.texts("include"))
    if include - {"logprobs"}:
        raise invalid_value(
            "include",
            f"Unsupported include value {shown(sorted(include - {'logprobs'})[0])}.",
            code="unsupported_value",
        )
    logprobs = "logprobs" in include
    if logprobs and response_format is not ResponseFormat.JSON:
        raise invalid_value("include", "include[]=logprobs is only supported with response_format 'json'.")
    explicit_granularities = bool(fields.texts("timestamp_granularities"))
    num_speakers, min_speakers, max_speakers = (None, None, None) if translate else _speaker_counts(fields)
    language = None if translate else _language(fields)
    languages = () if translate else check_languages(fields.texts("languages"))
    check_language_pair(language, languages)
    keywords = check_keywords(fields.texts("keywords"))
    prompt = check_prompt(fields.text("prompt"))
    return AudioRequest(
        task="translate" if translate else "transcribe",
        file=b"",
        model=model,
        response_format=response_format,
        language=language,
        prompt=prompt,
        temperature=parse_float("temperature", fields.text("temperature"), 0.0, low=0.0, high=1.0),
        word_timestamps="word" in granularities,
        segment_timestamps="segment" in granularities or not explicit_granularities,
        logprobs=logprobs,
        stream=False if translate else parse_bool("stream", fields.text("stream")),
        chunking=None if translate else _chunking(fields),
        known_speakers=() if translate else _known_speakers(fields),
        num_speakers=num_speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        keywords=keywords,
        languages=languages,
        channels=None if translate else _channels(fields),
    )
