"""A transcription session's configuration, free of any wire format (the GA and beta protocols both map onto it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from engines.live.codecs import Denoise, InputFormat
from engines.live.turns import TurnParams

Delay = Literal["minimal", "low", "medium", "high", "xhigh"]
Eagerness = Literal["low", "medium", "high", "auto"]
NoiseReductionType = Literal["near_field", "far_field"]
Task = Literal["transcribe", "translate"]  # translate: Whisper's any-language-to-English task


@dataclass(frozen=True)
class TranscriptionConfig:
    """``audio.input.transcription``: which model, and what to tell it."""

    model: str
    language: str | None = None
    prompt: str | None = None
    keywords: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    delay: Delay | None = None  # None: medium


# Plain config parsed from the wire's ServerVadDetection; file chunking's ServerVad has other defaults.
@dataclass(frozen=True)
class ServerVadConfig:
    """``turn_detection`` of type ``server_vad``: Silero's knobs for ending a turn."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    idle_timeout_ms: int | None = None
    type: Literal["server_vad"] = "server_vad"


# Plain config parsed from the wire's SemanticVadDetection (GA) or BetaTurnDetection (beta).
@dataclass(frozen=True)
class SemanticVadConfig:
    """``turn_detection`` of type ``semantic_vad``: Silero with its knobs set by eagerness (``SEMANTIC_PRESETS``)."""

    eagerness: Eagerness = "auto"
    type: Literal["semantic_vad"] = "semantic_vad"


# Plain config parsed from the wire's TurnDetection union (GA) or BetaTurnDetection (beta); None: manual commits.
TurnDetectionConfig = ServerVadConfig | SemanticVadConfig | None


# Plain config parsed from the wire's NoiseReduction (GA) or BetaNoiseReduction (beta).
@dataclass(frozen=True)
class NoiseReductionConfig:
    """``audio.input.noise_reduction``: FFmpeg's ``afftdn`` denoiser on the input, before VAD and Whisper."""

    type: NoiseReductionType | None = None
    strength: float | None = None


# The noise floor afftdn assumes: near_field (headsets) expects quieter noise than far_field (rooms).
# strength scales the reduction: 1 is FFmpeg's default of 12 dB.
NOISE_FLOOR_DB: dict[NoiseReductionType | None, float] = {"near_field": -50.0, "far_field": -40.0, None: -50.0}
FULL_REDUCTION_DB = 12.0


def denoise_params(noise: NoiseReductionConfig | None) -> Denoise | None:
    if noise is None:
        return None
    strength = 1.0 if noise.strength is None else noise.strength
    if strength <= 0:
        return None
    return Denoise(reduction_db=max(1.0, FULL_REDUCTION_DB * strength), floor_db=NOISE_FLOOR_DB[noise.type])


@dataclass(frozen=True)
class SessionConfig:
    """Everything a client chose for a session (``session.update``), whichever protocol it spoke."""

    transcription: TranscriptionConfig
    format: InputFormat = "pcm16"
    turn_detection: TurnDetectionConfig = field(default_factory=ServerVadConfig)
    noise_reduction: NoiseReductionConfig | None = None
    include_logprobs: bool = False
    task: Task = "transcribe"  # translation sessions decode every turn with "translate"


# semantic_vad here is Silero VAD with its knobs set by eagerness: how much silence ends a turn, and
# how long a turn may grow before it is cut at its quietest point. No model judges whether the
# speaker has finished; eager settings simply end turns sooner.
SEMANTIC_PRESETS: dict[Eagerness, tuple[int, int]] = {
    "high": (300, 6_000),
    "medium": (700, 10_000),
    "auto": (700, 10_000),
    "low": (1200, 30_000),  # capped by realtime.max_turn_seconds
}


def turn_params(detection: TurnDetectionConfig, max_turn_seconds: float) -> TurnParams:
    """Silero turn-detection parameters for a session; with manual commits, only pauses are tracked."""
    max_turn_ms = int(max_turn_seconds * 1000)
    if isinstance(detection, ServerVadConfig):
        return TurnParams(
            threshold=detection.threshold,
            prefix_padding_ms=detection.prefix_padding_ms,
            silence_duration_ms=detection.silence_duration_ms,
            max_turn_ms=max_turn_ms,
            idle_timeout_ms=detection.idle_timeout_ms,
        )
    if isinstance(detection, SemanticVadConfig):
        silence_ms, semantic_max_ms = SEMANTIC_PRESETS[detection.eagerness]
        return TurnParams(silence_duration_ms=silence_ms, max_turn_ms=min(max_turn_ms, semantic_max_ms))
    return TurnParams()


@dataclass(frozen=True)
class LivePolicy:
    """How eagerly a growing turn is decoded and its words shown (``transcription.delay``)."""

    step_seconds: float | None  # decode again once this much new audio arrived; None: no live deltas
    agree: int  # successive hypotheses that must agree on a word
    holdback: int  # words at the end of an agreed prefix that wait one more round


DELAY_POLICIES: dict[Delay, LivePolicy] = {
    "minimal": LivePolicy(step_seconds=0.3, agree=1, holdback=2),
    "low": LivePolicy(step_seconds=0.5, agree=2, holdback=0),
    "medium": LivePolicy(step_seconds=0.6, agree=2, holdback=1),
    "high": LivePolicy(step_seconds=1.0, agree=3, holdback=1),
    "xhigh": LivePolicy(step_seconds=None, agree=2, holdback=0),
}
DEFAULT_DELAY: Delay = "medium"


def live_policy(config: TranscriptionConfig, partials_enabled: bool) -> LivePolicy:
    policy = DELAY_POLICIES[config.delay or DEFAULT_DELAY]
    if not partials_enabled:
        return LivePolicy(step_seconds=None, agree=policy.agree, holdback=policy.holdback)
    return policy
