"""Moonshine's tokenizer file (``tokenizer.bin``): a SentencePiece vocabulary as raw byte strings,
one per token id, each written as its length (one byte, or two when the first has its top bit set)
and its bytes. ``▁`` marks a word's leading space."""

from __future__ import annotations

from pathlib import Path

SPACE_MARK = "\u2581".encode()
BOS, EOS = 1, 2


class MoonshineTokenizer:
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self._by_piece = {piece: index for index, piece in enumerate(pieces) if piece and index > EOS}
        self._longest = max((len(piece) for piece in pieces), default=1)

    @classmethod
    def load(cls, path: Path) -> MoonshineTokenizer:
        raw = path.read_bytes()
        pieces: list[bytes] = []
        at = 0
        while at < len(raw):
            length = raw[at]
            at += 1
            if length & 0x80:
                length = (length & 0x7F) | (raw[at] << 7)
                at += 1
            pieces.append(raw[at : at + length])
            at += length
        return cls(pieces)

    def token_bytes(self, token: int) -> bytes:
        """A text token's bytes, with the word-start mark as a space."""
        if token <= EOS or token >= len(self.pieces):
            return b""
        return self.pieces[token].replace(SPACE_MARK, b" ")

    def decode(self, tokens: list[int]) -> str:
        return b"".join(self.token_bytes(token) for token in tokens).decode("utf-8", errors="replace")

    def encode(self, text: str) -> list[int]:
        """Greedy longest-match pieces (close to SentencePiece's own split; used to count prompt tokens)."""
        data = (" " + text.strip()).replace(" ", "\u2581").encode()
        tokens: list[int] = []
        at = 0
        while at < len(data):
            for size in range(min(self._longest, len(data) - at), 0, -1):
                token = self._by_piece.get(data[at : at + size])
                if token is not None:
                    tokens.append(token)
                    at += size
                    break
            else:
                at += 1  # a byte the vocabulary lacks
        return tokens
