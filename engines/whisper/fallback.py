"""Whisper's per-window fallback made deterministic: loops are cut, failed windows decoded again without sampling."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from engines.whisper.repetition import WindowCheck, check_window, rehears_the_end
from engines.whisper.window_guard import TIME_PRECISION, full_window_reason

log = logging.getLogger(__name__)

# A loop is cut only when what comes before it is worth keeping: enough words to align, and
# enough audio that decoding moves on. Otherwise the window is decoded again.
MIN_KEPT_TOKENS = 6
MIN_PROGRESS_SECONDS = 1.0
# faster-whisper's options that go to CTranslate2's generate unchanged, as its own decode passes them
PASSED_THROUGH = ("length_penalty", "repetition_penalty", "no_repeat_ngram_size", "suppress_blank", "suppress_tokens")

Record = Callable[[Any, list[int], list[int]], None]  # (encoder_output, prompt, sequence) of a rewritten result
FULL_WINDOW_POSITIONS = 1500  # encoder positions of Whisper's 30-s window
# The work of a window is bounded by its audio: speech takes 3-6 text tokens a second (up to about 12
# in languages whose characters take several tokens), timestamps about one more every few seconds.
# A decode that loops on a hostile prompt or keyword list stops at what its audio could need instead
# of at the model's 448, on every attempt of every window, in every mode.
TOKENS_PER_AUDIO_SECOND = 20
EXTRA_TOKENS = 32


def audio_token_budget(audio_seconds: float) -> int:
    """The most tokens a window with this much audio may generate."""
    return int(np.ceil(TOKENS_PER_AUDIO_SECOND * audio_seconds)) + EXTRA_TOKENS


class WindowEncoder(Protocol):
    """What the request's model calls offer for windows encoded shorter than 30 s (ModelCalls)."""

    def untrimmed(self) -> AbstractContextManager[None]:
        """Encode the full 30-s window while this is open."""

    def use_full_window(self, shortened: Any, full: Any) -> None:
        """Later calls on the ``shortened`` encoder output (word alignment) use ``full`` instead."""


@dataclass(frozen=True)
class Rewritten:
    """A decoder result whose tokens were changed (a loop cut off, timestamps re-aligned)."""

    sequences_ids: list[list[int]]
    no_speech_prob: float


@dataclass(frozen=True)
class Attempt:
    """One decode of a window (or its loop-free part) and what the checks said about it."""

    result: Any  # ctranslate2 WhisperGenerationResult, or Rewritten
    avg_logprob: float
    temperature: float
    check: WindowCheck
    confident: bool
    silent: bool
    label: str

    @property
    def passes(self) -> bool:
        return self.silent or (self.confident and not self.check.repetitive)


class WindowDecoder:
    """Stands in for ``WhisperModel.generate_with_fallback`` on one request's copy of the model.

    faster-whisper decodes each 30-s window with beam search and, when the text is too repetitive
    (compression ratio) or too unlikely (average log-prob), samples it again at rising
    temperatures. CTranslate2 samples from a generator per worker thread, seeded once, when the
    thread first samples: ``ctranslate2.set_random_seed`` changes nothing for a thread that has
    sampled before, so it cannot seed a request, and the samples differ from one request to the
    next. This replaces the schedule with deterministic steps, and also catches what the
    compression ratio misses (a short looping phrase, a window that copies the previous text):

    1. the requested decode: beam search at temperature 0 (or sampling at a requested temperature);
    2. if the text ends in a loop (it repeats what was said before, to the end of the window),
       the loop is cut off and what is kept re-timed from the audio (cross-attention alignment):
       a loop follows timestamps that drifted from the audio, so decoding resumes after the last
       word kept, where it really ends;
    3. beam search without the previous text (the prompt that feeds most loops), then greedy
       decoding without it, each cut the same way if it loops.

    The first result that passes every check is kept; when none does, the most likely one among
    those that do not repeat themselves, else among all, as Whisper does. Requests at temperature
    0 fall back on low confidence too; a request for one temperature only when the text repeats.

    The adapter (engines/whisper/adapter.py) also routes the copy's ``encode`` through it, to
    learn how much of each window is audio rather than padding: the alignment that re-times a cut
    loop must not place words in the padding.
    """

    def __init__(
        self,
        model: Any,
        *,
        fallback_on_low_confidence: bool,
        record: Record | None = None,
        window_encoder: WindowEncoder | None = None,
    ) -> None:
        self.model = model  # the request's WhisperModel copy
        self.fallback_on_low_confidence = fallback_on_low_confidence
        self.record = record
        # Set when windows may be encoded shorter than 30 s: a suspect one is decoded again on 30 s.
        self.window_encoder = window_encoder
        self._encode = model.encode
        self._frames: int | None = None  # mel frames of audio in the window being decoded
        # The window being decoded (its features) and their encoding
        self._encoded: tuple[npt.NDArray[np.float32], Any] | None = None
        self._hint: list[int] = []  # the keyword tokens that open the window's prompt
        self._coarse = False  # the last window's timestamps all fell on whole seconds

    def encode(self, features: npt.NDArray[np.float32]) -> Any:
        """Encode one window, noting where its audio ends (faster-whisper pads it with exact zeros).

        Language detection encodes the first window, and decoding then encodes it again: the same
        features give the same output, so the second time the first result is handed back.
        """
        audible = np.flatnonzero(np.abs(features).reshape(-1, features.shape[-1]).max(axis=0))
        self._frames = int(audible[-1]) + 1 if audible.size else int(features.shape[-1])
        if self._encoded is not None and _same(self._encoded[0], features):
            return self._encoded[1]
        output = self._encode(features)
        self._encoded = (features, output)
        return output

    def __call__(
        self, encoder_output: Any, prompt: list[int], tokenizer: Any, options: Any
    ) -> tuple[Any, float, float, float]:
        """Same contract as faster-whisper's: (result, avg_logprob, temperature, compression_ratio)."""
        coarse_before = self._coarse
        chosen, clean = self._decide(encoder_output, prompt, tokenizer, options)
        reason = self._full_window_reason(encoder_output, chosen, clean, tokenizer)
        if reason is not None and self.window_encoder is not None and self._encoded is not None:
            log.debug("shortened window decoded again on 30 s: %s", reason)
            with self.window_encoder.untrimmed():
                full = self._encode(self._encoded[0])
            self.window_encoder.use_full_window(encoder_output, full)
            self._coarse = coarse_before
            chosen, _ = self._decide(full, prompt, tokenizer, options)
        return chosen.result, chosen.avg_logprob, chosen.temperature, chosen.check.compression_ratio

    def _full_window_reason(self, encoder_output: Any, chosen: Attempt, clean: bool, tokenizer: Any) -> str | None:
        if self.window_encoder is None or int(encoder_output.shape[1]) >= FULL_WINDOW_POSITIONS:
            return None
        return full_window_reason(
            list(chosen.result.sequences_ids[0]),
            timestamp_begin=tokenizer.timestamp_begin,
            eot=tokenizer.eot,
            audio_seconds=(self._frames or 0) / 100,
            no_speech_prob=float(chosen.result.no_speech_prob),
            checks_passed=clean,
        )

    def _decide(self, encoder_output: Any, prompt: list[int], tokenizer: Any, options: Any) -> tuple[Attempt, bool]:
        """The window's kept attempt, and whether it is clean: the requested decode passed every check as it
        was, or failed only by copying the prompt and the decode without it passed."""
        # Keywords (faster-whisper's hotwords) open the previous-text part of the prompt: they stay
        # in every re-decode, and are not text that a window could copy.
        self._hint = _hotword_tokens(prompt, tokenizer, options, self.model.max_length)
        previous = _previous_text(prompt, tokenizer, len(self._hint))
        opening = [tokenizer.sot_prev, *self._hint] if self._hint else []
        bare = opening + prompt[prompt.index(tokenizer.sot) :] if previous else prompt
        plans: list[tuple[str, list[int], float, bool]] = [("requested", prompt, options.temperatures[0], False)]
        if previous:
            plans.append(("without previous text", bare, 0.0, False))
        plans.append(("greedy without previous text", bare, 0.0, True))
        attempts: list[Attempt] = []
        chosen: Attempt | None = None
        for index, (label, plan_prompt, temperature, greedy) in enumerate(plans):
            attempt = self._decode(encoder_output, plan_prompt, tokenizer, options, temperature, greedy, label)
            attempts.append(attempt)
            loops = attempt.check.tail is not None and not attempt.check.copies_prompt  # a copy: decode again
            if not attempt.passes and loops and not options.without_timestamps:
                cut = self._cut(attempt, encoder_output, plan_prompt, tokenizer)
                if cut is not None:
                    attempts.append(cut)
                    attempt = cut
            if attempt.passes:
                chosen = attempt
                break
            if index == 0 and not attempt.check.repetitive and not self.fallback_on_low_confidence:
                break  # only unlikely, and the caller asked for this temperature alone
        if chosen is None:
            plain = [a for a in attempts if not a.check.repetitive]
            chosen = max(plain or attempts, key=lambda a: a.avg_logprob)
        previous_text = tokenizer.decode(previous) if previous else ""
        sequence = list(chosen.result.sequences_ids[0])
        if self._coarse and previous_text and rehears_the_end(previous_text, tokenizer.decode(sequence)):
            # The previous window's timestamps ran ahead of its audio, so this one starts too early:
            # its text already holds this speech, and there is nothing new to add here.
            log.debug("window hears the end of the previous one again (%s); kept nothing", chosen.label)
            attempts.append(replace(chosen, result=Rewritten([[]], chosen.result.no_speech_prob), label="nothing"))
            chosen = attempts[-1]
        self._coarse = coarse_timestamps(sequence, tokenizer.timestamp_begin)
        if len(attempts) > 1:
            log.debug(
                "window decoded again: %s; kept %s",
                "; ".join(f"{a.label}: {a.check.describe()}, log-prob {a.avg_logprob:.2f}" for a in attempts),
                chosen.label,
            )
        # A requested decode that only copied the prompt is the prompt's doing, not the window's: the
        # decode without it is as clean, and a full window would fail the same way (a hostile prompt
        # would otherwise buy every window a second, 30-s decode).
        prompt_copies = all(a.check.copies_prompt for a in attempts[:-1])
        return chosen, chosen.passes and chosen is attempts[-1] and prompt_copies

    def _decode(
        self,
        encoder_output: Any,
        prompt: list[int],
        tokenizer: Any,
        options: Any,
        temperature: float,
        greedy: bool,
        label: str,
    ) -> Attempt:
        """One generate call with faster-whisper's own arguments (see its ``generate_with_fallback``)."""
        if temperature > 0:
            search = {
                "beam_size": 1,
                "num_hypotheses": options.best_of,
                "sampling_topk": 0,
                "sampling_temperature": temperature,
            }
        else:
            search = {"beam_size": 1 if greedy else options.beam_size, "patience": options.patience}
        max_length = self.model.max_length
        if options.max_new_tokens is not None:
            max_length = min(max_length, len(prompt) + options.max_new_tokens)
        if self._frames is not None:
            max_length = min(max_length, len(prompt) + audio_token_budget(self._frames / 100))
        passed = {name: getattr(options, name) for name in PASSED_THROUGH}
        result = self.model.model.generate(
            encoder_output,
            [prompt],
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            max_initial_timestamp_index=round(options.max_initial_timestamp / self.model.time_precision),
            **passed,
            **search,
        )[0]
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * (len(tokens) ** options.length_penalty) / (len(tokens) + 1)
        confident = options.log_prob_threshold is None or avg_logprob >= options.log_prob_threshold
        silent = (
            options.no_speech_threshold is not None
            and result.no_speech_prob > options.no_speech_threshold
            and not confident
        )
        check = self._check(tokens, tokenizer, prompt)
        return Attempt(result, avg_logprob, temperature, check, confident, silent, label)

    def _check(self, tokens: list[int], tokenizer: Any, prompt: list[int]) -> WindowCheck:
        text_tokens = [t for t in tokens if t < tokenizer.eot]
        previous = _previous_text(prompt, tokenizer, len(self._hint))
        return check_window(tokenizer.decode(tokens), text_tokens, previous, tokenizer.decode(previous))

    def _cut(self, attempt: Attempt, encoder_output: Any, prompt: list[int], tokenizer: Any) -> Attempt | None:
        """The attempt up to where its loop starts, re-timed from the audio; None when too little is left."""
        assert attempt.check.tail is not None
        segments = _text_segments(attempt.result.sequences_ids[0], tokenizer, keep=attempt.check.tail)
        kept = [token for segment in segments for token in segment]
        if len(kept) < MIN_KEPT_TOKENS:
            return None
        frames = self._frames or int(encoder_output.shape[1]) * self.model.input_stride
        try:
            words = self.model.find_alignment(tokenizer, [kept], encoder_output, frames)[0]
        except (IndexError, ValueError) as exc:
            # A window with almost no audio left (e.g. the last 1 frame of a turn) gets an empty
            # alignment, which faster-whisper fails to index. Without timings the loop cannot be
            # cut: the next plan decodes the window again.
            log.debug("alignment of a cut loop failed: %s", exc)
            return None
        sequence = _retimed(segments, words, tokenizer.timestamp_begin)
        if sequence is None or (sequence[-1] - tokenizer.timestamp_begin) * TIME_PRECISION < MIN_PROGRESS_SECONDS:
            return None
        if self.record is not None:
            self.record(encoder_output, prompt, sequence)
        return replace(
            attempt,
            result=Rewritten([sequence], attempt.result.no_speech_prob),
            check=self._check(sequence, tokenizer, prompt),
            label=attempt.label + ", loop cut",
        )


def _same(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> bool:
    return a is b or (a.shape == b.shape and bool(np.array_equal(a, b)))


def coarse_timestamps(sequence: list[int], timestamp_begin: int, minimum: int = 8) -> bool:
    """Did the decoder put every one of at least ``minimum`` timestamps on a whole second?

    Whisper's timestamps step by 20 ms; when they collapse onto whole seconds (0, 1, 2, … for
    sentences of every length) they no longer follow the audio, and the window usually ends
    before its speech does.
    """
    stamps = [t - timestamp_begin for t in sequence if t >= timestamp_begin]
    return len(stamps) >= minimum and all(s % round(1 / TIME_PRECISION) == 0 for s in stamps)


def _previous_text(prompt: list[int], tokenizer: Any, hint: int = 0) -> list[int]:
    """Previous-text tokens of a prompt: after <|startofprev|> and ``hint`` keywords, before <|startoftranscript|>."""
    if not prompt or prompt[0] != tokenizer.sot_prev:
        return []
    return [t for t in prompt[1 + hint : prompt.index(tokenizer.sot)] if t < tokenizer.eot]


def _hotword_tokens(prompt: list[int], tokenizer: Any, options: Any, max_length: int) -> list[int]:
    """The hotword tokens at the start of ``prompt``, as faster-whisper's ``get_prompt`` puts them there."""
    hotwords = getattr(options, "hotwords", None)
    if not hotwords or getattr(options, "prefix", None) or not prompt or prompt[0] != tokenizer.sot_prev:
        return []
    tokens: list[int] = tokenizer.encode(" " + hotwords.strip())[: max_length // 2 - 1]
    return tokens if prompt[1 : 1 + len(tokens)] == tokens else []


def _text_segments(tokens: list[int], tokenizer: Any, *, keep: int) -> list[list[int]]:
    """The text tokens of each timestamped segment, up to the ``keep``-th text token."""
    segments: list[list[int]] = [[]]
    count = 0
    for token in tokens:
        if count >= keep:
            break
        if token >= tokenizer.timestamp_begin:
            if segments[-1]:
                segments.append([])
        elif token < tokenizer.eot:
            segments[-1].append(token)
            count += 1
    return [segment for segment in segments if segment]


def _retimed(segments: list[list[int]], words: list[dict[str, Any]], timestamp_begin: int) -> list[int] | None:
    """Segments with timestamps from the aligned words, ending in two timestamps so decoding resumes there."""
    if not segments or not words:
        return None
    # Alignment stretches a segment's first word over any silence before it; clamp it as
    # faster-whisper clamps word timestamps (at most twice the median word duration).
    durations = sorted(w["end"] - w["start"] for w in words if w["end"] > w["start"])
    longest = 2 * min(0.7, durations[len(durations) // 2]) if durations else 1.4
    times: list[tuple[float, float]] = []
    word_iter = iter(words)
    word = next(word_iter, None)
    last_end = 0.0
    for segment in segments:
        start, end, consumed = None, last_end, 0
        while word is not None and consumed < len(segment):
            start = max(word["start"], word["end"] - longest) if start is None else start
            end = max(end, word["end"])
            consumed += len(word["tokens"])
            word = next(word_iter, None)
        start = last_end if start is None else max(start, last_end)
        times.append((start, max(start, end)))
        last_end = max(start, end)
    sequence: list[int] = []
    for segment, (start, end) in zip(segments, times, strict=True):
        sequence += [_timestamp(start, timestamp_begin), *segment, _timestamp(end, timestamp_begin)]
    return [*sequence, sequence[-1]]


def _timestamp(seconds: float, timestamp_begin: int) -> int:
    return timestamp_begin + min(1500, max(0, round(seconds / TIME_PRECISION)))
