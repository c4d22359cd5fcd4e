"""Domain errors raised by engines; the web layer maps them onto HTTP answers."""


class EngineError(Exception):
    """Base class for errors an engine reports about its input or configuration."""


class AudioDecodeError(EngineError):
    """The uploaded bytes are not audio we can decode, or hold no samples."""


class AudioTooLongError(EngineError):
    def __init__(self, duration: float, limit: float) -> None:
        super().__init__(f"Audio is {duration:.1f} s long; this server accepts at most {limit:.0f} s.")
        self.duration = duration
        self.limit = limit


class DecodingCancelled(EngineError):
    """The caller asked to stop; raised between decoding windows."""


class ModelLoadError(EngineError):
    """A configured model could not be found or loaded."""
