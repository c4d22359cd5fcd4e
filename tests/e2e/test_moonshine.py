"""A second engine family through the seam: Moonshine base (English) served through the real SDK,
in every path its capabilities allow, and a clear 400 (or session error) for what it cannot do."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.audio import TranscriptionDiarized

from tests.audio import LONG_TEXT, SYNTH_SENTENCE, espeak, recording, reference, repeat_audio, shared_audio_dir, wer
from tests.diarization_audio import DIALOGUE, conversation, two_voice_call
from tests.e2e.test_channels_api import by_speaker, stereo_wav
from tests.e2e.test_diarization_api import _word_attribution, wav_bytes
from tests.e2e.test_realtime import completed, events_until, pcm24, session, stream
from tests.server import RunningServer, sdk_client, served

if shutil.which("espeak-ng") is None:
    pytest.skip("espeak-ng is not installed", allow_module_level=True)

MODEL = "moonshine-base"
CONFIG = {
    "models": {MODEL: {"engine": "moonshine", "source": "embedded:base-en", "max_concurrency": 2}},
    "aliases": {"moonshine-diarize": {"model": MODEL, "usage": "tokens", "diarize": True}},
    "preload_models": [MODEL],
    "realtime": {"default_model": MODEL},
}


@pytest.fixture(scope="module")
def ms_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from served(tmp_path_factory.mktemp("moonshine"), CONFIG)


@pytest.fixture(scope="module")
def ms(ms_server: RunningServer) -> openai.OpenAI:
    return sdk_client(ms_server)


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 50 s: several of the engine's 20-s windows."""
    folder = tmp_path_factory.mktemp("ms-long")
    return repeat_audio(espeak(folder / "one.wav", LONG_TEXT), folder / "long.wav", 2, gap_seconds=0.8)


def test_listed_and_loaded_as_moonshine(ms: openai.OpenAI, ms_server: RunningServer, synth_wav: Path) -> None:
    assert MODEL in [model.id for model in ms.models.list()]
    ms.audio.transcriptions.create(model=MODEL, file=synth_wav)
    assert f"loaded model {MODEL} (moonshine)" in ms_server.log()


def test_every_text_format(ms: openai.OpenAI, synth_wav: Path) -> None:
    plain = ms.audio.transcriptions.create(model=MODEL, file=synth_wav)
    assert wer(SYNTH_SENTENCE, plain.text) <= 0.2, plain.text
    assert plain.usage is not None and plain.usage.type == "duration"
    text = ms.audio.transcriptions.create(model=MODEL, file=synth_wav, response_format="text")
    assert wer(SYNTH_SENTENCE, text) <= 0.2
    srt = ms.audio.transcriptions.create(model=MODEL, file=synth_wav, response_format="srt")
    assert srt.startswith("1\n00:00:0") and " --> " in srt and wer(SYNTH_SENTENCE, srt.split("\n", 2)[2]) <= 0.2
    vtt = ms.audio.transcriptions.create(model=MODEL, file=synth_wav, response_format="vtt")
    assert vtt.startswith("WEBVTT") and " --> " in vtt
    verbose = ms.audio.transcriptions.create(model=MODEL, file=synth_wav, response_format="verbose_json")
    assert verbose.language == "english" and verbose.duration == pytest.approx(6.0, abs=2.5)
    segments = verbose.segments or []
    assert segments and all(0 <= s.start < s.end <= verbose.duration + 0.01 for s in segments)
    assert wer(SYNTH_SENTENCE, verbose.text) <= 0.2


def test_long_audio_is_decoded_in_windows_with_times(ms: openai.OpenAI, long_speech: Path) -> None:
    verbose = ms.audio.transcriptions.create(model=MODEL, file=long_speech, response_format="verbose_json")
    segments = verbose.segments or []
    assert len(segments) >= 3  # no window longer than 20 s
    assert all(b.start >= a.end for a, b in itertools.pairwise(segments))
    assert wer(f"{LONG_TEXT} {LONG_TEXT}", verbose.text) <= 0.2, verbose.text


def test_logprobs(ms: openai.OpenAI, synth_wav: Path) -> None:
    result = ms.audio.transcriptions.create(model="moonshine-base", file=synth_wav, include=["logprobs"])
    logprobs = result.logprobs or []
    assert len(logprobs) >= 10 and all(lp.logprob is not None and lp.logprob <= 0 for lp in logprobs)
    assert "".join(lp.token or "" for lp in logprobs).strip() == result.text.strip()


def test_streamed_deltas_join_to_the_text(ms: openai.OpenAI, long_speech: Path) -> None:
    events = list(ms.audio.transcriptions.create(model=MODEL, file=long_speech, stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = events[-1]
    assert done.type == "transcript.text.done" and len(deltas) >= 3
    assert "".join(deltas).strip() == done.text.strip()


def test_vad_chunking(ms: openai.OpenAI, long_speech: Path) -> None:
    chunkings: list[Any] = ["auto", {"type": "server_vad", "silence_duration_ms": 500}]
    for chunking in chunkings:
        result = ms.audio.transcriptions.create(model=MODEL, file=long_speech, chunking_strategy=chunking)
        # espeak's voice is far from Moonshine's training data: a few words go wrong per chunk
        assert wer(f"{LONG_TEXT} {LONG_TEXT}", result.text) <= 0.3, (chunking, result.text)


def test_diarization_transcribes_each_speaker_turn(ms: openai.OpenAI, tmp_path: Path) -> None:
    audio, truth = conversation(tmp_path, DIALOGUE, seed=7)
    result = ms.audio.transcriptions.create(model=MODEL, file=wav_bytes(audio), response_format="diarized_json")
    assert isinstance(result, TranscriptionDiarized)
    assert {s.speaker for s in result.segments} == {"A", "B"}
    assert _word_attribution(result, truth) >= 0.9
    assert wer(" ".join(text for _, text in DIALOGUE), result.text) <= 0.2, result.text
    alias = ms.audio.transcriptions.create(model="moonshine-diarize", file=wav_bytes(audio), response_format="srt")
    assert "A: " in alias and "B: " in alias


def test_one_speaker_per_channel(ms: openai.OpenAI, tmp_path: Path) -> None:
    stereo, texts = two_voice_call(tmp_path)
    result = ms.audio.transcriptions.create(
        model=MODEL, file=stereo_wav(stereo), response_format="diarized_json", extra_body={"channels": "separate"}
    )
    spoken = by_speaker(result)
    assert set(spoken) == {"A", "B"}
    assert wer(texts[0], spoken["A"]) <= 0.35 and wer(texts[1], spoken["B"]) <= 0.35, spoken


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"timestamp_granularities[]": "word", "response_format": "verbose_json"}, "timestamp_granularities"),
        ({"language": "fr"}, "language"),
        ({"prompt": "Acme, Zorblax"}, "prompt"),
        ({"keywords[]": "Zorblax"}, "keywords"),
    ],
)
def test_what_moonshine_cannot_do_is_a_400_naming_option_and_model(
    ms_server: RunningServer, synth_wav: Path, extra: dict[str, str], param: str
) -> None:
    response = httpx.post(
        f"{ms_server.v1}/audio/transcriptions",
        headers={"Authorization": f"Bearer {ms_server.api_key}"},
        data={"model": MODEL, **extra},
        files={"file": ("s.wav", synth_wav.read_bytes(), "audio/wav")},
        timeout=120,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and MODEL in error["message"] and error["type"] == "invalid_request_error"


def test_translation_is_a_400(ms: openai.OpenAI, synth_wav: Path) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ms.audio.translations.create(model=MODEL, file=synth_wav)
    body: Any = caught.value.body
    assert body["param"] == "model" and "cannot translate" in body["message"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the SDK's realtime client needs asyncio


@pytest.mark.anyio
async def test_a_realtime_session(ms_server: RunningServer, synth_wav: Path) -> None:
    client = openai.AsyncOpenAI(base_url=ms_server.v1, api_key=ms_server.api_key, max_retries=0)
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        await conn.session.update(session=session(transcription={"model": MODEL, "prompt": "Zorblax"}))
        error = await events_until(conn, lambda ev: any(e.type == "error" for e in ev), timeout=60)
        assert error[-1].error.param == "session.audio.input.transcription.prompt"
        await conn.session.update(session=session(transcription={"model": MODEL, "language": "en"}))
        updated = await events_until(conn, lambda ev: any(e.type == "session.updated" for e in ev), timeout=60)
        assert updated
        sender = asyncio.create_task(stream(conn, pcm24(synth_wav) * 2, chunk_ms=50, speed=2.0))
        events = await events_until(conn, lambda ev: len(completed(ev)) >= 2)
        await sender
    turns = completed(events)
    for turn in turns[:2]:
        assert wer(SYNTH_SENTENCE, turn.transcript) <= 0.25, turn.transcript
        assert turn.usage.type == "duration" and turn.usage.seconds > 0  # a local model id: duration usage
    deltas = "".join(
        e.delta for e in events if e.type.endswith("transcription.delta") and e.item_id == turns[0].item_id
    )
    assert deltas == turns[0].transcript


def test_shared_english_recording(ms: openai.OpenAI) -> None:
    if shared_audio_dir() is None:
        pytest.skip("the shared recordings are not available")
    result = ms.audio.transcriptions.create(model=MODEL, file=recording("en_jfk.flac"))
    assert wer(reference("en_jfk.flac"), result.text) <= 0.15, result.text
