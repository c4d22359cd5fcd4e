"""What the app's routes share, typed: one ``ServerState`` on ``app.state.server``, read through ``server_state``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

if TYPE_CHECKING:  # only for the annotations: the realtime package imports this module back
    from fastapi import FastAPI

    from app.accounting.ledger import UsageLedger
    from app.accounting.ledger_hooks import LedgerHooks
    from app.accounting.metrics import Metrics
    from app.accounting.shared_state import SharedState
    from app.api.auth import Authenticator
    from app.api.realtime.client_secrets import ClientSecrets
    from app.jobs.system import JobSystem
    from app.serving.realtime import SessionRegistry
    from app.serving.service import TranscriptionService
    from app.settings import Settings
    from engines.manager import ModelManager


@dataclass
class Readiness:
    """Whether the models listed for preloading are in memory (what /ready reports)."""

    pending: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not self.pending and not self.failed


@dataclass(frozen=True)
class ServerState:
    """Everything ``create_app`` builds once and the routes use, for the life of the app."""

    settings: Settings
    started_at: int  # Unix time, the ``created`` of every model card
    service: TranscriptionService
    metrics: Metrics
    readiness: Readiness
    ledger: UsageLedger
    hooks: LedgerHooks
    authenticator: Authenticator
    client_secrets: ClientSecrets
    realtime_sessions: SessionRegistry
    shared_state: SharedState | None = None  # Redis, with shared_state_url
    jobs: JobSystem | None = None  # async jobs, unless jobs.enabled is false

    @property
    def manager(self) -> ModelManager:
        return self.service.manager


def app_state(app: FastAPI) -> ServerState:
    """The app's ServerState (set by ``create_app``)."""
    state = app.state.server
    if not isinstance(state, ServerState):
        raise TypeError("app.state.server is not a ServerState: was the app built by create_app?")
    return state


def server_state(connection: HTTPConnection) -> ServerState:
    """The ServerState of the app serving this request or WebSocket."""
    return app_state(connection.app)
