"""Moonshine base-en through ONNX Runtime: audio in, timed segments out.

Moonshine's encoder takes raw 16 kHz samples of any length (its cost follows the audio, with no
fixed window), and its merged decoder takes the previous step's key/value cache. It is trained on
short utterances, so longer audio is cut at silences (Silero VAD) into windows of at most
``WINDOW_SECONDS``; each window becomes one segment, timed by its speech.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engines.audio import SAMPLE_RATE, Samples
from engines.capabilities import Capabilities
from engines.errors import DecodingCancelled
from engines.moonshine.tokenizer import BOS, EOS, MoonshineTokenizer
from engines.types import DecodeOptions, Segment, TokenLogprob, TranscriptInfo
from engines.vad import Span, VadParams, group_regions, normalize_loudness, speech_regions

WINDOW_SECONDS = 20.0  # longest audio decoded at once
SAMPLES_PER_POSITION = 384  # the encoder's stride: 64 × 3 × 2 samples per output position
# Moonshine's own limit is 6 tokens per second of audio; a little more keeps fast speakers whole,
# and the limit stops a decoder that loops.
TOKENS_PER_SECOND, TOKENS_EXTRA = 6.5, 8
FRAMES_PER_SECOND = 100  # `seek` counts 10-ms frames, as for Whisper
WINDOW_VAD = VadParams(threshold=0.5, silence_duration_ms=300, prefix_padding_ms=200, max_chunk_seconds=WINDOW_SECONDS)


@dataclass(frozen=True)
class _Decoded:
    tokens: list[int]
    logprobs: list[float]
    temperature: float


@dataclass(frozen=True)
class CacheShape:
    """The decoder's key/value cache: layers, attention heads and head size."""

    layers: int
    heads: int
    head_size: int


class MoonshineEngine:
    """One loaded Moonshine model; safe to share between requests and threads (ONNX Runtime sessions are)."""

    def __init__(
        self, sessions: tuple[Any, Any], tokenizer: MoonshineTokenizer, cache: CacheShape, *, name: str,
        capabilities: Capabilities
    ) -> None:  # fmt: skip
        self.encoder, self.decoder = sessions  # ONNX Runtime sessions
        self.tokenizer, self.cache, self.name, self.capabilities = tokenizer, cache, name, capabilities
        self._outputs = [output.name for output in self.decoder.get_outputs()]
        # After the first step the cross-attention cache is fed back unchanged: not asking for it
        # again saves copying it out on every token.
        self._step_outputs = [name for name in self._outputs if ".encoder." not in name]

    @property
    def device(self) -> str:
        return "cpu"

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def audio_tokens(self, seconds: float) -> int:
        return math.ceil(seconds * SAMPLE_RATE / SAMPLES_PER_POSITION)

    def transcribe(
        self, audio: Samples, options: DecodeOptions, cancel: threading.Event | None = None
    ) -> tuple[TranscriptInfo, Generator[Segment, None, None]]:
        duration = audio.size / SAMPLE_RATE
        # English only, no prompt: the language is certain and no prompt tokens count.
        info = TranscriptInfo("transcribe", "en", 1.0, duration, 0, self.audio_tokens(duration))
        return info, self._segments(audio, options, cancel)

    def _segments(
        self, audio: Samples, options: DecodeOptions, cancel: threading.Event | None
    ) -> Generator[Segment, None, None]:
        rng = np.random.default_rng(0)  # sampled decodes (temperature > 0) repeat exactly
        for index, window in enumerate(windows(audio)):
            _check(cancel)
            decoded = self._decode(audio[window.start : window.end], options, cancel, rng)
            text = self.tokenizer.decode(decoded.tokens)
            if not text.strip():
                continue
            yield Segment(
                id=index,
                seek=window.start * FRAMES_PER_SECOND // SAMPLE_RATE,
                start=round(window.start / SAMPLE_RATE, 3),
                end=round(window.end / SAMPLE_RATE, 3),
                text=text if text.startswith(" ") else " " + text,
                tokens=decoded.tokens,
                temperature=decoded.temperature,
                avg_logprob=float(np.mean(decoded.logprobs)) if decoded.logprobs else 0.0,
                compression_ratio=_compression_ratio(text),
                no_speech_prob=0.0,
                logprobs=self._token_logprobs(decoded) if options.logprobs else [],
            )

    def _decode(
        self, audio: Samples, options: DecodeOptions, cancel: threading.Event | None, rng: np.random.Generator
    ) -> _Decoded:
        hidden = self.encoder.run(None, {"input_values": audio[None, :].astype(np.float32, copy=False)})[0]
        limit = math.ceil(audio.size / SAMPLE_RATE * TOKENS_PER_SECOND) + TOKENS_EXTRA
        if options.max_new_tokens is not None:
            limit = min(limit, options.max_new_tokens)
        temperature = options.temperatures[0] if options.temperatures else 0.0
        cache = self._empty_cache()
        tokens: list[int] = []
        logprobs: list[float] = []
        previous = BOS
        for step in range(limit):
            _check(cancel)
            feed = {
                "input_ids": np.array([[previous]], dtype=np.int64),
                "encoder_hidden_states": hidden,
                "use_cache_branch": np.array([step > 0]),
                **cache,
            }
            names = self._outputs if step == 0 else self._step_outputs
            outputs = self.decoder.run(names, feed)
            scores = _log_softmax(outputs[0][0, -1].astype(np.float64))
            token = _choose(scores, temperature, rng)
            for name, value in zip(names[1:], outputs[1:], strict=True):
                cache[name.replace("present", "past_key_values", 1)] = value
            if token == EOS:
                break
            tokens.append(token)
            logprobs.append(float(scores[token]))
            previous = token
        return _Decoded(tokens, logprobs, temperature)

    def _empty_cache(self) -> dict[str, npt.NDArray[np.float32]]:
        empty = np.zeros((1, self.cache.heads, 0, self.cache.head_size), dtype=np.float32)
        return {
            f"past_key_values.{layer}.{part}.{kind}": empty
            for layer in range(self.cache.layers)
            for part in ("decoder", "encoder")
            for kind in ("key", "value")
        }

    def _token_logprobs(self, decoded: _Decoded) -> list[TokenLogprob]:
        out = []
        for token, logprob in zip(decoded.tokens, decoded.logprobs, strict=True):
            raw = self.tokenizer.token_bytes(token)
            out.append(TokenLogprob(token=raw.decode("utf-8", errors="replace"), logprob=logprob, bytes=tuple(raw)))
        return out


def windows(audio: Samples) -> list[Span]:
    """Audio up to ``WINDOW_SECONDS`` whole (trimmed to its speech); longer audio in speech chunks cut at silences."""
    regions = speech_regions(normalize_loudness(audio), WINDOW_VAD)
    if not regions:
        return []
    return group_regions(regions, WINDOW_SECONDS)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise DecodingCancelled("decoding was cancelled")


def _log_softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    shifted = logits - np.max(logits)
    result: npt.NDArray[np.float64] = shifted - np.log(np.sum(np.exp(shifted)))
    return result


def _choose(scores: npt.NDArray[np.float64], temperature: float, rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(np.argmax(scores))
    weights = np.exp((scores - np.max(scores)) / temperature)
    return int(rng.choice(scores.size, p=weights / weights.sum()))


def _compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0
