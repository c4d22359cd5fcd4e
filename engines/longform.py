"""Audio of any length on one timeline: blocks of decoded audio in, timed segments out.

Memory is bounded by the block size, not the file: each block (plus the carried-over tail of the
previous one) is transcribed, segments that end safely before the block's end are emitted, and the
rest of the audio is carried into the next block so no word is cut at a block boundary. With VAD,
only speech is transcribed, in chunks of at most ~30 s cut at silences.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from engines.audio import SAMPLE_RATE, Samples
from engines.errors import DecodingCancelled
from engines.types import DecodeOptions, Segment, Transcriber, TranscriptInfo, Word
from engines.vad import (
    Span,
    VadParams,
    group_regions,
    has_speech,
    normalize_loudness,
    pause_between,
    speech_regions,
    widen_chunks,
)

FRAMES_PER_SECOND = 100  # Whisper's mel frames; `seek` counts these
PROMPT_CARRY_WORDS = 100  # previous text handed to the next block, like Whisper's own conditioning
# VAD speech left after Whisper's last segment in a chunk, at least this long, is decoded again
# (at most this many times per chunk, so a VAD that hears speech Whisper never finds cannot loop).
MIN_TAIL_SECONDS = 1.0
MAX_TAIL_DECODES = 2
# The first piece of unchunked audio is cut at a pause no earlier than this (seconds), and only when
# the audio is longer than one of Whisper's windows (shorter audio is decoded in one go anyway).
FIRST_PIECE_EARLIEST = 2.0
FIRST_PIECE_MIN_AUDIO = 30.0
# Language detection on a few seconds is trusted from this probability on (on the shared recordings,
# wrong detections of short clips stayed below it; right ones on 3-10 s of real speech mostly above).
FIRST_PIECE_MIN_LANGUAGE_PROBABILITY = 0.7


@dataclass(frozen=True)
class LongFormConfig:
    block_seconds: float = 300.0
    guard_seconds: float = 5.0
    vad: VadParams | None = None
    # Unchunked audio over 30 s: decode a first piece cut at a pause within this many seconds, so that
    # the first text comes early (a stream's first delta); None: Whisper's windows from the start.
    first_piece_seconds: float | None = None


class LongFormRun:
    """One request's transcription. Iterate ``segments()``; ``info`` is final once it is exhausted."""

    def __init__(
        self,
        engine: Transcriber,
        options: DecodeOptions,
        blocks: Iterable[Samples],
        config: LongFormConfig,
        cancel: threading.Event | None = None,
    ) -> None:
        self.engine = engine
        self.options = options
        self.blocks = blocks
        self.config = config
        self.cancel = cancel
        self.samples_seen = 0
        self._first_info: TranscriptInfo | None = None
        self._next_id = 0

    @property
    def info(self) -> TranscriptInfo:
        duration = self.samples_seen / SAMPLE_RATE
        first = self._first_info
        return TranscriptInfo(
            task=self.options.task,
            # Nothing transcribed (silence): report the requested language, else English.
            language=first.language if first else (self.options.language or "en"),
            language_probability=first.language_probability if first else 0.0,
            duration=duration,
            prompt_tokens=self.engine.count_tokens(self.options.prompt) if self.options.prompt else 0,
            audio_tokens=self.engine.audio_tokens(duration),
        )

    def segments(self) -> Iterator[Segment]:
        block_samples = int(self.config.block_seconds * SAMPLE_RATE)
        buffer: Samples = np.zeros(0, dtype=np.float32)
        offset = 0  # sample index of buffer[0] on the original timeline
        carried_prompt = self.options.prompt
        source = iter(self.blocks)
        pending = next(source, None)
        while pending is not None:
            self._check_cancel()
            buffer = np.concatenate([buffer, pending]) if buffer.size else pending
            self.samples_seen += pending.size
            pending = next(source, None)
            final = pending is None
            if not final and buffer.size < block_samples:
                continue
            if offset == 0 and not self.config.vad:
                piece = self._first_piece(buffer, final, carried_prompt)
                if piece is not None:  # decoded on its own, all of it kept: it ends in a pause
                    cut, piece_segments = piece
                    yield from self._shifted(_all_of(piece_segments, cut), 0, [])
                    buffer, offset = buffer[cut:].copy(), cut
            emitted: list[Segment] = []
            process = self._vad_block if self.config.vad else self._plain_block
            consumed = yield from self._shifted(process(buffer, final, carried_prompt), offset, emitted)
            if emitted and not self.config.vad:
                carried_prompt = _tail_words(" ".join(s.text for s in emitted))
            buffer = buffer[consumed:].copy()
            offset += consumed

    def _first_piece(
        self, buffer: Samples, final: bool, prompt: str | None
    ) -> tuple[int, Generator[Segment, None, None]] | None:
        """Where the first piece of unchunked audio ends (samples) and its segments, or None for no piece.

        The piece's language is detected on its few seconds only. When the request names no language
        and that detection is unsure, there is no piece: the first window decides, as without one.
        """
        latest = self.config.first_piece_seconds
        if latest is None or (final and buffer.size <= FIRST_PIECE_MIN_AUDIO * SAMPLE_RATE):
            return None
        cut = pause_between(buffer, FIRST_PIECE_EARLIEST, latest)
        if cut is None:
            return None
        options = replace(self.options, prompt=prompt)
        info, segments = self.engine.transcribe(buffer[:cut], options, self.cancel)
        detected = options.language is None and len(options.languages) != 1
        if detected and info.language_probability < FIRST_PIECE_MIN_LANGUAGE_PROBABILITY:
            segments.close()
            return None
        self._first_info = info
        return cut, segments

    def _shifted(
        self, relative: Generator[Segment, None, int], offset: int, emitted: list[Segment]
    ) -> Generator[Segment, None, int]:
        """Re-time and renumber a block's segments onto the original timeline; returns consumed samples."""
        seconds = offset / SAMPLE_RATE
        while True:
            try:
                segment = next(relative)
            except StopIteration as stop:
                consumed: int = stop.value
                return consumed
            shifted = _shift(segment, seconds, offset // (SAMPLE_RATE // FRAMES_PER_SECOND), self._next_id)
            self._next_id += 1
            emitted.append(shifted)
            yield shifted

    def _plain_block(self, buffer: Samples, final: bool, prompt: str | None) -> Generator[Segment, None, int]:
        guard = int(self.config.guard_seconds * SAMPLE_RATE)
        if not has_speech(buffer):  # unchunked blocks are still checked for any speech at all
            return buffer.size if final else max(0, buffer.size - guard)
        limit = buffer.size / SAMPLE_RATE - (0.0 if final else self.config.guard_seconds)
        accepted_end = 0.0
        segments = self._transcribe(buffer, prompt)
        try:
            for segment in segments:
                if not final and segment.end > limit and accepted_end > 0:
                    break  # the rest is decoded again with the next block, with more context
                accepted_end = segment.end  # the first segment always counts, so every block progresses
                yield segment
        finally:
            segments.close()  # stops decoding windows nobody will read
        if final:
            return buffer.size
        consumed = int(accepted_end * SAMPLE_RATE) if accepted_end > 0 else buffer.size - guard
        return max(0, min(consumed, buffer.size))

    def _vad_block(self, buffer: Samples, final: bool, prompt: str | None) -> Generator[Segment, None, int]:
        assert self.config.vad is not None
        params = self.config.vad
        audio = normalize_loudness(buffer) if params.normalize_loudness else buffer
        regions = speech_regions(audio, params)
        consumed = buffer.size
        if not final:
            guard = int(self.config.guard_seconds * SAMPLE_RATE)
            complete = [r for r in regions if r.end <= buffer.size - guard]
            unfinished = regions[len(complete) :]
            consumed = unfinished[0].start if unfinished else max(0, buffer.size - guard)
            regions = complete
        chunks = group_regions(regions, params.max_chunk_seconds)
        widened = widen_chunks(chunks, audio.size, params.context_ms * SAMPLE_RATE // 1000)
        for chunk, speech in zip(widened, chunks, strict=True):
            yield from self._vad_chunk(audio, chunk, speech, regions)
        return consumed

    def _vad_chunk(self, audio: Samples, chunk: Span, speech: Span, regions: list[Span]) -> Iterator[Segment]:
        """One chunk, then again from where Whisper stopped while the VAD still hears speech after it.

        Whisper sometimes ends a short window early (end of text after the first sentences), and
        the speech after that would be lost; the rest of the chunk is decoded on its own instead.
        Times stay inside ``speech`` (the chunk without its context): Whisper starts the first word
        of a window at the window's start, silence or not.
        """
        start = chunk.start
        for _ in range(MAX_TAIL_DECODES + 1):
            self._check_cancel()
            heard_until = start
            for segment in self._transcribe(audio[start : chunk.end], self.options.prompt):
                shifted = _shift(segment, start / SAMPLE_RATE, start // (SAMPLE_RATE // FRAMES_PER_SECOND), segment.id)
                shifted = _inside(shifted, speech.start / SAMPLE_RATE, speech.end / SAMPLE_RATE)
                heard_until = max(heard_until, round(shifted.end * SAMPLE_RATE))
                yield shifted
            tail = unheard_tail(regions, heard_until, chunk.end)
            if tail is None or heard_until <= start:
                return  # everything heard, or Whisper found nothing to say in what is left
            start = tail

    def _transcribe(self, audio: Samples, prompt: str | None) -> Generator[Segment, None, None]:
        options = replace(self.options, prompt=prompt)
        if self._first_info is not None:
            options = replace(options, language=self._first_info.language)  # one language per request
        info, segments = self.engine.transcribe(audio, options, self.cancel)
        if self._first_info is None:
            self._first_info = info
        return segments

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DecodingCancelled("decoding was cancelled")


def unheard_tail(regions: list[Span], heard_until: int, chunk_end: int) -> int | None:
    """Where to decode again: the first stretch of VAD speech of at least ``MIN_TAIL_SECONDS`` that
    lies after ``heard_until`` (samples) and before ``chunk_end``, else None."""
    for region in regions:
        start, end = max(region.start, heard_until), min(region.end, chunk_end)
        if end - start >= MIN_TAIL_SECONDS * SAMPLE_RATE:
            return start
    return None


def _shift(segment: Segment, seconds: float, frames: int, new_id: int) -> Segment:
    def at(t: float) -> float:
        return round(t + seconds, 3)

    return replace(
        segment,
        id=new_id,
        seek=segment.seek + frames,
        start=at(segment.start),
        end=at(segment.end),
        words=[Word(w.word, at(w.start), at(w.end), w.probability) for w in segment.words],
    )


def _inside(segment: Segment, first: float, last: float) -> Segment:
    """The segment and its words with their times moved into [first, last] (never ending before they start)."""

    def clamp(start: float, end: float) -> tuple[float, float]:
        start = round(min(max(start, first), last), 3)
        return start, round(min(max(end, start), last), 3)

    start, end = clamp(segment.start, segment.end)
    words = [Word(w.word, *clamp(w.start, w.end), w.probability) for w in segment.words]
    return replace(segment, start=start, end=end, words=words)


def _all_of(segments: Generator[Segment, None, None], consumed: int) -> Generator[Segment, None, int]:
    """Every segment of a piece that ends in a pause, then how much audio it consumed."""
    try:
        yield from segments
    finally:
        segments.close()
    return consumed


def _tail_words(text: str) -> str | None:
    words = text.split()
    return " ".join(words[-PROMPT_CARRY_WORDS:]) or None


__all__ = ["LongFormConfig", "LongFormRun", "Span"]
