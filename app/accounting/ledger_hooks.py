"""Request hooks that enforce per-key quotas before an audio request and write its usage-ledger row after it."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

from app.accounting.ledger import UsageEvent, UsageLedger
from app.accounting.quotas import KeyQuotas
from app.accounting.request_record import RequestRecord
from engines.types import TranscriptResult

log = logging.getLogger(__name__)

# Refusals (rate limits, full queues) used nothing; leaving them out keeps a flood of them off the database.
UNRECORDED_STATUSES = frozenset({429})


def usage_event(record: RequestRecord, status: int, transcript: TranscriptResult | None) -> UsageEvent:
    """The ledger row of a finished request; tokens counted as in OpenAI's ``tokens`` usage shape."""
    if transcript is None:
        return UsageEvent(key_name=record.key_name, model=record.model, endpoint=record.endpoint, status=status)
    return UsageEvent(
        key_name=record.key_name,
        model=record.model,
        endpoint=record.endpoint,
        status=status,
        audio_seconds=transcript.info.duration,
        input_tokens=transcript.info.prompt_tokens + transcript.info.audio_tokens,
        output_tokens=transcript.output_tokens,
    )


class LedgerHooks:
    """``admit``: the key's quotas (raises the 429). ``finished``: one ledger INSERT, off the caller's thread.

    ``finished`` runs on the event loop, so rows are written by one background thread in order; ``close``
    waits for the rows still queued. The ledger itself belongs to the caller, who closes it after ``close``.
    """

    def __init__(self, ledger: UsageLedger, quotas: KeyQuotas | None = None, *, background: bool = True) -> None:
        self.ledger = ledger
        self.quotas = quotas
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-ledger") if background else None

    def admit(self, record: RequestRecord) -> None:
        if self.quotas is not None:
            self.quotas.admit(record.key_name)

    def attach(self, record: RequestRecord) -> None:
        """Write the request's ledger row once it has finished."""
        record.on_finish.append(self.finished)

    def finished(self, record: RequestRecord, status: int, transcript: TranscriptResult | None) -> None:
        if status in UNRECORDED_STATUSES:
            return
        event = usage_event(record, status, transcript)
        if self._writer is None:
            self.ledger.record(event)
            return
        self._writer.submit(self.ledger.record, event).add_done_callback(_log_failure)

    def record_event(self, event: UsageEvent) -> None:
        """Write one ledger row (e.g. a realtime session's), off the caller's thread."""
        if self._writer is None:
            self.ledger.record(event)
            return
        self._writer.submit(self.ledger.record, event).add_done_callback(_log_failure)

    def close(self) -> None:
        """Write every queued row, then stop the writer thread."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)


def _log_failure(future: Future[None]) -> None:
    error = future.exception()
    if error is not None:
        log.error("could not write a usage ledger row", exc_info=error)
