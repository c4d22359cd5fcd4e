"""What a row measured: every request's transcript and timings, where the decoding time went, and the row itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.stats import rounded


@dataclass(frozen=True)
class ClipResult:
    """One request's transcript and timings within one row."""

    clip: int
    text: str
    latency_s: float  # from sending the request (in-process: calling transcribe) to the whole answer
    sent_at_s: float = 0.0  # from the start of the row
    streamed: bool = False
    first_delta_s: float | None = None
    deltas: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "clip": self.clip,
            "latency_s": round(self.latency_s, 4),
            "sent_at_s": round(self.sent_at_s, 4),
        }
        if self.streamed:
            out["streamed"] = True
            out["first_delta_s"] = None if self.first_delta_s is None else round(self.first_delta_s, 4)
            out["deltas"] = self.deltas
        if self.error is not None:
            out["error"] = self.error
        out["text"] = self.text
        return out


@dataclass(frozen=True)
class Profile:
    """Where a row's decoding time went: seconds inside each CTranslate2 call (summed over the workers that
    ran at once), and the mean batch size of each (server batch workers only)."""

    busy_s: Mapping[str, float]
    batch_mean: Mapping[str, float] = field(default_factory=dict)

    def share(self, op: str) -> float | None:
        total = sum(self.busy_s.values())
        return self.busy_s.get(op, 0.0) / total if total > 0 else None

    def as_dict(self) -> dict[str, object]:
        return {
            "busy_s": {op: round(s, 4) for op, s in self.busy_s.items()},
            "share": {op: rounded(self.share(op)) for op in self.busy_s},
            "batch_mean": {op: round(m, 3) for op, m in self.batch_mean.items()},
        }


@dataclass
class Row:
    """Every input of a row once, in one configuration: in-process or through the server."""

    key: str  # the layout: floor, floor-wide, side, pipeline, unbatched-wide, …
    label: str
    kind: str  # "in-process", "server" or "mixed"
    clients: int  # concurrent clients or workers (mixed: the long files; pipeline: the batch size)
    wall_s: float
    cpu_s: float  # in-process: this process; server: the server process
    peak_rss_mib: float
    peak_rss_reset: bool  # the peak was reset before the row (else it covers everything before)
    load_after: list[float]
    results: list[ClipResult] = field(default_factory=list)
    profile: Profile | None = None
    shorts: int = 0  # mixed: the short requests sent

    def ok(self) -> list[ClipResult]:
        return [r for r in self.results if r.error is None]
