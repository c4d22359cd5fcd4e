"""One speaker per channel (call recordings): detect it, transcribe each channel on its own, merge in time order."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from engines.audio import SAMPLE_RATE, Channels, Samples
from engines.diarization.speakers import letters, match_known_speakers
from engines.diarization.types import Diarizer, Embedding
from engines.longform import LongFormRun
from engines.speaker_pieces import MIN_SEGMENT_SECONDS, SpeakerSegment
from engines.types import Segment, TranscriptInfo

FRAME_SECONDS = 0.03
COPY_RESIDUAL = 0.01  # channels that differ from their mean by less than this energy share are copies
DOMINANCE_DB = 10.0  # a channel this much louder than every other owns the frame
MIN_CLEAR_SHARE = 0.5  # of the frames with sound, this share must have a clear owner…
MIN_OWN_SECONDS = 0.25  # …and at least two channels must lead for this long each
MAX_CORRELATION = 0.5  # channels of one scene (panned, a microphone pair) are correlated; two talkers are not
VOICE_SECONDS = 120.0  # of each channel, this much is searched for speech to embed its voice


@dataclass(frozen=True)
class ChannelCheck:
    """Whether the channels carry different speakers, and the numbers behind the decision (for logs)."""

    separate: bool
    reason: str


def check_channels(block: Channels) -> ChannelCheck:
    """Decide from (a first block of) the audio whether each channel carries its own speaker.

    A two-party call recorded one party per channel has, wherever someone speaks, one channel
    clearly louder than the others (its own talker; the other side is at most a faint echo), and
    different channels take that lead in turn. A mono signal copied into both channels, a stereo
    microphone pair or a panned mix of one scene do not: their channels are copies or differ by a
    few dB at most.
    """
    channels = block.shape[0]
    if channels < 2 or block.shape[1] < SAMPLE_RATE // 2:
        return ChannelCheck(False, "fewer than two channels (or too short)")
    block = np.asarray(block, dtype=np.float64)
    residual = float(np.sum((block - block.mean(axis=0)) ** 2))
    total = float(np.sum(block**2))
    if total <= 0 or residual <= COPY_RESIDUAL * total:
        return ChannelCheck(False, f"channels are copies of one signal (difference {residual / max(total, 1e-12):.3%})")
    frame = int(FRAME_SECONDS * SAMPLE_RATE)
    usable = block[:, : block.shape[1] - block.shape[1] % frame].reshape(channels, -1, frame)
    levels = 10 * np.log10(np.mean(usable**2, axis=2) + 1e-10)  # (channels, frames) dB
    loudest = levels.max(axis=0)
    sound = loudest > max(float(loudest.max()) - 40.0, -55.0)
    if sound.sum() * FRAME_SECONDS < 2 * MIN_OWN_SECONDS:
        return ChannelCheck(False, "too little sound to tell")
    correlation = _max_correlation(usable[:, sound].reshape(channels, -1))
    if correlation > MAX_CORRELATION:
        return ChannelCheck(False, f"channels carry one correlated signal (correlation {correlation:.2f})")
    ordered = np.sort(levels[:, sound], axis=0)
    clear = ordered[-1] - ordered[-2] >= DOMINANCE_DB
    owners = np.argmax(levels[:, sound], axis=0)[clear]
    owned = np.bincount(owners, minlength=channels) * FRAME_SECONDS
    talkers = int(np.sum(owned >= MIN_OWN_SECONDS))
    share = float(clear.mean())
    summary = f"{share:.0%} of sounding frames led by one channel by ≥{DOMINANCE_DB:g} dB; seconds led: " + ", ".join(
        f"{seconds:.1f}" for seconds in owned
    )
    return ChannelCheck(share >= MIN_CLEAR_SHARE and talkers >= 2, summary)


def _max_correlation(block: npt.NDArray[np.floating[Any]]) -> float:
    """The largest absolute Pearson correlation between two channels' waveforms."""
    centred = block - block.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    norms[norms == 0] = 1.0
    unit = centred / norms[:, None]
    matrix = np.abs(unit @ unit.T)
    np.fill_diagonal(matrix, 0.0)
    return float(matrix.max())


def channel_names(
    voices: Mapping[int, Embedding] | None = None,
    references: Mapping[str, Embedding] | None = None,
    *,
    channels: int,
    threshold: float,
) -> list[str]:
    """Channel i is speaker A, B, … in channel order, unless a known speaker's reference matches its voice."""
    matched: dict[str, str] = {}
    if references and voices:
        matched = match_known_speakers(references, {str(c): v for c, v in voices.items()}, threshold=threshold)
    taken = set(matched.values())
    free = (letter for letter in letters() if letter not in taken)
    return [matched.get(str(c)) or next(free) for c in range(channels)]


def channel_voice(diarizer: Diarizer, samples: Samples) -> Embedding | None:
    """The voice of a channel from its first minutes (the diarizer keeps only the speech), or None when silent."""
    head = np.asarray(samples[: int(VOICE_SECONDS * SAMPLE_RATE)], dtype=np.float32)
    if head.size < SAMPLE_RATE // 2 or float(np.max(np.abs(head), initial=0.0)) < 1e-4:
        return None
    return diarizer.embed(head)


def split_blocks(blocks: Iterable[Channels], channels: int) -> list[Iterator[Samples]]:
    """One block iterator per channel over a single decoding pass (blocks are held until every channel read them)."""
    return [_channel(copy, index) for index, copy in enumerate(itertools.tee(blocks, channels))]


def _channel(blocks: Iterator[Channels], index: int) -> Iterator[Samples]:
    for block in blocks:
        yield np.ascontiguousarray(block[index])


class ChannelRun:
    """Each channel transcribed by its own run; segments come out merged in time order.

    With ``speakers`` the segments are ``SpeakerSegment``s named after their channel; otherwise
    Whisper ``Segment``s renumbered across channels. The runs share one model and are advanced
    in turn, so the merge never waits for a whole channel.
    """

    def __init__(self, runs: Sequence[LongFormRun], names: Sequence[str], *, speakers: bool) -> None:
        if len(runs) != len(names):
            raise ValueError("one name per channel run")
        self.runs = list(runs)
        self.names = list(names)
        self.speakers = speakers

    @property
    def info(self) -> TranscriptInfo:
        infos = [run.info for run in self.runs]
        heard = [info for info in infos if info.language_probability > 0]  # channels with something transcribed
        first = heard[0] if heard else infos[0]
        return TranscriptInfo(
            task=first.task,
            language=first.language,
            language_probability=first.language_probability,
            duration=max(info.duration for info in infos),
            # Every channel is decoded with the prompt, over the whole audio: both count.
            prompt_tokens=sum(info.prompt_tokens for info in infos),
            audio_tokens=sum(info.audio_tokens for info in infos),
        )

    def segments(self) -> Iterator[Segment | SpeakerSegment]:
        def tagged(channel: int, run: LongFormRun) -> Iterator[tuple[float, int, Segment]]:
            for segment in run.segments():
                yield segment.start, channel, segment

        merged = heapq.merge(*(tagged(c, run) for c, run in enumerate(self.runs)), key=lambda item: item[:2])
        index = 0
        for _, channel, segment in merged:
            if self.speakers:
                if not segment.text.strip():
                    continue
                end = max(segment.end, round(segment.start + MIN_SEGMENT_SECONDS, 3))
                yield SpeakerSegment(
                    f"seg_{index}", segment.start, end, segment.text, self.names[channel], len(segment.tokens)
                )
            else:
                yield replace(segment, id=index)
            index += 1
