"""pynetdicom's events on both sides of hsscp, with pynetdicom as the peer and as the yardstick.

Each exchange runs twice where it can: once between pynetdicom's own SCU
and SCP, once with hsscp on one side; what the handlers see must be the
same (the events, their attributes, what a handler's return does).
"""

from __future__ import annotations

import threading

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE as PynetdicomAE
from pynetdicom import evt as pynetdicom_evt
from pynetdicom.pdu_primitives import (
    AsynchronousOperationsWindowNegotiation,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityNegotiation,
)

from hsscp import evt, pdu
from hsscp.event_types import get_default_handler
from hsscp.indications import AssociationRequested, ReleaseRequested

from .dropin_peers import CT_IMAGE, for_pynetdicom, requestor, serving, until
from .peers import HOST

NEW_EVENTS = [
    "EVT_ACSE_RECV", "EVT_ACSE_SENT", "EVT_DATA_RECV", "EVT_DATA_SENT", "EVT_FSM_TRANSITION",
    "EVT_ASYNC_OPS", "EVT_SOP_COMMON", "EVT_SOP_EXTENDED", "EVT_USER_ID",
]  # fmt: skip


@pytest.mark.parametrize("name", NEW_EVENTS)
def test_the_new_events_are_pynetdicoms(name: str) -> None:
    ours, theirs = getattr(evt, name), getattr(pynetdicom_evt, name)
    assert ours == theirs and (ours.is_intervention, ours.description) == (theirs.is_intervention, theirs.description)


# -- get_handlers shapes ------------------------------------------------------------------


def _notified(event, *args) -> None:
    pass


def _echo(event) -> int:
    return 0x0000


def _shapes(server, assoc) -> list:
    return [
        server.get_handlers(evt.EVT_CONN_OPEN),  # bound, with args
        server.get_handlers(evt.EVT_C_ECHO),  # bound, without args
        server.get_handlers(evt.EVT_C_STORE),  # unbound
        server.get_handlers(evt.EVT_PDU_RECV),  # unbound
        assoc.get_handlers(evt.EVT_CONN_OPEN),
        assoc.get_handlers(evt.EVT_C_ECHO),
        assoc.get_handlers(evt.EVT_RELEASED),
    ]


def test_get_handlers_answers_in_pynetdicoms_shapes_on_server_and_acceptor_associations() -> None:
    handlers = [(evt.EVT_CONN_OPEN, _notified, ["x"]), (evt.EVT_C_ECHO, _echo)]
    seen = {}

    def grab(event) -> None:
        seen["assoc"] = event.assoc

    answers = {}
    for name, ae_class in (("pynetdicom", PynetdicomAE), ("hsscp", None)):
        kwargs = {} if ae_class is None else {"ae_class": ae_class}
        with serving([*handlers, (evt.EVT_ESTABLISHED, grab)], **kwargs) as (server, port):
            assoc = requestor().associate(HOST, port)
            until(lambda: "assoc" in seen, what="the established event")
            answers[name] = _shapes(server, seen.pop("assoc"))
            assoc.release()
    theirs, ours = answers["pynetdicom"], answers["hsscp"]
    store_default = (get_default_handler(evt.EVT_C_STORE), None)
    assert ours == [
        [(_notified, ["x"])], (_echo, None), store_default, [], [(_notified, ["x"])], (_echo, None), [],
    ]  # fmt: skip
    # The same shapes; pynetdicom's own default handlers, and its standard logging handlers bound
    # to the PDU events (hsscp logs without handlers), are the only differences.
    assert [theirs[i] for i in (0, 1, 4, 5, 6)] == [ours[i] for i in (0, 1, 4, 5, 6)]
    assert theirs[2][0].__name__ == store_default[0].__name__ and theirs[2][1] is None
    assert [handler.__name__ for handler, _ in theirs[3]] == ["standard_pdu_recv_handler"]


def test_an_unbound_intervention_event_of_an_association_answers_with_its_default_handler() -> None:
    ae = requestor(ae_class=__import__("hsscp").AE)
    with serving([]) as (_, port):
        assoc = ae.associate(HOST, port)
        handler, args = assoc.get_handlers(evt.EVT_C_STORE)
        assert handler is get_default_handler(evt.EVT_C_STORE) and args is None
        with pytest.raises(NotImplementedError):
            handler(None)
        assert assoc.get_handlers(evt.EVT_C_ECHO)[0](None) == 0x0000
        assoc.release()


# -- the acceptor's association ------------------------------------------------------------


def test_a_handler_binds_on_its_own_association_and_the_server_binds_on_all() -> None:
    sent = []
    bound_late = []

    def bind_on_echo(event) -> int:
        if event.message_id == 1:
            event.assoc.bind(evt.EVT_DIMSE_SENT, lambda e: sent.append(type(e.message).__name__))
        return 0x0000

    with serving([(evt.EVT_C_ECHO, bind_on_echo)]) as (server, port):
        assoc = requestor().associate(HOST, port)
        for msg_id in (1, 2, 3):
            assert assoc.send_c_echo(msg_id=msg_id).Status == 0x0000
        server.bind(evt.EVT_DIMSE_RECV, lambda e: bound_late.append(e.message.message_id))
        assert assoc.send_c_echo(msg_id=4).Status == 0x0000
        until(lambda: bound_late == [4], what="the server's binding on the live association")
        other = requestor().associate(HOST, port)
        assert other.send_c_echo(msg_id=9).Status == 0x0000
        assoc.release()
        other.release()
    # Bound by the first handler, before its own response went out; another association never bound it.
    assert sent == ["CEchoRSP"] * 4
    assert bound_late == [4, 9]


def test_an_acceptor_releases_from_a_handler() -> None:
    # (pynetdicom's own acceptor cannot: its release() from a handler waits for a reactor it blocks.)
    events = []

    def release(event) -> None:
        events.append("established")
        event.assoc.release()

    handlers = [(evt.EVT_ESTABLISHED, release), (evt.EVT_RELEASED, lambda e: events.append("released"))]
    with serving(handlers) as (_, port):
        assoc = requestor().associate(HOST, port)
        until(lambda: assoc.is_released, what="the requestor to be released")
        until(lambda: events == ["established", "released"], what="the acceptor's EVT_RELEASED")
        assert not assoc.is_aborted


def test_an_acceptor_release_is_seen_by_the_hsscp_requestor_without_a_reader_thread() -> None:
    with serving([(evt.EVT_ESTABLISHED, lambda event: event.assoc.release())]) as (_, port):
        assoc = requestor(ae_class=__import__("hsscp").AE).associate(HOST, port)
        until(lambda: assoc.is_released, what="the release to be read")
        assert not assoc.is_established and not assoc.is_aborted


@pytest.mark.parametrize("ae_class", [PynetdicomAE, None], ids=["pynetdicom-scp", "hsscp-scp"])
def test_an_acceptor_aborting_from_a_handler_fires_its_aborted_event(ae_class) -> None:
    seen = []

    def abort(event) -> int:
        event.assoc.abort()
        return 0x0000

    handlers = [
        (evt.EVT_C_ECHO, abort),
        (evt.EVT_ABORTED, lambda e: seen.append(("aborted", e.assoc.is_established))),
        (evt.EVT_CONN_CLOSE, lambda e: seen.append(("closed", tuple(e.address)))),
    ]
    kwargs = {} if ae_class is None else {"ae_class": ae_class}
    with serving(handlers, **kwargs) as (_, port):
        assoc = requestor().associate(HOST, port)
        local = assoc.requestor.address, assoc.requestor.port
        assert len(assoc.send_c_echo()) == 0  # no response: aborted
        until(lambda: len(seen) == 2, what="the acceptor's events")
        until(lambda: assoc.is_aborted, what="the requestor's thread to take the A-ABORT")  # its own pace
    assert seen[0][0] == "aborted" and seen[1] == ("closed", local)


# -- the per-PDU events, both ways ----------------------------------------------------------


class Wire:
    """What one side's handlers saw: PDU bytes each way, PDUs, state machine steps, ACSE primitives."""

    def __init__(self) -> None:
        self.sent, self.received, self.pdus, self.steps, self.acse = [], [], [], [], []
        self.lock = threading.Lock()

    def handlers(self) -> list:
        def keep(target, value) -> None:
            with self.lock:
                target.append(value)

        return [
            (evt.EVT_DATA_SENT, lambda e: keep(self.sent, e.data)),
            (evt.EVT_DATA_RECV, lambda e: keep(self.received, e.data)),
            (evt.EVT_PDU_RECV, lambda e: keep(self.pdus, type(e.pdu).__name__)),
            (evt.EVT_FSM_TRANSITION,
             lambda e: keep(self.steps, (e.current_state, e.fsm_event, e.action, e.next_state))),
            (evt.EVT_ACSE_SENT, lambda e: keep(self.acse, ("sent", type(e.primitive).__name__))),
            (evt.EVT_ACSE_RECV, lambda e: keep(self.acse, ("received", type(e.primitive).__name__))),
        ]  # fmt: skip


def _exchange(scp_class=None) -> tuple[Wire, Wire]:
    """A pynetdicom SCU echoes once to an SCP (hsscp's, or pynetdicom's) and releases."""
    scu, scp = Wire(), Wire()
    kwargs = {} if scp_class is None else {"ae_class": scp_class}
    with serving(scp.handlers(), **kwargs) as (_, port):
        assoc = requestor().associate(HOST, port, evt_handlers=for_pynetdicom(scu.handlers()))
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        until(lambda: scp.steps and scp.steps[-1][3] == "Sta1", what="the acceptor to close")
    return scu, scp


def test_the_acceptors_per_pdu_events_match_pynetdicoms() -> None:
    scu, scp = _exchange()
    # Every PDU the requestor sent, the acceptor received whole, and the other way round.
    assert scp.received == scu.sent and len(scu.sent) == 3  # A-ASSOCIATE-RQ, P-DATA-TF, A-RELEASE-RQ
    assert scp.sent == scu.received
    assert [pdu.decode_pdu(data).pdu_type for data in scp.sent] == [2, 4, 6]
    assert scp.pdus == ["AAssociateRQ", "PDataTF", "AReleaseRQ"]
    # The state machine takes the steps pynetdicom's does for the same exchange (PS3.8 9-10).
    theirs = _exchange(PynetdicomAE)[1]
    assert scp.steps == theirs.steps
    assert scp.acse == [
        ("received", AssociationRequested.__name__), ("sent", "AAssociateAC"),
        ("received", ReleaseRequested.__name__), ("sent", "AReleaseRP"),
    ]  # fmt: skip


def test_the_requestors_per_pdu_events_match_pynetdicoms() -> None:
    import hsscp

    theirs, ours = Wire(), Wire()
    with serving([]) as (_, port):
        for wire, ae_class in ((theirs, PynetdicomAE), (ours, hsscp.AE)):
            handlers = for_pynetdicom(wire.handlers()) if ae_class is PynetdicomAE else wire.handlers()
            assoc = requestor(ae_class).associate(HOST, port, evt_handlers=handlers)
            assert assoc.send_c_echo().Status == 0x0000
            assoc.release()
    assert ours.steps == theirs.steps
    assert [data[0] for data in ours.sent] == [data[0] for data in theirs.sent] == [1, 4, 5]
    assert ours.pdus == ["AAssociateAC", "PDataTF", "AReleaseRP"]


def test_without_handlers_a_live_association_watches_nothing_per_pdu() -> None:
    seen = {}
    with serving([(evt.EVT_ESTABLISHED, lambda e: seen.setdefault("assoc", e.assoc))]) as (server, port):
        assoc = requestor().associate(HOST, port)
        until(lambda: "assoc" in seen, what="the association")
        protocol = seen["assoc"]._control
        assert protocol._wire is None and protocol.engine.on_transition is None
        seen["assoc"].bind(evt.EVT_DATA_RECV, lambda e: None)
        assert assoc.send_c_echo().Status == 0x0000  # the binding is applied on the loop meanwhile
        assert protocol._wire is not None and protocol.engine.on_transition is None
        assoc.release()


# -- extended negotiation events ----------------------------------------------------------------


def _identity(kind: int, primary: bytes, secondary: bytes = b"", response: bool = True) -> UserIdentityNegotiation:
    item = UserIdentityNegotiation()
    item.user_identity_type = kind
    item.primary_field = primary
    if secondary:
        item.secondary_field = secondary
    item.positive_response_requested = response
    return item


def _negotiation_items() -> list:
    extended = SOPClassExtendedNegotiation()
    extended.sop_class_uid, extended.service_class_application_information = CT_IMAGE, b"\x01\x00"
    common = SOPClassCommonExtendedNegotiation()
    common.sop_class_uid, common.service_class_uid = CT_IMAGE, "1.2.840.10008.4.2"
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = window.maximum_number_operations_performed = 3
    return [extended, common, window]


class Negotiator:
    """Handlers for the four negotiation events, recording what they were given."""

    def __init__(self, verified: bool = True, response: bytes | None = None) -> None:
        self.verified, self.response, self.seen = verified, response, {}

    def user_id(self, event):
        self.seen["user_id"] = (event.user_id_type, event.primary_field, event.secondary_field)
        return self.verified, self.response

    def sop_extended(self, event):
        self.seen["app_info"] = dict(event.app_info)
        return {uid: b"\x02\x00" for uid in event.app_info}

    def sop_common(self, event):
        self.seen["common"] = sorted(event.items)
        return dict(event.items)

    def async_ops(self, event):
        self.seen["window"] = (event.nr_invoked, event.nr_performed)
        return 2, 5

    def handlers(self) -> list:
        return [(evt.EVT_USER_ID, self.user_id), (evt.EVT_SOP_EXTENDED, self.sop_extended),
                (evt.EVT_SOP_COMMON, self.sop_common), (evt.EVT_ASYNC_OPS, self.async_ops)]  # fmt: skip


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "workers"])
def test_negotiation_handlers_answer_as_pynetdicoms_do(workers, tmp_path) -> None:
    negotiator = Negotiator()
    kwargs = {"workers": workers, "output_directory": str(tmp_path)} if workers else {}
    with serving(negotiator.handlers(), **kwargs) as (_, port):
        ext = [_identity(2, b"alice", b"secret"), *_negotiation_items()]
        assoc = requestor().associate(HOST, port, ext_neg=ext)
        assert assoc.is_established
        assert assoc.acceptor.sop_class_extended == {CT_IMAGE: b"\x02\x00"}
        # We invoke at most what they perform, and perform at most what they invoke.
        assert assoc.acceptor.asynchronous_operations == (2, 3)
        assert assoc.acceptor.user_identity is None  # no response to a username/password
        assoc.release()
    if not workers:  # a worker's handlers run in the worker's process
        assert negotiator.seen == {
            "user_id": (2, b"alice", b"secret"),
            "app_info": {CT_IMAGE: b"\x01\x00"},
            "common": [CT_IMAGE],
            "window": (3, 3),
        }


def test_a_user_identity_handler_refusing_rejects_as_pynetdicom_does() -> None:
    results = {}
    for name, ae_class in (("pynetdicom", PynetdicomAE), ("hsscp", None)):
        kwargs = {} if ae_class is None else {"ae_class": ae_class}
        with serving(Negotiator(verified=False).handlers(), **kwargs) as (_, port):
            assoc = requestor().associate(HOST, port, ext_neg=[_identity(1, b"mallory")])
            results[name] = (assoc.is_rejected, assoc.acceptor.primitive.result,
                             assoc.acceptor.primitive.result_source, assoc.acceptor.primitive.diagnostic)  # fmt: skip
    assert results["hsscp"] == results["pynetdicom"] == (True, 2, 2, 1)


def test_a_json_web_token_gets_the_handlers_server_response() -> None:
    with serving(Negotiator(response=b"signed-by-the-server").handlers()) as (_, port):
        assoc = requestor().associate(HOST, port, ext_neg=[_identity(5, b"header.payload.sig")])
        assert assoc.is_established
        assert assoc.acceptor.user_identity.server_response == b"signed-by-the-server"
        assoc.release()


def test_without_negotiation_handlers_the_requestor_is_accepted_with_no_replies() -> None:
    with serving([]) as (_, port):
        assoc = requestor().associate(HOST, port, ext_neg=[_identity(2, b"a", b"b"), *_negotiation_items()[:2]])
        assert assoc.is_established
        assert assoc.acceptor.sop_class_extended == {} and assoc.acceptor.user_identity is None
        assoc.release()


# -- C-ECHO status data sets ----------------------------------------------------------------


def _busy(event) -> Dataset:
    status = Dataset()
    status.Status = 0x0110
    status.ErrorComment = "too busy to answer"
    return status


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "workers"])
def test_a_c_echo_error_comment_reaches_a_pynetdicom_requestor(workers, tmp_path) -> None:
    kwargs = {"workers": workers, "output_directory": str(tmp_path)} if workers else {}
    with serving([(evt.EVT_C_ECHO, _busy)], **kwargs) as (_, port):
        assoc = requestor().associate(HOST, port)
        status = assoc.send_c_echo()
        assoc.release()
    assert (status.Status, status.ErrorComment) == (0x0110, "too busy to answer")


def test_the_hsscp_requestor_returns_a_c_echo_error_comment() -> None:
    import hsscp

    with serving([(pynetdicom_evt.EVT_C_ECHO, _busy)], ae_class=PynetdicomAE) as (_, port):
        assoc = requestor(hsscp.AE).associate(HOST, port)
        status = assoc.send_c_echo()
        assoc.release()
    assert (status.Status, status.ErrorComment) == (0x0110, "too busy to answer")
