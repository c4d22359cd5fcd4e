"""One speaker per channel: the `channels` field, decoding channels apart, auto detection, naming, time-order merge."""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import Iterator

import numpy as np
import pytest
from starlette.datastructures import FormData, UploadFile

from app.api.errors import APIError
from app.api.form import parse_audio_form
from engines.audio import SAMPLE_RATE, AudioFile
from engines.channels import ChannelRun, channel_names, check_channels, split_blocks
from engines.diarized import SpeakerSegment
from engines.types import Segment, TranscriptInfo


def channels_field(value: str | None) -> str | None:
    items: list[tuple[str, str | UploadFile]] = [("file", UploadFile(io.BytesIO(b"RIFF"), filename="upload"))]
    items.append(("model", "whisper-1"))
    if value is not None:
        items.append(("channels", value))
    request = asyncio.run(parse_audio_form(FormData(items), task="transcribe", max_upload_bytes=100))
    return request.channels


def test_the_channels_field() -> None:
    assert channels_field(None) is None
    assert channels_field("separate") == "separate"
    assert channels_field(" Auto ") == "auto"
    assert channels_field("mix") == "mix"
    with pytest.raises(APIError) as bad:
        channels_field("both")
    assert bad.value.status == 400 and bad.value.param == "channels"


def tone(seconds: float, freq: float, *, level: float = 0.3, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.02
    return (level * np.sin(2 * np.pi * freq * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t)) + noise).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def call() -> np.ndarray:
    """Two 'talkers' taking turns, one per channel, with a short overlap and a faint echo."""
    left = np.concatenate([tone(2, 220), silence(1.5), tone(1.5, 230, seed=1)])
    right = np.concatenate([silence(1.8), tone(2, 330, seed=2), silence(1.2)])
    return np.stack([left + 0.01 * right, right + 0.01 * left])


def test_auto_detection() -> None:
    assert check_channels(call()).separate
    mono = tone(4, 200)
    assert not check_channels(np.stack([mono, mono])).separate  # a copy
    assert not check_channels(np.stack([mono, 0.5 * mono])).separate  # panned
    assert not check_channels(np.stack([mono, silence(4)])).separate  # one talker only
    assert not check_channels(mono[None]).separate


def stereo_wav(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    pcm = (np.clip(samples.T, -1, 1) * 32767).astype("<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(samples.shape[0])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue()


def test_audio_file_decodes_channels_apart_and_can_be_read_again() -> None:
    data = call()
    audio = AudioFile(stereo_wav(data))
    assert audio.channel_count == 2
    mixed = audio.samples()
    blocks = list(audio.channel_blocks(1.0))
    assert [b.shape[1] for b in blocks[:-1]] == [SAMPLE_RATE] * (len(blocks) - 1)
    joined = np.concatenate(blocks, axis=1)
    assert joined.shape == data.shape
    assert np.abs(joined - data).max() < 1e-3
    assert np.abs(joined.mean(axis=0) - mixed).max() < 1e-3  # the mono path averages the channels
    assert np.array_equal(audio.samples(), mixed)  # a third pass still decodes from the start
    per_channel = [np.concatenate(list(blocks)) for blocks in split_blocks(audio.channel_blocks(1.0), 2)]
    assert np.abs(per_channel[1] - data[1]).max() < 1e-3


def test_channel_names_follow_channel_order_unless_a_voice_matches() -> None:
    assert channel_names(channels=3, threshold=0.5) == ["A", "B", "C"]
    x, y = np.array([1, 0], dtype=np.float32), np.array([0, 1], dtype=np.float32)
    names = channel_names(
        {0: x, 1: y}, {"agent": y, "stranger": np.array([0.5, -0.866], dtype=np.float32)}, channels=2, threshold=0.6
    )
    assert names == ["A", "agent"]


class FakeRun:
    """A channel's run: fixed segments."""

    def __init__(self, starts: list[float], text: str) -> None:
        self._segments = [
            Segment(i, 0, start, start + 0.5, f" {text}{i}", [1, 2], 0.0, -0.1, 1.0, 0.0)
            for i, start in enumerate(starts)
        ]
        self.pulled = 0

    @property
    def info(self) -> TranscriptInfo:
        return TranscriptInfo("transcribe", "en", 0.9, 5.0, 3, 250)

    def segments(self) -> Iterator[Segment]:
        for segment in self._segments:
            self.pulled += 1
            yield segment


def test_channel_run_merges_segments_in_time_order() -> None:
    left, right = FakeRun([0.0, 2.0, 4.0], "left"), FakeRun([1.0, 1.5, 5.0], "right")
    run = ChannelRun([left, right], ["agent", "B"], speakers=True)  # type: ignore[list-item]
    pieces = list(run.segments())
    assert all(isinstance(p, SpeakerSegment) for p in pieces)
    assert [(p.start, p.speaker) for p in pieces if isinstance(p, SpeakerSegment)] == [
        (0.0, "agent"),
        (1.0, "B"),
        (1.5, "B"),
        (2.0, "agent"),
        (4.0, "agent"),
        (5.0, "B"),
    ]
    assert [p.id for p in pieces] == [f"seg_{i}" for i in range(6)]
    assert run.info.duration == 5.0 and run.info.audio_tokens == 500  # both channels were decoded
    plain = list(ChannelRun([FakeRun([0.0, 3.0], "l"), FakeRun([1.0], "r")], ["A", "B"], speakers=False).segments())  # type: ignore[list-item]
    assert [(s.id, s.text) for s in plain if isinstance(s, Segment)] == [(0, " l0"), (1, " r0"), (2, " l1")]


def test_channel_run_streams_without_reading_a_whole_channel_first() -> None:
    left, right = FakeRun([float(i) for i in range(100)], "l"), FakeRun([float(i) + 0.5 for i in range(100)], "r")
    segments = ChannelRun([left, right], ["A", "B"], speakers=True).segments()  # type: ignore[list-item]
    for _ in range(4):
        next(segments)
    assert left.pulled <= 3 and right.pulled <= 3


def test_request_field_wins_over_the_server_default() -> None:
    from app.serving.channels import channel_mode, wants_separate
    from app.serving.protocol import AudioRequest
    from app.settings import Settings

    settings = Settings(models={"base": {"source": "embedded:base"}}, default_channels="auto")
    stereo = stereo_wav(call())
    mono_copy = stereo_wav(np.stack([tone(3, 200), tone(3, 200)]))

    def request(channels: str | None, task: str = "transcribe") -> AudioRequest:
        return AudioRequest(task=task, file=stereo, model="base", channels=channels)  # type: ignore[arg-type]

    assert channel_mode(request(None), settings) == "auto"
    assert channel_mode(request("mix"), settings) == "mix"
    assert channel_mode(request(None, task="translate"), settings) == "mix"
    assert wants_separate(request(None), settings, AudioFile(stereo))
    assert not wants_separate(request(None), settings, AudioFile(mono_copy))
    assert not wants_separate(request("mix"), settings, AudioFile(stereo))
    assert wants_separate(request("separate"), Settings(), AudioFile(mono_copy))  # asked for: no detection
    assert not wants_separate(request("separate"), Settings(), AudioFile(stereo_wav(tone(2, 200)[None])))


def test_logprobs_are_refused_with_channels_separate_or_speakers_before_any_work() -> None:
    from app.serving.errors import InvalidInput
    from app.serving.protocol import AudioRequest
    from app.serving.service import check_combinations

    def request(channels: str | None, logprobs: bool = True) -> AudioRequest:
        return AudioRequest(task="transcribe", file=b"x", model="base", logprobs=logprobs, channels=channels)  # type: ignore[arg-type]

    with pytest.raises(InvalidInput, match="channels=separate") as caught:
        check_combinations(request("separate"), speakers=False)
    assert caught.value.param == "include"
    with pytest.raises(InvalidInput, match="speaker diarization"):
        check_combinations(request(None), speakers=True)
    check_combinations(request("auto"), speakers=False)  # auto falls back to mixing instead
    check_combinations(request("separate", logprobs=False), speakers=True)
