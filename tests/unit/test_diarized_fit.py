"""Speaker pieces of the transcript: edges fitted to the diarizer's turns, never across another piece."""

from __future__ import annotations

from engines.diarization.types import SpeakerTurn
from engines.diarized import SpeakerSegment as Piece
from engines.diarized import TurnFitter


def piece(index: int, start: float, end: float, speaker: str) -> Piece:
    return Piece(f"seg_{index}", start, end, f" words{index}", speaker, 3)


def fit(pieces: list[Piece], turns: list[SpeakerTurn]) -> list[tuple[float, float, str]]:
    fitter = TurnFitter(turns)
    out = [*fitter.feed(pieces[:1]), *fitter.feed(pieces[1:]), *fitter.flush()]
    assert [p.id for p in out] == [p.id for p in pieces] and [p.text for p in out] == [p.text for p in pieces]
    return [(p.start, p.end, p.speaker) for p in out]


def test_edges_move_onto_nearby_turn_edges() -> None:
    turns = [SpeakerTurn(1.0, 4.0, "A"), SpeakerTurn(4.1, 8.0, "B")]
    pieces = [piece(0, 1.3, 3.8, "A"), piece(1, 4.4, 7.2, "B")]
    assert fit(pieces, turns) == [(1.0, 4.0, "A"), (4.1, 7.2, "B")]  # 0.8 s from the turn end: too far


def test_a_pause_inside_one_turn_joins_the_pieces_but_not_across_speakers() -> None:
    turns = [SpeakerTurn(0.0, 6.0, "A"), SpeakerTurn(6.0, 9.0, "B")]
    pieces = [piece(0, 0.0, 2.0, "A"), piece(1, 3.5, 5.0, "A"), piece(2, 5.4, 8.0, "B")]
    fitted = fit(pieces, turns)
    assert fitted[0] == (0.0, 3.5, "A")  # the 1.5-s pause is inside A's turn
    assert fitted[1][1] <= fitted[2][0]  # A's end never passes B's start
    assert fitted[2][0] >= 5.0


def test_pieces_without_a_turn_of_their_speaker_keep_their_times() -> None:
    pieces = [piece(0, 1.0, 2.0, "A"), piece(1, 2.5, 3.0, "known")]
    assert fit(pieces, [SpeakerTurn(0.0, 5.0, "B")]) == [(1.0, 2.0, "A"), (2.5, 3.0, "known")]
