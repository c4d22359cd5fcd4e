"""Build the configured diarizer: the embedded offline engine or a pyannote pipeline."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from engines.diarization.types import Diarizer
from engines.errors import ModelLoadError

if TYPE_CHECKING:
    from engines.diarization.pyannote_engine import PyannoteDiarizer
    from engines.diarization.resemblyzer_engine import ResemblyzerDiarizer

log = logging.getLogger(__name__)

DiarizerKind = Literal["embedded", "pyannote"]


def load_diarizer(
    kind: DiarizerKind, source: str | None, token: str | None, device: str, *, warm_up: bool = False
) -> Diarizer:
    """Load a diarizer; heavy imports happen here, so a server without diarization never pays them.

    ``source`` is ignored by the embedded engine (its weights ship in resemblyzer) and required
    for pyannote: a local pipeline directory (holding config.yaml) or a hub id such as
    ``pyannote/speaker-diarization-community-1`` (gated: needs ``token`` and network).
    ``device`` is ``auto``, ``cpu`` or ``cuda[:n]``. ``warm_up`` runs the engine once on noise, so
    the first request does not pay one-time costs (the embedded engine's librosa JIT: ~20 s in a
    fresh environment, ~3 s once numba's cache is on disk).
    """
    diarizer: ResemblyzerDiarizer | PyannoteDiarizer
    if kind == "embedded":
        try:
            from engines.diarization.resemblyzer_engine import ResemblyzerDiarizer
        except ImportError as exc:
            raise ModelLoadError(f"The embedded diarizer needs resemblyzer, torch and scipy installed: {exc}") from exc
        diarizer = ResemblyzerDiarizer(device=device)
    elif kind == "pyannote":
        if not source:
            raise ModelLoadError("The pyannote diarizer needs a source: a pipeline directory or a hub id.")
        from engines.diarization.pyannote_engine import PyannoteDiarizer

        diarizer = PyannoteDiarizer.load(source, token=token, device=device)
    else:
        raise ModelLoadError(f"Unknown diarizer kind {kind!r}; expected 'embedded' or 'pyannote'.")
    if warm_up:
        seconds = diarizer.warm_up()
        log.info("%s diarizer warmed up in %.1f s", diarizer.name, seconds)
    return diarizer
