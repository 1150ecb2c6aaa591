"""Workers tell the pipeline process about every stored instance: one small message each.

The message travels over a Unix stream socket (``<rundir>/pipeline.sock``) as
a length-prefixed msgpack frame, as the writers' jobs do (:mod:`workers.messages`). Sending never blocks and never delays a
C-STORE-RSP: it is called after the response was handed to the transport, and
:meth:`Notifier.send` only appends to a buffer. When the pipeline process is
down (it is restarting) a worker keeps up to :data:`MAX_PENDING` messages and
sends them once it is back; past that, or when the pipeline falls more than
:data:`MAX_BUFFERED_BYTES` behind, messages are dropped: counted, with a
warning at most once a second. Instances whose message was lost still get
their completion when a journal is configured (the restarted pipeline reads
it), not their reception hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from hsscp.storage import InstanceFact, StoreOutcome
from workers.messages import FrameReader, frame

__all__ = ["InstanceStored", "Notifier", "frame_reader", "instance_stored"]

log = logging.getLogger("hsscp.pipeline")

MAX_PENDING = 10_000  # messages kept while the pipeline process is not connected
MAX_BUFFERED_BYTES = 4 * 1024 * 1024  # unsent bytes past which the pipeline counts as behind
RETRY_INTERVAL = 0.2  # seconds between attempts to reach the pipeline process
WARN_INTERVAL = 1.0  # seconds between two warnings about dropped messages



class InstanceStored(msgspec.Struct, frozen=True, array_like=True):
    """One instance in place under its final name, and who sent it.

    Study and series UIDs are "" when the worker does not know them: the
    pipeline then reads them from the stored file.
    """

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    status: int
    bytes: int
    calling_ae: str
    called_ae: str
    peer_host: str
    peer_port: int
    time: float  # when it was answered (time.time())
    duplicate: str | None = None  # what became of a copy of an instance stored before (StoreOutcome)


def instance_stored(
    protocol: Any, command: Any, outcome: StoreOutcome, fact: InstanceFact | None
) -> InstanceStored:
    """The notification for a stored instance: its fact (the store path's) and what the worker knows.

    The one place that builds it. Without a fact the study and series are
    left "" for the pipeline to read from the file.
    """
    assoc = protocol.assoc
    host, port = protocol.peer[:2]
    return InstanceStored(
        path=outcome.path,
        sop_class_uid=str(command.affected_sop_class_uid),
        sop_instance_uid=str(command.affected_sop_instance_uid),
        study_instance_uid=fact.study_instance_uid if fact is not None else "",
        series_instance_uid=fact.series_instance_uid if fact is not None else "",
        status=int(outcome.status),
        bytes=outcome.bytes_written,
        calling_ae=_title(assoc.requestor.ae_title),
        called_ae=_title(assoc.acceptor.ae_title),
        peer_host=str(host),
        peer_port=int(port),
        time=time.time(),
        duplicate=outcome.duplicate,
    )


def _title(title: Any) -> str:
    if isinstance(title, bytes | bytearray):
        title = bytes(title).decode("latin-1")
    return str(title or "").strip(" \0")


def frame_reader() -> FrameReader:
    """Splits the pipeline's byte stream back into messages (ValueError for a corrupt one)."""
    return FrameReader(msgspec.msgpack.Decoder(InstanceStored))


class _Link(asyncio.Protocol):
    def __init__(self, lost: Callable[[], None]) -> None:
        self._lost = lost

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()


class Notifier:
    """A worker's connection to the pipeline process; call from the worker's event loop."""

    def __init__(self, path: str, *, max_pending: int = MAX_PENDING) -> None:
        self.path = path
        self.dropped = 0
        self._loop = asyncio.get_running_loop()
        self._max_pending = max_pending
        self._pending: deque[bytes] = deque()
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._closed = False
        self._warned_at = -math.inf
        self._connect_soon()

    def send(self, message: InstanceStored) -> None:
        """Hand ``message`` on, or keep it until the pipeline is back, or drop it; never waits."""
        transport = self._transport
        if transport is not None:
            if transport.get_write_buffer_size() < MAX_BUFFERED_BYTES:
                transport.write(frame(message))
                return
            self._drop("is behind")
        elif len(self._pending) < self._max_pending and not self._closed:
            self._pending.append(frame(message))
            self._connect_soon()
        else:
            self._drop("is not reachable")

    async def close(self, timeout: float) -> None:
        """Send what is kept (waiting up to ``timeout`` s), then close."""
        deadline = self._loop.time() + timeout
        while self._pending and self._loop.time() < deadline:
            await asyncio.sleep(0.02)
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        transport = self._transport
        while transport is not None and transport.get_write_buffer_size() and self._loop.time() < deadline:
            await asyncio.sleep(0.02)
        if transport is not None:
            transport.close()
        if self._pending:
            self.dropped += len(self._pending)
            log.warning("stopping: %d notifications for the pipeline process dropped", len(self._pending))
            self._pending.clear()

    def _drop(self, why: str) -> None:
        self.dropped += 1
        now = self._loop.time()
        if now - self._warned_at >= WARN_INTERVAL:
            self._warned_at = now
            log.warning("the pipeline process %s: %d notifications dropped so far", why, self.dropped)

    def _connect_soon(self) -> None:
        if self._connecting is None and self._transport is None and not self._closed:
            self._connecting = self._loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            while not self._closed:
                try:
                    transport, _ = await self._loop.create_unix_connection(
                        lambda: _Link(self._lost), self.path
                    )
                    break
                except OSError:
                    await asyncio.sleep(RETRY_INTERVAL)
            else:
                return
            if self._pending:
                transport.writelines(self._pending)
                self._pending.clear()
            self._transport = transport
        finally:
            self._connecting = None

    def _lost(self) -> None:
        self._transport = None
        if not self._closed:
            log.warning("lost the connection to the pipeline process; reconnecting")
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._connect_soon()
