"""What a hostile short request costs: the server's CPU seconds per request, against the same clip sent plainly.

A 1-s clip (espeak-ng) is sent through the openai SDK to the real server (the shipped default config, `base`)
plainly and with each hostile variant: 5,000 right-to-left overrides (U+202E) as the prompt, one word
repeated 2,000 times as the prompt, 100 keywords of 200 characters (the most the request rules allow;
control and bidi characters are refused), 100 distinct keywords. Requests run one
at a time; each is timed by the server process's CPU seconds (and its wall time at the client). The
multiple is each variant's median CPU over the plain clip's median.

    .venv/bin/python -m bench.work_bounds              # about 2 minutes
    .venv/bin/python -m bench.work_bounds --runs 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from openai import OpenAI

from app.settings import DEFAULT_CONFIG, PROJECT_ROOT
from bench.common import bench_main, busy_warning, git_commit, load_average, process_cpu_seconds, run_server
from bench.speech import espeak
from bench.tables import render_table

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
CLIP_TEXT = "Hello there."
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "prompt: 5,000 x U+202E": {"prompt": "\u202e" * 5000},
    "prompt: 'hello ' x 2,000": {"prompt": "hello " * 2000},
    # The most the request rules let through: 100 distinct keywords of 200 characters each.
    "keywords: 100 x 200 chars": {"extra_body": {"keywords": [f"{i:03d}" + "zq" * 98 + "z" for i in range(100)]}},
    "keywords: 100 distinct": {"extra_body": {"keywords": [f"keyword{i}" for i in range(100)]}},
}


def run(args: argparse.Namespace) -> int:
    load_before = load_average()
    warning = busy_warning(load_before)
    if warning:
        print(warning, file=sys.stderr)
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        clip = espeak(workdir / "clip.wav", CLIP_TEXT)
        config_path = workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        env = {"STT_MODEL_CACHE_DIR": str(PROJECT_ROOT / "var" / "models"), "STT_LEDGER_URL": "sqlite://"}
        with run_server(config_path, workdir, preload="base", env=env) as server:
            client = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=600)

            def send(options: dict[str, Any]) -> tuple[float, float, str]:
                cpu, wall = process_cpu_seconds(server.process.pid), time.perf_counter()
                with clip.open("rb") as audio:
                    text = client.audio.transcriptions.create(model="whisper-1", file=audio, **options).text
                return process_cpu_seconds(server.process.pid) - cpu, time.perf_counter() - wall, text

            send({})  # warm-up
            for name, options in VARIANTS.items():
                timings = [send(options) for _ in range(args.runs)]
                rows.append({
                    "variant": name,
                    "cpu_s": [round(t[0], 3) for t in timings],
                    "wall_s": [round(t[1], 3) for t in timings],
                    "text": timings[-1][2],
                })  # fmt: skip
    plain = statistics.median(rows[0]["cpu_s"])
    for row in rows:
        row["cpu_multiple"] = statistics.median(row["cpu_s"]) / plain
    headers = ["request (1-s clip)", "CPU s p50 / max", "wall s p50 / max", "CPU x plain", "text"]
    cells = [
        [
            row["variant"],
            f"{statistics.median(row['cpu_s']):.2f} / {max(row['cpu_s']):.2f}",
            f"{statistics.median(row['wall_s']):.2f} / {max(row['wall_s']):.2f}",
            f"{row['cpu_multiple']:.1f}",
            repr(row["text"][:40]),
        ]
        for row in rows
    ]
    print(render_table(headers, cells))
    out = args.out or RESULTS_DIR / f"work-bounds-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "work_bounds", "commit": git_commit(), "rows": rows,
        "load": {"before": load_before, "after": load_average()},
    }, indent=2))  # fmt: skip
    print(f"\nresults: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="requests per variant (default 5)")
    parser.add_argument("--out", type=Path, help="JSON results file (default: bench/results/work-bounds-<time>.json)")
    return parser


if __name__ == "__main__":
    sys.exit(bench_main(build_parser(), run, sys.argv[1:]))
