"""The table: one line of cells per row's figures."""

from __future__ import annotations

from collections.abc import Mapping

from bench.concurrency.layouts import MIXED

TABLE_HEADERS = (
    "row",
    "clients",
    "audio s/s",
    "CPU s/audio s",
    "lat p50 s",
    "lat p95 s",
    "long files s",
    "peak RSS MiB",
    "WER% vs floor",
    "same text",
    "batch enc/gen",
    "encode %",
    "generate %",
    "load 1m",
)


def cell(value: object, fmt: str) -> str:
    return "-" if not isinstance(value, int | float) else format(value, fmt)


def pct(value: object) -> str:
    """A share as a percentage with one decimal, without the sign; ``-`` when there is none."""
    return "-" if not isinstance(value, int | float) else f"{100 * value:.1f}"


def _clients(s: Mapping[str, object]) -> str:
    if s["kind"] == MIXED:
        return f"{s['clients']} long + {s['shorts']} short"
    if s["key"] == "pipeline":
        return f"batch {s['clients']}"
    return str(s["clients"])


def table_row(s: Mapping[str, object]) -> tuple[str, ...]:
    clients = _clients(s)
    if s["errors"]:
        clients += f" ({s['errors']} err)"
    profile = s["profile"]
    share: Mapping[str, object] = {}
    batch = "-"
    if isinstance(profile, dict):
        share = profile["share"]
        means = profile["batch_mean"]
        if means:
            batch = f"{cell(means.get('encode'), '.1f')}/{cell(means.get('generate'), '.1f')}"
    longs = s["long_files_s"]
    load = s["load_after"]
    assert isinstance(longs, list) and isinstance(load, list)
    return (
        str(s["label"]),
        clients,
        cell(s["audio_s_per_wall_s"], ".2f"),
        cell(s["cpu_s_per_audio_s"], ".3f"),
        cell(s["latency_p50_s"], ".2f"),
        cell(s["latency_p95_s"], ".2f"),
        " / ".join(f"{v:.1f}" for v in longs) or "-",
        cell(s["peak_rss_mib"], ".0f"),
        "ref" if s["key"] == "floor" else pct(s["wer_vs_floor"]),
        f"{s['same_text_as_floor']}/{s['requests']}",
        batch,
        pct(share.get("encode")),
        pct(share.get("generate")),
        f"{load[0]:.2f}",
    )
