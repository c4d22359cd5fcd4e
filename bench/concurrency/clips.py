"""The inputs: distinct clips of 4.5–15 s (recordings cut at pauses, and espeak-ng sentences), and the mixed load's
long files and ~5-s clips, each as the 16 kHz mono 16-bit WAV bytes that are uploaded."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import BenchError, long_file_sources, write_wav
from bench.speech import espeak
from engines.audio import SAMPLE_RATE, Samples, decode_audio
from engines.vad import VadParams, group_regions, speech_regions

CLIP_MIN_SECONDS = 4.5
CLIP_MAX_SECONDS = 15.0
# Cut the longer recordings at pauses: speech regions joined into chunks of at most CLIP_MAX_SECONDS.
CLIP_VAD = VadParams(threshold=0.5, silence_duration_ms=300, prefix_padding_ms=200, max_chunk_seconds=CLIP_MAX_SECONDS)
# The mixed load's short clips: pieces of about 5 s.
SHORT_MIN_SECONDS = 4.0
SHORT_MAX_SECONDS = 6.5
SHORT_VAD = VadParams(
    threshold=0.5, silence_duration_ms=300, prefix_padding_ms=200, max_chunk_seconds=SHORT_MAX_SECONDS
)
MIXED_LONG_FILES = 2

# Synthetic sentences (espeak-ng) fill the clip set up to --clips: about 8–14 s each at 165 words per minute.
SENTENCES = (
    "The quarterly report was finished late on Friday, so the team reviewed the numbers again on Monday "
    "morning before sending it to the board.",
    "Please remember to water the tomato plants twice a week while we are away, and keep the greenhouse "
    "door closed at night.",
    "Our train left the station ten minutes behind schedule, but the driver made up the time before we "
    "reached the coast.",
    "The new library opens at nine o'clock and offers free workshops on photography, cooking and "
    "computer programming for beginners.",
    "She packed a warm jacket, two maps and a small torch, because the mountain weather can change "
    "without any warning.",
    "After the storm the fishermen repaired their nets on the beach and talked about the price of fuel "
    "and the size of the catch.",
    "The museum guide explained how the old clock was built, and why it still loses about one minute "
    "every single week.",
    "If the printer jams again, open the side panel, remove the crumpled paper gently and restart the "
    "machine before printing.",
    "Twelve students volunteered to clean the river bank on Saturday, and they collected more than forty "
    "bags of rubbish.",
    "The bakery on the corner sells fresh bread every morning, and by noon the shelves are usually completely empty.",
    "During the meeting we agreed to move the release to next month and to spend the extra time on "
    "testing and documentation.",
    "A thin layer of snow covered the garden, and the children built a crooked snowman with a carrot for a nose.",
    "The pilot announced that we would land in twenty minutes, and asked everyone to fasten their seat "
    "belts and stay seated.",
    "Most of the old houses in the village have thick stone walls that keep them cool in summer and warm in winter.",
)
VOICES = ("en-us", "en+m3", "en+f3", "en-gb", "en-us+f2", "en-gb-scotland", "en-029")
ESPEAK_WORDS_PER_MINUTE = 165


@dataclass(frozen=True)
class Clip:
    """One distinct input: 16 kHz mono 16-bit WAV bytes (what is uploaded) and where it came from.

    ``role``: ``clip`` (the rows' clip set), ``long`` or ``short`` (the mixed load's inputs).
    """

    index: int
    name: str
    source: str
    data: bytes
    seconds: float
    reference: str | None = None  # the text espeak-ng spoke; None for recordings
    role: str = "clip"

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "role": self.role,
            "name": self.name,
            "source": self.source,
            "seconds": round(self.seconds, 3),
            "reference": self.reference,
        }


def _clip(
    path: Path, index: int, name: str, source: str, audio: Samples, reference: str | None = None, role: str = "clip"
) -> Clip:
    """``audio`` written to ``path`` as the WAV file that is uploaded, and read back as the clip's bytes."""
    write_wav(path, audio)
    return Clip(index, name, source, path.read_bytes(), audio.size / SAMPLE_RATE, reference, role)


def cut_recordings(
    paths: Sequence[Path], vad: VadParams, min_seconds: float, max_seconds: float
) -> list[tuple[str, str, Samples]]:
    """Recordings of ``min_seconds`` to ``max_seconds`` whole, longer ones cut at pauses into pieces in that range."""
    found: list[tuple[str, str, Samples]] = []
    for path in paths:
        audio = decode_audio(path.read_bytes())
        seconds = audio.size / SAMPLE_RATE
        if seconds <= max_seconds:
            if seconds >= min_seconds:
                found.append((path.stem, path.name, audio))
            continue
        chunks = group_regions(speech_regions(audio, vad), max_seconds)
        for number, chunk in enumerate(c for c in chunks if c.length >= min_seconds * SAMPLE_RATE):
            start, end = chunk.start / SAMPLE_RATE, chunk.end / SAMPLE_RATE
            found.append(
                (
                    f"{path.stem}_part{number + 1}",
                    f"{path.name} {start:.1f}-{end:.1f} s",
                    audio[chunk.start : chunk.end],
                )
            )
    return found


def recording_clips(directory: Path) -> list[tuple[str, str, Samples]]:
    """English recordings up to CLIP_MAX_SECONDS whole, longer ones cut at pauses into ≤15 s pieces."""
    return cut_recordings(long_file_sources(directory), CLIP_VAD, CLIP_MIN_SECONDS, CLIP_MAX_SECONDS)


def synthetic_clips(count: int, workdir: Path) -> list[tuple[str, str, Samples, str]]:
    """``count`` sentences spoken by espeak-ng in turn by different voices (none without espeak-ng)."""
    if shutil.which("espeak-ng") is None or count <= 0:
        return []
    found: list[tuple[str, str, Samples, str]] = []
    for number, text in enumerate(SENTENCES[:count]):
        voice = VOICES[number % len(VOICES)]
        target = espeak(workdir / f"espeak_{number + 1:02d}.wav", text, voice=voice, speed=ESPEAK_WORDS_PER_MINUTE)
        audio = decode_audio(target.read_bytes())[: int(CLIP_MAX_SECONDS * SAMPLE_RATE)]
        found.append((f"espeak_{number + 1:02d}", f"espeak-ng -v {voice}", audio, text))
    return found


def build_clips(directory: Path, workdir: Path, count: int) -> list[Clip]:
    """``count`` distinct clips: recordings and synthetic sentences, alternating while both last."""
    recorded = recording_clips(directory)
    synthetic = synthetic_clips(max(0, count - len(recorded)) + count // 2, workdir)
    ordered: list[tuple[str, str, Samples, str | None]] = []
    rec_iter, syn_iter = iter(recorded), iter(synthetic)
    while len(ordered) < count:
        before = len(ordered)
        # Two recordings for every synthetic sentence while both kinds remain.
        for _ in range(2):
            item = next(rec_iter, None)
            if item is not None and len(ordered) < count:
                ordered.append((*item, None))
        spoken = next(syn_iter, None)
        if spoken is not None and len(ordered) < count:
            ordered.append(spoken)
        if len(ordered) == before:
            break
    if len(ordered) < count:
        print(f"note: only {len(ordered)} distinct clips could be built (asked for {count})", flush=True)
    if not ordered:
        raise BenchError(f"no clips of {CLIP_MIN_SECONDS}–{CLIP_MAX_SECONDS} s could be built from {directory}")
    return [
        _clip(workdir / f"clip_{index:02d}_{name}.wav", index, name, source, audio, reference)
        for index, (name, source, audio, reference) in enumerate(ordered)
    ]


def build_mixed_inputs(directory: Path, workdir: Path, first_index: int, shorts: int) -> tuple[list[Clip], list[Clip]]:
    """The mixed load's inputs: the MIXED_LONG_FILES longest recordings, and up to ``shorts`` ~5-s pieces of the
    others (cut at pauses). Indices continue after the clip set's, so one table of floor transcripts covers all."""
    sources = long_file_sources(directory)
    decoded = {path: decode_audio(path.read_bytes()) for path in sources}
    longest = sorted(sources, key=lambda p: decoded[p].size, reverse=True)[:MIXED_LONG_FILES]
    if len(longest) < MIXED_LONG_FILES:
        raise BenchError(f"the mixed load needs {MIXED_LONG_FILES} recordings in {directory}")
    rest = [p for p in sources if p not in longest]
    pieces = cut_recordings(rest, SHORT_VAD, SHORT_MIN_SECONDS, SHORT_MAX_SECONDS)[:shorts]
    if not pieces:
        raise BenchError(f"no clips of {SHORT_MIN_SECONDS}–{SHORT_MAX_SECONDS} s could be cut from {directory}")
    # The long files mixed down to mono, as every clip is uploaded.
    longs = [
        _clip(workdir / f"long_{n}_{path.stem}.wav", first_index + n, path.stem, path.name, decoded[path], role="long")
        for n, path in enumerate(longest)
    ]
    first_short = first_index + len(longs)
    return longs, [
        _clip(workdir / f"short_{number:02d}_{name}.wav", first_short + number, name, source, audio, role="short")
        for number, (name, source, audio) in enumerate(pieces)
    ]


@dataclass(frozen=True)
class Inputs:
    """Every input of a run: the clip set, and the mixed load's long files and short clips (none without it)."""

    directory: Path
    clips: list[Clip]
    longs: list[Clip]
    shorts: list[Clip]

    @property
    def catalog(self) -> dict[int, Clip]:
        """Every input by its index."""
        return {c.index: c for c in [*self.clips, *self.longs, *self.shorts]}


def build_inputs(directory: Path, workdir: Path, count: int, mixed_shorts: int | None) -> Inputs:
    """``count`` clips, and with ``mixed_shorts`` (not None) the mixed load's inputs."""
    clips = build_clips(directory, workdir, count)
    if mixed_shorts is None:
        return Inputs(directory, clips, [], [])
    return Inputs(directory, clips, *build_mixed_inputs(directory, workdir, len(clips), mixed_shorts))
