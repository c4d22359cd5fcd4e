"""Live translation latency: French and Spanish speech streamed at real time into /v1/realtime/translations.

Each session streams one recording in 200-ms frames of 24 kHz PCM16 on an absolute clock (then
silence, as a translation client keeps sending, then ``session.close``) through the openai SDK's
``realtime.translations`` client, and records:

* first delta: wall time from the speech's start (its first loud frame was sent) to the first
  ``session.output_transcript.delta``;
* last delta: wall time from the speech's end (its last loud frame was sent) to the last delta;
* the WER of the joined deltas against a reference English translation.

Recordings: the shared French recording (fr_picovoice_leopard.wav) and espeak-ng Spanish. Each is
streamed alone (1 session), then 3 sessions run at once (recordings in turn).

    .venv/bin/python -m bench.realtime --translate              # base, 1 and 3 sessions
    .venv/bin/python -m bench.realtime --translate --models small
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from openai import AsyncOpenAI

from app.settings import PROJECT_ROOT
from bench.common import (
    BenchError,
    audio_dir,
    busy_warning,
    git_commit,
    load_average,
    machine_info,
    results_file,
    run_server,
    server_config,
)
from bench.speech import espeak, wer
from bench.tables import render_table
from engines.audio import decode_audio
from engines.cores import available_cores

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
FRAME_SECONDS = 0.2
FRAME_BYTES = 9600  # 200 ms of 24 kHz PCM16
TAIL_SECONDS = 4.0  # silence after the speech before session.close
LOUD = 0.02  # a frame whose peak passes this is speech (the recordings are clean)
SPANISH = (
    "Mañana por la mañana vamos a visitar el museo de la ciudad con mis dos hermanos, "
    "y después comeremos juntos en un restaurante cerca del río."
)
# References (English) are the same as the e2e tests'.
REFERENCES = {
    "fr recording": "Under the Consulate, he becomes conservator of waters and forests and general councillor.",
    "es espeak": (
        "Tomorrow morning we are going to visit the city museum with my two brothers, "
        "and then we will eat together in a restaurant near the river."
    ),
}
LEVELS = (1, 3)


@dataclass
class Clip:
    name: str
    pcm: bytes
    speech_start: float  # seconds into the clip
    speech_end: float


def load_clip(name: str, path: Path) -> Clip:
    audio = decode_audio(path.read_bytes(), sample_rate=24_000)
    frames = [audio[i : i + FRAME_BYTES // 2] for i in range(0, audio.size, FRAME_BYTES // 2)]
    loud = [n for n, frame in enumerate(frames) if frame.size and float(np.abs(frame).max()) > LOUD]
    if not loud:
        raise BenchError(f"{path} has no speech")
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes() + bytes(int(TAIL_SECONDS * 48_000))
    return Clip(name, pcm, loud[0] * FRAME_SECONDS, (loud[-1] + 1) * FRAME_SECONDS)


async def one_session(client: AsyncOpenAI, model: str, clip: Clip, start_delay: float) -> dict[str, Any]:
    await asyncio.sleep(start_delay)
    deltas: list[tuple[float, str]] = []
    async with client.realtime.translations.connect(model=model) as conn:
        begin = time.perf_counter()

        async def send() -> None:
            for n, i in enumerate(range(0, len(clip.pcm), FRAME_BYTES)):
                audio = base64.b64encode(clip.pcm[i : i + FRAME_BYTES]).decode()
                await conn.send({"type": "session.input_audio_buffer.append", "audio": audio})
                await asyncio.sleep(max(0.0, begin + (n + 1) * FRAME_SECONDS - time.perf_counter()))
            await conn.send({"type": "session.close"})

        sender = asyncio.create_task(send())
        async for event in conn:
            if event.type == "session.output_transcript.delta":
                deltas.append((time.perf_counter() - begin, event.delta))
            elif event.type == "error":
                print(f"error: {event.error.message}", file=sys.stderr)
            elif event.type == "session.closed":
                break
        await sender
    text = "".join(d for _, d in deltas)
    return {
        "recording": clip.name,
        "first_delta_s": None if not deltas else round(deltas[0][0] - clip.speech_start, 3),
        "last_delta_s": None if not deltas else round(deltas[-1][0] - clip.speech_end, 3),
        "speech_s": round(clip.speech_end - clip.speech_start, 1),
        "wer": round(wer(REFERENCES[clip.name], text), 3),
        "text": text,
    }


async def run_level(base_url: str, model: str, clips: list[Clip]) -> list[dict[str, Any]]:
    client = AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    return list(await asyncio.gather(*(one_session(client, model, c, 0.37 * i) for i, c in enumerate(clips))))


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["model", "sessions", "recording", "speech s", "first delta after speech start s",
               "last delta after speech end s", "WER"]  # fmt: skip
    cells = [[r["model"], str(r["sessions"]), r["recording"], fmt(r["speech_s"]), fmt(r["first_delta_s"]),
              fmt(r["last_delta_s"]), fmt(r["wer"])] for r in rows]  # fmt: skip
    return render_table(headers, cells)


def run(args: argparse.Namespace) -> int:
    french = audio_dir() / "fr_picovoice_leopard.wav"
    if not french.is_file():
        raise BenchError("fr_picovoice_leopard.wav not found: point STT_TEST_AUDIO_DIR at the shared recordings")
    load_before = load_average()
    warning = busy_warning(load_before)
    if warning:
        print(warning, file=sys.stderr)
    models = [m for m in args.models if not m.endswith(".en")] or ["base"]  # .en models cannot translate
    config = server_config(models)
    rows: list[dict[str, Any]] = []
    out = results_file(args.out, "realtime-translation")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        clips = [load_clip("fr recording", french),
                 load_clip("es espeak", espeak(workdir / "es.wav", SPANISH, voice="es", speed=140))]  # fmt: skip
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        env = {"STT_MODEL_CACHE_DIR": str(PROJECT_ROOT / "var" / "models"), "STT_LEDGER_URL": "sqlite://"}
        with run_server(workdir / "config.yaml", workdir, preload=models[0], env=env) as server:
            base_url = f"{server.base_url}/v1"
            for model in models:
                asyncio.run(run_level(base_url, model, clips[:1]))  # warm-up
                levels = [[clip] for clip in clips] + [[clips[i % len(clips)] for i in range(n)] for n in LEVELS[1:]]
                for level in levels:
                    for result in asyncio.run(run_level(base_url, model, level)):
                        rows.append({"model": model, "sessions": len(level)} | result)
                        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    out.write_text(json.dumps({
        "benchmark": "realtime-translation", "commit": git_commit(), "rows": rows,
        "machine": machine_info(available_cores(), {"before": load_before, "after": load_average()}),
    }, indent=2))  # fmt: skip
    print(f"\nresults: {out}")
    return 0
