"""Domain errors of the serving layer; the api layer alone turns them into OpenAI's error envelope."""

from __future__ import annotations


class ServingError(Exception):
    """Base of every error the serving layer (and accounting) reports about a request."""


class InvalidInput(ServingError):
    """The request asks for something this server cannot do as asked (a 400 on the wire)."""

    def __init__(self, param: str, message: str, *, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.message = message
        self.code = code


class ModelNotFound(ServingError):
    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist or you do not have access to it.")
        self.model = model


class ModelUnavailable(ServingError):
    """A configured model (or the diarizer) could not be loaded."""


class QueueFull(ServingError):
    """Every slot of the model is busy and its queue is full; ``retry_after`` is in whole seconds."""

    def __init__(self, model_id: str, running: int, waiting: int, retry_after: int) -> None:
        super().__init__(
            f"Model '{model_id}' is busy: {running} running and {waiting} queued. Retry after the indicated delay."
        )
        self.retry_after = retry_after


class RateLimited(ServingError):
    """A per-key limit refuses the request; ``limit_type`` is OpenAI's (`requests` or `tokens`)."""

    def __init__(self, message: str, *, limit_type: str, wait_seconds: float) -> None:
        super().__init__(message)
        self.limit_type = limit_type
        self.wait_seconds = wait_seconds


class TimedOut(ServingError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"The transcription did not finish within the server's time limit of {seconds:g} s.")
        self.seconds = seconds


class ClientGone(ServingError):
    """The caller went away before its answer was ready."""

    def __init__(self) -> None:
        super().__init__("The client closed the request before the transcript was ready.")


class SessionLimitReached(ServingError):
    """A realtime session would pass a per-key or per-model session limit (close 1013: try again later)."""
