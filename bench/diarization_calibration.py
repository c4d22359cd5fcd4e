"""Known-speaker threshold of the embedded diarizer, measured on real voices: same speaker against different speakers.

Each speaker of the shared recordings (the RTTM files; overlapped speech removed) and each single-speaker
recording gives a reference (up to 8 s of their speech, at most half of it) and "the rest" (their other
speech, as the server embeds a found speaker: ``diarizer.embed`` of that speaker's audio). Same-speaker
scores compare a reference with the rest of that speaker; different-speaker scores compare it with every
other speaker's rest. The rest is scored again after a telephone band limit (8 kHz), the usual mismatch
between a reference clip and a call recording.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal

from bench.common import render_table
from engines.audio import SAMPLE_RATE, Samples, decode_audio

THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7)
SINGLE = ("en_jfk.flac", "en_osr_harvard72_8k.wav", "en_librispeech_1272-128104-0000.wav", "fr_picovoice_leopard.wav")


def own_speech(audio: Samples, truth: list[tuple[float, float, str]], speaker: str) -> Samples:
    """The speaker's turns without any part another speaker overlaps, joined."""
    pieces = []
    for start, end, who in truth:
        if who != speaker:
            continue
        spans = [(start, end)]
        for other_start, other_end, other in truth:
            if other != speaker:
                spans = [
                    piece
                    for a, b in spans
                    for piece in ((a, min(b, other_start)), (max(a, other_end), b))
                    if piece[1] - piece[0] > 0.05
                ]
        pieces += [audio[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b in spans]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def voices(shared: Path) -> dict[str, tuple[Samples, Samples]]:
    from tests.diarization_audio import rttm_truth

    out: dict[str, tuple[Samples, Samples]] = {}
    for wav in sorted(shared.glob("diar_*.wav")):
        audio = decode_audio(wav.read_bytes())
        truth = rttm_truth(wav.with_suffix(".rttm"))
        for speaker in sorted({who for _, _, who in truth}):
            speech = own_speech(audio, truth, speaker)
            split = int(min(8.0, speech.size / SAMPLE_RATE / 2) * SAMPLE_RATE)
            if split >= 2 * SAMPLE_RATE:
                out[f"{wav.stem}:{speaker}"] = (speech[:split], speech[split:])
    for name in SINGLE:
        if (shared / name).is_file():
            audio = decode_audio((shared / name).read_bytes())
            half = audio.size // 2
            out[name] = (audio[: min(half, 10 * SAMPLE_RATE)], audio[half:])
    return out


def telephone(audio: Samples) -> Samples:
    narrow = scipy.signal.resample_poly(scipy.signal.resample_poly(audio, 1, 2), 2, 1)
    return np.asarray(narrow, dtype=np.float32)


def calibrate(shared: Path) -> dict[str, Any]:
    from engines.diarization.campp_engine import CamppDiarizer

    print("calibration: embedding references and speakers …", flush=True)
    diarizer = CamppDiarizer()
    clips = voices(shared)
    refs = {name: diarizer.embed(ref) for name, (ref, _) in clips.items()}
    rest = {name: diarizer.embed(other) for name, (_, other) in clips.items()}
    narrow = {name: diarizer.embed(telephone(other)) for name, (_, other) in clips.items()}
    same = {name: float(refs[name] @ rest[name]) for name in clips}
    same_tel = {name: float(refs[name] @ narrow[name]) for name in clips}
    different = [float(refs[a] @ rest[b]) for a in clips for b in clips if a != b]
    rows = [
        {
            "threshold": t,
            "same_accepted": float(np.mean([v >= t for v in same.values()])),
            "same_telephone_accepted": float(np.mean([v >= t for v in same_tel.values()])),
            "different_accepted": float(np.mean([v >= t for v in different])),
        }
        for t in THRESHOLDS
    ]
    return {
        "speakers": len(clips),
        "same": {k: round(v, 3) for k, v in same.items()},
        "same_telephone": {k: round(v, 3) for k, v in same_tel.items()},
        "different_pairs": len(different),
        "different_max": round(max(different), 3),
        "different_p99": round(float(np.percentile(different, 99)), 3),
        "different_mean": round(float(np.mean(different)), 3),
        "threshold_in_use": diarizer.match_threshold,
        "by_threshold": rows,
    }


def calibration_table(result: dict[str, Any]) -> str:
    same, tel = list(result["same"].values()), list(result["same_telephone"].values())
    head = (
        f"{result['speakers']} real voices; same speaker: min {min(same):.2f}, median {np.median(same):.2f} "
        f"(telephone-band recording: min {min(tel):.2f}, median {np.median(tel):.2f}); "
        f"different speakers ({result['different_pairs']} pairs): max {result['different_max']:.2f}, "
        f"99th percentile {result['different_p99']:.2f}, mean {result['different_mean']:.2f}; "
        f"threshold in use {result['threshold_in_use']:.2f}\n"
    )
    rows = [
        (
            f"{r['threshold']:.2f}",
            f"{100 * r['same_accepted']:.0f}%",
            f"{100 * r['same_telephone_accepted']:.0f}%",
            f"{100 * r['different_accepted']:.1f}%",
        )
        for r in result["by_threshold"]
    ]
    headers = ("threshold", "same speaker named", "same, telephone-band", "different speaker named")
    return head + render_table(headers, rows)
