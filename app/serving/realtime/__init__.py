"""Live transcription sessions: configuration, turns, decoding, admission (no web framework in here)."""

from app.serving.realtime.config import (
    NoiseReduction,
    SemanticVadConfig,
    ServerVadConfig,
    SessionConfig,
    TranscriptionConfig,
    TurnDetection,
)
from app.serving.realtime.registry import SessionRegistry, SessionTicket
from app.serving.realtime.session import RealtimeSession

__all__ = [
    "NoiseReduction",
    "RealtimeSession",
    "SemanticVadConfig",
    "ServerVadConfig",
    "SessionConfig",
    "SessionRegistry",
    "SessionTicket",
    "TranscriptionConfig",
    "TurnDetection",
]
