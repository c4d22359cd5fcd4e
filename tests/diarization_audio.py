"""Speech for diarization tests: espeak-ng conversations, the real recordings with reference turns, and scoring."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from bench import dialogues
from bench.der import Truth as Truth
from bench.der import rttm_truth
from bench.dialogues import DIALOGUE as DIALOGUE  # the generated speech lives in bench (re-exported for the tests)
from bench.dialogues import FEMALE as FEMALE
from bench.dialogues import MALE as MALE
from bench.dialogues import MEETING as MEETING
from bench.dialogues import THIRD as THIRD
from bench.dialogues import conversation as conversation
from bench.dialogues import speak as speak
from bench.dialogues import two_voice_call as two_voice_call
from engines.audio import decode_audio
from engines.diarization.types import Samples, SpeakerTurn
from tests.audio import recording

REFERENCE_TEXT = "Could you please repeat the last number? I did not quite catch it."


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
    """The two-speaker sample that ships inside pyannote.audio (or the shared copy of it; skips when neither)."""
    return dialogues.pyannote_sample(lambda: recording("diar_pyannote_sample.wav"))


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
