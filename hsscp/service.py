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
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hsscp import dimse, events, protocol_log
from hsscp.accepted import AcceptedAssociation
from hsscp.acse import AcceptorPolicy, Answer, answer_request
from hsscp.association_log import (
    AssociationTally,
    abort_words,
    log_association_end,
    log_rejection,
    log_store,
    peer_text,
)
from hsscp.extended_negotiation import ask_handlers
from hsscp.indications import Aborted, MessageReceived
from hsscp.pdu import AAbort, AAssociateAC, AAssociateRJ, AAssociateRQ
from hsscp.presentation import ContextResult, PresentationContext, PresentationContextTuple

if TYPE_CHECKING:
    from hsscp.protocol import AcceptorProtocol

log = logging.getLogger("hsscp.server")
xlog = protocol_log.EXCHANGE_LOG  # the lines pynetdicom prints for the exchange

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
        # What each open association did, for the line it gets when it ends.
        self.tallies: dict[AcceptorProtocol, AssociationTally] = {}

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
        self.tallies[protocol] = AssociationTally(peer_text(protocol.peer))
        assoc = self.new_association(protocol)
        assoc.handlers.notify(assoc, events.EVT_CONN_OPEN, address=protocol.peer)
        return assoc

    def association_requested(self, protocol: AcceptorProtocol, request: AAssociateRQ) -> Admission | None:
        """Admit or reject; None when there is nothing left to answer."""
        assoc = protocol.assoc
        assoc.requested(request)
        tally = self.tallies[protocol]
        tally.calling_ae, tally.called_ae = request.calling_ae_title, request.called_ae_title
        protocol_log.log_associate_rq(xlog, request, outgoing=False)
        assoc.handlers.notify(assoc, events.EVT_REQUESTED)
        if not protocol.engine.awaits_answer:
            # The same read carried more after the request (P-DATA before our answer,
            # say) and the engine has already aborted as PS3.8 says: nothing to answer.
            return None
        at_capacity = not self.limiter.try_acquire()
        try:
            extended = ask_handlers(assoc.handlers, assoc, request)
            answer = answer_request(request, self.policy(), at_capacity, extended)
        except Exception:  # never a traceback, nor a slot held, for what a peer sent
            log.exception("cannot answer the association request from %s", protocol.peer[0])
            if not at_capacity:
                self.limiter.release()
            return CANNOT_ANSWER
        if answer.rejection is not None:
            if not at_capacity:
                self.limiter.release()
            return self._rejected(protocol, request, answer.rejection)
        return self._accepted(assoc, request, answer)

    def _rejected(self, protocol: AcceptorProtocol, request: AAssociateRQ, rj: AAssociateRJ) -> Admission:
        xlog.info("Rejecting Association")
        log_rejection(peer_text(protocol.peer), request.calling_ae_title, request.called_ae_title,
                      rj.result, rj.source, rj.reason)
        if self.stats is not None:
            self.stats.association(False, request.calling_ae_title)
        protocol_log.log_associate_rj(xlog, rj, outgoing=True)
        protocol.assoc.rejected(rj)
        protocol.assoc.handlers.notify(protocol.assoc, events.EVT_REJECTED)
        return Admission(rejection=rj)

    def _accepted(self, assoc: AcceptedAssociation, request: AAssociateRQ, answer: Answer) -> Admission:
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
        xlog.info("Accepting Association")
        if xlog.isEnabledFor(logging.DEBUG):
            proposed = {pc.context_id: pc.abstract_syntax for pc in request.presentation_contexts}
            protocol_log.log_associate_ac(xlog, answer.response, proposed, outgoing=True)
        assoc.accepted(answer.response, answer.contexts)
        self.ae._register(assoc)
        assoc.handlers.notify(assoc, events.EVT_ACCEPTED)
        assoc.handlers.notify(assoc, events.EVT_ESTABLISHED)
        return Admission(answer.response, contexts=contexts, window=window)

    def released(self, protocol: AcceptorProtocol) -> None:
        xlog.info("Association Released")
        self._ended(protocol, "released", "released by the peer")
        protocol.assoc.ended("released")
        protocol.assoc.handlers.notify(protocol.assoc, events.EVT_RELEASED)

    def aborted(self, protocol: AcceptorProtocol, indication: Aborted) -> None:
        """The peer aborted (A-ABORT) or the provider did (A-P-ABORT: a protocol error, a lost connection)."""
        if indication.by_peer:
            protocol_log.log_abort(xlog, indication.source, indication.reason, outgoing=False)
        xlog.info("Association Aborted" if indication.by_peer else "Association Aborted (A-P-ABORT)")
        if indication.detail == "transport connection closed":
            self._ended(protocol, "aborted", "the peer closed the connection without release or abort")
        else:
            words = abort_words(indication.source, indication.reason, indication.by_peer, indication.detail)
            self._ended(protocol, "aborted", words)
        protocol.assoc.ended("aborted")
        protocol.assoc.handlers.notify(protocol.assoc, events.EVT_ABORTED)

    def aborted_locally(self, protocol: AcceptorProtocol, abort: AAbort, why: str = "") -> None:
        """We sent an A-ABORT (a handler asked, a timeout, a shutdown); ``why``, in words."""
        xlog.info("Aborting Association")
        self._ended(protocol, "aborted", f"aborted by hsscp: {why or 'a handler asked'}")
        protocol_log.log_abort(xlog, abort.source, abort.reason, outgoing=True)
        protocol.assoc.ended("aborted")
        protocol.assoc.handlers.notify(protocol.assoc, events.EVT_ABORTED)

    def _ended(self, protocol: AcceptorProtocol, outcome: str, words: str) -> None:
        tally = self.tallies.get(protocol)
        if tally is not None and tally.outcome == "closed":  # the first word on it stands
            tally.outcome, tally.ended = outcome, words

    def connection_closed(self, protocol: AcceptorProtocol, held_slot: bool) -> None:
        """The connection is gone; ``held_slot``: it was admitted, so its slot comes back."""
        self.protocols.discard(protocol)
        tally = self.tallies.pop(protocol, None)
        if held_slot and tally is not None:
            log_association_end(tally)
        if held_slot:
            self.limiter.release()
            self.ae._unregister(protocol.assoc)
        protocol.assoc.ended("closed")
        protocol.assoc.handlers.notify(protocol.assoc, events.EVT_CONN_CLOSE, address=protocol.peer)

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
            name = dimse.command_name(command.command_field)
            log.warning("%s on context %d is not a service this SCP offers: aborting", name, message.context_id)
            protocol.abort(f"{name} is not a service this SCP offers")
            return
        self.run_handler(protocol, message.context_id, command, event, attrs)

    def request_dropped(self, message: MessageReceived) -> None:
        """A request the association ended before performing: give back what its data set holds."""

    def run_handler(self, protocol: AcceptorProtocol, context_id: int, command, event, attrs: dict) -> None:
        """The user's handler runs on a worker thread: a slow one must not stall the loop."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, self._call_handler, protocol.assoc, event, attrs)
        started = time.monotonic()

        def answer(done: asyncio.Future) -> None:
            response = self._response(command, event, done)
            if isinstance(command, dimse.CStoreRQ):  # a user's handler stored it (or not): say so
                self.store_answered(protocol, command, response.status, "", 0, started)
            protocol.reply(context_id, response)

        future.add_done_callback(answer)

    @staticmethod
    def _call_handler(assoc, event, attrs: dict):
        return assoc.handlers.intervene(assoc, event, **attrs)

    @staticmethod
    def _response(command, event, done: asyncio.Future):
        try:
            status, extra = events.status_from_result(done.result(), event)
        except Exception:  # the handler layer already logged it
            log.exception("DIMSE handler failed")
            status, extra = dimse.Status.NO_HANDLER, {}
        if isinstance(command, dimse.CEchoRQ):
            return dimse.CEchoRSP(command.message_id, status, error_comment=extra.get("error_comment"))
        return dimse.CStoreRSP(
            command.message_id,
            status,
            command.affected_sop_class_uid,
            command.affected_sop_instance_uid,
            **extra,
        )

    def new_association(self, protocol: AcceptorProtocol) -> AcceptedAssociation:
        """The association's own handlers start as the server's and follow its later (un)bindings."""
        local = protocol.transport.get_extra_info("sockname") or ("", 0)
        loop = asyncio.get_running_loop()
        return AcceptedAssociation(self.ae, protocol.peer, local, loop, protocol, self.handlers.follower())

    def abort_all(self, why: str = "the server is stopping") -> None:
        for protocol in list(self.protocols):
            protocol.abort(why)

    def store_answered(self, protocol: AcceptorProtocol, command: dimse.CStoreRQ, status: int, path: str,
                       nbytes: int, started: float, comment: str = "") -> None:
        """A C-STORE was answered: count it for its association's line, and log it."""
        tally = self.tallies.get(protocol)
        if tally is None:
            return
        tally.count(status, nbytes)
        log_store(tally, command.affected_sop_class_uid, command.affected_sop_instance_uid, status, path,
                  nbytes, started, comment)

