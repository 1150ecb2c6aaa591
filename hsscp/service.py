"""What every association accepted by one server shares, and what it does with requests.

The protocol moves bytes; this decides: admit or reject an association
(the AE's settings read at the time of each request, as pynetdicom does),
run the user's C-ECHO/C-STORE handlers off the event loop, and tell the
handlers about the association's life. One instance per server.

What belongs to one association (its slot, window, contexts, API object)
is the protocol's to keep: the service *returns* it (an :class:`Admission`,
the :class:`AcceptedAssociation`) and never sets attributes on a protocol.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hsscp import dimse, events
from hsscp.accepted import AcceptedAssociation
from hsscp.acse import AcceptorPolicy, Answer, answer_request
from hsscp.aet import safe_for_log
from hsscp.indications import Aborted, MessageReceived
from hsscp.pdu import AAssociateAC, AAssociateRJ, AAssociateRQ
from hsscp.presentation import ContextResult, PresentationContext, PresentationContextTuple

if TYPE_CHECKING:
    from hsscp.protocol import AcceptorProtocol

log = logging.getLogger("hsscp.server")

MAX_WINDOW = 256  # what "0 = unlimited" outstanding requests means in practice


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to an A-ASSOCIATE-RQ, for the protocol to apply.

    With ``response``: accepted; the association holds an association slot
    until its connection closes, and performs up to ``window`` requests at
    once on ``contexts`` (accepted context ID -> PresentationContextTuple).
    With ``rejection``: rejected. With neither: no answer could be made; abort.
    """

    response: AAssociateAC | None = None
    rejection: AAssociateRJ | None = None
    contexts: dict[int, PresentationContextTuple] = field(default_factory=dict)
    window: int = 1


CANNOT_ANSWER = Admission()


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

    def connection_opened(self, protocol: AcceptorProtocol) -> AcceptedAssociation:
        """A peer connected: the API association its handlers will see, for the protocol to keep."""
        self.protocols.add(protocol)
        assoc = self.new_association(protocol)
        self.handlers.notify(assoc, events.EVT_CONN_OPEN, address=protocol.peer)
        return assoc

    def association_requested(self, protocol: AcceptorProtocol, request: AAssociateRQ) -> Admission | None:
        """Admit or reject; None when there is nothing left to answer."""
        assoc = protocol.assoc
        assoc.requested(request)
        self.handlers.notify(assoc, events.EVT_REQUESTED)
        if not protocol.engine.awaits_answer:
            # The same read carried more after the request (P-DATA before our answer,
            # say) and the engine has already aborted as PS3.8 says: nothing to answer.
            return None
        at_capacity = not self.limiter.try_acquire()
        try:
            answer = answer_request(request, self.policy(), at_capacity)
        except Exception:  # never a traceback, nor a slot held, for what a peer sent
            log.exception("cannot answer the association request from %s", protocol.peer[0])
            if not at_capacity:
                self.limiter.release()
            return CANNOT_ANSWER
        if answer.rejection is not None:
            if not at_capacity:
                self.limiter.release()
            return self._rejected(protocol, request, answer.rejection)
        return self._accepted(assoc, answer)

    def _rejected(self, protocol: AcceptorProtocol, request: AAssociateRQ, rj: AAssociateRJ) -> Admission:
        log.info(
            "rejecting association from %s (calling %s): result %d source %d reason %d",
            protocol.peer[0], safe_for_log(request.calling_ae_title), rj.result, rj.source, rj.reason,
        )
        if self.stats is not None:
            self.stats.association(False, request.calling_ae_title)
        protocol.assoc.rejected(rj)
        self.handlers.notify(protocol.assoc, events.EVT_REJECTED)
        return Admission(rejection=rj)

    def _accepted(self, assoc: AcceptedAssociation, answer: Answer) -> Admission:
        granted = answer.response.user_information.async_operations_window
        # What we granted: how many requests the peer may have outstanding.
        window = (granted.max_performed or MAX_WINDOW) if granted is not None else 1
        if self.stats is not None:
            self.stats.association(True, assoc.requestor.ae_title)
        contexts = {
            pc.context_id: PresentationContextTuple(pc.context_id, pc.abstract_syntax, pc.transfer_syntax[0])
            for pc in answer.contexts
            if pc.result == ContextResult.ACCEPTANCE
        }
        assoc.accepted(answer.response, answer.contexts)
        self.ae._register(assoc)
        self.handlers.notify(assoc, events.EVT_ACCEPTED)
        self.handlers.notify(assoc, events.EVT_ESTABLISHED)
        return Admission(answer.response, contexts=contexts, window=window)

    def released(self, protocol: AcceptorProtocol) -> None:
        protocol.assoc.ended("released")
        self.handlers.notify(protocol.assoc, events.EVT_RELEASED)

    def aborted(self, protocol: AcceptorProtocol, indication: Aborted) -> None:
        log.info("association with %s aborted: %s", protocol.peer[0], indication)
        protocol.assoc.ended("aborted")
        self.handlers.notify(protocol.assoc, events.EVT_ABORTED)

    def connection_closed(self, protocol: AcceptorProtocol, held_slot: bool) -> None:
        """The connection is gone; ``held_slot``: it was admitted, so its slot comes back."""
        self.protocols.discard(protocol)
        if held_slot:
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

    def request_dropped(self, message: MessageReceived) -> None:
        """A request the association ended before performing: give back what its data set holds."""

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

