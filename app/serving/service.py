"""The transcription pipeline behind the routes: resolve the model, reserve a place, open the audio, start a job.

Where a file request (/v1/audio/transcriptions and /translations) is validated, in the order a client meets it:

1. app/api/form.py (``parse_audio_form``): each field's type and range, and the combinations the form alone
   decides (``word`` granularity needs verbose_json, logprobs need json, min_speakers <= max_speakers, the
   upload's size); a 400 naming the field.
2. here, ``admit`` (``check_combinations``): the model name (``resolve``), and the combinations that need its
   route, before a queue place is taken (logprobs with speakers, which an alias's ``diarize`` can ask for, or
   with channels=separate).
3. here, ``decode_options``: the request against what the leased model can do
   (app/serving/capabilities.py, shared with realtime sessions).
4. here, ``_reference_embeddings``: the known speakers' reference clips, once they are decoded.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

import anyio
import anyio.to_thread

from app.serving.capabilities import Asked, check_supported
from app.serving.channels import DECODE_BLOCK_SECONDS, build_channel_run, wants_separate
from app.serving.deadline import Deadline
from app.serving.diarizers import DiarizerHolder
from app.serving.errors import InvalidInput, ModelNotFound, ModelUnavailable
from app.serving.jobs import Presenters, TranscriptionJob
from app.serving.protocol import AudioRequest, ChunkingStrategy, ModelRoute, ResponseFormat
from app.serving.scheduler import ModelSlots, Reservation
from app.settings import Settings
from engines.audio import SAMPLE_RATE, AudioFile, decode_audio
from engines.channels import ChannelRun
from engines.diarization.types import DiarizationOptions, Diarizer, Embedding
from engines.diarized import DiarizedRun
from engines.errors import AudioDecodeError, AudioTooLongError, ModelLoadError
from engines.longform import LongFormConfig, LongFormRun
from engines.manager import ModelManager
from engines.turnwise import TurnwiseRun
from engines.types import FALLBACK_TEMPERATURES, DecodeOptions, Transcriber
from engines.vad import VadParams

# With speakers, these formats carry the speaker; verbose_json keeps OpenAI's speaker-less schema.
DIARIZED_FORMATS = frozenset(
    {ResponseFormat.DIARIZED_JSON, ResponseFormat.JSON, ResponseFormat.TEXT, ResponseFormat.SRT, ResponseFormat.VTT}
)
# Formats whose answer times each segment (a model without segment times cannot fill them).
TIMED_FORMATS = frozenset({ResponseFormat.SRT, ResponseFormat.VTT, ResponseFormat.VERBOSE_JSON})
REFERENCE_SECONDS = (2.0, 10.0)


@dataclass(frozen=True)
class Admission:
    """A request that has its queue place: what ``start`` needs."""

    request: AudioRequest
    route: ModelRoute
    speakers: bool
    reservation: Reservation

    def release(self) -> None:
        self.reservation.release()


def chunking_vad(settings: Settings, chunking: ChunkingStrategy | None) -> VadParams | None:
    """`auto` uses the server's VAD settings with loudness normalisation; `server_vad` the caller's."""
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
            context_ms=settings.vad_context_ms,
        )
    return VadParams(
        threshold=chunking.vad.threshold,
        silence_duration_ms=chunking.vad.silence_duration_ms,
        prefix_padding_ms=chunking.vad.prefix_padding_ms,
        max_chunk_seconds=settings.vad_max_chunk_seconds,
        context_ms=settings.vad_context_ms,
    )


def check_combinations(request: AudioRequest, *, speakers: bool) -> None:
    """Options that cannot go together with the way this request is served, refused before any work.

    ``channels=separate`` only counts when asked for explicitly: ``auto`` never turns a request it cannot
    serve per channel into an error.
    """
    if speakers and request.logprobs:
        raise InvalidInput("include", "include[]=logprobs is not available with speaker diarization.")
    if request.channels == "separate" and request.logprobs:
        raise InvalidInput("include", "include[]=logprobs is not available with channels=separate.")


def asked(request: AudioRequest, *, speakers: bool = False) -> Asked:
    return Asked.of(request, speakers=speakers, timed=request.response_format in TIMED_FORMATS)


class TranscriptionService:
    """Turns a validated request into a job that holds everything it needs; no HTTP in here."""

    def __init__(
        self, settings: Settings, manager: ModelManager, diarizers: DiarizerHolder, presenters: Presenters
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.diarizers = diarizers
        self.presenters = presenters
        self.slots = {
            model_id: ModelSlots(model_id, cfg.max_concurrency, cfg.max_queue)
            for model_id, cfg in settings.models.items()
        }

    def resolve(self, requested: str) -> ModelRoute:
        alias = self.settings.aliases.get(requested)
        if alias is not None:
            return ModelRoute(requested, alias.model, alias.usage, alias.diarize)
        if requested in self.settings.models:
            return ModelRoute(requested, requested, self.settings.local_model_usage)
        raise ModelNotFound(requested)

    def decode_options(
        self, request: AudioRequest, engine: Transcriber, model_id: str, *, speakers: bool = False
    ) -> DecodeOptions:
        check_supported(asked(request, speakers=speakers), engine.capabilities, request.model)
        temperatures = FALLBACK_TEMPERATURES if request.temperature == 0 else (request.temperature,)
        return DecodeOptions(
            task=request.task,
            language=request.language,
            prompt=request.prompt,
            temperatures=temperatures,
            word_timestamps=request.word_timestamps,
            logprobs=request.logprobs,
            beam_size=self.settings.models[model_id].beam_size,
            keywords=request.keywords,
            languages=request.languages,
            # Keywords steer the decoder towards rare words: they keep Whisper's full window, on which
            # they were checked (on one measured clip a 20-s window lost a keyword that 30 s kept).
            encoder_padding_seconds=None
            if request.keywords
            else self.settings.models[model_id].encoder_padding_seconds,
        )

    def vad_params(self, chunking: ChunkingStrategy | None) -> VadParams | None:
        return chunking_vad(self.settings, chunking)

    def longform_config(self, chunking: ChunkingStrategy | None) -> LongFormConfig:
        """How a request's audio is cut for decoding: blocks, VAD chunks or a first piece."""
        return LongFormConfig(
            block_seconds=self.settings.block_seconds,
            vad=self.vad_params(chunking),
            first_piece_seconds=self.settings.first_piece_seconds,
        )

    def wants_speakers(self, request: AudioRequest, route: ModelRoute) -> bool:
        if request.response_format is ResponseFormat.DIARIZED_JSON:
            return True
        return route.diarize and request.response_format in DIARIZED_FORMATS

    def check(self, request: AudioRequest) -> tuple[ModelRoute, bool]:
        """What needs no work: the model's route, whether speakers are wanted, and the combinations refused."""
        route = self.resolve(request.model)
        speakers = self.wants_speakers(request, route)
        check_combinations(request, speakers=speakers)
        return route, speakers

    def admit(self, request: AudioRequest, *, batch: bool = False) -> Admission:
        """Check what needs no work, then reserve a queue place (QueueFull when there is none).

        The place is held from here, so the queue limit holds while the audio is opened and the
        model loaded. Pass the admission to ``start``, or ``release`` it. ``batch`` work (an async
        job) was limited when it was submitted: it is never refused here, and it waits for a slot
        behind every interactive request.
        """
        route, speakers = self.check(request)
        return Admission(request, route, speakers, self.slots[route.model_id].reserve(admitted=batch, batch=batch))

    async def start(
        self, admission: Admission, deadline: Deadline, *, max_audio_seconds: float | None = None
    ) -> TranscriptionJob[Any]:
        """Open the audio, load what is needed, and hand back a job ready to run.

        Every failure on the way gives back what was taken, the queue place included.
        """
        request, route, speakers, reservation = (
            admission.request,
            admission.route,
            admission.speakers,
            admission.reservation,
        )
        with ExitStack() as resources:
            resources.callback(reservation.release)
            settings = self.settings
            longest = settings.max_audio_seconds if max_audio_seconds is None else max_audio_seconds
            audio = await anyio.to_thread.run_sync(lambda: AudioFile(request.file, max_duration=longest))
            resources.callback(audio.close)
            deadline.check()
            cancel = threading.Event()
            config = self.longform_config(request.chunking)
            run: LongFormRun | DiarizedRun | TurnwiseRun | ChannelRun
            if await anyio.to_thread.run_sync(wants_separate, request, settings, audio):
                # One speaker per channel: each channel transcribed on its own, merged in time order.
                engine = await self._lease(resources, route.model_id, deadline)
                options = self.decode_options(request, engine, route.model_id)
                run = await anyio.to_thread.run_sync(
                    lambda: build_channel_run(
                        request,
                        audio,
                        engine,
                        options,
                        config,
                        cancel,
                        diarizer=self._diarizer,
                        references=lambda model: self._reference_embeddings(request, model),
                        threshold=settings.diarization.match_threshold,
                    )
                )
                plain = request.response_format is ResponseFormat.VERBOSE_JSON
                presenter = self.presenters.plain if plain else self.presenters.speakers
            elif speakers:
                samples = await anyio.to_thread.run_sync(audio.samples)
                diarizer = await anyio.to_thread.run_sync(self._diarizer)
                references = await anyio.to_thread.run_sync(self._reference_embeddings, request, diarizer)
                engine = await self._lease(resources, route.model_id, deadline)
                options = self.decode_options(request, engine, route.model_id, speakers=True)
                diarization = DiarizationOptions(request.num_speakers, request.min_speakers, request.max_speakers)
                threshold = settings.diarization.match_threshold
                if engine.capabilities.diarization == "words":  # words laid on the diarizer's turns
                    run = DiarizedRun(
                        LongFormRun(engine, replace(options, word_timestamps=True), [samples], config, cancel),
                        diarizer,
                        samples,
                        diarization,
                        references,
                        threshold=threshold,
                    )
                else:  # "turns": each speaker's stretch transcribed on its own
                    run = TurnwiseRun(
                        engine, options, diarizer, samples, diarization, references, threshold, cancel=cancel
                    )
                presenter = self.presenters.speakers
            else:
                engine = await self._lease(resources, route.model_id, deadline)
                options = self.decode_options(request, engine, route.model_id)
                blocks = audio.blocks(min(DECODE_BLOCK_SECONDS, settings.block_seconds))
                run = LongFormRun(engine, options, blocks, config, cancel)
                presenter = self.presenters.plain
            return TranscriptionJob(
                run,
                request=request,
                route=route,
                presenter=presenter,
                reservation=reservation,
                resources=resources.pop_all(),
                cancel=cancel,
                deadline=deadline,
                between_windows=self.slots[route.model_id].step_aside if reservation.batch else None,
                duration=audio.duration,
            )

    async def _lease(self, resources: ExitStack, model_id: str, deadline: Deadline) -> Transcriber:
        """Load (if needed) and lease the model for as long as ``resources`` stays open."""
        try:
            engine: Transcriber = await anyio.to_thread.run_sync(resources.enter_context, self.manager.lease(model_id))
        except ModelLoadError as exc:
            raise ModelUnavailable(f"Model '{model_id}' is not available: {exc}") from exc
        deadline.check()
        return engine

    def _diarizer(self) -> Diarizer:
        try:
            return self.diarizers.get()
        except ModelLoadError as exc:
            raise ModelUnavailable(f"The diarizer is not available: {exc}") from exc

    def _reference_embeddings(self, request: AudioRequest, diarizer: Diarizer) -> dict[str, Embedding]:
        """Decode, check (2–10 s) and embed each known speaker's reference clip."""
        low, high = REFERENCE_SECONDS
        embeddings: dict[str, Embedding] = {}
        for index, speaker in enumerate(request.known_speakers):
            param = "known_speaker_references"
            try:
                clip = decode_audio(speaker.reference, max_duration=high + 1)
            except AudioTooLongError:
                raise InvalidInput(param, f"known_speaker_references[{index}] is longer than {high:g} s.") from None
            except AudioDecodeError as exc:
                raise InvalidInput(param, f"known_speaker_references[{index}]: {exc}") from None
            seconds = clip.size / SAMPLE_RATE
            if not low <= seconds <= high + 0.05:
                raise InvalidInput(
                    param, f"known_speaker_references[{index}] is {seconds:.1f} s; each must be {low:g}–{high:g} s."
                )
            if speaker.name in embeddings:
                raise InvalidInput("known_speaker_names", f"known_speaker_names has {speaker.name!r} twice.")
            embeddings[speaker.name] = diarizer.embed(clip)
        return embeddings
