"""What every association accepted by one server shares, and what it does with requests.

The protocol moves bytes; this decides: admit or reject an association
(the AE's settings read at the time of each request, as pynetdicom does),
run the user's C-ECHO/C-STORE handlers off the event loop, and tell the
handlers about the association's life. One instance per server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from hsscp import dimse, events
from hsscp.accepted import AcceptedAssociation
from hsscp.acse import AcceptorPolicy, answer_request
from hsscp.aet import safe_for_log
from hsscp.indications import Aborted, MessageReceived
from hsscp.pdu import AAssociateRQ
from hsscp.presentation import ContextResult, PresentationContext, PresentationContextTuple

if TYPE_CHECKING:
    from hsscp.protocol import AcceptorProtocol

log = logging.getLogger("hsscp.server")

MAX_WINDOW = 256  # what "0 = unlimited" outstanding requests means in practice


class AcceptorService:
    """Admission, dispatch and notifications for the associations of one server."""

    def landing_for(self, protocol: AcceptorProtocol, fallback: memoryview):
        """Where the association's reads go (a workers.arena.Landing); None: ``fallback``."""
        return None

    def sink_factory_for(self, protocol: AcceptorProtocol) -> dimse.SinkFactory | None:
        """Where an association's datasets go as they arrive; None: in memory (BytesSink)."""
        return None

    def __init__(
        self,
        ae: Any,
        ae_title: str,
        contexts: Sequence[PresentationContext],
        handlers: events.HandlerSet,
        limiter: Any,
        executor: Executor | None = None,
    ) -> None:
        self.ae = ae
        self.ae_title = ae_title
        self.contexts = list(contexts)
        self.handlers = handlers
        self.limiter = limiter
        self.executor = executor
        self.protocols: set[AcceptorProtocol] = set()
        self.stats = None  # a workers.stats.Stats row when running under the supervisor

    # Read live from the AE, as pynetdicom does, so a change applies to new reads.
    @property
    def acse_timeout(self) -> float | None:
        return self.ae.acse_timeout

    @property
    def network_timeout(self) -> float | None:
        return self.ae.network_timeout

    def policy(self) -> AcceptorPolicy:
        return self.ae._acceptor_policy(self.ae_title, self.contexts)

    # -- life of a connection ---------------------------------------------------

    def connection_opened(self, protocol: AcceptorProtocol) -> None:
        self.protocols.add(protocol)
        protocol.assoc = self.new_association(protocol)
        self.handlers.notify(protocol.assoc, events.EVT_CONN_OPEN, address=protocol.peer)

    def association_requested(self, protocol: AcceptorProtocol, request: AAssociateRQ) -> None:
        assoc = protocol.assoc
        assoc.requested(request)
        self.handlers.notify(assoc, events.EVT_REQUESTED)
        if not protocol.engine.awaits_answer:
            # The same read carried more after the request (P-DATA before our answer,
            # say) and the engine has already aborted as PS3.8 says: nothing to answer.
            return
        at_capacity = not self.limiter.try_acquire()
        try:
            answer = answer_request(request, self.policy(), at_capacity)
        except Exception:  # never a traceback, nor a slot held, for what a peer sent
            log.exception("cannot answer the association request from %s", protocol.peer[0])
            if not at_capacity:
                self.limiter.release()
            protocol.abort()
            return
        if answer.rejection is not None:
            if not at_capacity:
                self.limiter.release()
            rj = answer.rejection
            log.info(
                "rejecting association from %s (calling %s): result %d source %d reason %d",
                protocol.peer[0], safe_for_log(request.calling_ae_title), rj.result, rj.source, rj.reason,
            )
            protocol.send(protocol.engine.reject(rj.result, rj.source, rj.reason))
            assoc.rejected(rj)
            self.handlers.notify(assoc, events.EVT_REJECTED)
            return
        protocol.holds_slot = True
        window = answer.response.user_information.async_operations_window
        if window is not None:  # what we granted: how many requests the peer may have outstanding
            protocol.window = window.max_performed or MAX_WINDOW
        if self.stats is not None:
            self.stats.add("associations")
        protocol.send(protocol.engine.accept(answer.response))
        protocol.contexts = {
            pc.context_id: PresentationContextTuple(pc.context_id, pc.abstract_syntax, pc.transfer_syntax[0])
            for pc in answer.contexts
            if pc.result == ContextResult.ACCEPTANCE
        }
        assoc.accepted(answer.response, answer.contexts)
        self.ae._register(assoc)
        self.handlers.notify(assoc, events.EVT_ACCEPTED)
        self.handlers.notify(assoc, events.EVT_ESTABLISHED)

    def released(self, protocol: AcceptorProtocol) -> None:
        protocol.assoc.ended("released")
        self.handlers.notify(protocol.assoc, events.EVT_RELEASED)

    def aborted(self, protocol: AcceptorProtocol, indication: Aborted) -> None:
        log.info("association with %s aborted: %s", protocol.peer[0], indication)
        protocol.assoc.ended("aborted")
        self.handlers.notify(protocol.assoc, events.EVT_ABORTED)

    def connection_closed(self, protocol: AcceptorProtocol) -> None:
        self.protocols.discard(protocol)
        if protocol.holds_slot:
            protocol.holds_slot = False
            self.limiter.release()
            self.ae._unregister(protocol.assoc)
        protocol.assoc.ended("closed")
        self.handlers.notify(protocol.assoc, events.EVT_CONN_CLOSE)

    # -- DIMSE --------------------------------------------------------------------

    def message_received(self, protocol: AcceptorProtocol, message: MessageReceived) -> None:
        command = message.command
        context = protocol.contexts[message.context_id]
        if isinstance(command, dimse.CStoreRQ):
            event = events.EVT_C_STORE
            attrs = {"request": command, "context": context, "encoded_dataset": message.dataset}
        elif isinstance(command, dimse.CEchoRQ):
            event = events.EVT_C_ECHO
            attrs = {"request": command, "context": context}
        else:
            log.warning("%s on context %d is not a service this SCP offers: aborting",
                        dimse.command_name(command.command_field), message.context_id)
            protocol.abort()
            return
        self.run_handler(protocol, message.context_id, command, event, attrs)

    def run_handler(self, protocol: AcceptorProtocol, context_id: int, command, event, attrs: dict) -> None:
        """The user's handler runs on a worker thread: a slow one must not stall the loop."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, self._call_handler, protocol.assoc, event, attrs)
        future.add_done_callback(lambda done: protocol.reply(context_id, self._response(command, event, done)))

    def _call_handler(self, assoc, event, attrs: dict):
        return self.handlers.intervene(assoc, event, **attrs)

    @staticmethod
    def _response(command, event, done: asyncio.Future):
        try:
            status, extra = events.status_from_result(done.result(), event)
        except Exception:  # the handler layer already logged it
            log.exception("DIMSE handler failed")
            status, extra = dimse.Status.NO_HANDLER, {}
        if isinstance(command, dimse.CEchoRQ):
            return dimse.CEchoRSP(command.message_id, status)
        return dimse.CStoreRSP(
            command.message_id,
            status,
            command.affected_sop_class_uid,
            command.affected_sop_instance_uid,
            **extra,
        )

    def new_association(self, protocol: AcceptorProtocol) -> AcceptedAssociation:
        local = protocol.transport.get_extra_info("sockname") or ("", 0)
        return AcceptedAssociation(self.ae, protocol.peer, local, asyncio.get_running_loop(), protocol.abort)

    def abort_all(self) -> None:
        for protocol in list(self.protocols):
            protocol.abort()

