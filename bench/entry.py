"""The benchmarks' common entry point, importable without the server's packages (the GPU host has none)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


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
