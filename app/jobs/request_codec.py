"""A job's request fields as JSON, so that any worker can rebuild the request the submitter sent."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, replace
from typing import Any

from app.serving.protocol import AudioRequest, ChunkingStrategy, KnownSpeaker, ResponseFormat, ServerVad


def encode_request(request: AudioRequest) -> str:
    """Every field but the audio itself."""
    fields = asdict(replace(request, file=b"", known_speakers=()))
    del fields["file"]
    fields["known_speakers"] = [
        {"name": speaker.name, "reference": base64.b64encode(speaker.reference).decode("ascii")}
        for speaker in request.known_speakers
    ]
    return json.dumps(fields, ensure_ascii=False)


def decode_request(encoded: str, audio: bytes) -> AudioRequest:
    fields: dict[str, Any] = json.loads(encoded)
    chunking = fields.pop("chunking")
    speakers = fields.pop("known_speakers")
    return AudioRequest(
        **{
            **fields,
            "file": audio,
            "response_format": ResponseFormat(fields["response_format"]),
            "chunking": None
            if chunking is None
            else ChunkingStrategy(type=chunking["type"], vad=ServerVad(**chunking["vad"])),
            "known_speakers": tuple(
                KnownSpeaker(name=speaker["name"], reference=base64.b64decode(speaker["reference"]))
                for speaker in speakers
            ),
            "keywords": tuple(fields["keywords"]),
            "languages": tuple(fields["languages"]),
        }
    )
