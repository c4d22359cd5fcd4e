"""chunking_strategy on Silero VAD: accuracy, timestamps on the original timeline, silence, limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import openai
import pytest
from openai.types.audio import TranscriptionVerbose

from engines.audio import decode_audio
from tests.audio import SYNTH_SENTENCE, recording, reference, silence, sox, wer
from tests.server import RunningServer

HARVARD = "en_osr_harvard72_8k.wav"


def _energy_speech_mask(path: Path, frame_s: float = 0.02) -> tuple[np.ndarray, float]:
    """Frames whose energy is well above the recording's noise floor: where speech really is."""
    audio = decode_audio(path.read_bytes())
    frame = int(16000 * frame_s)
    frames = audio[: audio.size - audio.size % frame].reshape(-1, frame)
    energy = np.sqrt(np.mean(frames**2, axis=1))
    floor = np.percentile(energy, 10)
    return energy > max(floor * 4, 0.01), frame_s


def _near_speech(mask: np.ndarray, frame_s: float, t: float, slack: float = 0.3) -> bool:
    lo, hi = int(max(0.0, t - slack) / frame_s), int((t + slack) / frame_s) + 1
    return bool(mask[lo:hi].any())


def _verbose(client: openai.OpenAI, path: Path, chunking: object) -> TranscriptionVerbose:
    return client.audio.transcriptions.create(
        model="whisper-1",
        file=path,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        chunking_strategy=cast(Any, chunking),
    )


@pytest.mark.parametrize(
    "chunking",
    ["auto", {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 300, "prefix_padding_ms": 200}],
    ids=["auto", "server_vad"],
)
def test_chunked_real_recording_stays_on_the_original_timeline(client: openai.OpenAI, chunking: object) -> None:
    path = recording(HARVARD)
    result = _verbose(client, path, chunking)
    assert wer(reference(HARVARD), result.text) <= 0.2, result.text
    assert result.duration == pytest.approx(35.5, abs=0.2)
    assert result.segments and result.words
    mask, frame_s = _energy_speech_mask(path)
    # Every word starts and ends next to real speech energy, and the sentences keep their places.
    misplaced = [w for w in result.words if not _near_speech(mask, frame_s, (w.start + w.end) / 2, 0.4)]
    assert len(misplaced) <= len(result.words) // 20, misplaced
    first_speech = int(np.argmax(mask)) * frame_s
    assert abs(result.words[0].start - first_speech) < 0.6, (result.words[0], first_speech)
    last_speech = (len(mask) - int(np.argmax(mask[::-1]))) * frame_s
    assert abs(result.words[-1].end - last_speech) < 0.8, (result.words[-1], last_speech)
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)


def test_chunked_and_unchunked_agree_on_word_times(client: openai.OpenAI) -> None:
    path = recording(HARVARD)
    chunked = _verbose(client, path, "auto")
    plain = client.audio.transcriptions.create(
        model="whisper-1", file=path, response_format="verbose_json", timestamp_granularities=["word"]
    )
    assert plain.words and chunked.words
    plain_times = {w.word.lower().strip(".,"): w.start for w in plain.words}
    shared = [(w.start, plain_times[k]) for w in chunked.words if (k := w.word.lower().strip(".,")) in plain_times]
    assert len(shared) >= 30
    close = sum(abs(a - b) < 0.6 for a, b in shared)
    assert close >= 0.8 * len(shared)


def test_chunked_offset_speech_after_long_silence(client: openai.OpenAI, synth_wav: Path, tmp_path: Path) -> None:
    """Speech 40 s into the file must be timed at ~40 s, not at the start of its chunk."""
    lead = silence(tmp_path / "lead.wav", 40.0)
    speech = tmp_path / "speech16k.wav"
    sox(str(synth_wav), "-r", "16000", "-c", "1", "-b", "16", str(speech))
    combined = tmp_path / "late.wav"
    sox(str(lead), str(speech), str(combined))
    result = _verbose(client, combined, "auto")
    assert wer(SYNTH_SENTENCE, result.text) <= 0.25
    assert result.words
    assert 39.5 <= result.words[0].start <= 41.5, result.words[0]
    srt = client.audio.transcriptions.create(
        model="whisper-1",
        file=combined,
        response_format="srt",
        chunking_strategy="auto",
    )
    assert "00:00:4" in srt.splitlines()[1], srt  # the first cue starts at 00:00:4x


def test_server_vad_as_json_string_and_bracket_fields(server: RunningServer, synth_wav: Path) -> None:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    files = {"file": ("a.wav", synth_wav.read_bytes())}
    as_json = httpx.post(
        f"{server.v1}/audio/transcriptions",
        headers=headers,
        files=files,
        data={"model": "whisper-1", "chunking_strategy": '{"type": "server_vad", "threshold": 0.4}'},
        timeout=120,
    )
    as_brackets = httpx.post(
        f"{server.v1}/audio/transcriptions",
        headers=headers,
        files=files,
        data={"model": "whisper-1", "chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "0.4"},
        timeout=120,
    )
    assert as_json.status_code == as_brackets.status_code == 200
    assert as_json.json()["text"] == as_brackets.json()["text"]
    assert wer(SYNTH_SENTENCE, as_json.json()["text"]) <= 0.2


@pytest.mark.parametrize(
    ("field", "value"),
    [("threshold", 1.5), ("silence_duration_ms", -5), ("prefix_padding_ms", "lots")],
)
def test_server_vad_out_of_range(client: openai.OpenAI, synth_wav: Path, field: str, value: object) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(
            model="whisper-1",
            file=synth_wav,
            chunking_strategy=cast(Any, {"type": "server_vad", field: value}),
        )
    assert info.value.param == f"chunking_strategy.{field}"


@pytest.mark.parametrize("chunking", [None, "auto"], ids=["unchunked", "auto"])
def test_two_minutes_of_silence_is_empty(client: openai.OpenAI, tmp_path: Path, chunking: str | None) -> None:
    quiet = silence(tmp_path / "quiet.wav", 120.0)
    noisy = tmp_path / "room.wav"
    # Room noise about 60 dB below full scale: no speech, but not digital zero either.
    sox("-n", "-r", "16000", "-c", "1", "-b", "16", str(noisy), "synth", "120", "pinknoise", "vol", "0.001")
    for path in (quiet, noisy):
        kwargs: dict[str, Any] = {} if chunking is None else {"chunking_strategy": chunking}
        result = client.audio.transcriptions.create(model="whisper-1", file=path, **kwargs)
        assert result.text == "", (path.name, result.text)
