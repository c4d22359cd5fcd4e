"""app.accounting.usage_report: totals as dicts and a table, and the `usage` CLI handler."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.accounting.ledger import KeyTotals, UsageEvent, UsageLedger
from app.accounting.usage_report import parse_since, totals_as_dicts, totals_table, usage_command
from tests.ledger_urls import sqlite_url

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def seed(url: str) -> None:
    ledger = UsageLedger(url)
    try:
        for key, audio, hours_ago in [("alice", 1800.0, 30), ("alice", 900.0, 1), ("bob", 36.0, 2)]:
            ledger.record(
                UsageEvent(
                    key_name=key,
                    model="whisper-1",
                    endpoint="/v1/audio/transcriptions",
                    status=200,
                    audio_seconds=audio,
                    input_tokens=10,
                    output_tokens=20,
                    ts=T0 - timedelta(hours=hours_ago),
                )
            )
    finally:
        ledger.close()


def test_parse_since() -> None:
    assert parse_since("2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_since("2026-03-01T12:00") == T0
    assert parse_since("2026-03-01T12:00:00Z") == T0
    assert parse_since("2026-03-01T14:00+02:00") == T0
    assert parse_since("2026-03-01T14:00+02:00").tzinfo == UTC
    assert parse_since("2026-03-01T14:00+02:00") == datetime(2026, 3, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_since("yesterday")


def test_dicts_and_table() -> None:
    totals = [KeyTotals("alice", 2, 2700.0, 20, 40), KeyTotals("bob", 1, 36.0, 10, 20)]
    assert totals_as_dicts(totals) == [
        {
            "key": "alice",
            "requests": 2,
            "audio_seconds": 2700.0,
            "audio_hours": 0.75,
            "input_tokens": 20,
            "output_tokens": 40,
        },
        {
            "key": "bob",
            "requests": 1,
            "audio_seconds": 36.0,
            "audio_hours": 0.01,
            "input_tokens": 10,
            "output_tokens": 20,
        },
    ]
    lines = totals_table(totals).splitlines()
    assert lines[0].split() == ["key", "requests", "audio_hours", "audio_seconds", "input_tokens", "output_tokens"]
    assert lines[1].split() == ["alice", "2", "0.750", "2700.0", "20", "40"]
    assert lines[3].split() == ["TOTAL", "3", "0.760", "2736.0", "30", "60"]
    assert len({len(line) for line in lines}) == 1
    assert len(totals_table(totals[:1]).splitlines()) == 2  # no TOTAL row for one key


def test_usage_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = sqlite_url(tmp_path / "usage.db")
    seed(url)

    assert usage_command(url, None, None) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["key", "alice", "bob", "TOTAL"]
    assert out[1].split()[1] == "2" and out[1].split()[3] == "2700.0"

    assert usage_command(url, "alice", "2026-03-01T00:00:00Z") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:4] == ["alice", "1", "0.250", "900.0"]
    assert len(out) == 2

    assert usage_command(url, "nobody", None) == 0
    assert capsys.readouterr().out.strip() == "no usage recorded for key 'nobody'"

    assert usage_command(url, None, "2026-03-01", as_json=True) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["since"] == "2026-03-01T00:00:00+00:00"
    assert [(k["key"], k["requests"]) for k in data["keys"]] == [("alice", 1), ("bob", 1)]


def test_usage_command_bad_since(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_command(sqlite_url(tmp_path / "usage.db"), None, "last week") == 2
    assert "--since" in capsys.readouterr().err
    assert not (tmp_path / "usage.db").exists()
