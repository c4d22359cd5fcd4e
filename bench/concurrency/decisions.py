"""The lines under the table: batched throughput at the target level against the side-by-side in-process workers,
a lone request batched against unbatched, whether any transcript changed, the best layout against the configured
default, and the mixed load's short-clip latency."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.concurrency.layouts import MIXED, SERVER_KEYS
from bench.concurrency.table import pct

TARGET_CLIENTS = 8  # the level the throughput target and the best layout are judged at
# Bounds of the lines under the table (from the issue): batched 8-client throughput against the side-by-side
# in-process workers, and a lone request batched against unbatched.
THROUGHPUT_TARGET = 1.3
LONE_REQUEST_TARGET = 1.05
# Shortened encoder windows (issue 19): server throughput at the target level against the side-by-side workers,
# CPU per audio second against the 1-thread floor (30-s windows), and WER against the floor (fractions).
WINDOW_THROUGHPUT_TARGET = 1.4
WINDOW_CPU_TARGET = 0.7
WINDOW_WER_TARGET = 0.005


def target_level(levels: Sequence[int], unbatched_levels: Sequence[int]) -> int:
    """The client count the decisions compare at: TARGET_CLIENTS when both sweeps have it, else the most clients
    both have, else the batched sweep's most."""
    common = set(levels) & set(unbatched_levels)
    if TARGET_CLIENTS in common:
        return TARGET_CLIENTS
    return max(common) if common else max(levels)


def _rate(s: Mapping[str, object]) -> float:
    value = s["audio_s_per_wall_s"]
    return float(value) if isinstance(value, int | float) else 0.0


def _per_request(s: Mapping[str, object]) -> float:
    value = s["wall_s_per_request"]
    return float(value) if isinstance(value, int | float) else float("inf")


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def decision_lines(
    summaries: Sequence[Mapping[str, object]], target: int, default_key: str | None, labels: Mapping[str, str]
) -> list[str]:
    """The issue's targets, each on one line: batched throughput at ``target`` clients against the side-by-side
    in-process workers, a lone request batched against unbatched, unchanged transcripts, and the best layout
    against the configured default (``default_key``)."""

    def find(key: str, kind: str, clients: int | None = None) -> Mapping[str, object] | None:
        for s in summaries:
            if s["key"] == key and s["kind"] == kind and (clients is None or s["clients"] == clients):
                return s
        return None

    at = f"{target} client{'s' if target != 1 else ''}"
    lines = []
    side = find("side", "in-process")
    batched = [s for key in SERVER_KEYS if key.startswith("batched") and (s := find(key, "server", target))]
    if side is None or not batched:
        lines.append(f"throughput at {at}: not compared (no side-by-side row or no batched row)")
    else:
        for s in batched:
            ratio = _rate(s) / _rate(side) if _rate(side) else 0.0
            lines.append(
                f"throughput at {at}: {s['label']} {_rate(s):.2f} audio s/s = {ratio:.2f}x "
                f"{side['label']} ({_rate(side):.2f}); "
                f"target >= {THROUGHPUT_TARGET}: {_met(ratio >= THROUGHPUT_TARGET)}"
            )

    lone_unbatched = [s for key in SERVER_KEYS if key.startswith("unbatched") and (s := find(key, "server", 1))]
    lone_batched = [s for key in SERVER_KEYS if key.startswith("batched") and (s := find(key, "server", 1))]
    if not lone_unbatched or not lone_batched:
        lines.append("lone request: not compared (no 1-client row batched and unbatched)")
    else:
        fastest = min(lone_unbatched, key=_per_request)
        for s in lone_batched:
            ratio = _per_request(s) / _per_request(fastest)
            twin = find(str(s["key"]).replace("batched", "unbatched"), "server", 1)
            same_threads = (
                ""
                if twin is None or twin is fastest
                else f"; {_per_request(s) / _per_request(twin):.3f}x {twin['label']}"
            )
            lines.append(
                f"lone request: {s['label']} {_per_request(s):.2f} s per request = {ratio:.3f}x {fastest['label']} "
                f"({_per_request(fastest):.2f} s{same_threads}); target <= {LONE_REQUEST_TARGET}: "
                f"{_met(ratio <= LONE_REQUEST_TARGET)}"
            )

    compared = [s for s in summaries if s["key"] != "floor"]
    worse = [s for s in compared if isinstance(s["wer_vs_floor"], float) and s["wer_vs_floor"] > 0]
    differ = [s for s in compared if s["same_text_as_floor"] != s["requests"]]
    failed = [s for s in summaries if s["errors"]]
    if worse:
        listed = ", ".join(f"{s['label']} ({s['clients']} cl) {pct(s['wer_vs_floor'])} %" for s in worse)
        lines.append(f"transcripts: WER > 0 against the 1-thread floor in {len(worse)} row(s): {listed}")
    else:
        rest = f"; {len(differ)} row(s) differ in case or punctuation only" if differ else ", every text identical"
        lines.append(f"transcripts: WER 0 against the 1-thread floor in all {len(compared)} row(s){rest}")
    if failed:
        lines.append("errors: " + ", ".join(f"{s['label']} ({s['clients']} cl) {s['errors']}" for s in failed))

    at_target = [s for key in SERVER_KEYS if (s := find(key, "server", target))]
    if at_target:
        best = max(at_target, key=_rate)
        ranking = ", ".join(f"{s['label']} {_rate(s):.2f}" for s in sorted(at_target, key=_rate, reverse=True))
        lines.append(f"best layout at {at}: {best['label']} (audio s/s: {ranking})")
        default = find(default_key, "server", target) if default_key else None
        if default_key is None:
            lines.append("the configured default layout is none of the measured ones")
        elif default is None:
            lines.append(f"the configured default ({labels[default_key]}) was not measured at {at}")
        elif default is best:
            lines.append(f"the configured default ({default['label']}) is the best measured one: yes")
        else:
            lines.append(
                f"the configured default ({default['label']}) is the best measured one: no, "
                f"{_rate(default):.2f} audio s/s against {_rate(best):.2f} ({_rate(default) / _rate(best):.2f}x)"
            )
    lines += window_lines(summaries, target)
    mixed = [s for s in summaries if s["kind"] == MIXED and isinstance(s["latency_p95_s"], float)]
    if mixed:
        quickest = min(mixed, key=lambda s: float(str(s["latency_p95_s"])))
        lines.append(
            "mixed load, short clips' p95 latency: "
            + ", ".join(f"{str(s['label']).removeprefix('mixed: ')} {s['latency_p95_s']:.2f} s" for s in mixed)
            + f"; lowest: {str(quickest['label']).removeprefix('mixed: ')}"
        )
    return lines


def _cpu(s: Mapping[str, object]) -> float:
    value = s["cpu_s_per_audio_s"]
    return float(value) if isinstance(value, int | float) else float("inf")


def window_lines(summaries: Sequence[Mapping[str, object]], target: int) -> list[str]:
    """Every server row at 1 and ``target`` clients against the in-process rows with 30-s windows: throughput
    against the side-by-side workers (at ``target``), CPU per audio second against the 1-thread floor, and WER
    against the floor."""
    floor = next((s for s in summaries if s["key"] == "floor" and s["kind"] == "in-process"), None)
    side = next((s for s in summaries if s["key"] == "side" and s["kind"] == "in-process"), None)
    rows = [s for s in summaries if s["kind"] == "server" and s["clients"] in (1, target)]
    if floor is None or not rows:
        return ["encoder windows: not compared (no floor row or no server row at 1 or 8 clients)"]
    lines = []
    for s in rows:
        cpu = _cpu(s) / _cpu(floor)
        wer = s["wer_vs_floor"] if isinstance(s["wer_vs_floor"], float) else float("inf")
        parts = [
            f"CPU {_cpu(s):.3f} s/audio s = {cpu:.2f}x the floor (target <= {WINDOW_CPU_TARGET}: "
            f"{_met(cpu <= WINDOW_CPU_TARGET)})",
            f"WER vs floor {pct(wer)} % (target <= {pct(WINDOW_WER_TARGET)}: {_met(wer <= WINDOW_WER_TARGET)})",
        ]
        if s["clients"] == target and side is not None and _rate(side):
            ratio = _rate(s) / _rate(side)
            parts.insert(
                0,
                f"{_rate(s):.2f} audio s/s = {ratio:.2f}x side by side (target >= {WINDOW_THROUGHPUT_TARGET}: "
                f"{_met(ratio >= WINDOW_THROUGHPUT_TARGET)})",
            )
        lines.append(f"encoder windows, {s['label']} at {s['clients']} client(s): " + "; ".join(parts))
    return lines
