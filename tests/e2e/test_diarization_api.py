"""Speaker diarization through the real SDK: diarized_json, known speakers, streaming segments."""

from __future__ import annotations

import base64
import io
import wave
from pathlib import Path
from typing import Any, cast

import numpy as np
import openai
import pytest
from openai.types.audio import TranscriptionDiarized

from engines.audio import decode_audio
from tests.audio import recording, wer
from tests.diarization_audio import (
    DIALOGUE,
    FEMALE,
    MALE,
    MEETING,
    REFERENCE_TEXT,
    THIRD,
    Truth,
    conversation,
    pyannote_sample,
    shared_recording,
    speak,
)

DIARIZE = "gpt-4o-transcribe-diarize"
DIALOGUE_TEXT = " ".join(line for _, line in DIALOGUE)


def wav_bytes(samples: np.ndarray) -> bytes:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(pcm)
    return buffer.getvalue()


def data_url(samples: np.ndarray) -> str:
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(samples)).decode()


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voices")


@pytest.fixture(scope="module")
def dialogue(voices: Path) -> tuple[bytes, Truth]:
    audio, truth = conversation(voices, DIALOGUE, seed=7)
    return wav_bytes(audio), truth


def _truth_at(truth: Truth, start: float, end: float) -> dict[str, float]:
    """Seconds of each reference voice inside [start, end]."""
    overlap: dict[str, float] = {}
    for t_start, t_end, voice in truth:
        seconds = min(end, t_end) - max(start, t_start)
        if seconds > 0:
            overlap[voice] = overlap.get(voice, 0.0) + seconds
    return overlap


def _word_attribution(result: TranscriptionDiarized, truth: Truth) -> float:
    """Share of words whose speaker label maps to the voice really speaking there."""
    votes: dict[str, dict[str, int]] = {}
    words: list[tuple[str, str, int]] = []
    for segment in result.segments:
        overlap = _truth_at(truth, segment.start, segment.end)
        voice = max(overlap, key=lambda v: overlap[v]) if overlap else "?"
        count = len(segment.text.split())
        words.append((segment.speaker, voice, count))
        votes.setdefault(segment.speaker, {}).setdefault(voice, 0)
        votes[segment.speaker][voice] += count
    mapping = {label: max(v, key=lambda k: v[k]) for label, v in votes.items()}
    right = sum(count for label, voice, count in words if mapping[label] == voice)
    return right / max(1, sum(count for _, _, count in words))


def test_two_voice_dialogue(client: openai.OpenAI, dialogue: tuple[bytes, Truth]) -> None:
    audio, truth = dialogue
    result = client.audio.transcriptions.create(model=DIARIZE, file=audio, response_format="diarized_json")
    assert isinstance(result, TranscriptionDiarized)
    speakers = [s.speaker for s in result.segments]
    assert set(speakers) == {"A", "B"} and speakers[0] == "A"
    assert [s.id for s in result.segments] == [f"seg_{i}" for i in range(len(result.segments))]
    assert all(s.type == "transcript.text.segment" for s in result.segments)
    assert _word_attribution(result, truth) >= 0.9
    for segment in result.segments:  # never two voices in one segment
        overlap = _truth_at(truth, segment.start + 0.15, segment.end - 0.15)
        assert len([v for v, seconds in overlap.items() if seconds > 0.3]) <= 1, segment
    assert wer(DIALOGUE_TEXT, result.text) <= 0.2, result.text
    assert wer(DIALOGUE_TEXT, " ".join(s.text for s in result.segments)) <= 0.2, result.segments
    assert result.usage is not None and result.usage.type == "tokens"
    assert result.duration == pytest.approx(truth[-1][1], abs=1.0)


def real_file(name: str) -> tuple[bytes, Truth, float]:
    if name == "pyannote":
        audio, truth = pyannote_sample()  # sample.wav inside the pyannote.audio package
    else:
        audio, truth = shared_recording(name)
    return wav_bytes(audio), truth, audio.size / 16000


def test_known_speakers_by_real_voice_and_an_absent_one(client: openai.OpenAI) -> None:
    audio, truth, _ = real_file("diar_pyaudioanalysis_radio4spk")
    samples = decode_audio(audio)
    host = np.concatenate([samples[int(s * 16000) : int(e * 16000)] for s, e, who in truth if who == "speakerB"])
    kennedy = decode_audio(recording("en_jfk.flac").read_bytes())[: 6 * 16000]
    result = client.audio.transcriptions.create(
        model="tiny.en",
        file=audio,
        response_format="diarized_json",
        known_speaker_names=["host", "kennedy"],
        known_speaker_references=[data_url(host[: 6 * 16000]), data_url(kennedy)],
    )
    seen = {s.speaker for s in result.segments}
    assert "host" in seen and "kennedy" not in seen and seen - {"host"} == {"A", "B", "C"}
    for segment in result.segments:
        overlap = _truth_at(truth, segment.start, segment.end)
        if segment.speaker == "host" and overlap:
            assert max(overlap, key=lambda v: overlap[v]) == "speakerB", segment


def test_known_speakers_are_named(client: openai.OpenAI, voices: Path) -> None:
    audio, truth = conversation(voices, MEETING, seed=3)
    references = [data_url(speak(voices, MALE, REFERENCE_TEXT)), data_url(speak(voices, FEMALE, REFERENCE_TEXT))]
    result = client.audio.transcriptions.create(
        model=DIARIZE,
        file=wav_bytes(audio),
        response_format="diarized_json",
        known_speaker_names=["agent", "customer"],
        known_speaker_references=references,
    )
    names = {"agent": MALE, "customer": FEMALE}
    seen = {s.speaker for s in result.segments}
    assert {"agent", "customer"} <= seen
    unknown = seen - {"agent", "customer"}
    assert unknown == {"A"}, seen  # the third voice gets the first free letter
    for segment in result.segments:
        overlap = _truth_at(truth, segment.start, segment.end)
        if segment.speaker in names and overlap:
            assert max(overlap, key=lambda v: overlap[v]) == names[segment.speaker], segment
        if segment.speaker == "A" and overlap:
            assert max(overlap, key=lambda v: overlap[v]) == THIRD, segment


def test_known_speaker_limits(client: openai.OpenAI, voices: Path, dialogue: tuple[bytes, Truth]) -> None:
    audio, _ = dialogue
    clip = data_url(speak(voices, MALE, REFERENCE_TEXT))
    with pytest.raises(openai.BadRequestError) as five:
        client.audio.transcriptions.create(
            model=DIARIZE,
            file=audio,
            response_format="diarized_json",
            known_speaker_names=["a", "b", "c", "d", "e"],
            known_speaker_references=[clip] * 5,
        )
    assert five.value.param == "known_speaker_names"
    short = data_url(np.zeros(16000, dtype=np.float32) + 0.01 * np.sin(np.arange(16000) / 3).astype(np.float32))
    with pytest.raises(openai.BadRequestError) as one_second:
        client.audio.transcriptions.create(
            model=DIARIZE,
            file=audio,
            response_format="diarized_json",
            known_speaker_names=["a"],
            known_speaker_references=[short],
        )
    assert one_second.value.param == "known_speaker_references"
    with pytest.raises(openai.BadRequestError) as unequal:
        client.audio.transcriptions.create(
            model=DIARIZE, file=audio, known_speaker_names=["a", "b"], known_speaker_references=[clip]
        )
    assert unequal.value.param == "known_speaker_references"


def test_streaming_segments(client: openai.OpenAI, dialogue: tuple[bytes, Truth]) -> None:
    audio, _ = dialogue
    events = list(
        client.audio.transcriptions.create(model=DIARIZE, file=audio, response_format="diarized_json", stream=True)
    )
    types = [e.type for e in events]
    assert types[-1] == "transcript.text.done" and types.count("transcript.text.done") == 1
    segments = [e for e in events if e.type == "transcript.text.segment"]
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert segments and deltas
    for delta in deltas:  # each delta names its segment, which follows it
        ids = [s.id for s in segments]
        assert delta.segment_id in ids
        assert types.index("transcript.text.delta") < types.index("transcript.text.segment")
    assert {s.speaker for s in segments} == {"A", "B"}
    done = cast(Any, events[-1])
    assert done.text == "".join(d.delta for d in deltas)
    assert wer(DIALOGUE_TEXT, done.text) <= 0.2, done.text


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_plain_formats_on_the_diarize_model(client: openai.OpenAI, dialogue: tuple[bytes, Truth], fmt: str) -> None:
    audio, _ = dialogue
    result = client.audio.transcriptions.create(model=DIARIZE, file=audio, response_format=cast(Any, fmt))
    text = result if isinstance(result, str) else cast(Any, result).text
    assert wer(DIALOGUE_TEXT, text) <= 0.2, text


def test_diarized_json_on_another_model_also_diarizes(client: openai.OpenAI, dialogue: tuple[bytes, Truth]) -> None:
    audio, _ = dialogue
    result = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="diarized_json")
    assert {s.speaker for s in result.segments} == {"A", "B"}
    assert wer(DIALOGUE_TEXT, result.text) <= 0.2, result.text
    assert result.usage is not None and result.usage.type == "duration"
