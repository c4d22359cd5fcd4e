"""A CTranslate2 Whisper model of a real shape with random weights, built offline (no hub, no tokenizer files).

For timing only: the weights are random, so the tokens it produces mean nothing, but every matrix has
the size of the real model's. It is built as a transformers ``WhisperForConditionalGeneration`` from a
``WhisperConfig``, saved with ``save_pretrained`` and converted by CTranslate2's
``TransformersConverter``. The converter also loads a tokenizer (``AutoTokenizer``), which would need
tokenizer files from the hub; it only reads the vocabulary and the language tokens from it, so a small
stand-in with a locally generated vocabulary laid out like Whisper's is handed to it instead.

Needs torch, transformers and ctranslate2; imported only when a model is built.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Whisper's vocabulary: 50257 byte-level BPE tokens, <|endoftext|>, <|startoftranscript|>, one token per
# language, six task/marker tokens, then 1501 timestamps <|0.00|> … <|30.00|>.
TEXT_TOKENS = 50257
TIMESTAMP_TOKENS = 1501
EOT = "<|endoftext|>"
SOT = "<|startoftranscript|>"
TASK_TOKENS = (
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
)
ENGLISH = "<|en|>"
# The converted model's files, and this module's record of the shape it was built with.
MODEL_FILE = "model.bin"
SHAPE_FILE = "random_whisper.json"


@dataclass(frozen=True)
class WhisperShape:
    """The sizes that decide Whisper's compute cost."""

    d_model: int
    encoder_layers: int
    decoder_layers: int
    heads: int
    mel_bins: int
    vocab_size: int


PRESETS: dict[str, WhisperShape] = {
    "large-v3": WhisperShape(
        d_model=1280, encoder_layers=32, decoder_layers=32, heads=20, mel_bins=128, vocab_size=51866
    ),
    "base": WhisperShape(d_model=512, encoder_layers=6, decoder_layers=6, heads=8, mel_bins=80, vocab_size=51865),
    "tiny": WhisperShape(d_model=384, encoder_layers=4, decoder_layers=4, heads=6, mel_bins=80, vocab_size=51865),
}


def vocabulary(vocab_size: int) -> list[str]:
    """Whisper's non-timestamp tokens for a multilingual vocabulary of ``vocab_size`` (timestamps excluded).

    The text tokens are placeholders; the slot before <|endoftext|> is empty, as in Whisper's own
    vocabulary (CTranslate2 4.8 reports a model multilingual only then: found by trial). The language
    tokens are <|en|> and placeholders, as many as the size leaves (99 for 51865, 100 for 51866).
    """
    languages = vocab_size - TIMESTAMP_TOKENS - TEXT_TOKENS - 2 - len(TASK_TOKENS)
    if languages < 1:
        raise ValueError(f"vocab_size {vocab_size} leaves no language tokens: only multilingual shapes are supported")
    text = [f"t{i}" for i in range(TEXT_TOKENS - 1)] + [""]
    return [*text, EOT, SOT, ENGLISH, *(f"<|x{i:03d}|>" for i in range(1, languages)), *TASK_TOKENS]


def language_tokens(tokens: list[str]) -> list[str]:
    start = tokens.index(SOT) + 1
    return tokens[start : tokens.index(TASK_TOKENS[0])]


class _StandInTokenizer:
    """What ``TransformersConverter``'s Whisper loader reads from a tokenizer, and nothing more."""

    def __init__(self, tokens: list[str]) -> None:
        self._ids = {token: i for i, token in enumerate(tokens)}
        self.additional_special_tokens = language_tokens(tokens)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._ids)

    def convert_tokens_to_ids(self, token: str) -> int:
        return self._ids[token]


def build(shape: WhisperShape, target: Path) -> Path:
    """Build and convert a random-weight model of ``shape`` into ``target`` (float16), or reuse one already there."""
    marker = target / SHAPE_FILE
    if (target / MODEL_FILE).is_file() and marker.is_file() and json.loads(marker.read_text()) == asdict(shape):
        return target
    tokens = vocabulary(shape.vocab_size)
    hf_dir = target.with_name(target.name + "-transformers")
    _save_transformers_model(shape, tokens, hf_dir)
    try:
        _converter(hf_dir, _StandInTokenizer(tokens)).convert(str(target), quantization="float16", force=True)
    finally:
        shutil.rmtree(hf_dir, ignore_errors=True)  # large-v3 is 3 GB in float16
    marker.write_text(json.dumps(asdict(shape)))
    return target


def _save_transformers_model(shape: WhisperShape, tokens: list[str], hf_dir: Path) -> None:
    import torch

    transformers = importlib.import_module("transformers")  # untyped for mypy, as ctranslate2 is
    eot, sot = tokens.index(EOT), tokens.index(SOT)
    config = transformers.WhisperConfig(
        vocab_size=shape.vocab_size,
        num_mel_bins=shape.mel_bins,
        d_model=shape.d_model,
        encoder_layers=shape.encoder_layers,
        decoder_layers=shape.decoder_layers,
        encoder_attention_heads=shape.heads,
        decoder_attention_heads=shape.heads,
        encoder_ffn_dim=4 * shape.d_model,
        decoder_ffn_dim=4 * shape.d_model,
        # WhisperConfig's defaults are GPT-2's ids; these match the vocabulary above.
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
        begin_suppress_tokens=[220, eot],
        suppress_tokens=[],
    )
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(config).half()  # float16 halves the files
    model.save_pretrained(str(hf_dir))


def _converter(hf_dir: Path, tokenizer: _StandInTokenizer) -> Any:
    from ctranslate2.converters import TransformersConverter

    class OfflineConverter(TransformersConverter):  # type: ignore[misc]
        def load_tokenizer(self, *args: object, **kwargs: object) -> _StandInTokenizer:
            return tokenizer

    return OfflineConverter(str(hf_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a random-weight CTranslate2 Whisper model (float16).")
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("target", type=Path, help="model folder (reused when it already holds this shape)")
    args = parser.parse_args(argv)
    try:
        build(PRESETS[args.preset], args.target)
    except ImportError as exc:
        print(f"random_whisper: {exc} (building a model needs torch, transformers and ctranslate2)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
