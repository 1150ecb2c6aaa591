"""The pipeline process: one for the server, when a hook, an API event or a journal needs it.

It listens on a Unix socket in the run folder; every worker connects and
sends a message per stored instance (:mod:`workers.notify`), which the
:class:`~workers.pipeline.Pipeline` turns into hooks, completions and events.
It beats a heartbeat from its loop like every child, and the supervisor
restarts it when it dies; it starts first and stops last, so workers find it
at their start and their last messages are read before it goes. On SIGTERM
it stops listening, reads what the workers already sent, keeps the open
quiet periods for the next run and gives running hooks and handlers up to
:data:`STOP_WAIT` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass

from hsscp.journal import Journal, read_journal
from hsscp.transport import new_event_loop
from workers.child import BOOT_FAILED, PARENT_DIED
from workers.heartbeat import Heartbeat
from workers.notify import frame_reader
from workers.pipeline import Pipeline, PipelinePlan
from workers.pipeline_state import JournalState, SnapshotState

__all__ = ["STOP_WAIT", "PipelineContext", "run_pipeline"]

log = logging.getLogger("hsscp.pipeline")

HEARTBEAT_INTERVAL = 0.25
STOP_WAIT = 10.0  # seconds running hooks and handlers get at a stop
ORPHAN_WAIT = 1.0  # the same when the supervisor is gone
LINGER = 2.0  # seconds at a stop for workers still connected to hang up


@dataclass
class PipelineContext:
    """What the pipeline process inherits at fork."""

    plan: PipelinePlan
    socket_path: str
    heartbeat: Heartbeat
    journal: Journal | None = None  # the store path's, when it keeps one


def run_pipeline(ctx: PipelineContext) -> int:
    """Process entry point after fork; returns the exit code."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(_serve(ctx))


class _Link(asyncio.Protocol):
    """One worker's connection: frames in, messages to the pipeline."""

    def __init__(self, pipeline: Pipeline, links: set[_Link]) -> None:
        self.pipeline = pipeline
        self.links = links
        self.reader = frame_reader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.links.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.reader.feed(data)
        except ValueError as exc:  # msgspec.DecodeError is one; only a bug gets here: the workers are ours
            log.error("closing a worker's connection: %s", exc)
            self.transport.abort()
            return
        for message in messages:
            try:
                self.pipeline.stored(message)
            except Exception:  # one bad message must not stop the rest
                log.exception("handling the stored instance %s failed", message.sop_instance_uid)

    def connection_lost(self, exc: Exception | None) -> None:
        self.links.discard(self)


async def _serve(ctx: PipelineContext) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    wait = {"seconds": STOP_WAIT}

    def stop_within(seconds: float) -> None:
        wait["seconds"] = min(wait["seconds"], seconds)
        stop.set()

    loop.add_signal_handler(signal.SIGTERM, stop_within, STOP_WAIT)
    loop.add_signal_handler(PARENT_DIED, stop_within, ORPHAN_WAIT)
    beating = loop.create_task(_beat(ctx.heartbeat))
    links: set[_Link] = set()
    try:
        pipeline = Pipeline(ctx.plan, _state_for(ctx.plan, ctx.journal))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ctx.socket_path)  # left by the pipeline process this one replaces
        server = await loop.create_unix_server(lambda: _Link(pipeline, links), ctx.socket_path)
        pipeline.start()
    except Exception:
        log.exception("the pipeline process could not start")
        beating.cancel()
        return BOOT_FAILED
    await stop.wait()
    server.close()
    # The workers stopped first: read what they sent until they have all hung up.
    deadline = loop.time() + min(wait["seconds"], LINGER)
    while links and loop.time() < deadline:
        await asyncio.sleep(0.02)
    await pipeline.close(wait["seconds"])
    beating.cancel()
    return 0


def _state_for(plan: PipelinePlan, journal: Journal | None) -> SnapshotState | JournalState:
    if journal is None:
        return SnapshotState(plan.state_file)
    return JournalState(journal, lambda: read_journal(journal.path))


async def _beat(heartbeat: Heartbeat) -> None:
    """Beats from inside the loop: a loop that stops turning stops beating."""
    while True:
        heartbeat.beat()
        await asyncio.sleep(HEARTBEAT_INTERVAL)
