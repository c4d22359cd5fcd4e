"""Test audio: the shared real recordings (when present), speech generated with espeak-ng, and WER."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import jiwer
import pytest

from app.settings import PROJECT_ROOT

SYNTH_SENTENCE = "The quick brown fox jumps over the lazy dog. Please call me back before noon tomorrow."


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


def normalize(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(text.split())


def wer(ref: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalize(ref), normalize(hypothesis) or "<empty>"))


def espeak(path: Path, text: str, *, voice: str = "en-us", speed: int = 150) -> Path:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


def convert(source: Path, target: Path, *extra: str) -> Path:
    """Re-encode with ffmpeg; the target's extension (or -f in extra) picks the container."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source), *extra, str(target)], check=True
    )
    return target


def sox(*args: str) -> None:
    subprocess.run(["sox", *args], check=True)
