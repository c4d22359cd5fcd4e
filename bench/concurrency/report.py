"""What one run leaves: the JSON file, the Markdown file beside it, and the table with the lines around it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bench.common import (
    busy_warning,
    describe_busy,
    git_commit,
    load_average,
    machine_info,
    write_results,
)
from bench.concurrency.clients import MIXED_SHORT_START
from bench.concurrency.clips import Inputs
from bench.concurrency.decisions import decision_lines
from bench.concurrency.plan import Plan
from bench.concurrency.table import TABLE_HEADERS, table_row
from bench.tables import markdown_table, render_table


@dataclass(frozen=True)
class Outcome:
    """Everything one run measured, and how."""

    plan: Plan
    inputs: Inputs
    started: datetime
    elapsed_s: float
    beam_size: int
    floor_texts: Mapping[int, str]
    summaries: Sequence[Mapping[str, object]]
    servers: Mapping[str, Mapping[str, object]]
    load: Mapping[str, list[float]]  # load averages: before the start and after each part
    busy: tuple[Sequence[dict[str, object]], Sequence[dict[str, object]]]  # other processes: before, after

    def decisions(self) -> list[str]:
        plan = self.plan
        return decision_lines(self.summaries, plan.target, plan.default_key, plan.labels)


def header_lines(o: Outcome) -> list[str]:
    plan, inputs = o.plan, o.inputs
    args, longs, shorts = plan.args, inputs.longs, inputs.shorts
    total_audio = sum(c.seconds for c in inputs.clips)
    mixed_note = (
        f"; mixed load: {', '.join(f'{c.name} ({c.seconds:.0f} s)' for c in longs)} at once, and {args.mixed_short} "
        f"short clips of {min(c.seconds for c in shorts):.1f}–{max(c.seconds for c in shorts):.1f} s, one every "
        f"{args.mixed_interval:g} s from {MIXED_SHORT_START:g} s"
        if plan.with_mixed
        else ""
    )
    default = plan.labels[plan.default_key] if plan.default_key else "none of these"
    return [
        f"{plan.served.title()}, beam {o.beam_size}); {plan.threads} threads in all in every row; "
        f"{len(inputs.clips)} clips, {total_audio:.1f} s of audio, each once per row{mixed_note}",
        f"configured default layout: {default}; "
        f"{f'1 request in {args.stream_every} streamed' if args.stream_every else 'nothing streamed'}",
        "latency: per request, from sending it (in-process: calling transcribe) to the whole answer; mixed rows: "
        "the short clips. encode/generate %: shares of the time spent in CTranslate2 (in-process: timed around "
        "the calls; batched server: the batch workers' busy time on /metrics); batch enc/gen: mean batch sizes",
    ]


def report_json(o: Outcome, decisions: Sequence[str]) -> dict[str, object]:
    plan, inputs = o.plan, o.inputs
    args, every = plan.args, plan.every
    return {
        "started_at": o.started.isoformat(timespec="seconds"),
        "elapsed_s": round(o.elapsed_s, 1),
        "git_commit": git_commit(),
        **plan.served.report(beam_size=o.beam_size),
        "threads": plan.threads,
        "configured_layout": plan.default_key,
        "layouts": {key: every[key].label for key in ["floor", *plan.selected] if key in every},
        "levels": list(plan.levels),
        "unbatched_levels": list(plan.unbatched_levels),
        "target_clients": plan.target,
        "stream_every": args.stream_every,
        "mixed": {
            "long_files": [c.index for c in inputs.longs],
            "short_clips": [c.index for c in inputs.shorts],
            "short_requests": args.mixed_short,
            "interval_s": args.mixed_interval,
            "first_short_at_s": MIXED_SHORT_START,
        }
        if plan.with_mixed
        else None,
        "servers": o.servers,
        "machine": machine_info(plan.cores, {**o.load, "after": load_average()}),
        "other_processes_before": o.busy[0],
        "other_processes_after": o.busy[1],
        "audio_dir": str(inputs.directory),
        "clips": [c.as_dict() for c in inputs.catalog.values()],
        "floor_texts": {str(k): v for k, v in o.floor_texts.items()},
        "rows": o.summaries,
        "decisions": decisions,
    }


def write_report(o: Outcome, emit: Callable[[str], None] = print) -> None:
    """The JSON file (``--out``, or bench/results/concurrency-<timestamp>.json), the Markdown file beside it, and
    the same on the terminal."""
    header = header_lines(o)
    decisions = o.decisions()
    cells = [table_row(s) for s in o.summaries]
    report = report_json(o, decisions)
    path = write_results(o.plan.args.out, "concurrency-", o.started, report)
    load_line = " | ".join(f"{k} {v[0]:.2f}/{v[1]:.2f}/{v[2]:.2f}" for k, v in o.load.items())
    footer = [
        f"load average (1/5/15 min): {load_line}",
        f"other processes on the CPU before: {describe_busy(o.busy[0])}",
        f"other processes on the CPU after: {describe_busy(o.busy[1])}",
    ]
    warning = busy_warning(o.load["before"])
    if warning is not None:
        footer.append(warning)
    markdown = [
        f"# bench.concurrency, {o.started.isoformat(timespec='minutes')} (commit {report['git_commit']})",
        "",
        *(f"{line}  " for line in header),
        "",
        markdown_table(TABLE_HEADERS, cells),
        "",
        *(f"- {line}" for line in decisions),
        "",
        *(f"{line}  " for line in footer),
    ]
    path.with_suffix(".md").write_text("\n".join(markdown) + "\n")

    emit("")
    for line in header:
        emit(line)
    emit(render_table(TABLE_HEADERS, cells))
    emit("")
    for line in decisions:
        emit(line)
    emit("")
    for line in footer:
        emit(line)
    emit(f"\ntook {o.elapsed_s / 60:.1f} min; results written to {path} and {path.with_suffix('.md').name}")
