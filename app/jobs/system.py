"""The job system of one process: the store, the two Huey queues and their workers, and the sweeper.

Every server process accepts jobs. Those with ``jobs.workers`` > 0 (and ``python -m app worker``
processes) also run them: Huey worker threads take job ids off the queue and run each job in the
process's event loop, where the transcription service lives. The sweeper, in every running process,
puts back on the queue what a dead worker dropped (lapsed leases, undelivered webhook events) and
deletes expired jobs.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from app.accounting.ledger import UsageEvent
from app.jobs.audio_store import AudioStore
from app.jobs.outbound import GuardedClient, OutboundPolicy
from app.jobs.queue import JOB_QUEUE, WEBHOOK_QUEUE, build_queue, consumer
from app.jobs.runner import ErrorDescriber, JobRunner
from app.jobs.store import JobRow, JobStore
from app.jobs.webhooks import WebhookSender
from app.serving.service import TranscriptionService
from app.settings import JobsConfig

log = logging.getLogger(__name__)

# A queued job not taken for this long is dispatched again (its first dispatch may have been lost
# between the row's INSERT and the enqueue); a duplicate only costs a claim that finds nothing.
REDISPATCH_SECONDS = 600.0
WEBHOOK_RESPONSE_BYTES = 64 * 1024
WEBHOOK_WORKERS = 2


class JobSystem:
    def __init__(
        self,
        config: JobsConfig,
        service: TranscriptionService,
        *,
        record_usage: Callable[[UsageEvent], None],
        describe_error: ErrorDescriber,
        workers: int | None = None,
        dedicated: bool = False,
    ) -> None:
        assert config.database_url is not None and config.storage_dir is not None  # set by Settings
        self.config = config
        self.workers = config.workers if workers is None else workers
        self.store = JobStore(config.database_url)
        self.audio = AudioStore(config.storage_dir)
        broker = config.queue_url or config.database_url
        self.job_queue = build_queue(JOB_QUEUE, broker)
        self.webhook_queue = build_queue(WEBHOOK_QUEUE, broker)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        networks = config.url_allow_networks
        downloads = OutboundPolicy.from_strings(
            networks, max_bytes=config.max_upload_bytes, timeout_seconds=config.download_timeout_seconds
        )
        posts = OutboundPolicy.from_strings(
            networks, max_bytes=WEBHOOK_RESPONSE_BYTES, timeout_seconds=config.webhook_timeout_seconds, max_redirects=0
        )
        self.posts = GuardedClient(posts)
        self._run_task = self.job_queue.task(name="run_audio_job")(self._run_from_worker)
        self.sender = WebhookSender(
            self.store,
            self.posts,
            timeout_seconds=config.webhook_timeout_seconds,
            max_attempts=config.webhook_max_attempts,
            first_retry_seconds=config.webhook_retry_seconds,
            schedule_retry=self._schedule_delivery,
        )
        self._deliver_task = self.webhook_queue.task(name="deliver_webhook")(self.sender.deliver)
        self.runner = JobRunner(
            store=self.store,
            service=service,
            audio=self.audio,
            config=config,
            outbound=GuardedClient(downloads),
            record_usage=record_usage,
            describe_error=describe_error,
            on_final=self.deliver_final,
            on_released=self.dispatch,
            owner=self.owner,
            batch=not dedicated,
        )
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._consumers: list[Any] = []
        self._runs: set[anyio.CancelScope] = set()

    # --- dispatch -------------------------------------------------------------------------------------------

    def dispatch(self, job_id: str, priority: int = 0) -> None:
        """Put a job id on the queue (blocking). Higher priorities are taken first."""
        self._run_task(job_id, priority=priority)

    def deliver(self, event_id: str) -> None:
        self._deliver_task(event_id)

    def _schedule_delivery(self, event_id: str, delay: float) -> None:
        self._deliver_task.schedule(args=(event_id,), delay=max(0.0, delay))

    def deliver_final(self, job: JobRow) -> None:
        """Queue the delivery of the webhook event of a job's final state (blocking)."""
        if job.webhook_url:
            event_id = self.store.event_for(job.id)
            if event_id is not None:
                self.deliver(event_id)

    # --- running --------------------------------------------------------------------------------------------

    def _run_from_worker(self, job_id: str) -> None:
        """A Huey worker thread's task: run the job in the event loop and wait for it."""
        token = self._token
        if token is None:
            raise RuntimeError("the job system is not running")
        try:
            anyio.from_thread.run(self._run_in_scope, job_id, token=token)
        except BaseException:  # the loop is stopping, or the run failed outside its own handling
            log.exception("job %s: its run ended abnormally", job_id)

    async def _run_in_scope(self, job_id: str) -> None:
        with anyio.CancelScope() as scope:
            self._runs.add(scope)
            try:
                await self.runner.run(job_id)
            finally:
                self._runs.discard(scope)

    async def serve(self) -> None:
        """Run this process's part until cancelled: the workers (if any) and the sweeper."""
        self._token = anyio.lowlevel.current_token()
        if self.workers > 0:
            self._consumers = [
                consumer(self.job_queue, self.workers, embedded=True),
                consumer(self.webhook_queue, WEBHOOK_WORKERS, embedded=True),
            ]
            for started in self._consumers:
                started.start()
        try:
            if self.workers > 0:
                await self._sweep_forever()
            else:
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop()

    async def _stop(self) -> None:
        for running in self._consumers:
            running.stop(graceful=False)
        for scope in list(self._runs):
            scope.cancel()
        with anyio.move_on_after(10):
            while self._runs:
                await anyio.sleep(0.05)

    def close(self) -> None:
        self.store.close()

    # --- the sweeper ----------------------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        interval = min(5.0, self.config.lease_seconds / 2)
        while True:
            try:
                await anyio.to_thread.run_sync(self.sweep)
            except Exception:
                log.exception("the job sweeper failed; trying again")
            await anyio.sleep(interval)

    def sweep(self) -> None:
        """One pass: re-dispatch lapsed jobs and due webhook events, drop expired jobs and stray audio."""
        for job_id in self.store.lapsed(queued_before=time.time() - REDISPATCH_SECONDS):
            log.info("job %s: dispatched again (its lease lapsed, or it waited too long)", job_id)
            self.dispatch(job_id)
        for event_id in self.store.due_events():
            self.deliver(event_id)
        for _, audio_file in self.store.expired():
            self.audio.remove(audio_file)
        self.audio.remove_strays(self.store.audio_files_in_use(), older_than=time.time() - 3600)
