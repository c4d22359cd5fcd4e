"""Silero VAD (the ONNX model shipped in faster-whisper): speech regions, loudness, ≤30 s chunks."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from engines.audio import SAMPLE_RATE, Samples


@dataclass(frozen=True)
class VadParams:
    """OpenAI's server_vad knobs, mapped onto Silero's options."""

    threshold: float = 0.5
    silence_duration_ms: int = 200
    prefix_padding_ms: int = 300
    max_chunk_seconds: float = 30.0
    normalize_loudness: bool = False
    min_speech_duration_ms: int = 0
    # Silence around a chunk that Whisper hears too (at most half the gap to the next chunk): a
    # decode that starts right at the first word drops more words than one with some lead-in.
    context_ms: int = 0


@dataclass(frozen=True)
class Span:
    """A half-open range of samples [start, end)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


TARGET_RMS = 0.1  # about -20 dBFS
MAX_GAIN = 10.0  # +20 dB at most, so near-silence is not blown up into noise


def normalize_loudness(audio: Samples, max_gain: float = MAX_GAIN) -> Samples:
    """Scale to a common speech level (RMS of the louder half of 30 ms frames), never clipping."""
    if audio.size == 0:
        return audio
    frame = int(0.03 * SAMPLE_RATE)
    usable = audio[: audio.size - audio.size % frame] if audio.size >= frame else audio
    energies = np.sqrt(np.mean(usable.reshape(-1, min(frame, usable.size)) ** 2, axis=1))
    loud = energies[energies >= np.median(energies)]
    level = float(np.sqrt(np.mean(loud**2))) if loud.size else 0.0
    peak = float(np.max(np.abs(audio)))
    if level <= 1e-6 or peak <= 0.0:
        return audio
    gain = min(TARGET_RMS / level, max_gain, 0.99 / peak)
    return (audio * np.float32(gain)).astype(np.float32, copy=False)


def speech_regions(audio: Samples, params: VadParams) -> list[Span]:
    """Speech as sample ranges; regions longer than the chunk limit are split by the VAD itself."""
    if audio.size == 0:
        return []
    options = VadOptions(
        threshold=params.threshold,
        min_silence_duration_ms=params.silence_duration_ms,
        speech_pad_ms=params.prefix_padding_ms,
        max_speech_duration_s=params.max_chunk_seconds,
        min_speech_duration_ms=params.min_speech_duration_ms,
    )
    return [Span(int(r["start"]), int(r["end"])) for r in get_speech_timestamps(audio, options)]


# Whisper invents text on noise, so audio with no speech at all is not decoded: unchunked file blocks
# and the final of a realtime turn that may hold none (a manual commit, an idle timeout) are gated.
# A low threshold on loudness-normalised audio, so faint speech still counts as speech.
SPEECH_GATE = VadParams(threshold=0.3, silence_duration_ms=500, prefix_padding_ms=0)
# Pauses between words or sentences, where audio may be cut without cutting a word.
PAUSES = VadParams(threshold=0.3, silence_duration_ms=150, prefix_padding_ms=0)
DIGITAL_SILENCE = 1e-4  # peak below this holds nothing to transcribe


def has_speech(audio: Samples) -> bool:
    """Whether ``audio`` holds any speech at all (the gate above)."""
    if float(np.max(np.abs(audio), initial=0.0)) < DIGITAL_SILENCE:
        return False
    return bool(speech_regions(normalize_loudness(audio), SPEECH_GATE))


def widen_chunks(chunks: list[Span], total: int, context: int) -> list[Span]:
    """Each chunk (sorted, apart) with up to ``context`` samples of the silence on each side, never past half a gap."""
    out = []
    for index, chunk in enumerate(chunks):
        before = chunk.start - chunks[index - 1].end if index else chunk.start
        after = chunks[index + 1].start - chunk.end if index + 1 < len(chunks) else total - chunk.end
        lead = min(context, before if index == 0 else before // 2)
        tail = min(context, after if index + 1 == len(chunks) else after // 2)
        out.append(Span(chunk.start - lead, chunk.end + tail))
    return out


def group_regions(regions: list[Span], max_chunk_seconds: float) -> list[Span]:
    """Join neighbouring speech regions into chunks of at most ``max_chunk_seconds``, cut at silences."""
    limit = int(max_chunk_seconds * SAMPLE_RATE)
    chunks: list[Span] = []
    for region in regions:
        if chunks and region.end - chunks[-1].start <= limit:
            chunks[-1] = Span(chunks[-1].start, region.end)
        else:
            chunks.append(region)
    return chunks


def pause_between(audio: Samples, earliest: float, latest: float) -> int | None:
    """The middle (sample index) of the longest pause in speech whose middle lies between ``earliest``
    and ``latest`` seconds of ``audio``; None when there is none (or no speech before it)."""
    end = min(audio.size, int((latest + 1.0) * SAMPLE_RATE))
    regions = speech_regions(normalize_loudness(audio[:end]), PAUSES)
    gaps = [
        Span(before.end, after.start)
        for before, after in itertools.pairwise(regions)
        if earliest * SAMPLE_RATE <= (before.end + after.start) // 2 <= latest * SAMPLE_RATE
    ]
    if not gaps:
        return None
    longest = max(gaps, key=lambda gap: gap.length)
    return (longest.start + longest.end) // 2
