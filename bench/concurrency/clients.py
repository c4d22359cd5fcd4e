"""The server rows: one fresh server per layout, and clients that send the clips on a schedule through the openai
SDK (closed-loop clients at each level, then the mixed load)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from openai import APIStatusError, OpenAI, OpenAIError

from bench.common import (
    BenchError,
    load_average,
    process_cpu_seconds,
    process_peak_rss_mib,
    reset_peak_rss,
    run_server,
)
from bench.concurrency.clips import Clip
from bench.concurrency.layouts import MIXED, Layout
from bench.concurrency.profile import Metrics, batch_profile, read_batch_metrics
from bench.concurrency.rows import ClipResult, Profile, Row
from bench.concurrency.together import run_together

CLIENT_TIMEOUT_SECONDS = 1800
MIXED_SHORT_START = 0.5  # the long files are admitted first


def _sdk(base_url: str) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=CLIENT_TIMEOUT_SECONDS)


def send(sdk: OpenAI, model: str, clip: Clip, streamed: bool, row_start: float) -> ClipResult:
    """One request; a streamed one also times the first ``transcript.text.delta`` (from sending the request)."""
    sent = time.perf_counter()
    try:
        if not streamed:
            response = sdk.audio.transcriptions.create(model=model, file=(clip.name, clip.data), response_format="json")
            return ClipResult(clip.index, response.text.strip(), time.perf_counter() - sent, sent - row_start)
        first_delta: float | None = None
        deltas = 0
        text: str | None = None
        with sdk.audio.transcriptions.create(model=model, file=(clip.name, clip.data), stream=True) as events:
            for event in events:
                if event.type == "transcript.text.delta":
                    deltas += 1
                    if first_delta is None:
                        first_delta = time.perf_counter() - sent
                elif event.type == "transcript.text.done":
                    text = event.text
        if text is None:
            raise BenchError("the stream ended without a transcript.text.done event")
        return ClipResult(
            clip.index,
            text.strip(),
            time.perf_counter() - sent,
            sent - row_start,
            streamed=True,
            first_delta_s=first_delta,
            deltas=deltas,
        )
    except (OpenAIError, BenchError) as exc:
        status = f"HTTP {exc.status_code}: " if isinstance(exc, APIStatusError) else ""
        return ClipResult(
            clip.index, "", time.perf_counter() - sent, sent - row_start, streamed=streamed,
            error=f"{status}{exc}"[:300],
        )  # fmt: skip


def is_streamed(position: int, stream_every: int) -> bool:
    return stream_every > 0 and position % stream_every == stream_every - 1


@dataclass(frozen=True)
class Send:
    """One request of a schedule: when (from the start of the row) and which input."""

    at_s: float
    clip: Clip
    streamed: bool = False


def level_lanes(clips: Sequence[Clip], clients: int, stream_every: int) -> list[list[Send]]:
    """``clients`` closed-loop clients: client k sends clips k, k + clients, … one after the other."""
    return [
        [
            Send(0.0, clip, is_streamed(position, stream_every))
            for position, clip in enumerate(clips)
            if position % clients == k
        ]
        for k in range(clients)
    ]


def mixed_lanes(
    longs: Sequence[Clip], shorts: Sequence[Clip], count: int, interval_s: float, start_s: float = MIXED_SHORT_START
) -> list[list[Send]]:
    """The mixed load: every long file at t=0, each on its own client, and ``count`` short clips (cycled), the
    k-th sent at ``start_s + k * interval_s`` on a client of its own, whether or not the earlier ones are done
    (a stream of users that do not wait for each other)."""
    lanes = [[Send(0.0, clip)] for clip in longs]
    if shorts:
        lanes.extend([Send(start_s + k * interval_s, shorts[k % len(shorts)])] for k in range(count))
    return lanes


@dataclass(frozen=True)
class Measured:
    """What a schedule took on the server."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    peak_rss_reset: bool
    results: list[ClipResult]
    profile: Profile | None


def run_schedule(base_url: str, pid: int, model: str, lanes: Sequence[Sequence[Send]]) -> Measured:
    """One thread per lane; the lanes start together and each sends its requests in order, none before its time
    (a lane's next request waits for its previous answer)."""
    sdks = [_sdk(base_url) for _ in lanes]

    def request(k: int, item: Send, release: float) -> ClipResult:
        delay = release + item.at_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        return send(sdks[k], model, item.clip, item.streamed, release)

    def start() -> tuple[Metrics, bool, float]:
        return read_batch_metrics(base_url), reset_peak_rss(pid), process_cpu_seconds(pid)

    results, wall, (metrics_before, reset, cpu_start) = run_together(lanes, request, start, "client")
    cpu = process_cpu_seconds(pid) - cpu_start
    peak = process_peak_rss_mib(pid)
    for sdk in sdks:
        sdk.close()
    profile = batch_profile(metrics_before, read_batch_metrics(base_url))
    ordered = sorted(results, key=lambda r: (r.sent_at_s, r.clip))
    return Measured(wall, cpu, peak, reset, ordered, profile)


def _server_row(layout: Layout, kind: str, clients: int, measured: Measured, shorts: int = 0) -> Row:
    return Row(
        key=layout.key,
        label=f"mixed: {layout.label}" if kind == MIXED else layout.label,
        kind=kind,
        clients=clients,
        wall_s=measured.wall_s,
        cpu_s=measured.cpu_s,
        peak_rss_mib=measured.peak_rss_mib,
        peak_rss_reset=measured.peak_rss_reset,
        load_after=load_average(),
        results=measured.results,
        profile=measured.profile,
        shorts=shorts,
    )


@dataclass(frozen=True)
class MixedLoad:
    longs: tuple[Clip, ...]
    shorts: tuple[Clip, ...]
    count: int
    interval_s: float


def bench_server(
    config: Path,
    model: str,
    model_id: str,
    layout: Layout,
    clips: Sequence[Clip],
    levels: Sequence[int],
    stream_every: int,
    mixed: MixedLoad | None,
) -> tuple[list[Row], dict[str, float]]:
    """One fresh server for this layout; an untimed warm-up of every worker, each level in turn, then the mixed
    load."""
    print(f"http: {layout.label}: starting the server (preloading {model_id!r}) …", flush=True)
    with run_server(config, config.parent, preload=model_id) as server:
        pid = server.process.pid
        memory = {"startup_peak_rss_mib": process_peak_rss_mib(pid)}
        # Every slot or batch worker once, and a batch of two when batching, before anything is timed.
        warm = clips[: max(layout.workers, 2 if layout.batching else 1)]
        print(f"http: {layout.label}: warm-up ({len(warm)} at once) …", flush=True)
        run_schedule(server.base_url, pid, model, level_lanes(warm, len(warm), 0))
        if stream_every:
            with _sdk(server.base_url) as sdk:
                send(sdk, model, clips[0], True, time.perf_counter())
        memory["after_warmup_peak_rss_mib"] = process_peak_rss_mib(pid)
        rows = []
        for clients in levels:
            print(f"http: {layout.label}: {clients} concurrent client(s) …", flush=True)
            measured = run_schedule(server.base_url, pid, model, level_lanes(clips, clients, stream_every))
            rows.append(_server_row(layout, "server", clients, measured))
        if mixed is not None:
            print(
                f"http: {layout.label}: mixed load ({len(mixed.longs)} long files, {mixed.count} short clips "
                f"every {mixed.interval_s:g} s) …",
                flush=True,
            )
            lanes = mixed_lanes(mixed.longs, mixed.shorts, mixed.count, mixed.interval_s)
            measured = run_schedule(server.base_url, pid, model, lanes)
            rows.append(_server_row(layout, MIXED, len(mixed.longs), measured, mixed.count))
        memory["lifetime_peak_rss_mib"] = max([*memory.values(), *(r.peak_rss_mib for r in rows)])
    return rows, memory
