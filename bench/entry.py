"""The benchmarks' common entry point, importable without the server's packages (the GPU host has none)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


class BenchError(RuntimeError):
    """A problem that stops the benchmark with a clear message (no traceback)."""


def bench_main(
    parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int], argv: Sequence[str] | None
) -> int:
    """Every benchmark's entry point: parse the arguments, run, and report a BenchError without a traceback."""
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1


def json_worker(what: str, module: str, arguments: Sequence[str], cwd: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """``python -m module arguments…`` in a fresh process (its peak memory is its own); its last stdout line as JSON."""
    command = [sys.executable, "-m", module, *arguments]
    done = subprocess.run(command, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(f"the {what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise BenchError(f"the {what} printed no JSON ({exc}):\n{done.stderr[-3000:]}") from exc
    return result
