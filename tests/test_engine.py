"""Two engines talk to each other in memory: association, C-ECHO, C-STORE, release, aborts."""

from __future__ import annotations

import pytest
from pydicom.data import get_testdata_file

from hsscp import dimse, pdu
from hsscp.engine import Engine, Role
from hsscp.errors import AbortReason, LocalProtocolError
from hsscp.indications import (
    Aborted,
    AssociationAccepted,
    AssociationRejected,
    MessageReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from hsscp.part10 import read_file_meta

from .engine_pair import IMPLICIT_LE, VERIFICATION, Pair, associate_rq


def part10_dataset(name: str):
    with open(get_testdata_file(name), "rb") as fp:
        meta = read_file_meta(fp)
        return meta, fp.read()


@pytest.mark.parametrize("step", [1, 7, 4096, 1 << 20])
def test_echo_store_release_end_to_end(step):
    meta, dataset = part10_dataset("CT_small.dcm")
    pair = Pair(step=step if step > 1 else 1)
    accepted = pair.associate([(VERIFICATION, (IMPLICIT_LE,)), (meta.sop_class_uid, (meta.transfer_syntax,))])
    assert isinstance(accepted, AssociationAccepted)
    assert pair.requestor.is_established and pair.acceptor.is_established

    (echo,) = pair.to_acceptor(pair.requestor.send_message(1, dimse.CEchoRQ(1)))
    assert isinstance(echo, MessageReceived) and echo.command == dimse.CEchoRQ(1)
    (echo_rsp,) = pair.to_requestor(pair.acceptor.send_message(1, dimse.CEchoRSP(1, 0)))
    assert echo_rsp.command.status == 0

    request = dimse.CStoreRQ(2, meta.sop_class_uid, meta.sop_instance_uid)
    (stored,) = pair.to_acceptor(pair.requestor.send_message(3, request, dataset))
    assert stored.context_id == 3 and stored.command == request
    assert bytes(stored.dataset) == dataset  # byte-identical

    requested, confirmed = pair.release()
    assert requested == ReleaseRequested() and confirmed == ReleaseConfirmed()
    assert pair.requestor.close_requested and pair.requestor.state == "Sta1"
    assert pair.acceptor.state == "Sta13" and pair.acceptor.artim_running
    pair.acceptor.connection_lost()
    assert pair.acceptor.state == "Sta1" and not pair.acceptor.artim_running


def test_fragments_respect_the_peers_maximum_pdu():
    _, dataset = part10_dataset("MR_small.dcm")
    pair = Pair()
    pair.associate([("1.2.840.10008.5.1.4.1.1.4", (IMPLICIT_LE,))], max_pdu=4096)
    buffers = pair.requestor.send_message(1, dimse.CStoreRQ(1, "1.2.840.10008.5.1.4.1.1.4", "1.2.3"), dataset)
    stream = b"".join(bytes(b) for b in buffers)
    offset, lengths = 0, []
    while offset < len(stream):
        pdu_type, length = pdu.PDU_HEADER.unpack_from(stream, offset)
        assert pdu_type == 4
        lengths.append(length)
        offset += 6 + length
    assert max(lengths) == 4096 and len(lengths) > len(dataset) // 4096
    received = pair.acceptor.receive_data(stream)
    assert bytes(received[0].dataset) == dataset


def test_a_streaming_sink_sees_views_and_only_copies_once():
    _, dataset = part10_dataset("CT_small.dcm")
    seen = []

    class Sink:
        def __init__(self):
            self.buffer = bytearray()

        def write(self, data):
            assert isinstance(data, memoryview)
            seen.append(len(data))
            self.buffer += data

        def finish(self):
            return self.buffer

        def abort(self):
            raise AssertionError("not aborted")

    pair = Pair(sink_factory=lambda context_id, command: Sink())
    pair.associate([("1.2.840.10008.5.1.4.1.1.2", (IMPLICIT_LE,))])
    sent = pair.requestor.send_message(1, dimse.CStoreRQ(1, "1.2.840.10008.5.1.4.1.1.2", "1.2"), dataset)
    (message,) = pair.to_acceptor(sent)
    assert bytes(message.dataset) == dataset and sum(seen) == len(dataset)


def test_rejection_closes_both_sides():
    pair = Pair()
    pair.requestor.request_association(associate_rq([(VERIFICATION, (IMPLICIT_LE,))]))
    pair.requestor.connection_made()
    pair.acceptor.connection_made()
    pair.to_acceptor()
    (rejected,) = pair.to_requestor(pair.acceptor.reject(2, 3, 2))
    assert rejected == AssociationRejected(2, 3, 2)
    assert pair.requestor.close_requested and pair.acceptor.state == "Sta13"


def test_unsupported_protocol_version_is_rejected_by_the_provider():
    request = associate_rq([(VERIFICATION, (IMPLICIT_LE,))])
    request.protocol_version = 2  # bit 0 clear: not a version this implementation speaks
    acceptor = Engine(Role.ACCEPTOR)
    acceptor.connection_made()
    assert acceptor.receive_data(pdu.encode_pdu(request)) == []
    (rj,) = acceptor.pop_output()
    assert pdu.decode_pdu(rj) == pdu.AAssociateRJ(1, 2, 2)


def test_pdv_on_a_context_that_was_not_accepted_aborts():
    pair = Pair()
    pair.associate()
    stray = pdu.encode_pdu(pdu.PDataTF([pdu.PDV(99, 3, dimse.encode_command(dimse.CEchoRQ(1)))]))
    (aborted,) = pair.acceptor.receive_data(stray)
    assert isinstance(aborted, Aborted) and aborted.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    assert pdu.decode_pdu(b"".join(pair.acceptor.pop_output())) == pdu.AAbort(2, 6)


def test_garbage_after_association_aborts_with_unrecognized_pdu():
    pair = Pair()
    pair.associate()
    (aborted,) = pair.acceptor.receive_data(b"\x55\x00\x00\x00\x00\x04abcd")
    assert aborted.reason == AbortReason.UNRECOGNIZED_PDU
    assert pdu.decode_pdu(b"".join(pair.acceptor.pop_output())) == pdu.AAbort(2, 1)
    assert pair.acceptor.receive_data(b"more garbage") == []  # the stream is no longer read


def test_release_collision_both_sides():
    pair = Pair()
    pair.associate()
    from_requestor = pair.requestor.release()
    from_acceptor = pair.acceptor.release()
    assert pair.to_requestor(from_acceptor) == [ReleaseRequested(collision=True)]
    assert pair.to_acceptor(from_requestor) == [ReleaseRequested(collision=True)]
    assert (pair.requestor.state, pair.acceptor.state) == ("Sta9", "Sta10")
    assert pair.to_acceptor(pair.requestor.release_response()) == [ReleaseConfirmed()]
    assert pair.acceptor.state == "Sta12"
    assert pair.to_requestor(pair.acceptor.release_response()) == [ReleaseConfirmed()]
    assert pair.requestor.state == "Sta1" and pair.acceptor.state == "Sta13"


def test_user_abort_reaches_the_peer():
    pair = Pair()
    pair.associate()
    (aborted,) = pair.to_acceptor(pair.requestor.abort())
    assert aborted == Aborted(0, 0, by_peer=True)
    assert pair.acceptor.close_requested and pair.requestor.state == "Sta13"
    pair.requestor.timer_expired()
    assert pair.requestor.state == "Sta1" and pair.requestor.close_requested


def test_abort_mid_dataset_aborts_the_sink():
    aborted_sinks = []

    class Sink:
        def write(self, data):
            pass

        def finish(self):
            return None

        def abort(self):
            aborted_sinks.append(True)

    pair = Pair(sink_factory=lambda context_id, command: Sink())
    pair.associate([("1.2.840.10008.5.1.4.1.1.2", (IMPLICIT_LE,))])
    buffers = pair.requestor.send_message(1, dimse.CStoreRQ(1, "1.2.840.10008.5.1.4.1.1.2", "1.2"), b"x" * 100000)
    half = b"".join(bytes(b) for b in buffers)[:50000]
    assert pair.acceptor.receive_data(half) == []
    pair.acceptor.connection_lost()
    assert aborted_sinks == [True]


def test_local_requests_out_of_turn_raise():
    engine = Engine(Role.ACCEPTOR)
    with pytest.raises(LocalProtocolError):
        engine.send_message(1, dimse.CEchoRQ(1))
    with pytest.raises(LocalProtocolError):
        engine.release()
    engine.connection_made()
    with pytest.raises(LocalProtocolError):
        engine.accept(pdu.AAssociateAC())


def test_artim_runs_while_waiting_for_the_request():
    engine = Engine(Role.ACCEPTOR)
    engine.connection_made()
    assert engine.artim_running and engine.state == "Sta2"
    engine.timer_expired()
    assert engine.close_requested and engine.state == "Sta1" and not engine.artim_running


def test_fragments_stay_even_when_the_peer_announces_an_odd_maximum():
    pair = Pair()
    pair.associate([("1.2.840.10008.5.1.4.1.1.2", (IMPLICIT_LE,))], max_pdu=16383)
    assert pair.requestor.max_fragment % 2 == 0
    buffers = pair.requestor.send_message(1, dimse.CStoreRQ(1, "1.2.840.10008.5.1.4.1.1.2", "1.2"), bytes(100000))
    payloads = buffers[1::2]
    assert all(len(p) % 2 == 0 for p in payloads)
