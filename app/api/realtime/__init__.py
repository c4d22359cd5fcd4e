"""The realtime WebSocket protocol (GA and beta) for transcription sessions, and its client secrets."""

from app.api.realtime.client_secrets import ClientSecrets, ClientSecretStore
from app.api.realtime.routes import realtime_http, realtime_socket

__all__ = ["ClientSecretStore", "ClientSecrets", "realtime_http", "realtime_socket"]
