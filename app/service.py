"""The transcription pipeline behind the routes: resolve the model, check the audio, start a job."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import anyio
import anyio.to_thread

from app.errors import APIError, internal_error, invalid_value
from app.jobs import TranscriptionJob
from app.protocol import AudioRequest, ChunkingStrategy
from app.settings import Settings, UsageKind
from engines.audio import measure_duration, stream_audio
from engines.errors import AudioDecodeError, AudioTooLongError, EngineError, ModelLoadError
from engines.longform import LongFormConfig, LongFormRun
from engines.models import ModelRegistry
from engines.types import FALLBACK_TEMPERATURES, DecodeOptions
from engines.vad import VadParams
from engines.whisper import DecodingCancelled, WhisperEngine


@dataclass(frozen=True)
class ModelRoute:
    """Which local model serves a requested model name, and how its usage is reported."""

    requested: str
    model_id: str
    usage: UsageKind


def engine_error_to_api(exc: Exception) -> APIError:
    """The one place where engine failures become HTTP answers."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, AudioTooLongError):
        return invalid_value("file", str(exc), code="audio_too_long")
    if isinstance(exc, AudioDecodeError):
        return invalid_value("file", str(exc))
    if isinstance(exc, DecodingCancelled):
        return APIError(499, "The request was cancelled.")
    error = internal_error()
    if isinstance(exc, EngineError):
        error.message = str(exc)
    return error


class TranscriptionService:
    def __init__(self, settings: Settings, registry: ModelRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self._limiters: dict[str, anyio.CapacityLimiter] = {}

    def resolve(self, requested: str) -> ModelRoute:
        alias = self.settings.aliases.get(requested)
        if alias is not None:
            return ModelRoute(requested, alias.model, alias.usage)
        if requested in self.settings.models:
            return ModelRoute(requested, requested, self.settings.local_model_usage)
        raise APIError(
            400,
            f"The model '{requested}' does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )

    def _limiter(self, model_id: str) -> anyio.CapacityLimiter:
        limiter = self._limiters.get(model_id)
        if limiter is None:
            limiter = anyio.CapacityLimiter(self.settings.models[model_id].max_concurrency)
            self._limiters[model_id] = limiter
        return limiter

    async def load(self, model_id: str) -> WhisperEngine:
        try:
            return await anyio.to_thread.run_sync(self.registry.get, model_id)
        except ModelLoadError as exc:
            error = internal_error()
            error.message = f"Model '{model_id}' is not available: {exc}"
            raise error from exc

    async def check_audio(self, data: bytes) -> float:
        """Refuse undecodable or over-long audio before any transcription work starts."""
        limit = self.settings.max_audio_seconds
        try:
            return await anyio.to_thread.run_sync(lambda: measure_duration(data, max_duration=limit))
        except EngineError as exc:
            raise engine_error_to_api(exc) from exc

    def decode_options(self, request: AudioRequest, engine: WhisperEngine, model_id: str) -> DecodeOptions:
        if request.task == "translate" and not engine.is_multilingual:
            raise invalid_value(
                "model", f"Model '{request.model}' is English-only and cannot translate.", code="unsupported_value"
            )
        if request.language not in (None, "en") and not engine.is_multilingual:
            raise invalid_value(
                "language", f"Model '{request.model}' is English-only; language must be 'en'.", code="unsupported_value"
            )
        temperatures = FALLBACK_TEMPERATURES if request.temperature == 0 else (request.temperature,)
        return DecodeOptions(
            task=request.task,
            language=request.language,
            prompt=request.prompt,
            temperatures=temperatures,
            word_timestamps=request.word_timestamps,
            logprobs=request.logprobs,
            beam_size=self.settings.models[model_id].beam_size,
        )

    def vad_params(self, chunking: ChunkingStrategy | None) -> VadParams | None:
        """`auto` uses the server's VAD settings with loudness normalisation; `server_vad` the caller's."""
        settings = self.settings
        if chunking is None and settings.default_chunking_strategy == "auto":
            chunking = ChunkingStrategy(type="auto")
        if chunking is None:
            return None
        if chunking.type == "auto":
            return VadParams(
                threshold=settings.vad_threshold,
                silence_duration_ms=settings.vad_silence_duration_ms,
                prefix_padding_ms=settings.vad_prefix_padding_ms,
                max_chunk_seconds=settings.vad_max_chunk_seconds,
                normalize_loudness=True,
            )
        return VadParams(
            threshold=chunking.vad.threshold,
            silence_duration_ms=chunking.vad.silence_duration_ms,
            prefix_padding_ms=chunking.vad.prefix_padding_ms,
            max_chunk_seconds=settings.vad_max_chunk_seconds,
        )

    async def start(self, request: AudioRequest) -> tuple[TranscriptionJob, ModelRoute]:
        """Validate everything that can fail on bad input, then hand back a job ready to run."""
        route = self.resolve(request.model)
        await self.check_audio(request.file)
        engine = await self.load(route.model_id)
        options = self.decode_options(request, engine, route.model_id)
        settings = self.settings
        blocks = stream_audio(
            request.file, block_seconds=min(60.0, settings.block_seconds), max_duration=settings.max_audio_seconds
        )
        config = LongFormConfig(block_seconds=settings.block_seconds, vad=self.vad_params(request.chunking))
        cancel = threading.Event()
        run = LongFormRun(engine, options, blocks, config, cancel)
        job = TranscriptionJob(run, self._limiter(route.model_id), cancel, time_limit=settings.request_timeout_seconds)
        return job, route
