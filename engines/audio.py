"""Decode uploaded audio bytes of any container into 16 kHz mono float32 samples with PyAV."""

from __future__ import annotations

import io
from collections.abc import Iterator

import av
import numpy as np
import numpy.typing as npt

from engines.errors import AudioDecodeError, AudioTooLongError

SAMPLE_RATE = 16_000

Samples = npt.NDArray[np.float32]


def decode_audio(data: bytes, *, max_duration: float | None = None, sample_rate: int = SAMPLE_RATE) -> Samples:
    """Return mono float32 samples in [-1, 1]; the container is detected from the bytes.

    Raises AudioDecodeError for anything that is not decodable audio or holds no samples,
    and AudioTooLongError as soon as the audio is known to exceed ``max_duration``.
    """
    if not data:
        raise AudioDecodeError("The audio file is empty.")
    chunks = list(_decoded_chunks(data, max_duration=max_duration, sample_rate=sample_rate))
    if not chunks:
        raise AudioDecodeError("The audio file contains no audio samples.")
    samples = np.concatenate(chunks)
    if samples.size == 0:
        raise AudioDecodeError("The audio file contains no audio samples.")
    return samples


def stream_audio(
    data: bytes, *, block_seconds: float, max_duration: float | None = None, sample_rate: int = SAMPLE_RATE
) -> Iterator[Samples]:
    """Decode lazily into blocks of ``block_seconds`` (the last may be shorter): memory stays per block."""
    if not data:
        raise AudioDecodeError("The audio file is empty.")
    block = max(1, int(block_seconds * sample_rate))
    pending: list[Samples] = []
    pending_size = 0
    produced = False
    for chunk in _decoded_chunks(data, max_duration=max_duration, sample_rate=sample_rate):
        pending.append(chunk)
        pending_size += chunk.size
        while pending_size >= block:
            joined = np.concatenate(pending)
            produced = True
            yield joined[:block]
            rest = joined[block:]
            pending, pending_size = ([rest] if rest.size else []), rest.size
    if pending_size:
        produced = True
        yield np.concatenate(pending)
    if not produced:
        raise AudioDecodeError("The audio file contains no audio samples.")


def measure_duration(data: bytes, *, max_duration: float | None = None) -> float:
    """Audio length in seconds, refusing over-long audio before any transcription starts.

    Sums the demuxed packets' durations (fast, no decoding, and immune to headers that
    under-state the length); decodes and counts samples only when packets carry no duration.
    """
    if not data:
        raise AudioDecodeError("The audio file is empty.")
    demuxed = _demuxed_duration(data, max_duration)
    if demuxed is not None:
        if demuxed <= 0:
            raise AudioDecodeError("The audio file contains no audio samples.")
        return demuxed
    total = 0
    for chunk in _decoded_chunks(data, max_duration=max_duration, sample_rate=SAMPLE_RATE):
        total += chunk.size
    if total == 0:
        raise AudioDecodeError("The audio file contains no audio samples.")
    return total / SAMPLE_RATE


def _demuxed_duration(data: bytes, max_duration: float | None) -> float | None:
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError("The audio file could not be decoded: it has no audio stream.")
            stream = container.streams.audio[0]
            total = 0.0
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                if packet.duration is None or packet.time_base is None:
                    return None
                total += float(packet.duration * packet.time_base)
                if max_duration is not None and total > max_duration + 0.5:
                    raise AudioTooLongError(total, max_duration)
            return total
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"The audio file could not be decoded: {_reason(exc)}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise AudioDecodeError(f"The audio file could not be decoded: {_reason(exc)}") from exc


def _decoded_chunks(data: bytes, *, max_duration: float | None, sample_rate: int) -> Iterator[Samples]:
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        raise AudioDecodeError(f"The audio file could not be decoded: {_reason(exc)}") from exc
    with container:
        if not container.streams.audio:
            raise AudioDecodeError("The audio file could not be decoded: it has no audio stream.")
        stream = container.streams.audio[0]
        _check_declared_duration(container, stream, max_duration)
        # Integer output makes FFmpeg average the channels when down-mixing; float output would
        # sum them at -3 dB each and overshoot [-1, 1] on correlated stereo.
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        limit_samples = None if max_duration is None else int(max_duration * sample_rate)
        total = 0
        try:
            for frame in container.decode(stream):
                frame.pts = None  # the resampler re-times frames; odd input pts would only confuse it
                for out in resampler.resample(frame):
                    chunk = _to_float(out)
                    total += chunk.size
                    if limit_samples is not None and total > limit_samples:
                        assert max_duration is not None
                        raise AudioTooLongError(total / sample_rate, max_duration)
                    yield chunk
            for out in resampler.resample(None):
                yield _to_float(out)
        except av.FFmpegError as exc:
            if total == 0:
                raise AudioDecodeError(f"The audio file could not be decoded: {_reason(exc)}") from exc
            # A truncated tail after real audio: keep what decoded, as ffmpeg itself does.


def _to_float(frame: av.AudioFrame) -> Samples:
    return (frame.to_ndarray().reshape(-1).astype(np.float32) / 32768.0).astype(np.float32, copy=False)


def _check_declared_duration(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream, max_duration: float | None
) -> None:
    """Refuse over-long audio from the header alone, before decoding any of it."""
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
