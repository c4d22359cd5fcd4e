"""When a window encoded shorter than 30 s must be decoded again on Whisper's full window.

Whisper was trained on 30-s windows. Encoding only the audio plus some padding costs a fraction
of the full window and mostly gives the same words (a different word here and there, as often
better as worse), but a shortened window shows failure modes the full one rarely does. Each is
visible in the decoded tokens, so the window is decoded again on the full 30 s when one shows:

* the window's checks failed (a loop, text unlikely enough to fall back): the full window is what
  the fallback was tuned on;
* a segment stretched over far more audio than its words take (measured: the second of three
  identical sentences said in a row skipped, its neighbour's timestamps stretched over both);
* the text claims the speech ended (a single closing timestamp) well before the audio does: the
  rest of the window would be skipped unheard;
* timestamps past the end of the audio (the decoder timing words in the padding);
* no text at all from a window the decoder does not call silent.
"""

from __future__ import annotations

from dataclasses import dataclass

TIME_PRECISION = 0.02  # seconds per timestamp token
# A segment at least this long that gives each of its text tokens more than this much audio.
STRETCH_MIN_SECONDS = 4.0
STRETCH_SECONDS_PER_TOKEN = 0.6  # ordinary speech: 0.25–0.45 s per token
EARLY_END_SECONDS = 3.0  # speech claimed over this long before the window's audio ends
PAST_END_SECONDS = 1.0  # timestamps this far past the audio
NO_SPEECH_PROB = 0.5  # below this, an empty window is not silence
MIN_AUDIO_SECONDS = 1.0  # shorter windows are never decoded again (nothing much to lose)


@dataclass(frozen=True)
class TimedSegment:
    start: float
    end: float
    tokens: int


def timed_segments(sequence: list[int], timestamp_begin: int, eot: int) -> list[TimedSegment]:
    """The (start, end, text-token count) of each timestamp-enclosed segment of a decoded sequence."""
    segments: list[TimedSegment] = []
    start: float | None = None
    count = 0
    for token in sequence:
        if token >= timestamp_begin:
            seconds = (token - timestamp_begin) * TIME_PRECISION
            if start is None:
                start = seconds
            else:
                segments.append(TimedSegment(start, seconds, count))
                start, count = None, 0
        elif token < eot and start is not None:
            count += 1
    return segments


def full_window_reason(
    sequence: list[int],
    *,
    timestamp_begin: int,
    eot: int,
    audio_seconds: float,
    no_speech_prob: float,
    checks_passed: bool,
) -> str | None:
    """Why a shortened window's result must be decoded again on the full window (None: keep it)."""
    if audio_seconds < MIN_AUDIO_SECONDS:
        return None
    if not checks_passed:
        return "the window's checks failed"
    text_tokens = sum(1 for t in sequence if t < eot)
    if text_tokens == 0:
        return "no text from a window that is not silent" if no_speech_prob < NO_SPEECH_PROB else None
    segments = timed_segments(sequence, timestamp_begin, eot)
    for segment in segments:
        length = segment.end - segment.start
        if length >= STRETCH_MIN_SECONDS and length > STRETCH_SECONDS_PER_TOKEN * max(segment.tokens, 1):
            return f"a segment of {segment.tokens} tokens stretched over {length:.1f} s"
    if not segments:
        return None  # timestamps were not asked for
    last = segments[-1].end
    if last > audio_seconds + PAST_END_SECONDS:
        return f"timestamps at {last:.1f} s, past the audio's {audio_seconds:.1f} s"
    single_ending = len(sequence) >= 2 and sequence[-2] < timestamp_begin <= sequence[-1]
    if single_ending and last < audio_seconds - EARLY_END_SECONDS:
        return f"speech said to end at {last:.1f} s of {audio_seconds:.1f} s"
    return None
