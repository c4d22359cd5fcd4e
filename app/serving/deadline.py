"""A request's time limit, counted from the moment the request arrived."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from app.serving.errors import TimedOut


@dataclass(frozen=True)
class Deadline:
    """``limit`` seconds from ``started`` (monotonic clock)."""

    limit: float
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return max(0.0, self.started + self.limit - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def check(self) -> None:
        """Raise TimedOut once the limit has passed."""
        if self.expired:
            raise TimedOut(self.limit)
