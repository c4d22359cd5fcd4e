"""Long live turns with and without turn anchors (``realtime.anchor_turns``): CPU, deltas, completion, WER.

A turn is decoded again and again as it grows; with anchors, once every word of a segment is shown,
later live decodes start after that segment and hear its words as the prompt (the final hears the
whole turn). The
benefit grows with the turn, so this streams long turns: one session per recording, manual commits
(``turn_detection: null``, turns cut at ``--max-turn-seconds``), the first ``--seconds`` of each
recording at 1x real time through the openai SDK's realtime client, then a commit. Per setting and
recording it reports the server's CPU seconds, the deltas sent, the time from the last commit to the
last ``...transcription.completed``, the decodes that started at an anchor, and the WER of the live
transcript against the file endpoint's transcript of the same audio on the same server.

    .venv/bin/python -m bench.realtime_long_turns                 # base, 30-s turns, about 4 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from openai import AsyncOpenAI, OpenAI

from app.settings import PROJECT_ROOT
from bench.common import (
    BenchError,
    audio_dir,
    bench_main,
    git_commit,
    load_average,
    process_cpu_seconds,
    results_file,
    run_server,
    server_config,
    write_wav,
)
from bench.speech import wer
from bench.tables import render_table
from engines.audio import SAMPLE_RATE, decode_audio

RECORDINGS = ("diar_pyaudioanalysis_radio4spk.wav", "diar_voxconverse_gwtwd.wav")
CHUNK_SECONDS = 0.1
DRAIN_TIMEOUT_SECONDS = 120.0  # the last completion is waited for this long after the commit


async def stream_session(base_url: str, model: str, pcm: bytes) -> dict[str, Any]:
    client = AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    deltas, committed, completions = 0, [], []
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        created: Any = await conn.recv()
        await conn.session.update(
            session={
                "type": "transcription",
                "audio": {"input": {"transcription": {"model": model, "language": "en"}, "turn_detection": None}},
            }
        )

        async def read() -> None:
            nonlocal deltas
            event: Any
            async for event in conn:
                if event.type == "input_audio_buffer.committed":
                    committed.append(time.perf_counter())
                elif event.type.endswith("transcription.delta"):
                    deltas += 1
                elif event.type.endswith("transcription.completed"):
                    completions.append((time.perf_counter(), event.transcript))

        reader = asyncio.create_task(read())
        chunk, begin = int(48_000 * CHUNK_SECONDS), time.perf_counter()
        for n, i in enumerate(range(0, len(pcm), chunk)):
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + chunk]).decode())
            await asyncio.sleep(max(0.0, begin + (n + 1) * CHUNK_SECONDS - time.perf_counter()))
        committed_at = time.perf_counter()
        await conn.input_audio_buffer.commit()
        deadline = time.perf_counter() + DRAIN_TIMEOUT_SECONDS
        # until our commit is acknowledged and every committed item (turns cut before it too) has completed
        while (not committed or committed[-1] < committed_at or len(completions) < len(committed)) and (
            time.perf_counter() < deadline
        ):
            await asyncio.sleep(0.1)
        reader.cancel()
    return {
        "session": created.session.id,
        "deltas": deltas,
        "turns": len(completions),
        "last_completed_s": round(completions[-1][0] - committed_at, 3),
        "transcript": " ".join(text for _, text in completions),
    }


def decode_stats(log: str, session_id: str) -> dict[str, Any]:
    line = next((line for line in log.splitlines() if f"session={session_id} " in line and "decodes=" in line), "")
    found = re.search(r"decodes=(\{.*\})", line)
    return json.loads(found.group(1).replace("'", '"')) if found else {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.realtime_long_turns", description=__doc__)
    parser.add_argument("--model", default="base", help="embedded model to serve (default: base)")
    parser.add_argument("--seconds", type=float, default=40.0, help="audio streamed per recording (40)")
    parser.add_argument("--max-turn-seconds", type=float, default=30.0, help="realtime.max_turn_seconds (30)")
    parser.add_argument("--runs", type=int, default=1, help="runs per setting and recording (1)")
    parser.add_argument(
        "--out", type=Path, help="JSON results (default: bench/results/realtime-long-turns-<time>.json)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    directory = audio_dir()
    missing = [name for name in RECORDINGS if not (directory / name).is_file()]
    if missing:
        raise BenchError(f"missing recordings in {directory}: {', '.join(missing)}")
    load_before = load_average()
    audio = {
        name: decode_audio((directory / name).read_bytes())[: int(args.seconds * SAMPLE_RATE)] for name in RECORDINGS
    }
    rows: list[dict[str, Any]] = []
    for anchors in (True, False):
        config = server_config([args.model])
        config["aliases"] = {"gpt-realtime-whisper": {"model": args.model, "usage": "tokens"}}
        config["realtime"] |= {"anchor_turns": anchors, "max_turn_seconds": args.max_turn_seconds}
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            (workdir / "config.yaml").write_text(yaml.safe_dump(config))
            env = {"STT_MODEL_CACHE_DIR": str(PROJECT_ROOT / "var" / "models"), "STT_LEDGER_URL": "sqlite://"}
            with run_server(workdir / "config.yaml", workdir, preload=args.model, env=env) as server:
                files = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
                for name, samples in audio.items():
                    write_wav(workdir / name, samples)
                    wav = (workdir / name).read_bytes()
                    whole = files.audio.transcriptions.create(model=args.model, file=(name, wav), language="en").text
                    pcm24 = decode_audio(wav, sample_rate=24_000)
                    pcm = (np.clip(pcm24, -1, 1) * 32767).astype("<i2").tobytes()
                    for _ in range(args.runs):
                        cpu_before = process_cpu_seconds(server.process.pid)
                        result = asyncio.run(stream_session(f"{server.base_url}/v1", "gpt-realtime-whisper", pcm))
                        cpu = process_cpu_seconds(server.process.pid) - cpu_before
                        time.sleep(0.5)  # the session's log line
                        stats = decode_stats(server.log_path.read_text(errors="replace"), result["session"])
                        row = result | {
                            "anchors": anchors,
                            "recording": name,
                            "cpu_s": round(cpu, 2),
                            "anchored": stats.get("anchored"),
                            "decodes": stats,
                            "wer_vs_file": round(wer(whole, result["transcript"]), 4),
                            "file_transcript": whole,
                        }
                        rows.append(row)
                        print(f"anchors {'on' if anchors else 'off'} {name}: {row['cpu_s']} CPU s", flush=True)
    print()
    print(
        f"model {args.model}, {args.seconds:g} s per recording, turns cut at {args.max_turn_seconds:g} s, "
        f"git {git_commit()}"
    )
    print(
        render_table(
            (
                "anchors",
                "recording",
                "turns",
                "server CPU s",
                "deltas",
                "commit → last completed s",
                "anchored decodes",
                "WER vs file",
            ),
            [
                (
                    "on" if r["anchors"] else "off",
                    r["recording"],
                    str(r["turns"]),
                    f"{r['cpu_s']:.1f}",
                    str(r["deltas"]),
                    f"{r['last_completed_s']:.2f}",
                    str(r["anchored"]),
                    f"{r['wer_vs_file']:.1%}",
                )
                for r in rows
            ],
        )
    )
    out = results_file(args.out, "realtime-long-turns")
    out.write_text(
        json.dumps(
            {
                "benchmark": "realtime_long_turns",
                "commit": git_commit(),
                "model": args.model,
                "seconds": args.seconds,
                "max_turn_seconds": args.max_turn_seconds,
                "loadavg_before": load_before,
                "loadavg_after": load_average(),
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"\nresults: {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
