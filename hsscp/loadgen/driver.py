"""One requestor association on an asyncio (uvloop) event loop, driving the sans-IO engine.

:class:`RequestorProtocol` moves bytes: the loop reads straight into one
reused buffer (``BufferedProtocol``), the engine parses it in place, and
what the engine queues goes out with ``transport.writelines`` (PDU headers
and views of the data set, never joined). :class:`Association` is the
DIMSE side: it opens the association, keeps up to the negotiated number
of requests outstanding (message IDs distinct, responses matched by ID),
and turns every way an association can fail into an
:class:`AssociationError` naming the kind of failure.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass

from hsscp import dimse, items
from hsscp.acse import LocalIdentity, build_request, requestor_contexts
from hsscp.engine import Engine, Role
from hsscp.errors import HsscpError, LocalProtocolError
from hsscp.indications import (
    Aborted,
    AssociationAccepted,
    AssociationRejected,
    MessageReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from hsscp.loadgen.report import Stats
from hsscp.presentation import ContextResult, PresentationContext
from hsscp.uid import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

READ_BUFFER_SIZE = 256 * 1024
# Write a big message to the transport in batches of about this many bytes, so flow
# control is checked and other associations on the loop get their turn in between.
WRITE_BATCH = 1024 * 1024
WRITE_HIGH_WATER = 4 * 1024 * 1024
_MAX_MESSAGE_ID = 0xFFFF
_IN_MEMORY = (tuple, list, type(None))  # payloads sent in one go; anything else is read as it goes


class AssociationError(HsscpError):
    """An association failed; ``kind`` is what the report counts it as."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


class NotSent(AssociationError):
    """The association had failed before the request could be sent: it can go on another."""


@dataclass(frozen=True, slots=True)
class Peer:
    """Where to connect and how to behave on the wire (the CLI flags)."""

    host: str
    port: int
    calling_ae_title: str = "STORESCU"
    called_ae_title: str = "ANY-SCP"
    max_pdu: int = 16384
    connect_timeout: float | None = None
    acse_timeout: float | None = 30.0
    dimse_timeout: float | None = None
    network_timeout: float | None = None
    async_ops: int = 0  # propose this asynchronous operations window (0: none)
    tls: ssl.SSLContext | None = None

    def identity(self) -> LocalIdentity:
        return LocalIdentity(self.calling_ae_title, self.max_pdu, str(IMPLEMENTATION_CLASS_UID), IMPLEMENTATION_VERSION_NAME)


class RequestorProtocol(asyncio.BufferedProtocol):
    """Transport callbacks for one association: reads in place, writes buffer lists."""

    def __init__(self, association: Association) -> None:
        self.association = association
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self._resumed: asyncio.Future | None = None
        self._buffer = memoryview(bytearray(READ_BUFFER_SIZE))

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Request/response: Nagle would hold each small PDU for the peer's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        association = self.association
        if association.watch_receive:
            association.last_receive = time.monotonic()
        association.handle(association.engine.receive_data(self._buffer[:nbytes]))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._wake()
        self.association.connection_lost(exc)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake()

    def _wake(self) -> None:
        if self._resumed is not None and not self._resumed.done():
            self._resumed.set_result(None)
        self._resumed = None

    def write(self, buffers: list) -> None:
        if self.transport is not None and buffers:
            self.transport.writelines(buffers)

    async def writable(self) -> None:
        """Wait while the transport's buffer is above its high-water mark."""
        while self.paused and self.transport is not None:
            self._resumed = asyncio.get_running_loop().create_future()
            await self._resumed


class Association:
    """A requestor association: open, send C-STOREs/C-ECHOs with a window, release."""

    def __init__(self, peer: Peer, contexts: list[PresentationContext], stats: Stats) -> None:
        self.peer = peer
        self.stats = stats
        self.engine = Engine(Role.REQUESTOR)
        self.protocol: RequestorProtocol | None = None
        self.accepted: list[PresentationContext] = []
        self.refused: list[PresentationContext] = []
        self.window = 1
        # message ID -> (sent at, bytes, the file sent or None), so a failure can name its file
        self.pending: dict[int, tuple[float, int, str | None]] = {}
        self.failure: AssociationError | None = None
        self.requests_sent = 0
        self.watch_receive = bool(peer.network_timeout)
        self.last_receive = 0.0
        self._contexts = contexts
        self._next_id = 0
        self._loop = asyncio.get_running_loop()
        self._established: asyncio.Future = self._loop.create_future()
        self._closed: asyncio.Future = self._loop.create_future()
        self._slot: asyncio.Future | None = None
        self._watchdog: asyncio.Task | None = None

    # -- opening -------------------------------------------------------------

    async def open(self) -> float:
        """Connect and negotiate; return the set-up time in seconds (raises AssociationError)."""
        peer = self.peer
        ext_neg = [items.AsyncOperationsWindow(peer.async_ops, 1)] if peer.async_ops else []
        request, requested = build_request(peer.identity(), peer.called_ae_title, self._contexts, ext_neg)
        self.engine.request_association(request)
        started = time.perf_counter()
        try:
            transport, protocol = await asyncio.wait_for(
                self._loop.create_connection(lambda: RequestorProtocol(self), peer.host, peer.port, ssl=peer.tls),
                peer.connect_timeout,
            )
        except ConnectionRefusedError as exc:
            raise AssociationError("connection refused", str(exc)) from None
        except TimeoutError:
            raise AssociationError("connect timeout", f"{peer.host}:{peer.port}") from None
        except ssl.SSLError as exc:
            raise AssociationError("TLS handshake failed", str(exc)) from None
        except OSError as exc:
            raise AssociationError("connection failed", str(exc)) from None
        self.protocol = protocol
        self.last_receive = time.monotonic()
        self.handle(self.engine.connection_made())
        try:
            response = await asyncio.wait_for(asyncio.shield(self._established), peer.acse_timeout)
        except TimeoutError:
            self.abort()
            raise AssociationError("ACSE timeout", "no A-ASSOCIATE response") from None
        negotiated = requestor_contexts(requested, response)
        self.accepted = [pc for pc in negotiated if pc.result == ContextResult.ACCEPTANCE]
        self.refused = [pc for pc in negotiated if pc.result != ContextResult.ACCEPTANCE]
        self.window = self._negotiated_window(response)
        if peer.dimse_timeout or peer.network_timeout:
            self._watchdog = self._loop.create_task(self._watch())
        return time.perf_counter() - started

    def _negotiated_window(self, response) -> int:
        if not self.peer.async_ops:
            return 1
        window = response.user_information.async_operations_window
        if window is None:
            return 1  # no answer means the default: one operation at a time
        performed = window.max_performed
        # 0 is unlimited on the acceptor's side: our own proposal is the bound then.
        return self.peer.async_ops if performed == 0 else min(performed, self.peer.async_ops)

    # -- indications -----------------------------------------------------------

    def handle(self, indications: list) -> None:
        """Act on what the engine reported, then write whatever it queued."""
        for indication in indications:
            kind = type(indication)
            if kind is MessageReceived:
                self._response(indication.command)
            elif kind is AssociationAccepted:
                if not self._established.done():
                    self._established.set_result(indication.response)
            elif kind is AssociationRejected:
                self._fail(AssociationError(
                    "association rejected",
                    f"result {indication.result}, source {indication.source}, reason {indication.reason}",
                ))
            elif kind is Aborted:
                who = "by the peer" if indication.by_peer else "by the provider"
                self._fail(AssociationError(
                    "aborted", f"{who} (source {indication.source}, reason {indication.reason}) {indication.detail}"
                ))
            elif kind is ReleaseRequested:
                if not indication.collision:
                    self._fail(AssociationError("released by the peer"))
                self._flush(self.engine.release_response())
            elif kind is ReleaseConfirmed and not self._closed.done():
                self._closed.set_result(None)
        self._flush(self.engine.pop_output())

    def _flush(self, buffers: list) -> None:
        if not buffers and not self.engine.close_requested:
            return
        protocol = self.protocol
        if protocol is None or protocol.transport is None:
            return
        protocol.write(buffers)
        if self.engine.close_requested:
            protocol.transport.close()

    def _response(self, command) -> None:
        entry = self.pending.pop(getattr(command, "message_id_being_responded_to", None), None)
        if entry is None:
            self.abort()
            self._fail(AssociationError("protocol error", f"unexpected {dimse.command_name(command.command_field)}"))
            return
        now = time.monotonic()
        self.stats.response(command.status, entry[1], now - entry[0], now, entry[2])
        slot = self._slot
        if slot is not None and not slot.done():
            slot.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.handle(self.engine.connection_lost())
        if self.failure is None and not self._closed.done():
            self._fail(AssociationError("connection lost", str(exc or "closed by the peer")))
        if not self._closed.done():
            self._closed.set_result(None)
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _fail(self, error: AssociationError) -> None:
        """The association is over: what is outstanding failed with it."""
        if self.failure is not None:
            return
        self.failure = error
        for _sent, _nbytes, path in self.pending.values():
            self.stats.failure(error.kind, path=path)
        self.pending.clear()
        for future in (self._established, self._slot):
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # marked retrieved: nobody may be awaiting it

    # -- sending -----------------------------------------------------------------

    def _message_id(self) -> int:
        while True:
            self._next_id = self._next_id % _MAX_MESSAGE_ID + 1
            if self._next_id not in self.pending:
                return self._next_id

    async def _window_slot(self) -> None:
        while len(self.pending) >= self.window and self.failure is None:
            self._slot = self._loop.create_future()
            try:
                await self._slot
            except AssociationError:
                pass
        if self.failure is not None:
            raise NotSent(self.failure.kind, self.failure.detail)

    async def store(
        self, context_id: int, sop_class_uid: str, sop_instance_uid: str, chunks, nbytes: int,
        path: str | None = None,
    ) -> None:
        """Send one C-STORE-RQ (of file ``path``) once the window allows; the response is counted when it comes."""
        if len(self.pending) >= self.window or self.failure is not None:
            await self._window_slot()
        command = dimse.CStoreRQ(self._message_id(), sop_class_uid, sop_instance_uid)
        await self._send(context_id, command, chunks, nbytes, path)

    async def echo(self, context_id: int) -> None:
        if len(self.pending) >= self.window or self.failure is not None:
            await self._window_slot()
        await self._send(context_id, dimse.CEchoRQ(self._message_id()), None, 0)

    async def _send(self, context_id: int, command, chunks, nbytes: int, path: str | None = None) -> None:
        pending = self.pending
        pending[command.message_id] = (time.monotonic(), nbytes, path)
        self.requests_sent += 1
        if len(pending) > self.stats.max_outstanding:
            self.stats.max_outstanding = len(pending)
        protocol = self.protocol
        try:
            if nbytes <= WRITE_BATCH and type(chunks) in _IN_MEMORY:
                protocol.write(self.engine.send_message(context_id, command, chunks))
            else:
                await self._send_batched(context_id, command, chunks)
        except LocalProtocolError:
            pass  # the association ended under us: _fail has counted it
        except OSError as exc:  # reading the file failed half way through the message
            self.abort()
            self._fail(AssociationError("file read error", str(exc)))
        if self.failure is not None:
            entry = pending.pop(command.message_id, None)
            if entry is not None:  # failed before this request was queued
                self.stats.failure(self.failure.kind, path=entry[2])
            raise self.failure
        if protocol.paused:
            await protocol.writable()

    async def _send_batched(self, context_id: int, command, chunks) -> None:
        engine, protocol = self.engine, self.protocol
        step = engine.max_fragment
        queued = 0
        for _ in engine.iter_message(context_id, command, chunks):
            queued += step
            if queued >= WRITE_BATCH:
                protocol.write(engine.pop_output())
                queued = 0
                if protocol.paused:
                    await protocol.writable()
                if self.failure is not None:
                    return
        protocol.write(engine.pop_output())

    # -- ending --------------------------------------------------------------------

    async def wait_idle(self) -> None:
        """Until every outstanding request has its response (raises if the association fails)."""
        while self.pending and self.failure is None:
            self._slot = self._loop.create_future()
            try:
                await self._slot
            except AssociationError:
                pass
        if self.failure is not None:
            raise self.failure

    async def release(self) -> None:
        await self.wait_idle()
        self._flush(self.engine.release())
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), self.peer.acse_timeout)
        except TimeoutError:
            self.abort()
            raise AssociationError("ACSE timeout", "no A-RELEASE response") from None
        if self.failure is not None:
            raise self.failure

    def abort(self) -> None:
        self._flush(self.engine.abort_if_open())
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()

    async def _watch(self) -> None:
        """DIMSE and network timeouts: one check a second per association, not a timer per request."""
        dimse_timeout, network_timeout = self.peer.dimse_timeout, self.peer.network_timeout
        period = min(t for t in (dimse_timeout, network_timeout, 1.0) if t) / 2
        while self.failure is None:
            await asyncio.sleep(period)
            if not self.pending:
                continue
            if dimse_timeout and time.monotonic() - next(iter(self.pending.values()))[0] > dimse_timeout:
                error = AssociationError("DIMSE timeout", f"no response within {dimse_timeout} s")
            elif network_timeout and time.monotonic() - self.last_receive > network_timeout:
                error = AssociationError("network timeout", f"nothing received for {network_timeout} s")
            else:
                continue
            self.abort()
            self._fail(error)

