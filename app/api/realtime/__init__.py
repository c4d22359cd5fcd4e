"""The realtime WebSocket protocol (GA and beta) for transcription sessions, and its client secrets."""

from app.api.realtime.client_secrets import ClientSecretStore
from app.api.realtime.routes import realtime_http, realtime_socket

__all__ = ["ClientSecretStore", "realtime_http", "realtime_socket"]
