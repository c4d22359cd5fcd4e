"""One run of one job: claim it, keep its lease, fetch its audio, transcribe through the service, finish it.

A run is an attempt: it holds the job only while it renews the lease. When the lease is lost (the
process paused past it, and another worker took the job), the run stops without finishing, so a job
never completes twice. A killed run simply stops renewing; the sweeper dispatches the job again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from app.accounting.ledger import UsageEvent
from app.jobs.audio_store import AudioStore
from app.jobs.outbound import GuardedClient, OutboundRefused
from app.jobs.request_codec import decode_request
from app.jobs.store import Claim, JobRow, JobStatus, JobStore
from app.serving.deadline import Deadline
from app.serving.service import TranscriptionService
from app.settings import JobsConfig
from engines.errors import DecodingCancelled

log = logging.getLogger(__name__)

ErrorDescriber = Callable[[BaseException], tuple[str, str]]  # an exception -> (code, message) of the job error


@dataclass
class RunState:
    """What the lease keeper reports and reads while the transcription runs."""

    cancel: threading.Event = field(default_factory=threading.Event)
    progress: float = 0.0
    audio_seconds: float | None = None
    lost: bool = False  # the lease went to another run
    cancel_requested: bool = False


@dataclass(frozen=True)
class Outcome:
    status: JobStatus
    result: tuple[bytes, str] | None = None
    error: tuple[str, str] | None = None
    audio_seconds: float | None = None


class JobRunner:
    """Runs jobs in the server's event loop; every database call goes to a worker thread."""

    def __init__(
        self,
        *,
        store: JobStore,
        service: TranscriptionService,
        audio: AudioStore,
        config: JobsConfig,
        outbound: GuardedClient,
        record_usage: Callable[[UsageEvent], None],
        describe_error: ErrorDescriber,
        on_final: Callable[[JobRow], None],
        on_released: Callable[[str], None],
        owner: str,
        batch: bool = True,
    ) -> None:
        self.store = store
        self.service = service
        self.audio = audio
        self.config = config
        self.outbound = outbound
        self.record_usage = record_usage
        self.describe_error = describe_error
        self.on_final = on_final
        self.on_released = on_released
        self.owner = owner
        # In a server, jobs are batch work behind interactive requests; a dedicated worker has none to yield to.
        self.batch = batch
        self.running: dict[str, RunState] = {}

    async def run(self, job_id: str) -> None:
        config = self.config
        claim = await anyio.to_thread.run_sync(self.store.claim, job_id, self.owner, config.lease_seconds)
        if claim is None:
            return  # finished, cancelled, or running elsewhere: a duplicate dispatch
        if claim.attempt > config.max_attempts:
            message = f"The job's worker stopped {config.max_attempts} times before it could finish."
            await self._finish(claim, Outcome("failed", error=("worker_lost", message)))
            return
        if claim.job.cancel_requested:
            await self._finish(claim, Outcome("cancelled"))
            return
        log.info("job %s: attempt %d on %s", job_id, claim.attempt, self.owner)
        state = RunState()
        self.running[job_id] = state
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._keep_lease, claim, state)
                outcome = await self._execute(claim, state)
                group.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            # This process is stopping: hand the job back at once rather than after its lease lapses.
            with anyio.CancelScope(shield=True):
                if await anyio.to_thread.run_sync(self.store.release, claim):
                    log.info("job %s: handed back to the queue (shutting down)", job_id)
                    await anyio.to_thread.run_sync(self.on_released, job_id)
            raise
        finally:
            del self.running[job_id]
        if state.lost:
            log.warning("job %s: attempt %d lost its lease; its result is dropped", job_id, claim.attempt)
            return
        if state.cancel_requested and outcome.status != "succeeded":
            outcome = Outcome("cancelled", audio_seconds=outcome.audio_seconds)
        await self._finish(claim, outcome)

    async def _finish(self, claim: Claim, outcome: Outcome) -> None:
        finished = await anyio.to_thread.run_sync(
            lambda: self.store.finish(
                claim,
                outcome.status,
                result=outcome.result,
                error=outcome.error,
                audio_seconds=outcome.audio_seconds,
                result_ttl_seconds=self.config.result_ttl_seconds,
            )
        )
        if finished is None:
            return  # the claim was lost on the way
        log.info("job %s: %s", finished.id, finished.status)
        await anyio.to_thread.run_sync(self._after_final, finished)

    def _after_final(self, finished: JobRow) -> None:
        self.audio.remove(finished.audio_file)
        self.store.drop_audio(finished.id)
        self.on_final(finished)

    async def _keep_lease(self, claim: Claim, state: RunState) -> None:
        interval = self.config.lease_seconds / 3
        while True:
            await anyio.sleep(min(interval, 2.0))
            try:
                renewal = await anyio.to_thread.run_sync(
                    self.store.renew, claim, self.config.lease_seconds, state.progress, state.audio_seconds
                )
            except Exception:  # a database hiccup: try again; the lease still has two thirds left
                log.exception("job %s: could not renew its lease", claim.job.id)
                continue
            if not renewal.held:
                state.lost = True
                state.cancel.set()
                return
            if renewal.cancel_requested:
                state.cancel_requested = True
                state.cancel.set()

    async def _execute(self, claim: Claim, state: RunState) -> Outcome:
        job = claim.job
        try:
            data = await self._audio(claim)
            request = decode_request(job.options, data)
            admission = self.service.admit(request, batch=self.batch)
            deadline = Deadline(self.config.timeout_seconds)
            transcription = await self.service.start(
                admission, deadline, max_audio_seconds=self.config.max_audio_seconds
            )
        except OutboundRefused as refused:
            return Outcome("failed", error=(refused.code, refused.message))
        except Exception as exc:
            return Outcome("failed", error=self.describe_error(exc))
        del data

        # The decoder stops at its next window when the job is cancelled or its lease is lost.
        def pass_cancel_on() -> None:
            state.cancel.wait()
            transcription.cancel.set()

        watcher = threading.Thread(target=pass_cancel_on, name="job-cancel", daemon=True)
        watcher.start()
        segments: list[Any] = []
        try:
            state.audio_seconds = transcription.duration
            async for segment in transcription.segments():
                segments.append(segment)
                if state.audio_seconds:
                    state.progress = min(0.99, float(segment.end) / state.audio_seconds)
        except DecodingCancelled:
            return Outcome("cancelled", audio_seconds=state.audio_seconds)
        except Exception as exc:
            if state.cancel.is_set():
                return Outcome("cancelled", audio_seconds=state.audio_seconds)
            return Outcome("failed", error=self.describe_error(exc), audio_seconds=state.audio_seconds)
        finally:
            state.cancel.set()  # ends the watcher
            transcription.close()
        if state.lost or state.cancel_requested:
            return Outcome("cancelled", audio_seconds=state.audio_seconds)
        rendered = transcription.render(segments)
        transcript = transcription.result(segments)
        self.record_usage(
            UsageEvent(
                key_name=job.key_name,
                model=job.model,
                endpoint=f"{job.task}_job",
                status=200,
                audio_seconds=transcript.info.duration,
                input_tokens=transcript.info.prompt_tokens + transcript.info.audio_tokens,
                output_tokens=transcript.output_tokens,
            )
        )
        return Outcome("succeeded", result=(rendered.body, rendered.media_type), audio_seconds=transcript.info.duration)

    async def _audio(self, claim: Claim) -> bytes:
        """The job's audio: its stored file, or its URL downloaded (once; a later attempt reuses the file)."""
        job = claim.job
        if job.audio_file is not None:
            data = await anyio.to_thread.run_sync(self.audio.read, job.audio_file)
            if data is not None:
                return data
        if job.audio_url is None:
            raise OutboundRefused("audio_missing", "The job's audio is no longer stored.")
        name = self.audio.new_name()
        path: Path = self.audio.path(name)
        started = time.monotonic()
        downloaded = await anyio.to_thread.run_sync(self.outbound.download, job.audio_url, path)
        log.info("job %s: downloaded %d bytes in %.1f s", job.id, downloaded.size, time.monotonic() - started)
        if not await anyio.to_thread.run_sync(self.store.set_audio_file, claim, name):
            self.audio.remove(name)
            raise OutboundRefused("lease_lost", "The job moved to another worker.")
        return await anyio.to_thread.run_sync(path.read_bytes)
