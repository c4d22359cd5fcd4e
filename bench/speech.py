"""Speech with known words: texts spoken by espeak-ng (sox for silences and repetitions), and the word error rate.

Shared by the benchmarks and the tests; light to import (jiwer and the standard library).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import jiwer

from bench.entry import BenchError

SYNTH_SENTENCE = "The quick brown fox jumps over the lazy dog. Please call me back before noon tomorrow."
LONG_TEXT = (
    "It was a bright cold day in April, and the clocks were striking thirteen. "
    "The hallway smelt of boiled cabbage and old rag mats. At one end of it a coloured poster, "
    "too large for indoor display, had been tacked to the wall. It depicted simply an enormous face, "
    "more than a metre wide: the face of a man of about forty-five, with a heavy black moustache "
    "and ruggedly handsome features. Winston made for the stairs. It was no use trying the lift."
)
_PUNCTUATION = re.compile(r"[^\w\s']")


def normalize(text: str) -> str:
    """Lower case, punctuation and hyphens dropped (apostrophes kept), single spaces: what WER is computed on."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def wer(ref: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``ref``, both normalised (an empty hypothesis misses every word)."""
    return float(jiwer.wer(normalize(ref), normalize(hypothesis) or "<empty>"))


def espeak(path: Path, text: str, *, voice: str = "en-us", speed: int = 150) -> Path:
    """``text`` spoken by espeak-ng in ``voice`` at ``speed`` words a minute, written to the WAV file ``path``."""
    command = ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not path.is_file():
        raise BenchError(f"espeak-ng failed for voice {voice}: {result.stderr.strip()[-300:]}")
    return path


def sox(*args: str) -> None:
    subprocess.run(["sox", "-R", *args], check=True)  # -R: repeatable dither, so generated audio is the same every time


def repeat_audio(source: Path, target: Path, times: int, *, gap_seconds: float = 0.5) -> Path:
    """``times`` copies of ``source``, each followed by a short silence, as one 16 kHz mono WAV."""
    padded = target.with_name(target.stem + ".piece.wav")
    sox(str(source), "-r", "16000", "-c", "1", str(padded), "pad", "0", str(gap_seconds))
    sox("--combine", "concatenate", *[str(padded)] * times, str(target))
    return target
