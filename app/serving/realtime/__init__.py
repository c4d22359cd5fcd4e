"""Realtime transcription sessions: configuration, turns, decoding, admission (no web framework in here)."""

from app.serving.realtime.config import (
    NoiseReductionConfig,
    SemanticVadConfig,
    ServerVadConfig,
    SessionConfig,
    TranscriptionConfig,
    TurnDetectionConfig,
)
from app.serving.realtime.registry import SessionRegistry, SessionTicket
from app.serving.realtime.session import RealtimeSession

__all__ = [
    "NoiseReductionConfig",
    "RealtimeSession",
    "SemanticVadConfig",
    "ServerVadConfig",
    "SessionConfig",
    "SessionRegistry",
    "SessionTicket",
    "TranscriptionConfig",
    "TurnDetectionConfig",
]
