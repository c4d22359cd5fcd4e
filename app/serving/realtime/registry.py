"""Open realtime sessions, counted per API key and per local model, against the configured limits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from app.serving.errors import SessionLimitReached
from app.settings import RealtimeConfig


@dataclass
class SessionTicket:
    """One admitted session's place; ``release`` once it ends (idempotent)."""

    registry: SessionRegistry
    key_name: str
    model_id: str
    released: bool = field(default=False)

    def move_to(self, model_id: str) -> None:
        """The session switched models: count it against the new one (or raise, leaving it where it was)."""
        if model_id == self.model_id or self.released:
            return
        self.registry._check_model(model_id)
        self.registry.by_model[self.model_id] -= 1
        self.registry.by_model[model_id] += 1
        self.model_id = model_id

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.registry.by_key[self.key_name] -= 1
            self.registry.by_model[self.model_id] -= 1


class SessionRegistry:
    """Admission for realtime sessions; everything runs on the event loop, so no locking is needed."""

    def __init__(self, limits: RealtimeConfig) -> None:
        self.limits = limits
        self.by_key: Counter[str] = Counter()
        self.by_model: Counter[str] = Counter()

    @property
    def active(self) -> int:
        return sum(self.by_key.values())

    def _check_model(self, model_id: str) -> None:
        limit = self.limits.max_sessions_per_model
        if limit is not None and self.by_model[model_id] >= limit:
            raise SessionLimitReached(
                f"Model '{model_id}' already serves {limit} realtime sessions, its limit. Try again later."
            )

    def admit(self, key_name: str, model_id: str) -> SessionTicket:
        limit = self.limits.max_sessions_per_key
        if limit is not None and self.by_key[key_name] >= limit:
            raise SessionLimitReached(f"This API key already has {limit} open realtime sessions, its limit.")
        self._check_model(model_id)
        self.by_key[key_name] += 1
        self.by_model[model_id] += 1
        return SessionTicket(self, key_name, model_id)
