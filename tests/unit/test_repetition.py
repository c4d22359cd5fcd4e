"""Loop and copy detection on synthetic token sequences, and the deterministic per-window fallback on a fake model."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from engines.whisper.adapter import install_window_decoder
from engines.whisper.fallback import Rewritten
from engines.whisper.repetition import (
    COMPRESSION_RATIO_THRESHOLD,
    check_window,
    compression_ratio,
    copied_fraction,
    repeated_tail,
)

SENTENCE = list(range(100, 110))  # ten distinct tokens: one short sentence
OTHER = list(range(200, 214))

# --- detection ------------------------------------------------------------------------------


def test_compression_ratio_flags_repeated_text_only() -> None:
    clean = "And so, my fellow Americans, ask not what your country can do for you."
    looping = "I don't hear that in New Jersey now. " * 6
    assert compression_ratio(clean) < COMPRESSION_RATIO_THRESHOLD
    assert compression_ratio(looping) > COMPRESSION_RATIO_THRESHOLD
    assert compression_ratio("") == 0.0


def test_a_loop_at_the_end_is_found_where_it_starts_repeating() -> None:
    tokens = OTHER + SENTENCE + SENTENCE + SENTENCE + SENTENCE[:4]  # cut off mid-sentence by the length limit
    assert repeated_tail(tokens) == len(OTHER) + len(SENTENCE)


def test_a_short_phrase_looping_is_found() -> None:
    phrase = [300, 301, 302]  # " I'm Sheila."
    tokens = OTHER + phrase * 8
    tail = repeated_tail(tokens)
    assert tail is not None and len(OTHER) + 1 <= tail <= len(OTHER) + len(phrase)


def test_clean_speech_and_short_real_repeats_are_not_loops() -> None:
    assert repeated_tail(OTHER + SENTENCE) is None
    hello = [400, 401]  # " Hello?"
    assert repeated_tail(hello + hello + OTHER) is None  # "Hello? Hello?" then the conversation
    assert repeated_tail(OTHER + hello * 3) is None  # too short to be a loop
    # A phrase said twice in the middle, then new speech: not a loop running to the end.
    assert repeated_tail(SENTENCE + SENTENCE + OTHER) is None


def test_a_window_that_repeats_the_previous_text_is_a_loop_from_its_start() -> None:
    assert repeated_tail(SENTENCE + OTHER, previous=[1, 2, *SENTENCE, *OTHER]) == 0
    assert repeated_tail(SENTENCE + OTHER, previous=OTHER[:3]) is None


def test_copied_fraction() -> None:
    assert copied_fraction(SENTENCE + OTHER, OTHER) == 1.0
    assert copied_fraction(SENTENCE, OTHER) == 0.0
    assert copied_fraction(SENTENCE, SENTENCE + OTHER) == pytest.approx(len(SENTENCE) / (len(SENTENCE) + len(OTHER)))
    assert copied_fraction(SENTENCE, SENTENCE[:3]) == 0.0  # shorter than an n-gram: nothing to compare


def test_check_window_flags() -> None:
    clean = check_window("a clean sentence", OTHER, previous=SENTENCE)
    assert not clean.repetitive and clean.describe() == "clean"
    copied = check_window("a clean sentence", SENTENCE, previous=[7, *SENTENCE])
    assert copied.copies_prompt and copied.repetitive
    looping = check_window("words " * 40, OTHER + SENTENCE * 4)
    assert looping.tail is not None and looping.compresses and looping.repetitive
    assert "repeats itself" in looping.describe()


# --- the per-window fallback on a fake model ---------------------------------------------------

EOT, SOT, SOT_PREV, TS = 50257, 50258, 50361, 50364
SOT_SEQUENCE = [SOT, 50259, 50360]


def ts(seconds: float) -> int:
    return TS + round(seconds / 0.02)


@dataclass
class FakeResult:
    sequences_ids: list[list[int]]
    scores: list[float]
    no_speech_prob: float = 0.01


@dataclass
class FakeCTranslate2:
    """Answers generate() from a script: (with previous text?, greedy?) -> (tokens, avg log-prob)."""

    script: dict[tuple[bool, bool], tuple[list[int], float]]
    calls: list[dict[str, Any]] = field(default_factory=list)

    def generate(self, encoder_output: Any, prompts: list[list[int]], **kwargs: Any) -> list[FakeResult]:
        self.calls.append({"prompt": prompts[0], **kwargs})
        key = (prompts[0][0] == SOT_PREV, kwargs["beam_size"] == 1)
        tokens, avg_logprob = self.script[key]
        return [FakeResult([tokens], [avg_logprob * (len(tokens) + 1) / len(tokens)])]


class FakeTokenizer:
    eot, sot, sot_prev, timestamp_begin = EOT, SOT, SOT_PREV, TS

    def decode(self, tokens: list[int]) -> str:
        return " ".join(f"w{t}" for t in tokens if t < EOT)


class FakeWhisperModel:
    max_length, time_precision, input_stride = 448, 0.02, 2

    def __init__(self, script: dict[tuple[bool, bool], tuple[list[int], float]], word_seconds: float) -> None:
        self.model = FakeCTranslate2(script)
        self.word_seconds = word_seconds
        self.aligned_frames: list[int] = []

    def encode(self, features: Any) -> Any:
        return SimpleNamespace(shape=[1, features.shape[-1] // 2, 512])

    def find_alignment(self, tokenizer: Any, text_tokens: list[list[int]], encoder_output: Any, frames: int) -> Any:
        self.aligned_frames.append(frames)
        # One word per token, each word_seconds long, starting at 0.5 s.
        d = self.word_seconds
        return [[{"tokens": [t], "start": 0.5 + i * d, "end": 0.5 + (i + 1) * d} for i, t in enumerate(text_tokens[0])]]


def fw_options(temperature: float = 0.0) -> Any:
    return SimpleNamespace(
        temperatures=[temperature, 0.2, 0.4],
        beam_size=5,
        best_of=5,
        patience=1.0,
        length_penalty=1.0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        max_new_tokens=None,
        suppress_blank=True,
        suppress_tokens=[-1],
        max_initial_timestamp=1.0,
        log_prob_threshold=-1.0,
        no_speech_threshold=0.6,
        without_timestamps=False,
    )


def decode(
    script: dict[tuple[bool, bool], tuple[list[int], float]],
    *,
    previous: list[int] | None = None,
    low: bool = True,
    word_seconds: float = 0.5,
    audio_frames: int = 3000,
) -> tuple[Any, float, float, FakeWhisperModel, list[tuple[Any, list[int], list[int]]]]:
    model = FakeWhisperModel(script, word_seconds)
    recorded: list[tuple[Any, list[int], list[int]]] = []
    decoder = install_window_decoder(model, fallback_on_low_confidence=low, record=lambda *args: recorded.append(args))
    prompt = ([SOT_PREV, *previous] if previous else []) + SOT_SEQUENCE
    features = np.zeros((80, 3000), dtype=np.float32)  # a window as faster-whisper pads it: zeros after the audio
    features[:, :audio_frames] = -0.5
    encoder_output = model.encode(features)  # now the decoder's, which notes where the audio ends
    assert vars(model)["generate_with_fallback"] is decoder  # faster-whisper calls it through the model
    result, avg_logprob, temperature, _ = decoder(encoder_output, prompt, FakeTokenizer(), fw_options())
    return result, avg_logprob, temperature, model, recorded


def timed(*segments: list[int], step: float = 2.0) -> list[int]:
    out: list[int] = []
    for i, segment in enumerate(segments):
        out += [ts(i * step), *segment, ts((i + 1) * step)]
    return out


def test_a_clean_window_is_decoded_once_as_requested() -> None:
    tokens = timed(SENTENCE, OTHER)
    result, avg_logprob, temperature, model, _ = decode({(False, False): (tokens, -0.2)})
    assert result.sequences_ids[0] == tokens
    assert avg_logprob == pytest.approx(-0.2) and temperature == 0.0
    assert len(model.model.calls) == 1 and model.model.calls[0]["beam_size"] == 5


def test_a_loop_is_cut_and_the_kept_words_retimed_from_the_alignment() -> None:
    looping = timed(OTHER, SENTENCE, SENTENCE, SENTENCE, SENTENCE)
    result, _, temperature, model, recorded = decode({(False, False): (looping, -0.2)})
    assert isinstance(result, Rewritten)
    tokens = result.sequences_ids[0]
    assert [t for t in tokens if t < EOT] == OTHER + SENTENCE
    # Re-timed from the fake alignment (0.5 s a token from 0.5 s), ending in two timestamps so decoding resumes there.
    end = ts(0.5 + 0.5 * (len(OTHER) + len(SENTENCE)))
    assert tokens[0] == ts(0.5) and tokens[-2:] == [end, end]
    assert len(model.model.calls) == 1 and temperature == 0.0
    assert recorded and recorded[0][2] == tokens  # kept for log-prob scoring


def test_the_alignment_of_a_cut_loop_sees_the_audio_not_the_padding() -> None:
    looping = timed(OTHER, SENTENCE, SENTENCE, SENTENCE, SENTENCE)
    _, _, _, model, _ = decode({(False, False): (looping, -0.2)}, audio_frames=1234)
    assert model.aligned_frames == [1234]


def test_a_loop_is_not_cut_to_a_few_words() -> None:
    # Three tokens before the loop repeats: too little to align; greedy decoding is tried instead.
    looping = timed([42], [7, 8] * 10)
    greedy = timed(OTHER)
    result, _, _, model, _ = decode({(False, False): (looping, -0.2), (False, True): (greedy, -0.4)})
    assert result.sequences_ids[0] == greedy and model.aligned_frames == []


def test_a_window_copying_the_previous_text_is_decoded_again_without_it() -> None:
    previous = OTHER + SENTENCE
    fresh = timed(list(range(500, 520)))
    script = {(True, False): (timed(OTHER + SENTENCE), -0.1), (False, False): (fresh, -0.3)}
    result, avg_logprob, _, model, _ = decode(script, previous=previous)
    assert result.sequences_ids[0] == fresh and avg_logprob == pytest.approx(-0.3)
    assert [c["prompt"] for c in model.model.calls] == [[SOT_PREV, *previous, *SOT_SEQUENCE], SOT_SEQUENCE]


def test_low_confidence_falls_back_without_sampling_and_keeps_the_likeliest() -> None:
    beam, greedy = timed(SENTENCE), timed(OTHER)
    script = {(False, False): (beam, -1.4), (False, True): (greedy, -1.2)}
    first = decode(script)
    again = decode(script)
    assert first[0].sequences_ids[0] == greedy and first[1] == pytest.approx(-1.2)
    assert first[0].sequences_ids == again[0].sequences_ids
    calls = first[3].model.calls
    assert [c["beam_size"] for c in calls] == [5, 1]
    assert all("sampling_temperature" not in c for c in calls)


def test_a_single_requested_temperature_does_not_fall_back_on_low_confidence() -> None:
    script = {(False, False): (timed(SENTENCE), -1.4)}
    result, _, _, model, _ = decode(script, low=False)
    assert result.sequences_ids[0] == timed(SENTENCE) and len(model.model.calls) == 1


def test_a_real_repetition_survives_when_every_decode_hears_it() -> None:
    # Every decode repeats, and cutting would leave too little (the kept words end at 0.5 s,
    # so decoding would not move on): keep the likeliest decode whole.
    looping = [ts(0), *SENTENCE * 5, ts(0.5)]
    script = {(False, False): (looping, -0.2), (False, True): (looping, -0.4)}
    result, avg_logprob, _, _, _ = decode(script, word_seconds=0.0)
    assert [t for t in result.sequences_ids[0] if t < EOT] == SENTENCE * 5 and avg_logprob == pytest.approx(-0.2)


class HotwordTokenizer(FakeTokenizer):
    def encode(self, text: str) -> list[int]:
        return [900 + len(word) for word in text.split()]


def test_re_decodes_keep_the_keywords_and_drop_only_the_previous_text() -> None:
    model = FakeWhisperModel({(True, False): (timed(OTHER), -2.0), (True, True): (timed(OTHER), -2.0)}, 0.5)
    decoder = install_window_decoder(model, fallback_on_low_confidence=True)
    hint = HotwordTokenizer().encode(" Siobhan Kowalczyk")
    prompt = [SOT_PREV, *hint, *SENTENCE, *SOT_SEQUENCE]
    options = SimpleNamespace(**vars(fw_options()), hotwords="Siobhan Kowalczyk", prefix=None)
    decoder(model.encode(np.full((80, 3000), -0.5, dtype=np.float32)), prompt, HotwordTokenizer(), options)
    prompts = [call["prompt"] for call in model.model.calls]
    assert prompts[0] == prompt
    assert prompts[1:] == [[SOT_PREV, *hint, *SOT_SEQUENCE]] * 2  # without the previous text, with the keywords


class BrokenAlignmentModel(FakeWhisperModel):
    def find_alignment(self, tokenizer: Any, text_tokens: list[list[int]], encoder_output: Any, frames: int) -> Any:
        raise IndexError("boolean index did not match indexed array along axis 0")


def test_a_failing_alignment_gives_up_the_cut_and_decodes_again() -> None:
    # faster-whisper's find_alignment raises IndexError when CTranslate2 returns an empty alignment.
    looping = timed(OTHER, SENTENCE, SENTENCE, SENTENCE, SENTENCE)
    greedy = timed(OTHER)
    model = BrokenAlignmentModel({(False, False): (looping, -0.2), (False, True): (greedy, -0.4)}, 0.5)
    decoder = install_window_decoder(model, fallback_on_low_confidence=True)
    features = np.full((80, 3000), -0.5, dtype=np.float32)
    result, _, _, _ = decoder(model.encode(features), SOT_SEQUENCE, FakeTokenizer(), fw_options())
    assert result.sequences_ids[0] == greedy


def test_a_window_that_hears_the_end_of_the_previous_one_again_is_recognised() -> None:
    from engines.whisper.repetition import rehears_the_end

    previous = (
        "Hello. I'm in New Jersey now, though. Well, there's not much difference. At least, you know, they all "
        "call me a Yankee down here, so we'll come through. Oh, I don't hear that in New Jersey now."
    )
    again = "well there's not much difference at least you know they all call me a Yankee down here so I don't"
    assert rehears_the_end(previous, again)
    # A passage said twice for real starts again from its beginning: it stays.
    passage = "It was a bright cold day in April, and the clocks were striking thirteen. The hallway smelt of cabbage."
    assert not rehears_the_end(passage, passage)
    # New speech, or too little to judge.
    assert not rehears_the_end(previous, "The train to Boston leaves at half past nine tomorrow morning.")
    assert not rehears_the_end(previous, "New Jersey now")


def test_timestamps_on_whole_seconds_only_are_coarse() -> None:
    from engines.whisper.fallback import coarse_timestamps

    begin = 50364
    whole = [begin + 50 * s for s in (0, 1, 1, 2, 2, 3, 3, 4, 12, 14)]
    assert coarse_timestamps(whole, begin)
    assert not coarse_timestamps([*whole, begin + 731], begin)  # 14.62 s: follows the audio
    assert not coarse_timestamps(whole[:4], begin)  # too few to tell
