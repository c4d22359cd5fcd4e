"""app.accounting.ledger_hooks: quotas at admission, one ledger row per finished request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.accounting.ledger import KeyTotals, UsageLedger
from app.accounting.ledger_hooks import LedgerHooks, usage_event
from app.accounting.metrics import Metrics
from app.accounting.quotas import KeyQuotas
from app.accounting.request_record import RequestRecord
from app.api.errors import to_api_error
from app.serving.errors import RateLimited
from app.settings import KeyLimitConfig
from engines.types import Segment, Transcript, TranscriptInfo
from tests.ledger_urls import sqlite_url


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[UsageLedger]:
    ledger = UsageLedger(sqlite_url(tmp_path / "usage.db"))
    yield ledger
    ledger.close()


def transcript(duration: float = 12.5) -> Transcript:
    info = TranscriptInfo(
        task="transcribe",
        language="en",
        language_probability=1.0,
        duration=duration,
        prompt_tokens=3,
        audio_tokens=625,
    )
    segment = Segment(
        id=0,
        seek=0,
        start=0.0,
        end=duration,
        text=" Hello.",
        tokens=[1, 2, 3, 4],
        temperature=0.0,
        avg_logprob=-0.1,
        compression_ratio=1.0,
        no_speech_prob=0.0,
    )
    return Transcript(info=info, segments=[segment])


def request_record(hooks: LedgerHooks, key: str = "alice") -> RequestRecord:
    record = RequestRecord(Metrics(), endpoint="transcribe", key_name=key, model="whisper-1")
    hooks.attach(record)
    return record


def test_usage_event_from_a_transcript() -> None:
    record = RequestRecord(Metrics(), endpoint="translate", key_name="bob", model="base")
    event = usage_event(record, 200, transcript(30.0))
    assert (event.key_name, event.model, event.endpoint, event.status) == ("bob", "base", "translate", 200)
    assert (event.audio_seconds, event.input_tokens, event.output_tokens) == (30.0, 628, 4)
    failed = usage_event(record, 500, None)
    assert (failed.status, failed.audio_seconds, failed.input_tokens, failed.output_tokens) == (500, 0.0, 0, 0)


@pytest.mark.parametrize("background", [True, False])
def test_finished_requests_are_recorded(ledger: UsageLedger, background: bool) -> None:
    hooks = LedgerHooks(ledger, background=background)
    request_record(hooks).finish(200, transcript())
    request_record(hooks).finish(499)
    request_record(hooks).finish(429)  # refusals are not written
    hooks.close()
    assert ledger.totals() == [KeyTotals("alice", requests=2, audio_seconds=12.5, input_tokens=628, output_tokens=4)]


def test_admit_applies_quotas(ledger: UsageLedger) -> None:
    quotas = KeyQuotas({}, KeyLimitConfig(requests_per_minute=1), ledger, clock=lambda: 0.0)
    hooks = LedgerHooks(ledger, quotas)
    hooks.admit(request_record(hooks))
    with pytest.raises(RateLimited) as caught:
        hooks.admit(request_record(hooks))
    assert to_api_error(caught.value).status == 429
    hooks.admit(request_record(hooks, "bob"))
    LedgerHooks(ledger).admit(request_record(hooks))  # no quotas: everyone is admitted
    hooks.close()


def test_ledger_failure_is_logged_not_raised(
    ledger: UsageLedger, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: object) -> None:
        raise RuntimeError("database is gone")

    monkeypatch.setattr(ledger, "record", broken)
    hooks = LedgerHooks(ledger)
    request_record(hooks).finish(200, transcript())
    hooks.close()
    assert "could not write a usage ledger row" in caplog.text
