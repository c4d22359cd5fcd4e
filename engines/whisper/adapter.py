"""Every place this project reaches into faster-whisper's internals, in one module.

faster-whisper has no public hooks for what the server needs per request: cancelling between
windows, handing model calls to the batching engine, encoding less than 30 s, recording what the
decoder produced (log-probs are scored from it), and a deterministic fallback with loop checks.
So each request decodes with a shallow copy of the loaded ``WhisperModel`` (it shares the
weights) whose instance attributes shadow three things of the class:

* ``model``: the CTranslate2 ``Whisper`` model, replaced by a ``ModelCalls`` proxy that sees
  every ``encode``, ``generate``, ``detect_language`` and ``align`` call;
* ``generate_with_fallback(encoder_output, prompt, tokenizer, options)``: one window's decode,
  replaced by engines/whisper/fallback.py's ``WindowDecoder``;
* ``encode(features)``: wrapped by the same ``WindowDecoder`` to learn where the audio ends.

This works only while ``WhisperModel.transcribe`` reaches those through ``self`` and keeps their
signatures: ``RELIED_ON`` lists what is relied on, ``contract_problems`` checks the installed
faster-whisper against it, and tests/unit/test_faster_whisper_contract.py fails with its message
when an upgrade changes any of it.
"""

from __future__ import annotations

import copy
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel

from engines.batching import Batcher
from engines.errors import DecodingCancelled
from engines.types import BatchPriority
from engines.whisper import batch_ops
from engines.whisper.fallback import Record, WindowDecoder, WindowEncoder

StorageView = Any  # ctranslate2.StorageView (CTranslate2 ships no type information)
GenerationResult = Any  # ctranslate2.models.WhisperGenerationResult

# WhisperModel methods: the parameters this project calls them with or replaces them by.
RELIED_ON: dict[str, tuple[str, ...]] = {
    "generate_with_fallback": ("self", "encoder_output", "prompt", "tokenizer", "options"),
    "encode": ("self", "features"),
    "find_alignment": ("self", "tokenizer", "text_tokens", "encoder_output", "num_frames"),
    "detect_language": ("self", "audio"),
    "transcribe": (
        "self",
        "audio",
        "language",
        "task",
        "beam_size",
        "temperature",
        "initial_prompt",
        "word_timestamps",
        "vad_filter",
        "condition_on_previous_text",
        "max_new_tokens",
        "hotwords",
    ),
}
# Attributes of a loaded WhisperModel that are read or replaced.
ATTRIBUTES = ("model", "hf_tokenizer", "max_length", "time_precision", "input_stride", "feature_extractor")
# How faster-whisper cuts the first window it decodes (engine.detect_language builds the same one, so that
# decoding reuses the encoding that detected the language).
FIRST_WINDOW_SOURCE = "content_frames = features.shape[-1] - 1"
# The calls inside faster-whisper that must go through ``self`` for the replacements to take effect.
SELF_CALLS = ("self.generate_with_fallback(", "self.encode(")
# Fields of faster-whisper's TranscriptionOptions that WindowDecoder reads.
OPTION_FIELDS = (
    "beam_size",
    "best_of",
    "patience",
    "length_penalty",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "log_prob_threshold",
    "no_speech_threshold",
    "temperatures",
    "suppress_blank",
    "suppress_tokens",
    "without_timestamps",
    "max_initial_timestamp",
    "max_new_tokens",
)
# Methods of the CTranslate2 Whisper model that ModelCalls wraps.
CT2_METHODS = ("encode", "generate", "detect_language", "align")


def contract_problems(model_class: type[Any] = WhisperModel) -> list[str]:
    """What the installed faster-whisper no longer provides of what this module relies on (empty: all)."""
    from faster_whisper import transcribe as fw_transcribe

    problems: list[str] = []
    for name, wanted in RELIED_ON.items():
        method = getattr(model_class, name, None)
        if method is None:
            problems.append(f"WhisperModel.{name} is gone")
            continue
        have = list(inspect.signature(method).parameters)
        if name in ("generate_with_fallback", "encode", "find_alignment"):
            if tuple(have[: len(wanted)]) != wanted:  # replaced or called positionally: order matters
                problems.append(f"WhisperModel.{name}{tuple(have)} no longer starts with {wanted}")
        else:
            missing = [p for p in wanted if p not in have]
            if missing:
                problems.append(f"WhisperModel.{name} lost parameters {missing}")
    source = "".join(inspect.getsource(m) for m in _methods(model_class))
    problems += [f"faster-whisper no longer calls {call}…) on the model" for call in SELF_CALLS if call not in source]
    init = inspect.getsource(model_class.__init__) if hasattr(model_class, "__init__") else ""
    problems += [f"WhisperModel no longer sets self.{a}" for a in ATTRIBUTES if f"self.{a} =" not in init]
    if FIRST_WINDOW_SOURCE not in source:
        problems.append(f"faster-whisper no longer counts a window's frames as `{FIRST_WINDOW_SOURCE}`")
    fields = set(getattr(fw_transcribe.TranscriptionOptions, "__dataclass_fields__", {})) or set(
        getattr(fw_transcribe.TranscriptionOptions, "_fields", ())
    )
    problems += [f"TranscriptionOptions.{f} is gone" for f in OPTION_FIELDS if f not in fields]
    problems += [
        f"ctranslate2.models.Whisper.{m} is gone" for m in CT2_METHODS if not hasattr(ctranslate2.models.Whisper, m)
    ]
    return problems


def _methods(model_class: type[Any]) -> list[Callable[..., Any]]:
    return [m for _, m in inspect.getmembers(model_class, inspect.isfunction)]


def request_model(
    model: WhisperModel, calls: ModelCalls, *, fallback_on_low_confidence: bool, full_window_guard: bool = False
) -> tuple[WhisperModel, WindowDecoder]:
    """A shallow copy of ``model`` for one request: its model calls go through ``calls`` and its window
    decoding through a new WindowDecoder (which records rewritten results in ``calls``). With
    ``full_window_guard``, a window encoded shorter than 30 s whose result looks wrong is decoded
    again on the full window (engines/whisper/window_guard.py)."""
    copied = copy.copy(model)
    copied.model = calls
    decoder = install_window_decoder(
        copied,
        fallback_on_low_confidence=fallback_on_low_confidence,
        record=calls.record,
        window_encoder=calls if full_window_guard and calls.padding_frames is not None else None,
    )
    return copied, decoder


def install_window_decoder(
    model: WhisperModel,
    *,
    fallback_on_low_confidence: bool,
    record: Record | None = None,
    window_encoder: WindowEncoder | None = None,
) -> WindowDecoder:
    """Route ``model``'s (a per-request copy) window decoding and encoding through a new WindowDecoder."""
    decoder = WindowDecoder(
        model, fallback_on_low_confidence=fallback_on_low_confidence, record=record, window_encoder=window_encoder
    )
    model.generate_with_fallback = decoder
    model.encode = decoder.encode
    return decoder


# Window lengths (mel frames) that shortened windows are rounded up to. Measured against faster-whisper's
# own 30-s windows on 16 clips of 4-15 s (bench.concurrency): audio + 10 s gave other words in 5 clips
# (3.4 % WER; some a hallucinated last word), rounded up to these in 2 (0.5 %: a comma and a name), at
# no more CPU. Windows of one length also share an encoder batch when the model batches.
WINDOW_BUCKET_FRAMES = (1000, 2000, 3000)
FULL_WINDOW_FRAMES = WINDOW_BUCKET_FRAMES[-1]  # Whisper's own 30 s


def trim_padding(features: StorageView, padding_frames: int, buckets: tuple[int, ...] = ()) -> StorageView:
    """Features of one window with at most ``padding_frames`` of faster-whisper's zero padding kept.

    faster-whisper pads every window's log-mel features with exact zeros to 30 s (3000 frames), and
    the encoder's cost follows the frame count; real audio never gives an all-zero frame. Keeping a
    few seconds of padding (so the model still hears that the audio ends) encodes a short clip at a
    fraction of the cost. With ``buckets``, the length kept is rounded up to the next bucket.
    """
    array = np.asarray(features)
    if array.ndim != 3:
        return features
    used = np.flatnonzero(np.any(array[0] != 0, axis=0))
    keep = min(array.shape[-1], (int(used[-1]) + 1 if used.size else 0) + padding_frames)
    keep = next((bucket for bucket in sorted(buckets) if bucket >= keep), keep)
    if keep >= array.shape[-1]:
        return features
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array[:, :, :keep]))


@dataclass
class Generation:
    """One call to the decoder, kept so log-probs can be computed for the tokens it chose."""

    encoder_output: StorageView
    prompt: list[int]
    sequence: list[int]
    logprobs: list[float] | None = None


@dataclass
class ModelCalls:
    """Stands in for the CTranslate2 model of one request: records generations, honours cancellation,
    trims padding, and hands the model calls to the model's batching engine when it has one."""

    inner: Any  # ctranslate2.models.Whisper
    cancel: threading.Event | None
    generations: list[Generation] = field(default_factory=list)
    padding_frames: int | None = None
    round_windows: bool = True  # shortened windows rounded up to WINDOW_BUCKET_FRAMES (always when batching)
    batch_step_frames: int | None = None  # when batching: round up to multiples of this instead
    batcher: Batcher | None = None
    priority: BatchPriority = BatchPriority.NORMAL
    sot: int = -1
    _untrimmed: bool = False
    _full_windows: list[tuple[StorageView, StorageView]] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @contextmanager
    def untrimmed(self) -> Iterator[None]:
        """Encode Whisper's full 30-s window while this is open (a shortened one is decoded again)."""
        self._untrimmed = True
        try:
            yield
        finally:
            self._untrimmed = False

    def use_full_window(self, shortened: StorageView, full: StorageView) -> None:
        """Align on ``full`` whatever is later aligned on ``shortened`` (its window was decoded again)."""
        self._full_windows = [*self._full_windows[-3:], (shortened, full)]

    def encode(self, features: StorageView, to_cpu: bool = False) -> StorageView:
        self._check_cancel()
        if self.padding_frames is not None and not self._untrimmed:
            features = trim_padding(features, self.padding_frames, self._buckets())
        if self.batcher is None:
            return self.inner.encode(features, to_cpu=to_cpu)
        return self._submit(batch_ops.ENCODE, batch_ops.encode_key(features, to_cpu), (features, to_cpu))

    def generate(self, encoder_output: StorageView, prompts: list[list[int]], **kwargs: Any) -> list[GenerationResult]:
        self._check_cancel()
        if self.batcher is None or len(prompts) != 1 or int(encoder_output.shape[0]) != 1:
            results: list[GenerationResult] = self.inner.generate(encoder_output, prompts, **kwargs)
        else:
            key = batch_ops.generate_key(encoder_output, prompts[0], self.sot, kwargs)
            payload = (encoder_output, prompts[0], kwargs.get("max_length"))
            results = [self._submit(batch_ops.GENERATE, key, payload)]
        for result in results:
            self.generations.append(Generation(encoder_output, list(prompts[0]), list(result.sequences_ids[0])))
        del self.generations[:-16]  # only the current window's fallbacks are ever looked up
        return results

    def detect_language(self, encoder_output: StorageView) -> list[list[tuple[str, float]]]:
        self._check_cancel()
        if self.batcher is None or int(encoder_output.shape[0]) != 1:
            found: list[list[tuple[str, float]]] = self.inner.detect_language(encoder_output)
            return found
        return [self._submit(batch_ops.DETECT_LANGUAGE, batch_ops.detect_key(encoder_output), encoder_output)]

    def align(
        self,
        encoder_output: StorageView,
        start_sequence: list[int],
        text_tokens: list[list[int]],
        num_frames: Any,
        *,
        median_filter_width: int = 7,
    ) -> Any:
        self._check_cancel()
        encoder_output = next((full for short, full in self._full_windows if short is encoder_output), encoder_output)
        if self.batcher is None:
            return self.inner.align(
                encoder_output, start_sequence, text_tokens, num_frames, median_filter_width=median_filter_width
            )
        payload = (encoder_output, list(start_sequence), text_tokens, num_frames, median_filter_width)
        return self._submit(batch_ops.ALIGN, None, payload)

    def record(self, encoder_output: StorageView, prompt: list[int], sequence: list[int]) -> None:
        """Keep a result whose tokens the fallback rewrote, so its segments can still be scored."""
        self.generations.append(Generation(encoder_output, list(prompt), list(sequence)))

    def close(self) -> None:
        """No more calls from this request (the batcher stops waiting for them)."""
        if self.batcher is not None:
            self.batcher.leave(self)

    def _buckets(self) -> tuple[int, ...]:
        """The window lengths a shortened window is rounded up to (batched calls need equal lengths)."""
        if self.batcher is not None and self.batch_step_frames:
            return tuple(
                range(self.batch_step_frames, FULL_WINDOW_FRAMES + self.batch_step_frames, self.batch_step_frames)
            )
        return WINDOW_BUCKET_FRAMES if self.round_windows or self.batcher is not None else ()

    def _submit(self, op: str, key: Any, payload: Any) -> Any:
        assert self.batcher is not None
        return self.batcher.submit(op, key, payload, owner=self, priority=self.priority, cancel=self.cancel)

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DecodingCancelled("decoding was cancelled")
