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
    subprocess.run(["sox", "-R", *args], check=True)  # -R: repeatable dither, so generated audio is the same every time


LONG_TEXT = (
    "It was a bright cold day in April, and the clocks were striking thirteen. "
    "The hallway smelt of boiled cabbage and old rag mats. At one end of it a coloured poster, "
    "too large for indoor display, had been tacked to the wall. It depicted simply an enormous face, "
    "more than a metre wide: the face of a man of about forty-five, with a heavy black moustache "
    "and ruggedly handsome features. Winston made for the stairs. It was no use trying the lift."
)


def repeat_audio(source: Path, target: Path, times: int, *, gap_seconds: float = 0.5) -> Path:
    """``times`` copies of ``source``, each followed by a short silence, as one 16 kHz mono WAV."""
    padded = target.with_name(target.stem + ".piece.wav")
    sox(str(source), "-r", "16000", "-c", "1", str(padded), "pad", "0", str(gap_seconds))
    sox("--combine", "concatenate", *[str(padded)] * times, str(target))
    return target


def silence(target: Path, seconds: float, *, rate: int = 16000) -> Path:
    sox("-n", "-r", str(rate), "-c", "1", "-b", "16", str(target), "trim", "0", str(seconds))
    return target
