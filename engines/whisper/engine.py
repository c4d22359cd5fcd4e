"""Whisper through faster-whisper: transcribe or translate samples into timed segments and tokens."""

from __future__ import annotations

import math
import threading
from collections.abc import Generator
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.transcribe import Segment as FwSegment

from engines.audio import SAMPLE_RATE, Samples
from engines.batching import Batcher
from engines.capabilities import Capabilities
from engines.errors import EngineError
from engines.types import DecodeOptions, Segment, TokenLogprob, TranscriptInfo, Word
from engines.whisper.adapter import Generation, ModelCalls, request_model
from engines.whisper.token_bytes import token_bytes

# One encoder position covers 20 ms of audio (1500 positions per 30 s window).
ENCODER_POSITIONS_PER_SECOND = 50
FRAMES_PER_SECOND = 100  # mel frames
WINDOW_TOKENS = 448  # prompt and output together, per 30-s window
PROMPT_PART_TOKENS = 223  # faster-whisper keeps at most this much of the prompt and of the hotwords
MIN_TOKEN_LIMIT = 16  # a tighter limit than this is dropped rather than applied


def audio_tokens(seconds: float) -> int:
    """Whisper's encoder positions covering ``seconds`` of audio (usage counts them as audio tokens)."""
    return math.ceil(seconds * ENCODER_POSITIONS_PER_SECOND)


class WhisperEngine:
    """One loaded Whisper model; safe to share between requests and threads."""

    def __init__(
        self, model: WhisperModel, *, name: str, capabilities: Capabilities, batcher: Batcher | None = None
    ) -> None:
        self.model = model
        self.name = name
        self.capabilities = capabilities if self.is_multilingual else capabilities.english_only()
        self.batcher = batcher  # None: each request calls the model on its own
        self._eot = model.hf_tokenizer.token_to_id("<|endoftext|>")
        self._no_timestamps = model.hf_tokenizer.token_to_id("<|notimestamps|>")
        self._timestamp_begin = self._no_timestamps + 1
        self._sot = model.hf_tokenizer.token_to_id("<|startoftranscript|>")

    def close(self) -> None:
        """Stop the batching engine's workers (the model is being unloaded)."""
        if self.batcher is not None:
            self.batcher.close()

    @property
    def device(self) -> str:
        return str(self.model.model.device)

    @property
    def is_multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def count_tokens(self, text: str) -> int:
        return len(self.model.hf_tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids)

    def audio_tokens(self, seconds: float) -> int:
        return audio_tokens(seconds)

    def transcribe(
        self,
        audio: Samples,
        options: DecodeOptions,
        cancel: threading.Event | None = None,
    ) -> tuple[TranscriptInfo, Generator[Segment, None, None]]:
        """Start decoding; segments are produced lazily, window by window."""
        recorder = ModelCalls(self.model.model, cancel, batcher=self.batcher, priority=options.priority, sot=self._sot)
        try:
            return self._start(audio, options, recorder)
        except BaseException:
            recorder.close()
            raise

    def _start(
        self, audio: Samples, options: DecodeOptions, recorder: ModelCalls
    ) -> tuple[TranscriptInfo, Generator[Segment, None, None]]:
        if options.encoder_padding_seconds is not None:
            recorder.padding_frames = round(options.encoder_padding_seconds * FRAMES_PER_SECOND)
            recorder.round_windows = options.round_encoder_window
            if options.batch_window_step_seconds is not None:
                recorder.batch_step_frames = round(options.batch_window_step_seconds * FRAMES_PER_SECOND)
        # Deterministic re-decodes instead of sampled ones, and loop checks (engines/whisper/fallback.py).
        model, _ = request_model(
            self.model,
            recorder,
            fallback_on_low_confidence=len(options.temperatures) > 1,
            full_window_guard=options.full_window_guard,
        )
        language, language_probability = options.language, None
        if language is None and len(options.languages) == 1:
            language = options.languages[0]  # nothing to choose from
        elif language is None and self.is_multilingual:
            detected = detect_language(model, audio)
            if options.languages:
                language, language_probability = restricted_language(detected, options.languages)
            else:
                language, language_probability = detected[0]
        fw_segments, fw_info = model.transcribe(
            audio,
            language=language,
            hotwords=", ".join(options.keywords) or None,
            max_new_tokens=self._token_limit(options),
            task=options.task,
            beam_size=options.beam_size,
            temperature=list(options.temperatures),
            initial_prompt=options.prompt or None,
            word_timestamps=options.word_timestamps,
            vad_filter=False,
            condition_on_previous_text=True,
        )
        duration = float(len(audio)) / SAMPLE_RATE
        info = TranscriptInfo(
            task=options.task,
            language=fw_info.language,
            language_probability=float(
                fw_info.language_probability if language_probability is None else language_probability
            ),
            duration=duration,
            prompt_tokens=self.count_tokens(options.prompt) if options.prompt else 0,
            audio_tokens=audio_tokens(duration),
        )
        return info, self._segments(fw_segments, recorder, options)

    def _token_limit(self, options: DecodeOptions) -> int | None:
        """The caller's limit on new tokens, lowered so the prompt and keywords still fit the window."""
        if options.max_new_tokens is None:
            return None
        prompt = self.count_tokens(options.prompt) if options.prompt else 0
        hotwords = self.count_tokens(", ".join(options.keywords)) if options.keywords else 0
        room = WINDOW_TOKENS - 8 - min(prompt, PROMPT_PART_TOKENS) - min(hotwords, PROMPT_PART_TOKENS)
        limit = min(options.max_new_tokens, room)
        return limit if limit >= MIN_TOKEN_LIMIT else None

    def _segments(
        self, fw_segments: Any, recorder: ModelCalls, options: DecodeOptions
    ) -> Generator[Segment, None, None]:
        try:
            yield from self._converted(fw_segments, recorder, options)
        finally:
            recorder.close()

    def _converted(
        self, fw_segments: Any, recorder: ModelCalls, options: DecodeOptions
    ) -> Generator[Segment, None, None]:
        for index, fw in enumerate(fw_segments):
            yield Segment(
                id=index,
                seek=int(fw.seek),
                start=round(float(fw.start), 3),
                end=round(float(fw.end), 3),
                text=fw.text,
                tokens=[int(t) for t in fw.tokens],
                temperature=float(fw.temperature or 0.0),
                avg_logprob=float(fw.avg_logprob),
                compression_ratio=float(fw.compression_ratio),
                no_speech_prob=float(fw.no_speech_prob),
                words=_words(fw),
                logprobs=self._token_logprobs(fw.tokens, recorder) if options.logprobs else [],
            )

    def _token_logprobs(self, tokens: list[int], recorder: ModelCalls) -> list[TokenLogprob]:
        """Log-probs of a segment's text tokens, scored by the decoder on the chosen sequence.

        Beam search gives no per-step distribution, so the tokens it chose are scored again by
        teacher forcing (CTranslate2's align) with the same prompt the decoder saw.
        """
        generation = _find_generation(recorder.generations, tokens)
        if generation is None:
            raise EngineError("internal: could not match a segment to its decoder output")
        if generation.logprobs is None:
            generation.logprobs = self._score(generation, recorder)
        text_positions = [i for i, t in enumerate(generation.sequence) if t < self._eot]
        start = _find_subsequence(generation.sequence, tokens)
        wanted = set(range(start, start + len(tokens)))
        out: list[TokenLogprob] = []
        for k, position in enumerate(text_positions):
            if position in wanted:
                out.append(self._token_logprob(generation.sequence[position], generation.logprobs[k]))
        return out

    def _score(self, generation: Generation, recorder: ModelCalls) -> list[float]:
        text_tokens = [t for t in generation.sequence if t < self._eot]
        if not text_tokens:
            return []
        start_sequence = list(generation.prompt)
        if start_sequence[-1] != self._no_timestamps:
            start_sequence.append(self._no_timestamps)
        frames = int(generation.encoder_output.shape[1]) * 2
        result = recorder.align(generation.encoder_output, start_sequence, [text_tokens], frames)[0]
        probs = np.asarray(result.text_token_probs, dtype=np.float64)
        return [float(x) for x in np.log(np.clip(probs, 1e-30, 1.0))]

    def _token_logprob(self, token_id: int, logprob: float) -> TokenLogprob:
        raw = token_bytes(self.model.hf_tokenizer.id_to_token(token_id) or "")
        return TokenLogprob(
            token=raw.decode("utf-8", errors="replace"),
            logprob=logprob,
            bytes=tuple(raw),
        )


def _words(fw: FwSegment) -> list[Word]:
    return [
        Word(word=w.word, start=round(float(w.start), 3), end=round(float(w.end), 3),
             probability=float(w.probability))
        for w in (fw.words or [])
    ]  # fmt: skip


def _find_subsequence(haystack: list[int], needle: list[int]) -> int:
    n = len(needle)
    for i in range(len(haystack) - n + 1):
        if haystack[i : i + n] == needle:
            return i
    return -1


def _find_generation(generations: list[Generation], tokens: list[int]) -> Generation | None:
    for generation in reversed(generations):
        if _find_subsequence(generation.sequence, tokens) >= 0:
            return generation
    return None


def detect_language(model: WhisperModel, audio: Samples) -> list[tuple[str, float]]:
    """Whisper's language probabilities (most likely first) from the first window of ``audio``.

    The window is built exactly as faster-whisper builds the first window it decodes, and encoded
    through the request's model, which keeps that encoding: decoding the window then reuses it
    instead of encoding the same 30 s twice (faster-whisper's own detection encodes it again, one
    frame longer).
    """
    features = model.feature_extractor(audio)
    content_frames = features.shape[-1] - 1  # as faster-whisper's transcribe counts them
    # a copy: a full window is a view that would keep the whole audio's features alive while decoding
    window = pad_or_trim(features[:, : min(model.feature_extractor.nb_max_frames, content_frames)]).copy()
    found = model.model.detect_language(model.encode(window))[0]
    return [(token[2:-2], float(prob)) for token, prob in found]


def restricted_language(probabilities: list[tuple[str, float]], allowed: tuple[str, ...]) -> tuple[str, float]:
    """The most probable of the ``allowed`` languages, from Whisper's detection over all of them."""
    candidates = [(code, prob) for code, prob in probabilities if code in allowed]
    if not candidates:
        return allowed[0], 0.0
    code, prob = max(candidates, key=lambda item: item[1])
    return code, float(prob)


def cuda_available() -> bool:
    return bool(ctranslate2.get_cuda_device_count() > 0)
