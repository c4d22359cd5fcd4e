"""Speech with known speakers: espeak-ng conversations and a two-voice phone call, and pyannote.audio's sample.

Shared by the diarization benchmarks and the tests.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench.der import Truth, rttm_truth
from bench.entry import BenchError
from bench.speech import espeak
from engines.audio import SAMPLE_RATE, Samples, decode_audio

MALE, FEMALE, THIRD = "en+m3", "en+f3", "en+kaukovalta"  # resemblyzer: 0.62–0.68 apart
DIALOGUE = [
    (MALE, "Good morning. I wanted to talk about the budget for the next quarter."),
    (FEMALE, "Sure. I looked at the numbers yesterday and they seem reasonable to me."),
    (MALE, "The travel costs went up quite a bit though."),
    (FEMALE, "That is true, but we also had two more conferences this year."),
    (MALE, "Fair enough. Can you send me the detailed report by Friday?"),
    (FEMALE, "Yes, I will do that."),
    (MALE, "Thank you. Let us meet again next week to decide."),
    (FEMALE, "Sounds good. Have a nice day."),
]
MEETING = [
    (MALE, "Hello everyone, thanks for joining the call this afternoon."),
    (FEMALE, "Happy to be here. I have a few questions about the schedule."),
    (THIRD, "I can answer those, I prepared the plan last week."),
    (MALE, "Great, please go ahead and walk us through it."),
    (THIRD, "The first phase starts in March and ends in June."),
    (FEMALE, "And the second phase follows right after that?"),
    (THIRD, "Exactly, with a short break in July."),
]
CALL = (
    (MALE, "Thank you for calling the support line, my name is Peter, how can I help you today?"),
    (FEMALE, "Hello, my internet connection keeps dropping every evening since last Monday."),
)


def speak(directory: Path, voice: str, text: str) -> Samples:
    """espeak-ng speech at 16 kHz with the leading and trailing silence cut off."""
    path = directory / f"{hashlib.sha1(f'{voice}|{text}'.encode()).hexdigest()[:12]}.wav"
    samples = decode_audio(espeak(path, text, voice=voice, speed=160).read_bytes())
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0] : loud[-1] + 1]


def conversation(directory: Path, lines: Sequence[tuple[str, str]], seed: int) -> tuple[Samples, Truth]:
    """The lines one after another with 0.4–0.8 s pauses, and who speaks when."""
    rng = np.random.default_rng(seed)
    parts: list[Samples] = []
    truth: Truth = []
    position = 0
    for voice, text in lines:
        speech = speak(directory, voice, text)
        pause = np.zeros(int(SAMPLE_RATE * rng.uniform(0.4, 0.8)), dtype=np.float32)
        truth.append((position / SAMPLE_RATE, (position + speech.size) / SAMPLE_RATE, voice))
        parts += [speech, pause]
        position += speech.size + pause.size
    return np.concatenate(parts), truth


def two_voice_call(directory: Path, *, overlap: float = 1.0) -> tuple[np.ndarray, list[str]]:
    """A generated phone call: one espeak voice per channel, the second starting ``overlap`` s before the first ends.

    Returns (2, samples) float32 and each channel's text.
    """
    first, second = (speak(directory, voice, text) for voice, text in CALL)
    start = max(0, first.size - int(overlap * SAMPLE_RATE))
    length = start + second.size + SAMPLE_RATE // 2
    stereo = np.zeros((2, length), dtype=np.float32)
    stereo[0, : first.size] = first
    stereo[1, start : start + second.size] = second
    return stereo, [text for _, text in CALL]


def pyannote_sample(shared_copy: Callable[[], Path]) -> tuple[Samples, Truth]:
    """The two-speaker sample that ships inside pyannote.audio, or without that package the copy ``shared_copy``
    names (``diar_pyannote_sample.wav`` of the shared folder); its turns from the RTTM file beside it."""
    try:
        # find_spec locates the package without importing it (importing pyannote.audio takes seconds).
        spec = importlib.util.find_spec("pyannote.audio")
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        wav = Path(next(iter(spec.submodule_search_locations))) / "sample" / "sample.wav"
    else:
        wav = shared_copy()
    if not wav.is_file():
        raise BenchError(f"pyannote.audio's sample is missing: neither the package nor {wav} is here")
    return decode_audio(wav.read_bytes()), rttm_truth(wav.with_suffix(".rttm"))
