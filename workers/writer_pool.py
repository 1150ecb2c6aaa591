"""A worker's connections to the writer processes, and the jobs in flight on each.

A job goes to the live writer with the fewest jobs outstanding, and its
outcome comes back to a callback (no task or future per instance: this is
the per-instance hot path). The jobs sent to one writer in one turn of the
event loop go out in one write, so the writer finds them together and
stores them as one batch. There is no timeout: a slot must stay
untouched until the writer is done with it, and a writer that stops
beating is the supervisor's to replace.

When a writer's link is lost (it crashed, or the supervisor killed it as
stuck) the jobs it held are answered with a failure status, never handed
to another writer: the job may be what crashed or hung it, and would take
down every writer in turn; from here a crash and a kill look the same (a
closed socket); and failure is always a true answer (the peer sends again;
a file the writer renamed into place before dying is whole, so at worst an
instance is stored and reported failed, never the reverse). The link
reconnects when the supervisor has started the replacement; jobs submitted
while no writer is connected wait for it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

from hsscp.dimse import Status
from hsscp.storage import InstanceFact, StoreOutcome
from workers.arena import StoreSink
from workers.messages import FrameReader, JobDone, SpoolJob, StoreJob, frame

log = logging.getLogger("hsscp.worker")

RECONNECT_DELAY = 0.2
PROCESSING_FAILURE = Status.PROCESSING_FAILURE

Done = Callable[[StoreOutcome], None]
# submit()'s callback also gets the instance's fact (None when no writer stored it).
Stored = Callable[[StoreOutcome, InstanceFact | None], None]
# The failures the pool answers itself, no writer having stored the job (so none journaled it).
SHUTTING_DOWN = StoreOutcome(PROCESSING_FAILURE, error_comment="shutting down")
WRITER_LOST = StoreOutcome(PROCESSING_FAILURE, error_comment="writer lost")


class WriterLink(asyncio.Protocol):
    def __init__(self, pool: WriterPool, path: str) -> None:
        self.pool = pool
        self.path = path
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, tuple[Done, StoreJob | SpoolJob, bool]] = {}  # callback, job, wants the fact
        self._reader = FrameReader()
        self._queued: list[bytes] = []  # frames of this loop turn, written together

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for message in self._reader.feed(data):
            if isinstance(message, JobDone):
                entry = self.pending.pop(message.job_id, None)
                if entry is None:
                    continue
                if entry[2]:
                    entry[0](message.outcome, message.fact)
                else:
                    entry[0](message.outcome)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        orphans, self.pending = list(self.pending.values()), {}
        self.pool.link_lost(self, orphans)

    def send(self, job: StoreJob | SpoolJob, done: Done, with_fact: bool = False) -> None:
        self.pending[job.job_id] = (done, job, with_fact)
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        self._queued.append(frame(job))

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        if self.transport is not None:  # else connection_lost failed the pending jobs
            self.transport.write(b"".join(queued))


class WriterPool:
    def __init__(self, paths: list[str], arena_name: str, slot_size: int) -> None:
        self.paths = paths
        self.arena_name = arena_name
        self.slot_size = slot_size
        self.links: list[WriterLink] = []
        self._ids = itertools.count(1)
        self._waiting: list[tuple[StoreJob | SpoolJob, Done | Stored, bool]] = []  # while no writer is up
        self.closing = False

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect to every writer; the writers may still be starting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for path in self.paths:
            while True:
                try:
                    _, link = await loop.create_unix_connection(lambda p=path: WriterLink(self, p), path)
                    self.links.append(link)
                    break
                except OSError:
                    if loop.time() > deadline:
                        raise
                    await asyncio.sleep(0.05)

    def job_for(self, sink: StoreSink) -> StoreJob | SpoolJob:
        job_id = next(self._ids)
        if sink.spool_path is not None:
            return SpoolJob(job_id, sink.request, sink.spool_path, sink.head, sink.length)
        base = sink.slot * self.slot_size
        segments = [(base + offset, length) for offset, length in sink.segments]
        return StoreJob(job_id, sink.request, self.arena_name, segments)

    def submit(self, sink: StoreSink, done: Stored) -> None:
        """Store what ``sink`` holds; ``done(outcome, fact)`` is called from the loop when it is."""
        self.dispatch(self.job_for(sink), done, with_fact=True)

    def dispatch(self, job: StoreJob | SpoolJob, done: Done | Stored, with_fact: bool = False) -> None:
        """Send ``job`` to the live writer with the fewest jobs outstanding (or hold it until one is up)."""
        if self.closing:
            _call(done, SHUTTING_DOWN, with_fact)
            return
        live = [link for link in self.links if link.transport is not None]
        if not live:  # every writer is being replaced: hold the job until one is back
            self._waiting.append((job, done, with_fact))
            return
        min(live, key=lambda link: len(link.pending)).send(job, done, with_fact)

    def link_lost(self, link: WriterLink, orphans: list) -> None:
        if link in self.links:
            self.links.remove(link)
        if self.closing:
            lost = SHUTTING_DOWN
        else:
            lost = WRITER_LOST
            if orphans:
                log.warning("lost writer %s with %d jobs in flight: they fail", link.path, len(orphans))
        for done, _, with_fact in orphans:
            _call(done, lost, with_fact)
        if self.closing:
            return
        asyncio.ensure_future(self._reconnect(link.path))

    async def _reconnect(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        while not self.closing:
            await asyncio.sleep(RECONNECT_DELAY)
            try:
                _, link = await loop.create_unix_connection(lambda: WriterLink(self, path), path)
            except OSError:
                continue
            self.links.append(link)
            waiting, self._waiting = self._waiting, []
            for job, done, with_fact in waiting:
                self.dispatch(job, done, with_fact)
            return

    def close(self) -> None:
        self.closing = True
        waiting, self._waiting = self._waiting, []
        for job, done, with_fact in waiting:
            self.dispatch(job, done, with_fact)
        for link in self.links:
            if link.transport is not None:
                link.transport.close()

    @property
    def in_flight(self) -> int:
        return sum(len(link.pending) for link in self.links)


def _call(done: Done | Stored, outcome: StoreOutcome, with_fact: bool) -> None:
    """Answer a job no writer stored: no fact, and nothing journaled."""
    if with_fact:
        done(outcome, None)
    else:
        done(outcome)
