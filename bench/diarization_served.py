"""What the user gets against what the diarizer found: `diarized_json` through the real server, per chunking mode.

For every real recording and every mode (no chunking, `auto`, `server_vad` with its defaults) the
server answers `gpt-4o-transcribe-diarize` with `diarized_json` through the openai SDK, and the
segments are scored like the diarizer's own turns: DER (collar 0.25 s, overlaps scored), the
share of reference speech inside returned segments (coverage) and the words returned. Beside
them stands the diarizer's one-speaker-at-a-time DER offline, on the same audio with the same
engine: the served answer should lose nothing of it.

The rules that lay Whisper's words on the diarizer's turns (``PieceRules``) are chosen the same
held-out way in process, on Whisper's own output for each recording and mode: the error of a rule
set is the DER of its segments plus the share of words misplaced (kept where the reference has no
speech, or left out where it has some).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.crossval import CrossValidation, from_matrix, grid
from bench.der import coverage, der_parts, pct, speakers_in
from bench.diarization_heldout import Recording
from bench.tables import render_table
from engines.diarization.types import Diarization, DiarizationOptions, SpeakerTurn
from engines.speaker_pieces import PieceAssembler, PieceRules
from engines.types import Segment

MODES: dict[str, Any] = {
    "none": None,
    "auto": "auto",
    "server_vad": {"type": "server_vad"},  # the SDK's object with the server's defaults
}
RULES_GRID: list[dict[str, Any]] = grid(attach_seconds=(1.0, 0.0, 0.5, 2.0), min_piece_seconds=(0.3, 0.0, 0.6))
CONTEXT_GRID = (1000, 0, 500)  # `vad_context_ms`: the value in use first


def offline_exclusive(recordings: Sequence[Recording]) -> dict[str, Diarization]:
    """The default embedded diarizer on each recording, in process (the server runs the same engine)."""
    from engines.diarization.campp_engine import CamppDiarizer

    diarizer = CamppDiarizer()
    return {r.name: diarizer.diarize(r.audio, DiarizationOptions()) for r in recordings}


def served(recordings: Sequence[Recording], workdir: Path) -> dict[str, dict[str, Any]]:
    """(mode → recording → segments, seconds) through the real server and the openai SDK."""
    from openai import OpenAI

    from app.settings import DEFAULT_CONFIG
    from bench.common import run_server, write_wav

    out: dict[str, dict[str, Any]] = {mode: {} for mode in MODES}
    env = {"STT_LEDGER_URL": f"sqlite:///{workdir / 'usage-served.db'}", "STT_DIARIZATION__PRELOAD": "true"}
    print("served: starting the server (base and the diarizer preloaded) …", flush=True)
    with run_server(DEFAULT_CONFIG, workdir, preload="base", env=env) as server:
        client = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=3600)
        for recording in recordings:
            path = workdir / f"{recording.name}.wav"
            write_wav(path, recording.audio)
            for mode, chunking in MODES.items():
                began = time.perf_counter()
                extra = {} if chunking is None else {"chunking_strategy": chunking}
                result = client.audio.transcriptions.create(
                    model="gpt-4o-transcribe-diarize",
                    file=(path.name, path.read_bytes()),
                    response_format="diarized_json",
                    **extra,
                )
                segments = [(s.start, s.end, s.speaker, s.text) for s in result.segments]
                out[mode][recording.name] = {"segments": segments, "seconds": round(time.perf_counter() - began, 2)}
    return out


def served_scores(
    recordings: Sequence[Recording], answers: Mapping[str, Mapping[str, Any]], offline: Mapping[str, Diarization]
) -> dict[str, dict[str, Any]]:
    """Per mode and recording: DER, coverage and words of the answer, and the diarizer's exclusive DER offline."""
    scores: dict[str, dict[str, Any]] = {}
    for mode, by_recording in answers.items():
        scores[mode] = {}
        for r in recordings:
            segments = by_recording[r.name]["segments"]
            turns = [(start, end, speaker) for start, end, speaker, _ in segments]
            exclusive = [(t.start, t.end, t.speaker) for t in offline[r.name].exclusive]
            scores[mode][r.name] = {
                **der_parts(r.truth, turns, r.seconds),
                "coverage": round(coverage(r.truth, turns), 4),
                "words": sum(len(text.split()) for *_, text in segments),
                "speakers_found": speakers_in(turns),
                "diarizer_exclusive_der": der_parts(r.truth, exclusive, r.seconds)["der"],
                "diarizer_coverage": round(coverage(r.truth, exclusive), 4),
                "empty_or_backward": sum(
                    1
                    for i, (start, end, *_) in enumerate(segments)
                    if end <= start or (i and start < segments[i - 1][1])
                ),
            }
    return scores


def whisper_runs(recordings: Sequence[Recording]) -> dict[tuple[str, str], list[Segment]]:
    """Whisper base's own segments (with words) per (mode, recording), as the server decodes them.

    Modes: "none", "auto" (the settings in use) and "auto@<ms>" for each other ``CONTEXT_GRID`` value.
    """
    from dataclasses import replace

    from app.serving.protocol import ChunkingStrategy
    from app.serving.service import chunking_vad
    from app.settings import load_settings
    from engines.longform import LongFormConfig, LongFormRun
    from engines.spec import LoadContext, ModelSpec
    from engines.types import DecodeOptions
    from engines.whisper.loading import load_whisper

    settings = load_settings()
    model = settings.models["base"]
    spec = ModelSpec(name="base", source=model.source, cpu_threads=0, num_workers=1)
    engine = load_whisper(spec, LoadContext(settings.model_cache, offline=True))
    auto = chunking_vad(settings, ChunkingStrategy(type="auto"))
    assert auto is not None
    configs: dict[str, LongFormConfig] = {"none": LongFormConfig(), "auto": LongFormConfig(vad=auto)}
    for context in CONTEXT_GRID[1:]:
        configs[f"auto@{context}"] = LongFormConfig(vad=replace(auto, context_ms=context))
    runs = {}
    for mode, config in configs.items():
        print(f"served: Whisper base in process, {mode} …", flush=True)
        for r in recordings:
            run = LongFormRun(engine, DecodeOptions(word_timestamps=True), [r.audio], config)
            runs[mode, r.name] = list(run.segments())
    return runs


def context_cv(
    recordings: Sequence[Recording],
    runs: Mapping[tuple[str, str], list[Segment]],
    offline: Mapping[str, Diarization],
) -> CrossValidation:
    """Leave-one-recording-out over ``CONTEXT_GRID`` (the first value is the one in use).

    The error is what `auto` loses against no chunking: the share of words it does not return
    plus the reference speech it no longer covers (nothing when it returns more).
    """
    from engines.diarization.speakers import name_speakers

    def served(mode: str, r: Recording) -> tuple[int, float]:
        assembler = PieceAssembler(name_speakers(offline[r.name].exclusive))
        pieces = [p for s in runs[mode, r.name] for p in assembler.feed(s)] + list(assembler.flush())
        words = sum(len(p.text.split()) for p in pieces)
        return words, coverage(r.truth, [(p.start, p.end, p.speaker) for p in pieces])

    errors = np.zeros((len(CONTEXT_GRID), len(recordings)))
    for r_index, r in enumerate(recordings):
        words, covered = served("none", r)
        for c_index, context in enumerate(CONTEXT_GRID):
            auto_words, auto_covered = served("auto" if c_index == 0 else f"auto@{context}", r)
            errors[c_index, r_index] = max(0.0, 1 - auto_words / max(words, 1)) + max(0.0, covered - auto_covered)
    return from_matrix([{"context_ms": c} for c in CONTEXT_GRID], [r.name for r in recordings], errors)


def rules_error(
    rules: PieceRules, recording: Recording, segments: Sequence[Segment], turns: Sequence[SpeakerTurn]
) -> float:
    assembler = PieceAssembler(turns, rules)
    pieces = [p for s in segments for p in assembler.feed(s)] + list(assembler.flush())
    der = der_parts(recording.truth, [(p.start, p.end, p.speaker) for p in pieces], recording.seconds)["der"]
    index = assembler.index  # the turns the assembler placed words on
    misplaced = total = 0
    for segment in segments:
        for word in segment.words:
            total += 1
            spoken = any(min(word.end, e) - max(word.start, s) > 0 for s, e, _ in recording.truth)
            kept = not len(index) or index.place(word.start, word.end, rules.attach_seconds) is not None
            misplaced += int(spoken != kept)
    return der + misplaced / max(total, 1)


def rules_cv(
    recordings: Sequence[Recording],
    runs: Mapping[tuple[str, str], list[Segment]],
    offline: Mapping[str, Diarization],
) -> CrossValidation:
    """Leave-one-recording-out over ``RULES_GRID``; a recording's error is the mean over the modes."""
    from engines.diarization.speakers import name_speakers

    errors = np.zeros((len(RULES_GRID), len(recordings)))
    for c_index, values in enumerate(RULES_GRID):
        rules = PieceRules(**values)
        for r_index, r in enumerate(recordings):
            turns = name_speakers(offline[r.name].exclusive)
            modes = [rules_error(rules, r, runs[mode, r.name], turns) for mode in ("none", "auto")]
            errors[c_index, r_index] = float(np.mean(modes))
    return from_matrix(RULES_GRID, [r.name for r in recordings], errors)


def served_table(recordings: Sequence[Recording], scores: Mapping[str, Mapping[str, Any]]) -> str:
    headers = (
        "recording",
        "diarizer DER excl.",
        *(f"{mode} DER" for mode in scores),
        *(f"{mode} coverage" for mode in scores),
        *(f"{mode} words" for mode in scores),
    )
    rows = []
    for r in recordings:
        first = next(iter(scores.values()))[r.name]
        rows.append(
            (
                r.name,
                pct(first["diarizer_exclusive_der"]),
                *(pct(scores[m][r.name]["der"]) for m in scores),
                *(pct(scores[m][r.name]["coverage"]) for m in scores),
                *(str(scores[m][r.name]["words"]) for m in scores),
            )
        )
    means = [np.mean([scores[m][r.name]["der"] for r in recordings]) for m in scores]
    covers = [np.mean([scores[m][r.name]["coverage"] for r in recordings]) for m in scores]
    words = [sum(scores[m][r.name]["words"] for r in recordings) for m in scores]
    diarizer = np.mean([next(iter(scores.values()))[r.name]["diarizer_exclusive_der"] for r in recordings])
    rows.append(("mean", pct(float(diarizer)), *map(pct, means), *map(pct, covers), *(str(w) for w in words)))
    return render_table(headers, rows)
