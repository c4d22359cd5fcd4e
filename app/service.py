"""The transcription pipeline behind the routes: resolve the model, check the audio, start a job."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import anyio
import anyio.to_thread

from app.diarizers import DiarizerHolder
from app.errors import APIError, internal_error, invalid_value
from app.jobs import TranscriptionJob
from app.metrics import Metrics
from app.protocol import AudioRequest, ChunkingStrategy, ResponseFormat
from app.scheduler import ModelSlots
from app.settings import Settings, UsageKind
from engines.audio import decode_audio, measure_duration, stream_audio
from engines.diarization.types import DiarizationOptions, Diarizer, Embedding
from engines.diarized import DiarizedRun, SpeakerSegment
from engines.errors import AudioDecodeError, AudioTooLongError, EngineError, ModelLoadError
from engines.longform import LongFormConfig, LongFormRun
from engines.manager import ModelManager
from engines.types import FALLBACK_TEMPERATURES, DecodeOptions
from engines.vad import VadParams
from engines.whisper import DecodingCancelled, WhisperEngine


@dataclass(frozen=True)
class ModelRoute:
    """Which local model serves a requested model name, and how its usage is reported."""

    requested: str
    model_id: str
    usage: UsageKind
    diarize: bool = False


# With speakers, these formats carry the speaker; verbose_json keeps OpenAI's speaker-less schema.
DIARIZED_FORMATS = frozenset(
    {ResponseFormat.DIARIZED_JSON, ResponseFormat.JSON, ResponseFormat.TEXT, ResponseFormat.SRT, ResponseFormat.VTT}
)
REFERENCE_SECONDS = (2.0, 10.0)


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
    def __init__(self, settings: Settings, manager: ModelManager, metrics: Metrics) -> None:
        self.settings = settings
        self.manager = manager
        self.metrics = metrics
        self.diarizers = DiarizerHolder(settings.diarization)
        self.slots = {
            model_id: ModelSlots(model_id, cfg.max_concurrency, cfg.max_queue)
            for model_id, cfg in settings.models.items()
        }
        for model_id, slots in self.slots.items():
            metrics.queue_depth.labels(model_id).set_function(partial(getattr, slots, "waiting"))
            metrics.in_flight.labels(model_id).set_function(partial(getattr, slots, "running"))

    def resolve(self, requested: str) -> ModelRoute:
        alias = self.settings.aliases.get(requested)
        if alias is not None:
            return ModelRoute(requested, alias.model, alias.usage, alias.diarize)
        if requested in self.settings.models:
            return ModelRoute(requested, requested, self.settings.local_model_usage)
        raise APIError(
            400,
            f"The model '{requested}' does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )

    async def lease(self, model_id: str) -> WhisperEngine:
        """Load (if needed) and lease a model; the caller must release it."""
        try:
            return await anyio.to_thread.run_sync(self.manager.acquire, model_id)
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

    def wants_speakers(self, request: AudioRequest, route: ModelRoute) -> bool:
        if request.response_format is ResponseFormat.DIARIZED_JSON:
            return True
        return route.diarize and request.response_format in DIARIZED_FORMATS

    async def start(self, request: AudioRequest) -> tuple[TranscriptionJob[Any], ModelRoute]:
        """Validate everything that can fail on bad input, then hand back a job ready to run."""
        route = self.resolve(request.model)
        speakers = self.wants_speakers(request, route)
        if speakers and request.logprobs:
            raise invalid_value("include", "include[]=logprobs is not available with speaker diarization.")
        slots = self.slots[route.model_id]
        slots.admit()
        await self.check_audio(request.file)
        if speakers:
            return await self._start_diarized(request, route, slots), route
        engine = await self.lease(route.model_id)
        try:
            options = self.decode_options(request, engine, route.model_id)
        except APIError:
            self.manager.release(route.model_id)
            raise
        settings = self.settings
        blocks = stream_audio(
            request.file, block_seconds=min(60.0, settings.block_seconds), max_duration=settings.max_audio_seconds
        )
        config = LongFormConfig(block_seconds=settings.block_seconds, vad=self.vad_params(request.chunking))
        cancel = threading.Event()
        run = LongFormRun(engine, options, blocks, config, cancel)
        job = TranscriptionJob(
            run,
            slots,
            cancel,
            time_limit=settings.request_timeout_seconds,
            on_finish=lambda: self.manager.release(route.model_id),
        )
        return job, route

    async def _start_diarized(
        self, request: AudioRequest, route: ModelRoute, slots: ModelSlots
    ) -> TranscriptionJob[SpeakerSegment]:
        """Decode once; the same samples feed Whisper (with word times) and the diarizer."""
        settings = self.settings
        try:
            audio = await anyio.to_thread.run_sync(
                lambda: decode_audio(request.file, max_duration=settings.max_audio_seconds)
            )
            diarizer = await anyio.to_thread.run_sync(self.diarizers.get)
            references = await anyio.to_thread.run_sync(self._reference_embeddings, request, diarizer)
            diarization = DiarizationOptions(request.num_speakers, request.min_speakers, request.max_speakers)
        except EngineError as exc:
            raise engine_error_to_api(exc) from exc
        engine = await self.lease(route.model_id)
        try:
            options = replace(self.decode_options(request, engine, route.model_id), word_timestamps=True)
        except APIError:
            self.manager.release(route.model_id)
            raise
        config = LongFormConfig(block_seconds=settings.block_seconds, vad=self.vad_params(request.chunking))
        cancel = threading.Event()
        run = LongFormRun(engine, options, [audio], config, cancel)
        diarized = DiarizedRun(
            run, diarizer, audio, diarization, references, threshold=settings.diarization.match_threshold
        )
        return TranscriptionJob(
            diarized,
            slots,
            cancel,
            time_limit=settings.request_timeout_seconds,
            on_finish=lambda: self.manager.release(route.model_id),
        )

    def _reference_embeddings(self, request: AudioRequest, diarizer: Diarizer) -> dict[str, Embedding]:
        """Decode, check (2–10 s) and embed each known speaker's reference clip."""
        low, high = REFERENCE_SECONDS
        embeddings: dict[str, Embedding] = {}
        for index, speaker in enumerate(request.known_speakers):
            param = "known_speaker_references"
            try:
                clip = decode_audio(speaker.reference, max_duration=high + 1)
            except AudioTooLongError:
                raise invalid_value(param, f"known_speaker_references[{index}] is longer than {high:g} s.") from None
            except AudioDecodeError as exc:
                raise invalid_value(param, f"known_speaker_references[{index}]: {exc}") from None
            seconds = clip.size / 16_000
            if not low <= seconds <= high + 0.05:
                raise invalid_value(
                    param, f"known_speaker_references[{index}] is {seconds:.1f} s; each must be {low:g}–{high:g} s."
                )
            if speaker.name in embeddings:
                raise invalid_value("known_speaker_names", f"known_speaker_names has {speaker.name!r} twice.")
            embeddings[speaker.name] = diarizer.embed(clip)
        return embeddings
