"""The transcription pipeline behind the routes: resolve the model, decode, run Whisper off the loop."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import anyio
import anyio.to_thread

from app.errors import APIError, internal_error, invalid_value
from app.protocol import AudioRequest
from app.settings import Settings, UsageKind
from engines.audio import Samples, decode_audio
from engines.errors import AudioDecodeError, AudioTooLongError, ModelLoadError
from engines.models import ModelRegistry
from engines.types import FALLBACK_TEMPERATURES, DecodeOptions, Transcript
from engines.whisper import WhisperEngine


@dataclass(frozen=True)
class ModelRoute:
    """Which local model serves a requested model name, and how its usage is reported."""

    requested: str
    model_id: str
    usage: UsageKind


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

    async def decode(self, data: bytes) -> Samples:
        limit = self.settings.max_audio_seconds
        try:
            return await anyio.to_thread.run_sync(lambda: decode_audio(data, max_duration=limit))
        except AudioTooLongError as exc:
            raise invalid_value("file", str(exc), code="audio_too_long") from exc
        except AudioDecodeError as exc:
            raise invalid_value("file", str(exc)) from exc

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

    async def transcribe(self, request: AudioRequest) -> tuple[Transcript, ModelRoute]:
        route = self.resolve(request.model)
        audio = await self.decode(request.file)
        engine = await self.load(route.model_id)
        options = self.decode_options(request, engine, route.model_id)
        cancel = threading.Event()

        def run() -> Transcript:
            info, segments = engine.transcribe(audio, options, cancel)
            return Transcript(info=info, segments=list(segments))

        try:
            transcript = await anyio.to_thread.run_sync(run, limiter=self._limiter(route.model_id))
        finally:
            cancel.set()
        return transcript, route
