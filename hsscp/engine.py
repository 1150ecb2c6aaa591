"""One association's protocol engine: bytes in, indications out; requests in, buffers out.

Sans-IO: no sockets, clocks or threads. The driver feeds what it reads to
``receive_data`` and writes what ``pop_output`` (or any ``send_*``/request
method) returns. ARTIM is the driver's clock: it watches ``artim_running``
and calls ``timer_expired`` when its timer fires. When ``close_requested``
turns true the driver closes the transport after writing pending output,
and reports the close with ``connection_lost``.

Every step goes through PS3.8 table 9-10 (:mod:`hsscp.fsm`): a received PDU
the table does not expect is answered as the standard says (mostly an
A-ABORT with reason unexpected-PDU), and a local request it does not allow
raises :class:`LocalProtocolError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import Enum

from hsscp import dimse, fsm
from hsscp.errors import AbortReason, AbortSource, LocalProtocolError, RemoteProtocolError
from hsscp.indications import (
    Aborted,
    AssociationAccepted,
    AssociationRejected,
    AssociationRequested,
    Indication,
    MessageReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from hsscp.pdu import (
    PDV_HEADER_LENGTH,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PduType,
    RejectResult,
    RejectSource,
    pdata_buffers,
)
from hsscp.reader import PDATA, PDATA_WHOLE, PDU, PduReader

# PDV value budget when the peer declares no maximum: large enough to amortise
# per-PDU costs, small enough not to starve other associations on one loop.
UNLIMITED_FRAGMENT = 1024 * 1024 - 2 * PDV_HEADER_LENGTH

_PDU_EVENT = {
    PduType.A_ASSOCIATE_AC: "Evt3",
    PduType.A_ASSOCIATE_RJ: "Evt4",
    PduType.A_ASSOCIATE_RQ: "Evt6",
    PduType.A_RELEASE_RQ: "Evt12",
    PduType.A_RELEASE_RP: "Evt13",
    PduType.A_ABORT: "Evt16",
}


_ACTION_METHOD = {action: "_" + action.replace("-", "_").lower() for action in fsm.ACTIONS}


class Role(Enum):
    REQUESTOR = "requestor"
    ACCEPTOR = "acceptor"


class Engine:
    """The Upper Layer state machine of one association, for either role."""

    def __init__(
        self,
        role: Role,
        sink_factory: dimse.SinkFactory | None = None,
        max_control_length: int | None = None,
    ) -> None:
        self.role = role
        self.state = "Sta1"
        self.request: AAssociateRQ | None = None
        self.response: AAssociateAC | None = None
        self.accepted_context_ids: frozenset[int] = frozenset()
        self.peer_max_pdu_length = 0
        self.artim_running = False
        self.close_requested = False
        self.last_action: str | None = None
        self._reader = PduReader() if max_control_length is None else PduReader(0, max_control_length)
        self._assembler = dimse.MessageAssembler(sink_factory)
        self._out: list = []
        self._indications: list[Indication] = []
        self._deliver_pdata = False  # whether the P-DATA-TF being read goes to the assembler
        self._error: RemoteProtocolError | None = None
        # What the action about to run works on: the PDU received, or the one to send.
        self._event = ""
        self._pdu = None
        self._pdata: list = []
        self._abort_pdu = AAbort()
        self.on_transition = None

    @property
    def on_transition(self) -> Callable[[str, str, str, str], None] | None:
        """Called as ``(state, event, action, next_state)`` after each step (EVT_FSM_TRANSITION)."""
        return self._on_transition

    @on_transition.setter
    def on_transition(self, hook: Callable[[str, str, str, str], None] | None) -> None:
        self._on_transition = hook
        # Watched, Sta6's P-DATA goes through _fire too, so that the hook sees every step.
        self._fast_pdata_state = "Sta6" if hook is None else None

    # -- driver interface ----------------------------------------------------

    def pop_output(self) -> list:
        """Buffers to write, in order (for ``transport.writelines``)."""
        out, self._out = self._out, []
        return out

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    @property
    def max_fragment(self) -> int:
        """The most PDV value bytes one P-DATA-TF to the peer may carry."""
        if self.peer_max_pdu_length == 0:
            return UNLIMITED_FRAGMENT
        # Kept even: DCMTK refuses odd dataset fragments, which a peer announcing
        # an odd maximum (16383, say) would otherwise get from us.
        return max(2, (self.peer_max_pdu_length - PDV_HEADER_LENGTH) & ~1)

    # -- what a driver may do now (so no driver compares state names) ---------

    @property
    def is_established(self) -> bool:
        return self.state == "Sta6"

    @property
    def is_closed(self) -> bool:
        """No association and no connection (Sta1)."""
        return self.state == "Sta1"

    @property
    def is_finished(self) -> bool:
        """Nothing more will come that a driver needs: closed, or waiting for the peer to close."""
        return self.state in ("Sta1", "Sta13")

    @property
    def awaits_answer(self) -> bool:
        """An A-ASSOCIATE-RQ was received and waits for ``accept`` or ``reject`` (Sta3)."""
        return self.state == "Sta3"

    @property
    def can_send_message(self) -> bool:
        """P-DATA may go out: established, or after the peer asked for release (Sta6, Sta8)."""
        return self.state in ("Sta6", "Sta8")

    @property
    def release_answer_owed(self) -> bool:
        """The peer asked for release and an A-RELEASE-RP may go out (Sta8, Sta12)."""
        return self.state in ("Sta8", "Sta12")

    @property
    def can_abort(self) -> bool:
        """An A-ABORT may be sent (PS3.8 allows Evt15 here)."""
        return fsm.action_for("Evt15", self.state) is not None

    def receive_data(self, data) -> list[Indication]:
        """Feed bytes read from the transport; PDV values are read in place, not copied."""
        if self.state in ("Sta1", "Sta4") or self._error is not None:
            return []  # nothing to read on a closed or broken stream
        try:
            for item in self._reader.feed(data):
                kind = item[0]
                if kind == PDATA_WHOLE:
                    if self.state == self._fast_pdata_state:  # Evt10 in Sta6 is DT-2: no lookup
                        self.last_action = "DT-2"
                        self._deliver_pdata = True
                    else:
                        self._fire("Evt10")
                    if self._deliver_pdata:
                        self._pdv(item[1], item[2], item[3], True)
                elif kind == PDU:
                    self._pdu = item[1]
                    self._fire(_PDU_EVENT[item[1].pdu_type])
                elif kind == PDATA:
                    self._fire("Evt10")
                elif self._deliver_pdata:
                    self._pdv(*item[1:])
                if self.close_requested or self.state == "Sta1":
                    break
        except RemoteProtocolError as exc:
            self._error = exc
            self._assembler.abort()
            self._fire("Evt19")
        return self._take_indications()

    def connection_made(self) -> list[Indication]:
        """Transport is up: Evt2 for the requestor, Evt5 for the acceptor."""
        self._fire("Evt2" if self.role is Role.REQUESTOR else "Evt5")
        return self._take_indications()

    def connection_lost(self) -> list[Indication]:
        if self.state != "Sta1":
            self._fire("Evt17")
        self._assembler.abort()
        return self._take_indications()

    def timer_expired(self) -> list[Indication]:
        """ARTIM fired (Evt18)."""
        if fsm.action_for("Evt18", self.state) is not None:
            self._fire("Evt18")
        return self._take_indications()

    # -- local requests (service-user primitives) ----------------------------

    def request_association(self, request: AAssociateRQ) -> None:
        """Evt1: the driver connects next and calls ``connection_made``."""
        self.request = request
        self._local("Evt1")

    def accept(self, response: AAssociateAC) -> list:
        self.response = response
        self._local("Evt7")
        return self.pop_output()

    def reject(self, result: int, source: int, reason: int) -> list:
        self._pdu = AAssociateRJ(result, source, reason)
        self._local("Evt8")
        return self.pop_output()

    def send_message(self, context_id: int, command, dataset=None) -> list:
        """One whole DIMSE message as buffers; ``dataset`` bytes-like, chunk iterable or None."""
        for _ in self.iter_message(context_id, command, dataset):
            pass
        return self.pop_output()

    def iter_message(self, context_id: int, command, dataset=None) -> Iterator[None]:
        """Queue a message PDU by PDU, so a driver can flush (and pace) between them."""
        encoded = dimse.encode_command(command)
        for control, fragment in dimse.iter_fragments(encoded, dataset, self.max_fragment):
            self._pdata = pdata_buffers(context_id, control, fragment)
            self._local("Evt9")
            yield

    def release(self) -> list:
        self._local("Evt11")
        return self.pop_output()

    def release_response(self) -> list:
        self._local("Evt14")
        return self.pop_output()

    def abort(self, reason: int = 0) -> list:
        self._abort_pdu = AAbort(AbortSource.SERVICE_USER, reason)
        self._local("Evt15")
        return self.pop_output()

    def abort_if_open(self, reason: int = 0) -> list:
        """A-ABORT where one may still be sent; nothing once the association has ended."""
        return self.abort(reason) if self.can_abort else []

    def request_close(self) -> None:
        """The driver closes the transport next, after writing what is pending."""
        self.artim_running = False
        self.close_requested = True

    # -- the machine ----------------------------------------------------------

    def _local(self, event: str) -> None:
        if fsm.action_for(event, self.state) is None:
            raise LocalProtocolError(f"{fsm.EVENTS[event]} is not allowed in {self.state} ({fsm.STATES[self.state]})")
        self._fire(event)

    def _fire(self, event: str) -> None:
        action = fsm.action_for(event, self.state)
        if action is None:
            # Received something the table has no row for (e.g. an A-ASSOCIATE-RQ
            # sent to a requestor in Sta5 is covered; unknown pairs are not): abort.
            action = "AA-8"
        self.last_action = action
        self._event = event
        state = self.state
        next_state = getattr(self, _ACTION_METHOD[action])()
        self.state = next_state or fsm.NEXT_STATE[action]
        if self._on_transition is not None:
            self._on_transition(state, event, action, self.state)

    def _take_indications(self) -> list[Indication]:
        out, self._indications = self._indications, []
        return out

    def _emit(self, indication: Indication) -> None:
        self._indications.append(indication)

    def _send(self, pdu) -> None:
        self._out.extend(pdu.encode())

    def _close(self) -> None:
        self.request_close()

    def _pdv(self, context_id: int, control: int, chunk: memoryview, pdv_end: bool) -> None:
        if context_id not in self.accepted_context_ids:
            raise RemoteProtocolError(
                f"PDV on presentation context {context_id}, which was not accepted",
                AbortReason.INVALID_PDU_PARAMETER_VALUE,
            )
        message = self._assembler.feed(context_id, control, chunk, pdv_end)
        if message is not None:
            self._emit(MessageReceived(message.context_id, message.command, message.dataset))

    def _provider_abort_reason(self) -> tuple[int, str]:
        if self._event == "Evt19" and self._error is not None:
            return self._error.reason, str(self._error)
        return AbortReason.UNEXPECTED_PDU, f"unexpected {fsm.EVENTS[self._event]} in {self.state}"

    def _negotiated(self, request: AAssociateRQ, response: AAssociateAC) -> None:
        """Record what both sides agreed: accepted contexts and each side's maximum PDU."""
        self.accepted_context_ids = frozenset(
            pc.context_id for pc in response.presentation_contexts if pc.result == 0
        )
        mine, theirs = (request, response) if self.role is Role.REQUESTOR else (response, request)
        self._reader.max_pdata_length = mine.user_information.maximum_length or 0
        self.peer_max_pdu_length = theirs.user_information.maximum_length or 0

    # Association establishment
    def _ae_1(self) -> None:
        pass  # the driver opens the transport connection

    def _ae_2(self) -> None:
        self._send(self.request)

    def _ae_3(self) -> None:
        self.response = self._pdu
        self._negotiated(self.request, self.response)
        self._emit(AssociationAccepted(self.response))

    def _ae_4(self) -> None:
        rj = self._pdu
        self._emit(AssociationRejected(rj.result, rj.source, rj.reason))
        self._close()

    def _ae_5(self) -> None:
        self.artim_running = True

    def _ae_6(self) -> str:
        self.artim_running = False
        self.request = self._pdu
        if self.request.protocol_version & 0x0001:
            self._emit(AssociationRequested(self.request))
            return "Sta3"
        self._send(
            AAssociateRJ(
                RejectResult.PERMANENT,
                RejectSource.SERVICE_PROVIDER_ACSE,
                2,  # protocol-version-not-supported
            )
        )
        self.artim_running = True
        return "Sta13"

    def _ae_7(self) -> None:
        self._negotiated(self.request, self.response)
        self._send(self.response)

    def _ae_8(self) -> None:
        self._send(self._pdu)
        self.artim_running = True

    # Data transfer
    def _dt_1(self) -> None:
        self._out.extend(self._pdata)

    def _dt_2(self) -> None:
        self._deliver_pdata = True

    # Release
    def _ar_1(self) -> None:
        self._send(AReleaseRQ())

    def _ar_2(self) -> None:
        self._emit(ReleaseRequested())

    def _ar_3(self) -> None:
        self._emit(ReleaseConfirmed())
        self._close()

    def _ar_4(self) -> None:
        self._send(AReleaseRP())
        self.artim_running = True

    def _ar_5(self) -> None:
        self.artim_running = False

    def _ar_6(self) -> None:
        self._deliver_pdata = True

    def _ar_7(self) -> None:
        self._out.extend(self._pdata)

    def _ar_8(self) -> str:
        self._emit(ReleaseRequested(collision=True))
        return "Sta9" if self.role is Role.REQUESTOR else "Sta10"

    def _ar_9(self) -> None:
        self._send(AReleaseRP())

    def _ar_10(self) -> None:
        self._emit(ReleaseConfirmed())

    # Abort
    def _aa_1(self) -> None:
        self._deliver_pdata = False
        if self._event == "Evt15":
            pdu = self._abort_pdu
        else:  # a PDU arrived before any A-ASSOCIATE-RQ: the provider refuses it
            reason, detail = self._provider_abort_reason()
            pdu = AAbort(AbortSource.SERVICE_PROVIDER, reason)
            self._emit(Aborted(pdu.source, pdu.reason, by_peer=False, detail=detail))
        self._send(pdu)
        self._assembler.abort()
        self.artim_running = True

    def _aa_2(self) -> None:
        self._assembler.abort()
        self._close()

    def _aa_3(self) -> None:
        pdu = self._pdu
        self._assembler.abort()
        self._emit(Aborted(pdu.source, pdu.reason, by_peer=True))
        self._close()

    def _aa_4(self) -> None:
        self._assembler.abort()
        self._emit(
            Aborted(
                AbortSource.SERVICE_PROVIDER,
                AbortReason.NOT_SPECIFIED,
                by_peer=False,
                detail="transport connection closed",
            )
        )
        self._close()

    def _aa_5(self) -> None:
        self.artim_running = False

    def _aa_6(self) -> None:
        self._deliver_pdata = False  # in Sta13 P-DATA is read past and dropped

    def _aa_7(self) -> None:
        reason, _ = self._provider_abort_reason()
        self._deliver_pdata = False
        self._send(AAbort(AbortSource.SERVICE_PROVIDER, reason))

    def _aa_8(self) -> None:
        reason, detail = self._provider_abort_reason()
        self._deliver_pdata = False
        self._assembler.abort()
        self._send(AAbort(AbortSource.SERVICE_PROVIDER, reason))
        self._emit(Aborted(AbortSource.SERVICE_PROVIDER, reason, by_peer=False, detail=detail))
        self.artim_running = True

