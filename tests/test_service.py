"""The acceptor service (AcceptorService) behind a real protocol: admission, slots, handler statuses.

The service decides and the protocol applies: what an admitted association
holds, why others are rejected (and that they hold nothing), that a slot
comes back exactly once, and what each handler result answers.
"""

from __future__ import annotations

import struct

import pytest
from pydicom.dataset import Dataset

from hsscp import dimse, events
from hsscp.indications import Aborted

from .acceptor_link import CT, Link, new_ae, new_service, run, until
from .engine_pair import IMPLICIT_LE, VERIFICATION, associate_rq

DATASET = b"\x08\x00\x16\x00\x1a\x00\x00\x00" + CT.encode() + b"\x00"  # (0008,0016), padded even


def request(**fields):
    rq = associate_rq([(VERIFICATION, (IMPLICIT_LE,)), (CT, (IMPLICIT_LE,))])
    for name, value in fields.items():
        setattr(rq, name, value)
    return rq


class Seen:
    """Notification handlers recording the events of every association, in order."""

    NOTIFICATIONS = (
        events.EVT_CONN_OPEN, events.EVT_REQUESTED, events.EVT_ACCEPTED, events.EVT_ESTABLISHED,
        events.EVT_REJECTED, events.EVT_RELEASED, events.EVT_ABORTED, events.EVT_CONN_CLOSE,
    )  # fmt: skip

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, event) -> None:
        self.names.append(event.event.name)

    @property
    def handlers(self) -> list:
        return [(event, self) for event in self.NOTIFICATIONS]


@run
async def test_an_admitted_association_holds_its_slot_contexts_and_window():
    seen = Seen()
    ae = new_ae(maximum_associations=2)
    service = new_service(ae, seen.handlers, window=3)
    link = Link(service).associate(window=8)
    protocol = link.protocol
    assert protocol.holds_slot and service.limiter.active == 1
    assert protocol.window == 3  # what we granted, not what the peer proposed
    assert sorted(protocol.contexts) == [1, 3]
    assert (protocol.contexts[3].abstract_syntax, protocol.contexts[3].transfer_syntax) == (CT, IMPLICIT_LE)
    assert ae.active_associations == [protocol.assoc] and protocol.assoc.is_established
    assert seen.names == ["EVT_CONN_OPEN", "EVT_REQUESTED", "EVT_ACCEPTED", "EVT_ESTABLISHED"]
    link.send(*link.peer.release())
    link.receive()
    protocol.connection_lost(None)  # the peer closed after A-RELEASE-RP
    assert seen.names[-2:] == ["EVT_RELEASED", "EVT_CONN_CLOSE"]
    assert service.limiter.active == 0 and ae.active_associations == []


REJECTIONS = {
    "calling-ae-title": ({"require_calling_aet": ["ONLY-ME"]}, {}, (1, 1, 3)),
    "called-ae-title": ({"require_called_aet": True}, {"called_ae_title": "SOMEONE-ELSE"}, (1, 1, 7)),
    "application-context": ({}, {"application_context": "1.2.3.4"}, (1, 1, 2)),
}


@pytest.mark.parametrize(("settings", "fields", "expected"), REJECTIONS.values(), ids=REJECTIONS.keys())
@run
async def test_a_rejected_association_gets_its_reason_and_holds_no_slot(settings, fields, expected):
    seen = Seen()
    service = new_service(new_ae(**settings), seen.handlers)
    link = Link(service)
    link.request(request(**fields))
    assert link.rejection == expected
    assert not link.protocol.holds_slot and service.limiter.active == 0
    assert seen.names[-1] == "EVT_REJECTED" and link.protocol.assoc.is_rejected


@run
async def test_over_the_limit_the_rejection_is_local_limit_exceeded():
    service = new_service(new_ae(maximum_associations=1))
    Link(service).associate()
    late = Link(service)
    late.request()
    assert late.rejection == (2, 3, 2)  # rejected-transient, service-provider (presentation), local limit
    assert service.limiter.active == 1 and not late.protocol.holds_slot


@run
async def test_a_slot_comes_back_exactly_once_when_its_connection_closes():
    ae = new_ae(maximum_associations=2)
    service = new_service(ae)
    first, second = Link(service).associate(), Link(service).associate()
    assert service.limiter.active == 2
    first.protocol.connection_lost(None)
    first.protocol.connection_lost(None)  # a second report of the same loss gives nothing back
    assert service.limiter.active == 1 and ae.active_associations == [second.protocol.assoc]
    Link(service).associate()  # the slot that came back
    refused = Link(service)
    refused.request()
    assert refused.rejection == (2, 3, 2)  # and only that one: the second still holds its own


def status_dataset(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment
    return ds


def raising(event):
    raise RuntimeError("the handler broke")


RESULTS = {
    "success": (lambda event: 0x0000, 0x0000, None),
    "out-of-resources": (lambda event: 0xA700, 0xA700, None),
    "status-dataset": (lambda event: status_dataset(0xC123, "cannot read it"), 0xC123, "cannot read it"),
    "handler-raises": (raising, 0xC211, None),
    "not-a-status": (lambda event: "stored, probably", 0xC002, None),
    "no-handler": (None, 0xC211, None),
}


@pytest.mark.parametrize(("handler", "status", "comment"), RESULTS.values(), ids=RESULTS.keys())
@run
async def test_a_store_handler_result_becomes_the_response_status(handler, status, comment):
    seen = []

    def store(event):
        seen.append((event.request.affected_sop_instance_uid, event.encoded_dataset(include_meta=False), event.context.context_id))
        return handler(event)

    handlers = [] if handler is None else [(events.EVT_C_STORE, store)]
    link = Link(new_service(new_ae(), handlers)).associate()
    link.send(link.store_wire(7, DATASET, uid="1.2.3.77"))
    await until(lambda: link.responses())
    (response,) = link.responses()
    assert isinstance(response, dimse.CStoreRSP)
    assert (response.message_id_being_responded_to, response.status, response.error_comment) == (7, status, comment)
    assert (response.affected_sop_class_uid, response.affected_sop_instance_uid) == (CT, "1.2.3.77")
    if handler is not None:
        assert seen == [("1.2.3.77", DATASET, 3)]


@run
async def test_c_echo_without_a_handler_is_answered_success():
    link = Link(new_service(new_ae())).associate()
    link.send(link.echo_wire(5))
    await until(lambda: link.responses())
    (response,) = link.responses()
    assert isinstance(response, dimse.CEchoRSP) and (response.message_id_being_responded_to, response.status) == (5, 0)


@run
async def test_a_service_the_scp_does_not_offer_aborts_the_association():
    link = Link(new_service(new_ae())).associate()
    us = struct.Struct("<H").pack
    c_find = dimse.UnknownCommand(
        0x0020, 1, {0x0002: VERIFICATION.encode() + b"\x00", 0x0100: us(0x0020), 0x0110: us(1), 0x0800: us(0x0101)},
    )
    link.send(*link.peer.send_message(1, c_find))
    await until(lambda: link.transport.closing)
    assert any(isinstance(i, Aborted) for i in link.receive())
