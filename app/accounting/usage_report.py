"""Usage reports from the ledger: JSON-able per-key totals, a text table, and the `usage` CLI command."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.accounting.ledger import KeyTotals, UsageLedger
from app.accounting.sql import as_utc

_COLUMNS = ("key", "requests", "audio_hours", "audio_seconds", "input_tokens", "output_tokens")


def parse_since(text: str) -> datetime:
    """An ISO 8601 date or date-time (``2026-01-31``, ``2026-01-31T12:00``, ``...Z``); naive means UTC."""
    try:
        return as_utc(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or date-time: {text!r}") from None


def totals_as_dicts(totals: Sequence[KeyTotals]) -> list[dict[str, Any]]:
    """One dict per key, ready for ``json.dumps``."""
    return [
        {
            "key": t.key_name,
            "requests": t.requests,
            "audio_seconds": round(t.audio_seconds, 3),
            "audio_hours": round(t.audio_seconds / 3600.0, 4),
            "input_tokens": t.input_tokens,
            "output_tokens": t.output_tokens,
        }
        for t in totals
    ]


def totals_table(totals: Sequence[KeyTotals]) -> str:
    """An aligned text table with one row per key and a TOTAL row when there is more than one key."""
    rows = [_row(t) for t in totals]
    if len(totals) > 1:
        rows.append(
            _row(
                KeyTotals(
                    key_name="TOTAL",
                    requests=sum(t.requests for t in totals),
                    audio_seconds=sum(t.audio_seconds for t in totals),
                    input_tokens=sum(t.input_tokens for t in totals),
                    output_tokens=sum(t.output_tokens for t in totals),
                )
            )
        )
    table = [list(_COLUMNS), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    return "\n".join(lines)


def _row(t: KeyTotals) -> list[str]:
    return [
        t.key_name,
        str(t.requests),
        f"{t.audio_seconds / 3600.0:.3f}",
        f"{t.audio_seconds:.1f}",
        str(t.input_tokens),
        str(t.output_tokens),
    ]


def usage_command(settings_ledger_url: str, key: str | None, since: str | None, *, as_json: bool = False) -> int:
    """`python -m app usage [--key NAME] [--since ISO] [--json]`: print per-key totals; returns the exit code."""
    try:
        since_at = parse_since(since) if since else None
    except ValueError as exc:
        print(f"error: --since: {exc}", file=sys.stderr)
        return 2
    ledger = UsageLedger(settings_ledger_url)
    try:
        totals = ledger.totals(key_name=key, since=since_at)
    finally:
        ledger.close()
    if as_json:
        print(json.dumps({"since": since_at.isoformat() if since_at else None, "keys": totals_as_dicts(totals)}))
        return 0
    if not totals:
        print("no usage recorded" + (f" for key {key!r}" if key else "") + (f" since {since_at}" if since_at else ""))
        return 0
    print(totals_table(totals))
    return 0
