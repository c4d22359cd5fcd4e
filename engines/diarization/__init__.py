"""Speaker diarization: who spoke when, with an offline default engine and an optional pyannote one."""

from engines.diarization.types import DiarizationError, DiarizationOptions, Diarizer, SpeakerTurn

__all__ = ["DiarizationError", "DiarizationOptions", "Diarizer", "SpeakerTurn"]
