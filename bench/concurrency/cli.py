"""The command line of ``python -m bench.concurrency``: its options, checked, and the run."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import bench.concurrency
from bench.common import add_file_options, bench_main
from bench.concurrency.benchmark import run
from bench.concurrency.layouts import SELECTABLE

DEFAULT_LEVELS = (1, 2, 4, 8, 16)
DEFAULT_UNBATCHED_LEVELS = (1, 8)
DEFAULT_CLIPS = 16
DEFAULT_MAX_QUEUE = 64
DEFAULT_MIXED_SHORT = 8
DEFAULT_MIXED_INTERVAL = 2.5


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected one or more integers of at least 1")
    return values


def _batch_sizes(text: str) -> tuple[int, ...]:
    return () if text.strip().lower() in ("", "none", "0") else _int_list(text)


def _layout_keys(text: str) -> tuple[str, ...]:
    keys = tuple(part.strip() for part in text.split(",") if part.strip())
    if "all" in keys:
        return SELECTABLE
    unknown = [k for k in keys if k not in SELECTABLE]
    if unknown:
        raise argparse.ArgumentTypeError(f"layouts are {', '.join(SELECTABLE)} (or all); got {text!r}")
    return keys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.concurrency",
        description=bench.concurrency.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="whisper-1", help="model name sent to the API: an alias or a local id")
    parser.add_argument("--clips", type=int, default=DEFAULT_CLIPS, help="distinct clips of 4.5–15 s (default 16)")
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads every row uses in all (default: the available cores)"
    )
    parser.add_argument(
        "--layouts",
        type=_layout_keys,
        default=SELECTABLE,
        help=f"rows besides the 1-thread floor (default all: {','.join(SELECTABLE)})",
    )
    parser.add_argument(
        "--levels", type=_int_list, default=DEFAULT_LEVELS, help="batched: concurrent clients (default 1,2,4,8,16)"
    )
    parser.add_argument(
        "--unbatched-levels",
        type=_int_list,
        default=DEFAULT_UNBATCHED_LEVELS,
        help="unbatched: concurrent clients (default 1,8)",
    )
    parser.add_argument(
        "--mixed-short",
        type=int,
        default=DEFAULT_MIXED_SHORT,
        help=f"mixed load: short clips sent (default {DEFAULT_MIXED_SHORT})",
    )
    parser.add_argument(
        "--mixed-interval",
        type=float,
        default=DEFAULT_MIXED_INTERVAL,
        help=f"mixed load: seconds between short clips (default {DEFAULT_MIXED_INTERVAL})",
    )
    parser.add_argument("--max-batch-size", type=int, help="batched: max_batch_size (default: the model's setting)")
    parser.add_argument("--batch-wait-ms", type=float, help="batched: batch_wait_ms (default: the model's setting)")
    parser.add_argument(
        "--stream-every", type=int, default=0, help="stream every Nth request of the sweeps (default 0: none)"
    )
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE, help="server max_queue (default 64)")
    parser.add_argument(
        "--pipeline-batch-sizes",
        type=_batch_sizes,
        default=(),
        help="extra rows: faster-whisper's BatchedInferencePipeline in-process at these batch sizes (default none)",
    )
    add_file_options(parser, "concurrency-", "; .md beside")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(build_parser(), run, argv)
