"""The glue between an event-loop transport and one acceptor-side association engine.

A :class:`asyncio.BufferedProtocol` (not ``Protocol``: uvloop would copy
every read into a new bytes object): the loop reads straight into the
buffer the service offers (shared memory the writers read, for the storage
SCP; see :mod:`workers.arena`) and the engine parses it in place. Dataset
bytes are then recorded where they landed, or copied once into the sink.

What to do with a request, a message or a timeout is the service's
business (:class:`hsscp.service.AcceptorService`); this class moves bytes,
runs the timers, keeps DIMSE replies in order, and keeps the association's
own state (admission, window, contexts, API object): only it writes them,
applying what the service returns. It also tells the association's handlers
about what passes through it (PDUs, state machine steps, ACSE primitives,
DIMSE messages), each only while a handler for it is bound (:meth:`watch`).

Backpressure: the peer may have ``window`` requests outstanding, what we
granted. Reading pauses while a complete request waits because the window
is full, and while the transport's write buffer is over its high-water
mark (a peer that does not read its responses); it resumes when both
clear. The engine parses a whole read at once, so past its window a peer
gets in only what one read brings: at most ``READ_BUFFER_SIZE`` bytes, or
one arena slot. The bound for one association is then:

- requests held: the ``window`` being performed (at most
  ``service.MAX_WINDOW``), those one read completed past it, and the one
  partly received;
- arena: its landing slot, plus at most one slot per data set held (most
  share one);
- spool files: one per data set held that outgrew its slot (or arrived
  while no slot was free);
- memory: the read buffer, 64 KiB of head per spooled data set, and the
  write buffer up to its high-water mark plus the responses owed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING

from hsscp import protocol_log
from hsscp.engine import Engine, Role
from hsscp.errors import LocalProtocolError
from hsscp.event_types import EVT_ACSE_RECV, EVT_ACSE_SENT, EVT_DIMSE_RECV, EVT_DIMSE_SENT
from hsscp.indications import (
    Aborted,
    AssociationRequested,
    MessageReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from hsscp.pdu import AAbort, AReleaseRP, AReleaseRQ
from hsscp.wire_watch import transition_hook, wire_watch

if TYPE_CHECKING:
    from hsscp.accepted import AcceptedAssociation
    from hsscp.presentation import PresentationContextTuple
    from hsscp.service import AcceptorService, Admission

log = logging.getLogger("hsscp.server")
_EXCHANGE_LOG = protocol_log.EXCHANGE_LOG
_INFO = logging.INFO

READ_BUFFER_SIZE = 256 * 1024


class AcceptorProtocol(asyncio.BufferedProtocol):
    """One accepted transport connection and the association on it."""

    def __init__(self, service: AcceptorService, peer: tuple[str, int] | None = None) -> None:
        self.service = service
        self._proxied_peer = peer  # the client's address from a PROXY header (hsscp.proxied)
        self.engine = Engine(Role.ACCEPTOR, sink_factory=service.sink_factory_for(self))
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        # The association's state, written by this class only (others read it).
        self.assoc: AcceptedAssociation | None = None  # what handlers see, made by the service
        self.holds_slot = False  # admitted: an association slot is ours until the connection closes
        self.contexts: dict[int, PresentationContextTuple] = {}  # accepted context ID -> context
        self.window = 1  # DIMSE requests we perform at once: the negotiated async operations window
        self._buffer = memoryview(bytearray(READ_BUFFER_SIZE))
        # Where reads land: straight into shared memory the writers read, when the service has it.
        self.landing = service.landing_for(self, self._buffer)
        self._pending: deque[MessageReceived] = deque()  # DIMSE requests awaiting their turn
        self._in_flight = 0
        self._write_blocked = False  # the transport's write buffer is over its high-water mark
        self._reading_paused = False
        self._starting = False
        self._release_asked = False
        self._releasing = False  # we sent an A-RELEASE-RQ and wait for its A-RELEASE-RP
        # What the handlers bound cost per read and per message, worked out in watch().
        self._wire = None
        self._notify_dimse_recv = False
        self._notify_dimse_sent = False
        self._outgoing: list = []  # buffers the engine's send_* calls returned, not yet written
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = ""
        self._deadline = 0.0
        self._active = False
        self._loop = asyncio.get_running_loop()

    # -- transport callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # A request/response protocol stalls ~40 ms a message without it.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.peer = self._proxied_peer or transport.get_extra_info("peername") or ("", 0)
        self.assoc = self.service.connection_opened(self)
        self.watch()
        self._after(self.engine.connection_made())

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer if self.landing is None else self.landing.buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self._active = True  # the network timer looks at this instead of a clock read per read
        landing = self.landing
        data = self._buffer[:nbytes] if landing is None else landing.landed(nbytes)
        if self._wire is not None:
            self._wire.received(data)
        indications = self.engine.receive_data(data)
        if landing is not None:
            landing.read_done()
        # Most reads are part of a dataset: nothing to say, write or time differently.
        if indications or self.engine.has_output or self.engine.close_requested:
            self._after(indications)

    def eof_received(self) -> bool:
        return False  # let the transport close; connection_lost reports it

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        indications = self.engine.connection_lost()
        if self.landing is not None:
            self.landing.close()
        self._drop_pending()
        for indication in indications:
            self.service.aborted(self, indication)
        held, self.holds_slot = self.holds_slot, False
        self.service.connection_closed(self, held)
        self.transport = None

    def pause_writing(self) -> None:
        self._write_blocked = True  # the peer is not reading what we send: read no more from it
        self._pace_reading()

    def resume_writing(self) -> None:
        self._write_blocked = False
        self._pace_reading()

    # -- what the handlers watch -------------------------------------------------

    def watch(self) -> None:
        """Work out once, per change of the bindings, what to tell the handlers per read and message."""
        assoc = self.assoc
        if assoc is None:
            return
        handlers = assoc.handlers

        def notify(event, **attrs) -> None:
            handlers.notify(assoc, event, **attrs)

        self._wire = wire_watch(handlers.has, notify)
        self.engine.on_transition = transition_hook(handlers.has, notify)
        self._notify_dimse_recv = handlers.has(EVT_DIMSE_RECV)
        self._notify_dimse_sent = handlers.has(EVT_DIMSE_SENT)

    def _acse(self, event, primitive) -> None:
        self.assoc.handlers.notify(self.assoc, event, primitive=primitive)

    def _message_in(self, message: MessageReceived) -> None:
        if _EXCHANGE_LOG.isEnabledFor(_INFO):
            protocol_log.log_message(message.command, message.context_id, outgoing=False)
        if self._notify_dimse_recv:
            self.assoc.handlers.notify(self.assoc, EVT_DIMSE_RECV, message=message.command)
        self._pending.append(message)

    # -- driving the engine ------------------------------------------------------

    def _after(self, indications: list) -> None:
        """Act on what the engine said, then write, close and time as it now requires."""
        for indication in indications:
            if isinstance(indication, MessageReceived):
                self._message_in(indication)
                continue
            self._acse(EVT_ACSE_RECV, indication)
            if isinstance(indication, AssociationRequested):
                self._answer_association(indication.request)
            elif isinstance(indication, ReleaseRequested):
                self._release_asked = True
            elif isinstance(indication, ReleaseConfirmed):
                self._release_confirmed()
            elif isinstance(indication, Aborted):
                self._drop_pending()
                self.service.aborted(self, indication)
        self._start_messages()
        self._answer_release()
        self.flush()
        self._pace_reading()

    def _answer_association(self, request) -> None:
        """Ask the service to admit the peer, and apply its answer."""
        admission: Admission | None = self.service.association_requested(self, request)
        if admission is None:
            return
        if admission.response is not None:
            self.holds_slot = True
            self.window = admission.window
            self.contexts = admission.contexts
            self.send(self.engine.accept(admission.response))
            self._acse(EVT_ACSE_SENT, admission.response)
        elif admission.rejection is not None:
            rj = admission.rejection
            self.send(self.engine.reject(rj.result, rj.source, rj.reason))
            self._acse(EVT_ACSE_SENT, rj)
        else:
            self.abort("the association request could not be answered")

    def _drop_pending(self) -> None:
        """The association ended with requests still waiting: what they hold goes back."""
        pending = self._pending
        while pending:
            self.service.request_dropped(pending.popleft())

    def _pace_reading(self) -> None:
        """Read only while the peer keeps within its window and reads what we send."""
        paused = self._write_blocked or bool(self._pending)
        transport = self.transport
        if paused is self._reading_paused or transport is None or transport.is_closing():
            return
        self._reading_paused = paused
        if paused:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        output, self._outgoing = self._outgoing, []
        output += self.engine.pop_output()
        if output:
            transport.writelines(output)
            if self._wire is not None:
                self._wire.sent(output)
        if self.engine.close_requested:
            self._cancel_timer()
            if transport.is_closing():
                return
            if transport.get_write_buffer_size():
                transport.abort()  # close() would wait for a peer that reads nothing: for ever
            else:
                transport.close()
        else:
            self._schedule_timer()

    def send(self, buffers: list) -> None:
        """Queue what an engine ``send_*`` call returned; ``flush`` writes it in order."""
        self._outgoing += buffers

    def _start_messages(self) -> None:
        """Hand requests to the service, as many at once as the window allows, in order."""
        if self._starting:  # a reply given synchronously from inside the loop below
            return
        self._starting = True
        try:
            while self._pending and self._in_flight < self.window and self.engine.can_send_message:
                self._in_flight += 1
                self.service.message_received(self, self._pending.popleft())
        finally:
            self._starting = False

    def reply(self, context_id: int, command, dataset=None) -> None:
        """Send a DIMSE response (from the loop thread), then take the next requests."""
        self._in_flight -= 1
        if self.engine.can_send_message:
            try:
                self.send(self.engine.send_message(context_id, command, dataset))
            except LocalProtocolError:
                log.debug("association ended before a reply could be sent")
            else:
                if self._notify_dimse_sent:
                    self.assoc.handlers.notify(self.assoc, EVT_DIMSE_SENT, message=command)
        self._start_messages()
        self._answer_release()
        self.flush()
        self._pace_reading()

    def _answer_release(self) -> None:
        """A-RELEASE-RP goes out only after the responses owed for what came before it."""
        if self._release_asked and not self._in_flight and not self._pending and self.engine.release_answer_owed:
            self._release_asked = False
            self.send(self.engine.release_response())
            self._acse(EVT_ACSE_SENT, AReleaseRP())
            self.service.released(self)

    def release(self) -> None:
        """A-RELEASE-RQ from our side (a handler asked); the requestor's A-RELEASE-RP ends it."""
        if self.transport is None or self._releasing or not self.engine.is_established:
            return
        self._releasing = True
        self.send(self.engine.release())
        self._acse(EVT_ACSE_SENT, AReleaseRQ())
        self.flush()

    def _release_confirmed(self) -> None:
        self._releasing = False
        if self.engine.release_answer_owed:
            # A collision: our A-RELEASE-RP to the requestor's request comes next (PS3.8 Sta12).
            self._release_asked = True
        else:
            self.service.released(self)

    def abort(self, why: str = "") -> None:
        """A-ABORT from our side (a handler, a timeout, a shutdown: ``why``, in words), then close."""
        if self.transport is None:
            return
        sent = self.engine.abort_if_open()
        self.send(sent)
        self.engine.request_close()
        if sent:
            abort = AAbort()  # what abort_if_open sends: service user, no reason
            self._acse(EVT_ACSE_SENT, abort)
            self.service.aborted_locally(self, abort, why)
        self.flush()

    # -- timers: one handle, re-armed only when its deadline really passed ------

    def _wanted_timer(self) -> tuple[str, float | None]:
        if self.engine.artim_running:
            return "artim", self.service.acse_timeout
        if self._releasing:
            return "release", self.service.acse_timeout
        if not self.engine.is_closed:
            return "network", self.service.network_timeout
        return "", None

    def _schedule_timer(self) -> None:
        kind, timeout = self._wanted_timer()
        if kind == self._timer_kind:
            return
        self._cancel_timer()
        if timeout is None:
            return
        self._timer_kind = kind
        self._active = False
        self._deadline = self._loop.time() + timeout
        self._timer = self._loop.call_at(self._deadline, self._timer_fired)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_kind = ""

    def _timer_fired(self) -> None:
        # Data came, or we are the ones not reading (the window is full): wait a full period more.
        if self._timer_kind == "network" and (self._active or self._pending):
            self._active = False
            self._deadline = self._loop.time() + self.service.network_timeout
        now = self._loop.time()
        if now < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._timer_fired)
            return
        kind = self._timer_kind
        self._timer = None
        self._timer_kind = ""
        if kind == "artim":
            log.info("ARTIM expired for %s:%s in %s", *self.peer[:2], self.engine.state)
            self._after(self.engine.timer_expired())
        elif kind == "release":
            _EXCHANGE_LOG.error("ACSE timeout reached while waiting for the A-RELEASE response")
            self.abort("no A-RELEASE-RP within the ACSE timeout")
        else:
            _EXCHANGE_LOG.error("Network timeout reached")
            self.abort(f"no data for {self.service.network_timeout:g} s (network timeout)")
