"""Loads the configured diarizer once, on first use (or at start-up), and shares it."""

from __future__ import annotations

import os
import threading

from app.settings import DiarizationConfig
from engines.diarization.factory import load_diarizer
from engines.diarization.types import Diarizer


class DiarizerHolder:
    def __init__(self, config: DiarizationConfig) -> None:
        self.config = config
        self._diarizer: Diarizer | None = None
        self._lock = threading.Lock()

    def get(self) -> Diarizer:
        """The diarizer, loading it on first call (blocking; run it off the event loop)."""
        if self._diarizer is None:
            with self._lock:
                if self._diarizer is None:
                    token = self.config.token or os.environ.get("HF_TOKEN")
                    # Warm up here (first-call JIT compilation), so no request pays for it.
                    self._diarizer = load_diarizer(
                        self.config.engine, self.config.source, token, self.config.device, warm_up=True
                    )
        return self._diarizer
