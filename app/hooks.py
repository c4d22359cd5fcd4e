"""Request hooks for a team endpoint: per-key admission control and the usage ledger."""

from __future__ import annotations

from app.observe import RequestRecord
from engines.types import TranscriptResult


class RequestHooks:
    """What happens around every audio request besides transcription; empty unless configured."""

    def admit(self, record: RequestRecord) -> None:
        """Raise an APIError (e.g. 429) to refuse the request before any work starts."""

    def attach(self, record: RequestRecord) -> None:
        """Register what must run once the request has finished."""
        record.on_finish.append(self.finished)

    def finished(self, record: RequestRecord, status: int, transcript: TranscriptResult | None) -> None:
        """Called once per request with its final status."""
