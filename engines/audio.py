"""Decode uploaded audio bytes of any container into 16 kHz mono float32 samples with PyAV."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from engines.errors import AudioDecodeError, AudioTooLongError

# Whisper, Silero and the diarizers all work on 16 kHz mono; every other module imports this one.
SAMPLE_RATE = 16_000

Samples = npt.NDArray[np.float32]
Channels = npt.NDArray[np.float32]  # (channels, samples)

_FAILURES = (av.FFmpegError, ValueError, UnicodeDecodeError)


class AudioFile:
    """An upload opened once: demuxed up front (its length known before any decoding), decoded lazily.

    The demuxed packets are compressed, so holding them costs about the upload's size; the decoded
    samples are produced block by block and never held whole unless asked for with ``samples()``.
    """

    def __init__(self, data: bytes, *, max_duration: float | None = None) -> None:
        if not data:
            raise AudioDecodeError("The audio file is empty.")
        self.max_duration = max_duration
        try:
            self._container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
        except _FAILURES as exc:
            raise AudioDecodeError(f"The audio file could not be decoded: {_reason(exc)}") from exc
        try:
            if not self._container.streams.audio:
                raise AudioDecodeError("The audio file could not be decoded: it has no audio stream.")
            self._stream = self._container.streams.audio[0]
            _check_declared_duration(self._container, self._stream, max_duration)
            self._packets, demuxed = self._demux()
        except BaseException:
            self.close()
            raise
        # Packets without durations (rare containers): the length is known only once decoded.
        self.duration: float | None = demuxed
        if demuxed is not None and demuxed <= 0:
            self.close()
            raise AudioDecodeError("The audio file contains no audio samples.")

    def _demux(self) -> tuple[list[av.Packet[Any]], float | None]:
        packets: list[av.Packet[Any]] = []
        total: float | None = 0.0
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                packets.append(packet)
                if total is None:
                    continue
                if packet.duration is None or packet.time_base is None:
                    total = None
                    continue
                total += float(packet.duration * packet.time_base)
                if self.max_duration is not None and total > self.max_duration + 0.5:
                    raise AudioTooLongError(total, self.max_duration)
        except _FAILURES as exc:
            if not packets:
                raise AudioDecodeError(f"The audio file could not be decoded: {_reason(exc)}") from exc
            # A truncated tail after real audio: keep what demuxed, as ffmpeg itself does.
        if not packets:
            raise AudioDecodeError("The audio file contains no audio samples.")
        return packets, total

    @property
    def channel_count(self) -> int:
        """Channels of the audio stream as stored (the decoded samples are down-mixed unless asked per channel)."""
        return max(1, int(self._stream.codec_context.channels or 1))

    def chunks(self, sample_rate: int = SAMPLE_RATE) -> Iterator[Samples]:
        """The decoded samples in the decoder's own frame sizes; the length limit is enforced as they come."""
        # Integer output makes FFmpeg average the channels when down-mixing; float output would
        # sum them at -3 dB each and overshoot [-1, 1] on correlated stereo.
        for chunk in self._decode(sample_rate, "mono"):
            yield chunk.reshape(-1)

    def channel_chunks(self, sample_rate: int = SAMPLE_RATE) -> Iterator[Channels]:
        """Like ``chunks``, but every channel apart: arrays of shape (channels, samples)."""
        layout = self._stream.codec_context.layout.name if self.channel_count > 1 else "mono"
        yield from self._decode(sample_rate, layout)

    def _decode(self, sample_rate: int, layout: str) -> Iterator[Channels]:
        """One decoding pass from the first packet (each call starts over: the file can be read again)."""
        codec = self._stream.codec_context
        codec.flush_buffers()  # a previous pass may have drained or abandoned the decoder
        resampler = av.AudioResampler(format="s16", layout=layout, rate=sample_rate)
        limit = None if self.max_duration is None else int(self.max_duration * sample_rate)
        total = 0
        try:
            for packet in [*self._packets, None]:
                for frame in codec.decode(packet):
                    frame.pts = None  # the resampler re-times frames; odd input pts would only confuse it
                    for out in resampler.resample(frame):
                        chunk = _to_float_channels(out)
                        total += chunk.shape[1]
                        if limit is not None and total > limit:
                            assert self.max_duration is not None
                            raise AudioTooLongError(total / sample_rate, self.max_duration)
                        yield chunk
            for out in resampler.resample(None):
                total += out.samples
                yield _to_float_channels(out)
        except _FAILURES as exc:
            if total == 0:
                raise AudioDecodeError(f"The audio file could not be decoded: {_reason(exc)}") from exc
            # A corrupt tail after real audio: keep what decoded.
        if total == 0:
            raise AudioDecodeError("The audio file contains no audio samples.")

    def blocks(self, block_seconds: float, sample_rate: int = SAMPLE_RATE) -> Iterator[Samples]:
        """Blocks of ``block_seconds`` (the last may be shorter): memory stays per block."""
        block = max(1, int(block_seconds * sample_rate))
        pending: list[Samples] = []
        pending_size = 0
        for chunk in self.chunks(sample_rate):
            pending.append(chunk)
            pending_size += chunk.size
            while pending_size >= block:
                joined = np.concatenate(pending)
                yield joined[:block]
                rest = joined[block:]
                pending, pending_size = ([rest] if rest.size else []), rest.size
        if pending_size:
            yield np.concatenate(pending)

    def samples(self, sample_rate: int = SAMPLE_RATE) -> Samples:
        return np.concatenate(list(self.chunks(sample_rate)))

    def channel_blocks(self, block_seconds: float, sample_rate: int = SAMPLE_RATE) -> Iterator[Channels]:
        """(channels, samples) blocks of ``block_seconds`` (the last may be shorter), every channel apart."""
        block = max(1, int(block_seconds * sample_rate))
        pending: list[Channels] = []
        pending_size = 0
        for chunk in self.channel_chunks(sample_rate):
            pending.append(chunk)
            pending_size += chunk.shape[1]
            while pending_size >= block:
                joined = np.concatenate(pending, axis=1)
                yield joined[:, :block]
                rest = joined[:, block:]
                pending, pending_size = ([rest] if rest.shape[1] else []), rest.shape[1]
        if pending_size:
            yield np.concatenate(pending, axis=1)

    def close(self) -> None:
        with suppress(Exception):
            self._container.close()


def decode_audio(data: bytes, *, max_duration: float | None = None, sample_rate: int = SAMPLE_RATE) -> Samples:
    """Mono float32 samples in [-1, 1]; the container is detected from the bytes.

    Raises AudioDecodeError for anything that is not decodable audio or holds no samples,
    and AudioTooLongError as soon as the audio is known to exceed ``max_duration``.
    """
    audio = AudioFile(data, max_duration=max_duration)
    try:
        return audio.samples(sample_rate)
    finally:
        audio.close()


def _to_float_channels(frame: av.AudioFrame) -> Channels:
    """Packed 16-bit samples (interleaved channels) → float32 (channels, samples) in [-1, 1]."""
    channels = max(1, len(frame.layout.channels))
    interleaved = frame.to_ndarray().reshape(-1, channels).T
    return (interleaved.astype(np.float32) / 32768.0).astype(np.float32, copy=False)


def _check_declared_duration(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream, max_duration: float | None
) -> None:
    """Refuse over-long audio from the header alone, before demuxing any of it."""
    if max_duration is None:
        return
    declared = _stream_duration(container, stream)
    if declared is not None and declared > max_duration + 0.5:
        raise AudioTooLongError(declared, max_duration)


def _stream_duration(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration / av.time_base)
    return None


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
