"""One run: the clips built, the in-process rows, then one fresh server per server layout, and the figures."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import yaml

from bench.common import BenchError, audio_dir, busy_processes, describe_busy, load_average, served_model
from bench.concurrency.clients import MixedLoad, bench_server
from bench.concurrency.clips import Inputs, build_inputs
from bench.concurrency.figures import summarize
from bench.concurrency.in_process import InProcessPlan, bench_in_process
from bench.concurrency.layouts import MIXED, write_server_config
from bench.concurrency.plan import Plan
from bench.concurrency.report import Outcome, write_report
from bench.concurrency.rows import Row
from engines.cores import available_cores


def check(args: argparse.Namespace) -> None:
    if args.clips < 1:
        raise BenchError("--clips must be at least 1")
    if args.threads < 0:
        raise BenchError("--threads must be 0 (the available cores) or more")
    if args.stream_every < 0:
        raise BenchError("--stream-every must be 0 or more")
    if args.mixed_short < 0 or args.mixed_interval < 0:
        raise BenchError("--mixed-short and --mixed-interval must be 0 or more")
    most = max([*args.levels, *args.unbatched_levels])
    if most > args.clips:
        raise BenchError("every level sends each clip once: --levels may not exceed --clips")
    if most > args.max_queue + 1:  # unbatched, one slot: the rest must wait in the queue
        raise BenchError("--max-queue must leave room for the largest level, or requests get 429")


def server_configs(plan: Plan, workdir: Path) -> dict[str, Path]:
    """A config of the model under test for every layout that runs (the floor's always)."""
    args, served = plan.args, plan.served
    return {
        key: write_server_config(
            served.settings,
            served.model_id,
            layout.model_settings(args.max_batch_size, args.batch_wait_ms),
            args.max_queue,
            workdir / key,
        )
        for key, layout in plan.every.items()
        if key == "floor" or key in plan.selected or (key == "floor-wide" and args.pipeline_batch_sizes)
    }


def bench_servers(
    plan: Plan, configs: dict[str, Path], inputs: Inputs, load: dict[str, list[float]]
) -> tuple[list[Row], dict[str, dict[str, object]]]:
    """One fresh server per server layout, each layout's rows in turn; and what each server was."""
    args, every = plan.args, plan.every
    mixed = (
        MixedLoad(tuple(inputs.longs), tuple(inputs.shorts), args.mixed_short, args.mixed_interval)
        if plan.with_mixed
        else None
    )
    rows: list[Row] = []
    servers: dict[str, dict[str, object]] = {}
    for key in plan.server_keys:
        layout = every[key]
        levels = plan.levels if layout.batching else plan.unbatched_levels
        config = configs[key]
        measured, memory = bench_server(
            config, plan.served.requested, plan.served.model_id, layout, inputs.clips, levels, args.stream_every, mixed
        )
        rows.extend(measured)
        servers[key] = {
            "label": layout.label,
            "models": yaml.safe_load(config.read_text())["models"],
            **{k: round(v, 1) for k, v in memory.items()},
        }
        load[f"after_{key}"] = load_average()
    return rows, servers


def run(args: argparse.Namespace, emit: Callable[[str], None] = print) -> int:
    check(args)
    wall_start = time.perf_counter()
    source_dir = audio_dir()
    plan = Plan(args, served_model(args.config, args.model), available_cores())
    started = datetime.now(UTC)
    load: dict[str, list[float]] = {"before": load_average()}
    busy_before = busy_processes()
    print(f"other processes on the CPU: {describe_busy(busy_before)}", flush=True)

    with tempfile.TemporaryDirectory(prefix="stt-bench-concurrency-") as tmp:
        workdir = Path(tmp)
        inputs = build_inputs(source_dir, workdir, args.clips, args.mixed_short if plan.with_mixed else None)
        clips = inputs.clips
        print(f"clips: {len(clips)} distinct, {sum(c.seconds for c in clips):.1f} s of audio in all", flush=True)
        if max([*plan.levels, *plan.unbatched_levels]) > len(clips):
            raise BenchError(f"only {len(clips)} clips: --levels may not exceed that")
        configs = server_configs(plan, workdir)
        in_process_plan = InProcessPlan(
            requested=plan.served.requested,
            model_id=plan.served.model_id,
            layouts=plan.every,
            wide="floor-wide" in plan.selected,
            side="side" in plan.selected,
            pipeline_batch_sizes=args.pipeline_batch_sizes,
            references_of=(*inputs.longs, *inputs.shorts),
        )
        in_process, floor_texts, beam_size = bench_in_process(in_process_plan, configs, clips)
        load["after_in_process"] = load_average()
        server_rows, servers = bench_servers(plan, configs, inputs, load)

    ordered = [
        *in_process,
        *(r for r in server_rows if r.kind != MIXED),
        *(r for r in server_rows if r.kind == MIXED),
    ]
    summaries = [summarize(r, inputs.catalog, floor_texts) for r in ordered]
    busy = (busy_before, busy_processes())
    elapsed = time.perf_counter() - wall_start
    outcome = Outcome(plan, inputs, started, elapsed, beam_size, floor_texts, summaries, servers, load, busy)
    write_report(outcome, emit)
    return 0
