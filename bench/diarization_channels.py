"""Per-channel transcription in the benchmark: WER of the down-mix against WER of each channel transcribed alone."""

from __future__ import annotations

import io
import threading
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.dialogues import two_voice_call
from bench.speech import wer
from bench.tables import render_table
from engines.audio import SAMPLE_RATE, AudioFile
from engines.channels import ChannelRun, check_channels, split_blocks
from engines.diarized import SpeakerSegment
from engines.longform import LongFormConfig, LongFormRun
from engines.spec import LoadContext, ModelSpec
from engines.types import DecodeOptions, Transcriber
from engines.whisper.loading import load_whisper

BLOCK_SECONDS = 60.0


def stereo_cases(shared: Path, workdir: Path) -> list[tuple[str, bytes, list[str]]]:
    """Every shared stereo recording with per-channel references (.ch0.txt, .ch1.txt), and a generated call."""
    cases = []
    for wav in sorted(shared.glob("*.wav")):
        refs = [wav.with_suffix(f".ch{i}.txt") for i in range(2)]
        if all(r.is_file() for r in refs):
            cases.append((wav.stem, wav.read_bytes(), [r.read_text().strip() for r in refs]))
    voices = workdir / "call-voices"
    voices.mkdir(exist_ok=True)
    stereo, texts = two_voice_call(voices)
    cases.append(("espeak_call_overlap", stereo_wav(stereo), texts))
    return cases


def stereo_wav(samples: npt.NDArray[np.float32]) -> bytes:
    """(channels, samples) float32 in [-1, 1] as 16-bit PCM WAV bytes."""
    pcm = (np.clip(samples.T, -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(samples.shape[0])
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def transcribe_mix(engine: Transcriber, data: bytes) -> str:
    audio = AudioFile(data)
    run = LongFormRun(engine, DecodeOptions(), audio.blocks(BLOCK_SECONDS), LongFormConfig(), threading.Event())
    return "".join(s.text for s in run.segments()).strip()


def transcribe_channels(engine: Transcriber, data: bytes) -> tuple[list[str], bool, str]:
    audio = AudioFile(data)
    first = next(audio.channel_blocks(BLOCK_SECONDS))
    check = check_channels(first)
    blocks = split_blocks(audio.channel_blocks(BLOCK_SECONDS), audio.channel_count)
    runs = [LongFormRun(engine, DecodeOptions(), b, LongFormConfig(), threading.Event()) for b in blocks]
    names = [str(c) for c in range(audio.channel_count)]
    texts = {name: "" for name in names}
    for segment in ChannelRun(runs, names, speakers=True).segments():
        assert isinstance(segment, SpeakerSegment)
        texts[segment.speaker] += segment.text
    return [texts[name].strip() for name in names], check.separate, check.reason


def channel_wer(shared: Path, workdir: Path) -> list[dict[str, Any]]:
    from app.settings import PROJECT_ROOT

    print("channels: loading Whisper base …", flush=True)
    engine = load_whisper(
        ModelSpec("base", "embedded:base"), LoadContext(PROJECT_ROOT / "var" / "models", offline=True)
    )
    out = []
    for name, data, refs in stereo_cases(shared, workdir):
        print(f"channels: {name} …", flush=True)
        mixed = transcribe_mix(engine, data)
        texts, separate, reason = transcribe_channels(engine, data)
        out.append(
            {
                "file": name,
                "references": refs,
                "mix_text": mixed,
                "mix_wer": round(wer(" ".join(refs), mixed), 4),
                "channel_texts": texts,
                "channel_wer": [round(wer(ref, text), 4) for ref, text in zip(refs, texts, strict=False)],
                "auto_separates": separate,
                "auto_reason": reason,
            }
        )
    return out


def channel_table(rows: Sequence[dict[str, Any]]) -> str:
    headers = ("file", "WER down-mixed (both refs)", "WER per channel", "auto mode")
    return render_table(
        headers,
        [
            (
                r["file"],
                f"{100 * r['mix_wer']:.1f}%",
                " / ".join(f"{100 * w:.1f}%" for w in r["channel_wer"]),
                "separate" if r["auto_separates"] else "mix",
            )
            for r in rows
        ],
    )
