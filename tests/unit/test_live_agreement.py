"""Local agreement: only words that successive hypotheses agree on become (append-only) deltas."""

from __future__ import annotations

from engines.live.agreement import LocalAgreement, align_tail, cut_loop, join_delta


def words(text: str) -> list[str]:
    return text.split()


def test_words_are_committed_once_two_hypotheses_agree() -> None:
    agreement = LocalAgreement(agree=2)
    assert agreement.update(words("And so my")) == []
    assert agreement.update(words("And so my fellow")) == words("And so my")
    assert agreement.update(words("And so, my fellow Americans")) == ["fellow"]
    assert agreement.committed == words("And so my fellow")


def test_comparison_ignores_case_and_punctuation_and_keeps_the_newest_spelling() -> None:
    agreement = LocalAgreement(agree=2)
    agreement.update(words("ask not what"))
    assert agreement.update(words("Ask not, what your")) == words("Ask not, what")


def test_holdback_keeps_the_last_agreed_words_back() -> None:
    agreement = LocalAgreement(agree=1, holdback=2)
    assert agreement.update(words("one two three four")) == words("one two")
    assert agreement.update(words("one two three four five")) == ["three"]


def test_a_revised_earlier_word_does_not_repeat_committed_text() -> None:
    agreement = LocalAgreement(agree=2)
    agreement.update(words("the quick brown"))
    agreement.update(words("the quick brown fox"))
    assert agreement.committed == words("the quick brown")
    # The decoder now hears 'brown' as 'round': the committed words stay, only new words follow.
    assert agreement.update(words("the quick round fox jumps")) == ["fox"]
    assert agreement.update(words("the quick round fox jumps over")) == ["jumps"]
    assert agreement.committed == words("the quick brown fox jumps")


def test_finish_appends_what_the_final_hypothesis_adds() -> None:
    agreement = LocalAgreement(agree=2)
    agreement.update(words("please call"))
    agreement.update(words("please call me"))
    assert agreement.finish(words("Please call me back before noon.")) == words("me back before noon.")
    assert " ".join(agreement.committed) == "please call me back before noon."


def test_align_tail_handles_insertions_and_a_shorter_hypothesis() -> None:
    assert align_tail(words("a b c"), words("a x b c d")) == ["d"]
    assert align_tail(words("a b c"), words("a b")) == []
    assert align_tail([], words("a b")) == words("a b")


def test_deltas_join_to_the_transcript() -> None:
    parts = [join_delta(words("Hello there."), first=True), join_delta(words("How are"), first=False),
             join_delta(words("you?"), first=False)]  # fmt: skip
    assert "".join(parts) == "Hello there. How are you?"
    assert join_delta([], first=False) == ""


def test_a_trailing_repetition_loop_is_cut_to_its_first_occurrence() -> None:
    assert cut_loop(words("small children came to to to to to")) == words("small children came to")
    assert cut_loop(words("the grass, the grass, the grass, the grass,")) == words("the grass,")
    assert cut_loop(words("one two three four")) == words("one two three four")
    assert cut_loop(words("very very good")) == words("very very good")
