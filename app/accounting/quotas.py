"""Per-key limits: requests per minute (a RequestWindow: per replica, or in Redis for all replicas together) and
audio hours per rolling day (from the ledger).

Refusals are OpenAI's 429 ``rate_limit_exceeded`` errors with a ``Retry-After`` header (whole seconds):

- requests per minute: ``type: "requests"``, as OpenAI answers an RPM limit;
- audio hours per day: ``type: "tokens"``, as OpenAI answers a volume limit (TPM/TPD). It is a rolling
  window, not a billing quota, so ``insufficient_quota`` (which tells clients to stop for good) would mislead.

When the wait is longer than a minute the answer also carries ``x-should-retry: false``, so that the OpenAI
SDKs do not spend their automatic retries on a window that frees only hours later.

The audio budget is checked before a request starts: a request admitted under budget runs to its end, so a key
can overshoot by at most the requests it has in flight.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from app.accounting.ledger import UsageLedger
from app.accounting.request_windows import LocalRequestWindow, RequestWindow
from app.serving.errors import RateLimited
from app.settings import KeyLimitConfig

AUDIO_WINDOW = timedelta(hours=24)
_TICK = timedelta(microseconds=1)


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class KeyQuotas:
    """Admits or refuses a key's next request; refusals raise RateLimited (a 429 on the wire)."""

    def __init__(
        self,
        limits: dict[str, KeyLimitConfig],
        default: KeyLimitConfig,
        ledger: UsageLedger,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _wall_clock,
        window: RequestWindow | None = None,
    ) -> None:
        """``window`` counts requests per minute (default: in this process, on ``clock``)."""
        self.limits = limits
        self.default = default
        self.ledger = ledger
        self._wall_clock = wall_clock
        self._window = window if window is not None else LocalRequestWindow(clock)

    def limits_for(self, key_name: str) -> KeyLimitConfig:
        """The key's limits: each field set in its own entry wins (an explicit null lifts a default limit)."""
        own = self.limits.get(key_name)
        if own is None:
            return self.default
        return self.default.model_copy(update={name: getattr(own, name) for name in own.model_fields_set})

    def admit(self, key_name: str) -> None:
        """Raise RateLimited if the key may not start a request now, else count it in its requests-per-minute
        window (blocking: the audio budget reads the ledger, a shared window asks Redis)."""
        limits = self.limits_for(key_name)
        self._check_audio(key_name, limits)
        limit = limits.requests_per_minute
        if limit is None:
            return
        full = self._window.hit(key_name, limit)
        if full is None:
            return
        raise _rate_limited(
            f"Rate limit reached for key '{key_name}' on requests per min (RPM): Limit {limit}, "
            f"Used {full.used}, Requested 1. Please try again in {_human(full.wait)}.",
            type="requests",
            wait=full.wait,
        )

    def _check_audio(self, key_name: str, limits: KeyLimitConfig) -> None:
        if limits.audio_hours_per_day is None:
            return
        limit = limits.audio_hours_per_day * 3600.0
        now = self._wall_clock()
        # The window is (now - 24 h, now]: an event leaves it exactly 24 h after its timestamp, which is when
        # Retry-After points. Timestamps are stored to the microsecond, so "after" is "at or after + 1 µs".
        since = now - AUDIO_WINDOW + _TICK
        used = self.ledger.audio_seconds_since(key_name, since)
        if used < limit:
            return
        oldest_to_expire = self.ledger.running_total_passes(key_name, since, used - limit)
        wait = (oldest_to_expire + AUDIO_WINDOW - now).total_seconds() if oldest_to_expire else 1.0
        raise _rate_limited(
            f"Rate limit reached for key '{key_name}' on audio hours per day: Limit {limits.audio_hours_per_day:g}, "
            f"Used {used / 3600.0:.2f}. Please try again in {_human(wait)}.",
            type="tokens",
            wait=wait,
        )


def _rate_limited(message: str, *, type: str, wait: float) -> RateLimited:
    return RateLimited(message, limit_type=type, wait_seconds=wait)


def _human(seconds: float) -> str:
    """A wait as OpenAI writes it: ``1.5s``, ``12m30s``, ``3h2m``."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.3g}s"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m" if hours else f"{minutes}m{secs}s"
