"""Raw UTF-8 bytes of Whisper's byte-level BPE tokens (GPT-2's printable-byte alphabet reversed)."""

from __future__ import annotations

from functools import cache


@cache
def _unicode_to_byte() -> dict[str, int]:
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codepoints = list(printable)
    shift = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codepoints.append(256 + shift)
            shift += 1
    return {chr(cp): byte for byte, cp in zip(printable, codepoints, strict=True)}


def token_bytes(bpe_token: str) -> bytes:
    """Bytes behind one BPE token string as stored in tokenizer.json (e.g. 'Ġsee' -> b' see')."""
    table = _unicode_to_byte()
    return bytes(table[ch] for ch in bpe_token if ch in table)
