"""One running transcription: the decoder in a worker thread, its segments delivered to the event loop."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Generic, Protocol, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from app.errors import APIError
from app.scheduler import ModelSlots
from engines.types import TranscriptInfo
from engines.whisper import DecodingCancelled

log = logging.getLogger(__name__)

_DONE = object()
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Run(Protocol[T_co]):
    """A prepared transcription (LongFormRun, DiarizedRun): blocking iteration, then its info."""

    def segments(self) -> Iterator[T_co]: ...

    @property
    def info(self) -> TranscriptInfo: ...


DISCONNECT_POLL_SECONDS = 0.25


def timeout_error(seconds: float) -> APIError:
    return APIError(
        504,
        f"The transcription did not finish within the server's time limit of {seconds:g} s.",
        type="server_error",
        code="timeout",
        headers={"x-should-retry": "false"},
    )


class TranscriptionJob(Generic[T]):
    """Owns one request's decoding: holds a model slot while it runs, stops when asked, abandoned or late."""

    def __init__(
        self,
        run: Run[T],
        slots: ModelSlots,
        cancel: threading.Event,
        *,
        time_limit: float,
        on_finish: Callable[[], None] = lambda: None,
    ) -> None:
        self.run = run
        self.slots = slots
        self.cancel = cancel
        self.on_finish = on_finish
        self.time_limit = time_limit
        self.timed_out = False
        # The limit counts from the request's start, queueing included.
        self._timer = threading.Timer(time_limit, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.timed_out = True
        self.cancel.set()

    async def segments(self) -> AsyncGenerator[T, None]:
        """Segments as the decoder finishes them. Leaving early cancels the decoding."""
        send, receive = anyio.create_memory_object_stream[object](max_buffer_size=math.inf)
        token = anyio.lowlevel.current_token()

        def deliver(item: object) -> None:
            try:
                anyio.from_thread.run_sync(send.send_nowait, item, token=token)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, RuntimeError):
                self.cancel.set()  # nobody is listening any more

        def work() -> None:
            try:
                for segment in self.run.segments():
                    deliver(segment)
                deliver(_DONE)
            except BaseException as exc:
                deliver(exc)

        try:
            async with self.slots.slot():
                thread = threading.Thread(target=work, name="transcription", daemon=True)
                thread.start()
                finished = False
                try:
                    async with receive:
                        async for item in receive:
                            if item is _DONE:
                                finished = True
                                return
                            if isinstance(item, DecodingCancelled) and self.timed_out:
                                raise timeout_error(self.time_limit) from item
                            if isinstance(item, BaseException):
                                raise item
                            yield item  # type: ignore[misc]
                finally:
                    if not finished and thread.is_alive():
                        log.info("stopping decoding early: the request was cancelled or abandoned")
                    # Stop the decoder and keep the model slot until it has really stopped (one window).
                    self.cancel.set()
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(thread.join)
                    await send.aclose()
        finally:
            self.close()

    def close(self) -> None:
        """Release what the job holds (its model lease, its timer); safe to call more than once."""
        self._timer.cancel()
        finish, self.on_finish = self.on_finish, lambda: None
        finish()

    async def collect(self, disconnected: Callable[[], Awaitable[bool]] | None = None) -> list[T]:
        """Every segment; stops early (answering 499) if ``disconnected`` turns true."""
        segments: list[T] = []
        gone = False

        async def watch(scope: anyio.CancelScope) -> None:
            nonlocal gone
            assert disconnected is not None
            while not await disconnected():
                await anyio.sleep(DISCONNECT_POLL_SECONDS)
            gone = True
            self.cancel.set()
            scope.cancel()

        try:
            async with anyio.create_task_group() as group:
                if disconnected is not None:
                    group.start_soon(watch, group.cancel_scope)
                stream = self.segments()
                try:
                    async for segment in stream:
                        segments.append(segment)
                finally:
                    await stream.aclose()
                group.cancel_scope.cancel()
        except BaseExceptionGroup as grouped:
            # The task group wraps what the decoder raised; callers map the error itself.
            if len(grouped.exceptions) == 1:
                raise grouped.exceptions[0] from None
            raise
        if gone:
            raise APIError(499, "The client closed the request before the transcript was ready.")
        return segments
