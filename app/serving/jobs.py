"""One running transcription: the decoder in a worker thread, its segments delivered to the event loop."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from app.serving.deadline import Deadline
from app.serving.errors import ClientGone, TimedOut
from app.serving.protocol import AudioRequest, ModelRoute, Rendered, StreamEvent
from app.serving.scheduler import Reservation
from engines.errors import DecodingCancelled
from engines.types import TranscriptInfo, TranscriptResult

log = logging.getLogger(__name__)

_DONE = object()
S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)

DISCONNECT_POLL_SECONDS = 0.25


class Run(Protocol[S_co]):
    """A prepared transcription (LongFormRun, DiarizedRun): blocking iteration, then its info."""

    def segments(self) -> Iterator[S_co]: ...

    @property
    def info(self) -> TranscriptInfo: ...


class Presenter(Protocol[S]):
    """How a job's segments are answered: one result type, one renderer, one stream of events."""

    def result(self, info: TranscriptInfo, segments: list[S]) -> TranscriptResult: ...

    def render(self, job: TranscriptionJob[S], segments: list[S]) -> Rendered: ...

    def events(self, job: TranscriptionJob[S]) -> AsyncIterator[StreamEvent]: ...


@dataclass(frozen=True)
class Presenters:
    """The api layer's presenters, handed to the service, which picks one per job."""

    plain: Presenter[Any]
    speakers: Presenter[Any]


class TranscriptionJob(Generic[S]):
    """Owns one request's decoding: its queue place, model lease and time limit, until ``close``."""

    def __init__(
        self,
        run: Run[S],
        *,
        request: AudioRequest,
        route: ModelRoute,
        presenter: Presenter[S],
        reservation: Reservation,
        resources: ExitStack,
        cancel: threading.Event,
        deadline: Deadline,
        between_windows: Callable[[threading.Event], None] | None = None,
        duration: float | None = None,
    ) -> None:
        self.run = run
        self.duration = duration  # of the audio, when its container says (before any decoding)
        self.between_windows = between_windows  # a batch job steps aside here for interactive work
        self.request = request
        self.route = route
        self.presenter = presenter
        self.reservation = reservation
        self.cancel = cancel
        self.deadline = deadline
        self.timed_out = False
        self._resources = resources
        # The limit counts from the request's start: only what is left of it remains for the job.
        self._timer = threading.Timer(deadline.remaining(), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.timed_out = True
        self.cancel.set()

    def result(self, segments: list[S]) -> TranscriptResult:
        return self.presenter.result(self.run.info, segments)

    def render(self, segments: list[S]) -> Rendered:
        return self.presenter.render(self, segments)

    def events(self) -> AsyncIterator[StreamEvent]:
        return self.presenter.events(self)

    async def segments(self) -> AsyncGenerator[S, None]:
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
                    if self.between_windows is not None:
                        # The decoder's next window is decoded only when asked for: waiting here pauses it.
                        self.between_windows(self.cancel)
                    deliver(segment)
                deliver(_DONE)
            except BaseException as exc:
                deliver(exc)

        try:
            async with self.reservation.running(self.deadline):
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
                                raise TimedOut(self.deadline.limit) from item
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
        """Release what the job holds (queue place, model lease, timer); safe to call more than once."""
        self._timer.cancel()
        self.cancel.set()
        self.reservation.release()
        self._resources.close()

    async def collect(self, disconnected: Callable[[], Awaitable[bool]] | None = None) -> list[S]:
        """Every segment; raises ClientGone early if ``disconnected`` turns true."""
        segments: list[S] = []
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
            raise ClientGone()
        return segments
