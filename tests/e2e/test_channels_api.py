"""One speaker per channel through the real SDK: the stereo LibriSpeech file and a generated call with overlap."""

from __future__ import annotations

import io
import shutil
import wave
from pathlib import Path
from typing import Any, cast

import numpy as np
import openai
import pytest
from openai.types.audio import TranscriptionDiarized

from tests.audio import recording, reference, wer
from tests.diarization_audio import FEMALE, MALE, REFERENCE_TEXT, speak, two_voice_call
from tests.e2e.test_diarization_api import data_url

if shutil.which("espeak-ng") is None:
    pytest.skip("espeak-ng is not installed", allow_module_level=True)

STEREO = "en_stereo_2ch_librispeech.wav"


def stereo_wav(samples: np.ndarray) -> bytes:
    pcm = (np.clip(samples.T, -1, 1) * 32767).astype("<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(samples.shape[0])
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(pcm)
    return buffer.getvalue()


def by_speaker(result: TranscriptionDiarized) -> dict[str, str]:
    texts: dict[str, str] = {}
    for segment in result.segments:
        texts[segment.speaker] = (texts.get(segment.speaker, "") + " " + segment.text).strip()
    return texts


def refs() -> tuple[str, str]:
    path = recording(STEREO)
    return path.with_suffix(".ch0.txt").read_text().strip(), path.with_suffix(".ch1.txt").read_text().strip()


def test_each_channel_of_the_stereo_recording_is_transcribed_alone(client: openai.OpenAI) -> None:
    audio = recording(STEREO).read_bytes()
    left, right = refs()
    for mode in ("separate", "auto"):
        result = client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="diarized_json", extra_body={"channels": mode}
        )
        texts = by_speaker(result)
        assert set(texts) == {"A", "B"}, (mode, texts)  # channel 1 is A, channel 2 is B
        print(f"\nchannels={mode}: WER {wer(left, texts['A']):.1%} / {wer(right, texts['B']):.1%}")
        assert wer(left, texts["A"]) <= 0.1 and wer(right, texts["B"]) <= 0.1
        assert [s.start for s in result.segments] == sorted(s.start for s in result.segments)
    mixed = client.audio.transcriptions.create(model="whisper-1", file=audio, extra_body={"channels": "mix"})
    print(f"down-mixed: WER {wer(left + ' ' + right, mixed.text):.1%} against both channels")


def test_every_format_gets_both_channels(client: openai.OpenAI) -> None:
    audio = recording(STEREO).read_bytes()
    extra = {"channels": "separate"}
    srt = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt", extra_body=extra)
    assert "A: " in srt and "B: " in srt and srt.startswith("1\n")
    vtt = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="vtt", extra_body=extra)
    assert "<v A>" in vtt and "<v B>" in vtt
    verbose = client.audio.transcriptions.create(
        model="whisper-1", file=audio, response_format="verbose_json", extra_body=extra
    )
    assert [s.id for s in verbose.segments or []] == list(range(len(verbose.segments or [])))
    assert "horizon" in verbose.text.lower() and "wizard" in verbose.text.lower()
    text = client.audio.transcriptions.create(model="whisper-1", file=audio, extra_body=extra).text
    assert "horizon" in text.lower() and "wizard" in text.lower()
    events = list(
        client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="diarized_json", stream=True, extra_body=extra
        )
    )
    assert {cast(Any, e).speaker for e in events if e.type == "transcript.text.segment"} == {"A", "B"}
    assert events[-1].type == "transcript.text.done"


def test_a_mono_signal_copied_into_both_channels_is_left_alone(client: openai.OpenAI) -> None:
    audio = recording("en_jfk.flac").read_bytes()  # stereo, the same signal twice
    result = client.audio.transcriptions.create(
        model="whisper-1", file=audio, response_format="diarized_json", extra_body={"channels": "auto"}
    )
    assert wer(reference("en_jfk.flac"), result.text) <= 0.15
    assert len(result.segments) == len({s.id for s in result.segments})  # one transcript, not one per channel


@pytest.fixture(scope="module")
def call(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[str], Path]:
    voices = tmp_path_factory.mktemp("call-voices")
    stereo, texts = two_voice_call(voices, overlap=1.5)
    return stereo_wav(stereo), texts, voices


def test_generated_call_with_overlap_and_known_speakers(
    client: openai.OpenAI, call: tuple[bytes, list[str], Path]
) -> None:
    audio, (agent_text, customer_text), voices = call
    result = client.audio.transcriptions.create(
        model="gpt-4o-transcribe-diarize",
        file=audio,
        response_format="diarized_json",
        known_speaker_names=["customer", "agent"],
        known_speaker_references=[
            data_url(speak(voices, FEMALE, REFERENCE_TEXT)),
            data_url(speak(voices, MALE, REFERENCE_TEXT)),
        ],
        extra_body={"channels": "separate"},
    )
    texts = by_speaker(result)
    assert set(texts) == {"agent", "customer"}, texts
    print(f"\ngenerated call: WER {wer(agent_text, texts['agent']):.1%} / {wer(customer_text, texts['customer']):.1%}")
    assert wer(agent_text, texts["agent"]) <= 0.3 and wer(customer_text, texts["customer"]) <= 0.3  # espeak voices
    agent_end = max(s.end for s in result.segments if s.speaker == "agent")
    customer_start = min(s.start for s in result.segments if s.speaker == "customer")
    assert customer_start < agent_end  # the overlap survives: both voices were transcribed through it


def test_bad_channels_value(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.audio.transcriptions.create(
            model="whisper-1", file=recording(STEREO).read_bytes(), extra_body={"channels": "left"}
        )
    assert bad.value.param == "channels"
    body = cast(Any, bad.value.body)
    assert body["code"] == "unsupported_value"
