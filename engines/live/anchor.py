"""Where a growing turn's decodes start: after the last segment whose words are all shown.

A turn is decoded again and again as it grows, and each decode of the whole turn costs more than
the last (the encoder reads all of its audio, the decoder writes all of its words). The words
already shown never change (engines/live/agreement.py), so once every word of a segment that
Whisper timed is shown, later decodes start at that segment's end and hear the shown words as a
text prompt instead, as whisper_streaming trims its buffer at finished segments. The decode's
words are the shown words before the anchor plus what it heard after it. Only live decodes start
there: a turn's final hears the whole turn (from an anchor, Whisper sometimes ended a final at a
sentence's end and left the speech after it unheard).
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher

from engines.audio import SAMPLE_RATE
from engines.live.agreement import normalize
from engines.live.decoding import Hypothesis

# A segment must end this long before the decoded audio does: the last second's segmentation may change.
MARGIN_SECONDS = 1.0


@dataclass(frozen=True)
class Anchor:
    samples: int = 0  # from the turn's start
    words: int = 0  # shown words said before it
    # The language those words were heard in: decodes from the anchor keep it (a detection on the rest of
    # a turn alone, a second or two of audio, can be far off: Korean for the end of an English sentence)
    language: str | None = None


def advance(anchor: Anchor, heard: Hypothesis, shown: list[str]) -> Anchor:
    """The anchor after ``heard`` (a decode of the audio from ``anchor`` on), given the words shown now.

    It moves to the end of the last segment that ends ``MARGIN_SECONDS`` before the decoded audio and
    whose last two words (or only word) are shown words, in a row: the decode's words are aligned with
    the shown ones after the anchor (a decode may add or drop a word that the agreement left out), and
    the anchor counts the shown words up to that point.
    """
    since = [normalize(w) for w in shown[anchor.words :]]
    said = [normalize(w) for w in heard.words]
    shown_at: dict[int, int] = {}  # index of a decoded word -> index of the same shown word (after the anchor)
    for block in SequenceMatcher(None, said, since, autojunk=False).get_matching_blocks():
        shown_at.update({block.a + k: block.b + k for k in range(block.size)})
    count, best = 0, anchor
    latest = heard.samples - MARGIN_SECONDS * SAMPLE_RATE
    for end_seconds, words in heard.segment_ends:
        count += words
        end = round(end_seconds * SAMPLE_RATE)
        if end > latest:
            break
        last = count - 1
        if not words or last not in shown_at or end <= best.samples - anchor.samples:
            continue
        if words > 1 and shown_at.get(last - 1) != shown_at[last] - 1:
            continue
        best = Anchor(anchor.samples + end, anchor.words + shown_at[last] + 1, heard.language)
    return best
