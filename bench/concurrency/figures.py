"""A row's figures for the JSON file and the table: throughput, CPU per audio second, latency percentiles, memory,
WER against the 1-thread floor (and against the text espeak-ng spoke), and where the time went."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jiwer

from bench.concurrency.clips import Clip
from bench.concurrency.rows import Row
from bench.speech import normalize
from bench.stats import percentile, rounded


def corpus_wer(references: Mapping[int, str], hypotheses: Sequence[tuple[int, str]]) -> float | None:
    """Word error rate of ``(clip, text)`` hypotheses against the clips' references (non-empty ones only).

    A list, not a mapping: the mixed load sends some short clips more than once, and each answer counts.
    """
    pairs = [(normalize(references[k]), normalize(text)) for k, text in hypotheses if k in references]
    pairs = [(ref, hyp) for ref, hyp in pairs if ref]
    if not pairs:
        return None
    return float(jiwer.wer([ref for ref, _ in pairs], [hyp for _, hyp in pairs]))


def summarize(row: Row, catalog: Mapping[int, Clip], floor: Mapping[int, str]) -> dict[str, object]:
    """A row's figures; latency percentiles leave out the mixed load's long files (they have their own)."""
    ok = row.ok()
    audio = sum(catalog[r.clip].seconds for r in ok)
    timed = [r for r in ok if catalog[r.clip].role != "long"]
    longs = [r.latency_s for r in ok if catalog[r.clip].role == "long"]
    firsts = [r.first_delta_s for r in ok if r.first_delta_s is not None]
    spoken = {c.index: c.reference for c in catalog.values() if c.reference is not None}
    hypotheses = [(r.clip, r.text) for r in ok]
    profile = row.profile
    return {
        "key": row.key,
        "label": row.label,
        "kind": row.kind,
        "clients": row.clients,
        "shorts": row.shorts,
        "requests": len(row.results),
        "ok": len(ok),
        "errors": len(row.results) - len(ok),
        "http_429": sum(1 for r in row.results if r.error is not None and r.error.startswith("HTTP 429")),
        "wall_s": round(row.wall_s, 3),
        "wall_s_per_request": round(row.wall_s / len(ok), 4) if ok else None,
        "audio_s": round(audio, 3),
        "audio_s_per_wall_s": round(audio / row.wall_s, 4),
        "cpu_s": round(row.cpu_s, 3),
        "cpu_s_per_audio_s": round(row.cpu_s / audio, 4) if audio else None,
        "latency_p50_s": rounded(percentile([r.latency_s for r in timed], 50)),
        "latency_p95_s": rounded(percentile([r.latency_s for r in timed], 95)),
        "long_files_s": [round(s, 3) for s in longs],
        "first_delta_p50_s": rounded(percentile(firsts, 50)),
        "first_delta_p95_s": rounded(percentile(firsts, 95)),
        "streamed": sum(1 for r in row.results if r.streamed),
        "peak_rss_mib": round(row.peak_rss_mib, 1),
        "peak_rss_reset_before": row.peak_rss_reset,
        "wer_vs_floor": rounded(corpus_wer(floor, hypotheses), 5),
        "same_text_as_floor": sum(1 for r in ok if floor.get(r.clip) == r.text),
        "wer_vs_espeak_text": rounded(corpus_wer(spoken, hypotheses), 5),
        "profile": None if profile is None else profile.as_dict(),
        "load_after": row.load_after,
        "results": [r.as_dict() for r in row.results],
    }
