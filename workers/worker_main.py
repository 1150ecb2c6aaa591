"""Association-worker process: one uvloop event loop accepting on the inherited socket.

Forked by the supervisor with everything it needs in a :class:`WorkerContext`.
It beats a heartbeat from inside its loop (so a stuck loop shows), counts
what it receives in shared memory, and on SIGTERM stops accepting, lets
its associations finish up to the graceful timeout, then aborts the rest.
If the supervisor dies it does the same at once with a grace of
:data:`ORPHAN_GRACE` seconds: nobody would restart, reap or clean up after
it, and the port must be free for the next supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

from hsscp import events
from hsscp.config import ProcessSettings
from hsscp.journal import journal_of
from hsscp.proxied import acceptor_factory
from hsscp.service import AcceptorService
from hsscp.storage import StorageBackend
from hsscp.storage.durable import CHEAP_FSYNC
from hsscp.transport import new_event_loop
from workers.arena import Arena
from workers.child import BOOT_FAILED, PARENT_DIED
from workers.heartbeat import Heartbeat
from workers.limits import SharedLimiter
from workers.notify import Notifier
from workers.stats import Stats
from workers.storage_service import StorageService
from workers.writer_pool import WriterPool

log = logging.getLogger("hsscp.worker")

HEARTBEAT_INTERVAL = 0.25
ARENA_SLOTS = 64  # one per association being read into, plus datasets waiting for a writer
ORPHAN_GRACE = 2.0  # seconds open associations get when the supervisor is gone
ANSWER_WAIT = 5.0  # past the grace, seconds owed answers may still wait for their writers


@dataclass
class WorkerContext:
    """What a worker inherits at fork."""

    index: int
    listener: socket.socket
    ae: Any  # hsscp.AE: the protocol settings and supported contexts of the SCP
    ae_title: str
    contexts: list  # the supported contexts
    settings: ProcessSettings
    limiter: SharedLimiter
    heartbeat: Heartbeat
    stats_table: Any
    storage: StorageBackend
    writer_paths: list[str] = field(default_factory=list)
    ssl_context: ssl.SSLContext | None = None
    evt_handlers: list | None = None  # user handlers: they replace the writer pool
    pipeline_path: str | None = None  # the pipeline process's socket, when it runs (workers.notify)


def run_worker(ctx: WorkerContext) -> int:
    """Process entry point after fork; returns the exit code."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    ctx.limiter.slot = ctx.index
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(ctx))
    finally:
        loop.close()


async def _serve(ctx: WorkerContext) -> int:
    loop = asyncio.get_running_loop()
    stop = _StopRequest(loop)
    # Before anything is built: a stop asked for during the boot is then not lost.
    loop.add_signal_handler(signal.SIGTERM, stop.within, ctx.settings.graceful_timeout)
    loop.add_signal_handler(PARENT_DIED, stop.within, ORPHAN_GRACE)
    beat = _Heartbeat(loop, ctx.heartbeat)  # the loop turns while the worker boots, too
    arena = writers = None
    try:
        service, arena, writers = await _build_service(ctx)
        server = await loop.create_server(
            acceptor_factory(service, ctx.settings.proxy_protocol), sock=ctx.listener, ssl=ctx.ssl_context,
            # None (no ACSE timeout) leaves asyncio's own handshake timeout of 60 s.
            ssl_handshake_timeout=ctx.ae.acse_timeout if ctx.ssl_context else None,
        )
    except Exception:
        log.exception("worker %d could not start", ctx.index)
        if arena is not None:
            arena.close()
        return BOOT_FAILED
    await stop.requested.wait()
    server.close()  # stop accepting; the other workers' copies of the socket are theirs
    await _drain(service, writers, stop)
    if getattr(service, "notifier", None) is not None:
        await service.notifier.close(ANSWER_WAIT)
    beat.stop()
    if writers is not None:
        writers.close()
    if arena is not None:
        arena.close()
    return 0


class _StopRequest:
    """A stop asked for, and by when open associations must be done (the earliest asked)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.requested = asyncio.Event()
        self.deadline = math.inf

    def within(self, grace: float) -> None:
        self.deadline = min(self.deadline, self._loop.time() + grace)
        self.requested.set()


async def _build_service(ctx: WorkerContext):
    stats = Stats(ctx.stats_table, ctx.index)
    handlers = events.HandlerSet(ctx.evt_handlers)
    common = (ctx.ae, ctx.ae_title, ctx.contexts, handlers, ctx.limiter)
    if ctx.evt_handlers and handlers.has(events.EVT_C_STORE):
        service = AcceptorService(*common)
        service.stats = stats
        return service, None, None
    settings = ctx.settings
    arena = Arena(settings.spool_threshold, ARENA_SLOTS)
    writers = None
    if not settings.ignore:
        writers = WriterPool(ctx.writer_paths, arena.name, arena.slot_size)
        await writers.connect()
    inline_limit = settings.inline_limit if _may_store_inline(settings.fsync, ctx.storage) else 0
    notifier = Notifier(ctx.pipeline_path) if ctx.pipeline_path else None
    service = StorageService(*common, arena=arena, storage=ctx.storage, writers=writers, stats=stats,
                             ignore=settings.ignore, inline_limit=inline_limit, async_ops=settings.async_ops,
                             notifier=notifier)
    return service, arena, writers


def _may_store_inline(fsync: str, storage: StorageBackend) -> bool:
    """Whether small data sets are stored in the worker's own loop, rather than by a writer.

    Yes where that stalls the worker's other associations for less than a
    hop to a writer costs: without fsync, or where an fsync was measured to
    cost next to nothing (a tmpfs, a disk with power-loss protection). A
    slow fsync in the loop would stall every association of the worker.
    """
    if fsync == "none":
        return True
    if journal_of(storage) is not None:  # its own fsync, maybe on a slower file system
        return False
    measure = getattr(storage, "fsync_cost", None)  # the local file system backend measures it
    if measure is None:
        return False
    try:
        return measure() < CHEAP_FSYNC
    except OSError:
        return False


async def _drain(service: AcceptorService, writers: WriterPool | None, stop: _StopRequest) -> None:
    """Let open associations finish (up to the stop's deadline), then abort what is left."""
    loop = asyncio.get_running_loop()
    while service.protocols and loop.time() < stop.deadline:
        await asyncio.sleep(0.05)
    if service.protocols:
        log.warning("graceful timeout: aborting %d associations", len(service.protocols))
        service.abort_all()
    # Answers already owed to peers still need their writer results.
    while writers is not None and writers.in_flight and loop.time() < stop.deadline + ANSWER_WAIT:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0)


class _Heartbeat:
    """Beats from inside the loop: a loop that stops turning stops beating."""

    def __init__(self, loop: asyncio.AbstractEventLoop, heartbeat: Heartbeat) -> None:
        self._loop, self._heartbeat = loop, heartbeat
        self._handle = None
        self._beat()

    def _beat(self) -> None:
        self._heartbeat.beat()
        self._handle = self._loop.call_later(HEARTBEAT_INTERVAL, self._beat)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
