"""Speech for diarization tests: espeak-ng conversations, the real recordings with reference turns, and scoring."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engines.audio import SAMPLE_RATE, decode_audio
from engines.diarization.types import Samples, SpeakerTurn
from tests.audio import recording

Truth = list[tuple[float, float, str]]

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
REFERENCE_TEXT = "Could you please repeat the last number? I did not quite catch it."


def speak(directory: Path, voice: str, text: str) -> Samples:
    """espeak-ng speech at 16 kHz with the leading and trailing silence cut off."""
    path = directory / f"{hashlib.sha1(f'{voice}|{text}'.encode()).hexdigest()[:12]}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(path), text], check=True)
    samples = decode_audio(path.read_bytes())
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


def attribution(turns: Sequence[SpeakerTurn], truth: Truth, *, map_labels: bool = True) -> float:
    """Share of the reference speech time (10 ms frames) given the right speaker.

    With ``map_labels`` the hypothesis labels are first mapped onto reference speakers the way
    that scores best; without it the labels must equal the reference names. Where reference
    turns overlap, the later one owns the frames.
    """
    frames = round(max(end for _, end, _ in truth) * 100) + 1
    reference = np.full(frames, "", dtype=object)
    hypothesis = np.full(frames, "", dtype=object)
    for start, end, speaker in truth:
        reference[round(start * 100) : round(end * 100)] = speaker
    for turn in turns:
        hypothesis[round(turn.start * 100) : round(turn.end * 100)] = turn.speaker
    speech = reference != ""
    ref_names = sorted(set(reference[speech]))
    hyp_names = sorted({t.speaker for t in turns})
    mappings: list[dict[str, str]] = [{name: name for name in hyp_names}]
    if map_labels:
        mappings = [
            dict(zip(order, ref_names, strict=False))
            for order in itertools.permutations(hyp_names, min(len(hyp_names), len(ref_names)))
        ]
    best = 0
    for mapping in mappings:
        mapped = np.array([mapping.get(h, "?") for h in hypothesis[speech]], dtype=object)
        best = max(best, int(np.sum(mapped == reference[speech])))
    return best / int(speech.sum())


def pyannote_sample() -> tuple[Samples, Truth]:
    """The two-speaker sample that ships inside pyannote.audio (or the shared copy of it)."""
    try:
        # find_spec locates the package without importing it (importing pyannote.audio takes seconds).
        spec = importlib.util.find_spec("pyannote.audio")
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "sample"
        wav, rttm = folder / "sample.wav", folder / "sample.rttm"
    else:
        wav = recording("diar_pyannote_sample.wav")
        rttm = wav.with_suffix(".rttm")
    truth = []
    for line in rttm.read_text().splitlines():
        fields = line.split()
        truth.append((float(fields[3]), float(fields[3]) + float(fields[4]), fields[7]))
    return decode_audio(wav.read_bytes()), truth


def rttm_truth(path: Path) -> Truth:
    """(start, end, speaker) turns of an RTTM file."""
    truth = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            truth.append((float(fields[3]), float(fields[3]) + float(fields[4]), fields[7]))
    return truth


def shared_recording(name: str) -> tuple[Samples, Truth]:
    """A multi-speaker recording of the shared audio folder and its reference turns (skips when absent)."""
    wav = recording(f"{name}.wav")
    return decode_audio(wav.read_bytes()), rttm_truth(wav.with_suffix(".rttm"))


def der(turns: Sequence[SpeakerTurn] | Sequence[tuple[float, float, str]], truth: Truth, seconds: float) -> float:
    """pyannote.metrics DER with a 0.25 s collar (total width), overlaps scored, over [0, seconds]."""
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(items: Sequence[tuple[float, float, str]]) -> Annotation:
        result = Annotation()
        for track, (start, end, speaker) in enumerate(items):
            if end > start:
                result[Segment(start, end), track] = speaker
        return result

    hypothesis = [(t.start, t.end, t.speaker) if isinstance(t, SpeakerTurn) else t for t in turns]
    metric = DiarizationErrorRate(collar=0.25, skip_overlap=False)
    return float(metric(annotation(truth), annotation(hypothesis), uem=Timeline([Segment(0.0, seconds)])))


CALL = (
    (MALE, "Thank you for calling the support line, my name is Peter, how can I help you today?"),
    (FEMALE, "Hello, my internet connection keeps dropping every evening since last Monday."),
)


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
