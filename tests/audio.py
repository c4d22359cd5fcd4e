"""Test audio: the shared real recordings (when present), speech generated with espeak-ng, and WER."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from app.settings import PROJECT_ROOT
from bench.speech import LONG_TEXT as LONG_TEXT  # the speech helpers live in bench (re-exported for the tests)
from bench.speech import SYNTH_SENTENCE as SYNTH_SENTENCE
from bench.speech import espeak as espeak
from bench.speech import normalize as normalize
from bench.speech import repeat_audio as repeat_audio
from bench.speech import sox as sox
from bench.speech import wer as wer


def shared_audio_dir() -> Path | None:
    path = Path(os.environ.get("STT_TEST_AUDIO_DIR", PROJECT_ROOT.parent / "shared" / "audio"))
    return path if path.is_dir() else None


def recording(name: str) -> Path:
    """A real recording from the shared audio folder, or skip the test when it is not here."""
    directory = shared_audio_dir()
    if directory is None or not (directory / name).is_file():
        pytest.skip(f"shared recording {name} not available (set STT_TEST_AUDIO_DIR)")
    return directory / name


def reference(name: str) -> str:
    return recording(name).with_suffix(".txt").read_text().strip()


def convert(source: Path, target: Path, *extra: str) -> Path:
    """Re-encode with ffmpeg; the target's extension (or -f in extra) picks the container."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source), *extra, str(target)], check=True
    )
    return target


def silence(target: Path, seconds: float, *, rate: int = 16000) -> Path:
    sox("-n", "-r", str(rate), "-c", "1", "-b", "16", str(target), "trim", "0", str(seconds))
    return target
