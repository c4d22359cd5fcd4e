"""Decode one turn's audio into a hypothesis: its text and words, language, tokens and log-probs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

from engines.audio import SAMPLE_RATE, Samples
from engines.types import DecodeOptions, TokenLogprob, Transcriber
from engines.vad import has_speech


@dataclass(frozen=True)
class Hypothesis:
    """What one decode of a turn (or of its first ``samples``) heard."""

    text: str
    language: str
    language_probability: float
    samples: int
    output_tokens: int = 0
    prompt_tokens: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)
    # Each segment's end (seconds into the decoded audio) and word count, as the decoder timed them
    segment_ends: tuple[tuple[float, int], ...] = ()

    @property
    def words(self) -> list[str]:
        return self.text.split()

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    def after(self, words: list[str], samples: int, *, word_tokens: int, prompt_tokens: int) -> Hypothesis:
        """The whole turn's hypothesis, for a decode of its audio from ``samples`` on, after ``words``
        (``word_tokens`` tokens) were said; ``prompt_tokens`` of the caller's own prompt."""
        return replace(
            self,
            text=" ".join([*words, self.text]).strip(),
            samples=samples + self.samples,
            output_tokens=self.output_tokens + word_tokens,
            prompt_tokens=prompt_tokens,
        )


def decode_turn(
    engine: Transcriber,
    audio: Samples,
    options: DecodeOptions,
    cancel: threading.Event | None = None,
    *,
    gate: bool = False,
) -> Hypothesis:
    """Blocking: decode ``audio`` whole. With ``gate``, audio without any speech (``has_speech``) is not decoded."""
    fallback_language = options.language or (options.languages[0] if options.languages else "en")
    if gate and not has_speech(audio):
        return Hypothesis("", fallback_language, 0.0, audio.size)
    info, segments = engine.transcribe(audio, options, cancel)
    try:
        decoded = list(segments)
    finally:
        segments.close()
    return Hypothesis(
        text="".join(s.text for s in decoded).strip(),
        language=info.language,
        language_probability=info.language_probability,
        samples=audio.size,
        output_tokens=sum(len(s.tokens) for s in decoded),
        prompt_tokens=info.prompt_tokens,
        logprobs=[lp for s in decoded for lp in s.logprobs],
        segment_ends=tuple((s.end, len(s.text.split())) for s in decoded),
    )
