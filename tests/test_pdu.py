"""PDU and item codecs: round trips, streaming, and refusal of malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsscp import items, pdu
from hsscp.errors import AbortReason, RemoteProtocolError
from hsscp.reader import PDATA_WHOLE, PDV, PduReader

from .strategies import pdus
from .streams import pieces, read_pdus


@given(pdus)
def test_encode_decode_round_trip(message):
    encoded = pdu.encode_pdu(message)
    assert pdu.PDU_HEADER.unpack_from(encoded) == (message.pdu_type, len(encoded) - 6)
    decoded = pdu.decode_pdu(encoded)
    assert decoded == message
    assert pdu.encode_pdu(decoded) == encoded


@settings(max_examples=60)
@given(st.lists(pdus, min_size=1, max_size=4), st.integers(1, 97))
def test_stream_of_pdus_read_in_any_chunking(messages, step):
    stream = b"".join(pdu.encode_pdu(m) for m in messages)
    assert read_pdus(pieces(stream, step)) == messages


@given(pdus, st.binary(min_size=1, max_size=5))
def test_trailing_bytes_wait_for_the_next_pdu(message, tail):
    reader = PduReader()
    encoded = pdu.encode_pdu(message)
    assert read_pdus([encoded + tail[:5]], reader) == [message]
    assert not reader.idle


def test_pdata_values_are_views_into_the_callers_buffer():
    payload = bytes(range(256)) * 64
    buffer = bytearray(pdu.encode_pdu(pdu.PDataTF([pdu.PDV(1, 2, payload)])))
    decoded = pdu.decode_pdu(buffer)
    value = decoded.pdvs[0].data
    assert isinstance(value, memoryview) and value.obj is buffer
    (whole,) = PduReader().feed(memoryview(buffer))  # one PDV, all here: read in one step
    assert whole[0] == PDATA_WHOLE and whole[3].obj is buffer and whole[3] == payload
    reader = PduReader()
    streamed = [item for chunk in pieces(bytes(buffer), 1000) for item in reader.feed(chunk) if item[0] == PDV]
    assert b"".join(item[3] for item in streamed) == payload


def test_pdata_encoding_passes_payload_through_unjoined():
    payload = memoryview(b"x" * 1000)
    buffers = pdu.PDataTF([pdu.PDV(3, 0, payload)]).encode()
    assert buffers[-1] is payload
    single = pdu.pdata_buffers(3, 0, payload)
    assert single[1] is payload
    assert b"".join(single) == b"".join(buffers)


def raises_with(data: bytes, reason: AbortReason) -> None:
    with pytest.raises(RemoteProtocolError) as whole:
        pdu.decode_pdu(data)
    assert whole.value.reason == reason
    with pytest.raises(RemoteProtocolError) as streamed:
        read_pdus(pieces(data, 1))
    assert streamed.value.reason == reason


@pytest.mark.parametrize("pdu_type", [0x00, 0x08, 0x10, 0xFF])
def test_unknown_pdu_type_is_unrecognized_pdu(pdu_type):
    raises_with(bytes([pdu_type, 0, 0, 0, 0, 4, 0, 0, 0, 0]), AbortReason.UNRECOGNIZED_PDU)


@pytest.mark.parametrize("pdu_type", [3, 5, 6, 7])
@pytest.mark.parametrize("length", [0, 3, 5, 100])
def test_fixed_size_pdus_with_wrong_length(pdu_type, length):
    raises_with(bytes([pdu_type, 0]) + struct.pack(">I", length) + bytes(length), AbortReason.INVALID_PDU_PARAMETER_VALUE)


def associate_rq_bytes(**changes) -> bytearray:
    rq = pdu.AAssociateRQ(
        "SCP",
        "SCU",
        presentation_contexts=[items.PresentationContextRQ(1, "1.2.840.10008.1.1", ["1.2.840.10008.1.2"])],
        user_information=items.UserInformation([items.MaximumLength(16384)]),
    )
    for name, value in changes.items():
        setattr(rq, name, value)
    return bytearray(pdu.encode_pdu(rq))


def test_item_length_overrunning_the_pdu():
    data = associate_rq_bytes()
    data[6 + 68 + 2 : 6 + 68 + 4] = b"\xff\xff"  # application context item length
    raises_with(bytes(data), AbortReason.INVALID_PDU_PARAMETER_VALUE)


def test_associate_without_user_information_or_context_name():
    data = associate_rq_bytes()
    body = bytes(data[6 : 6 + 68])  # fixed part only
    raises_with(bytes([1, 0]) + struct.pack(">I", len(body)) + body, AbortReason.INVALID_PDU_PARAMETER_VALUE)


def test_unknown_top_level_item_is_unrecognized_parameter():
    data = associate_rq_bytes()
    extra = bytes([0x77, 0, 0, 1, 0])
    data += extra
    data[2:6] = struct.pack(">I", len(data) - 6)
    raises_with(bytes(data), AbortReason.UNRECOGNIZED_PDU_PARAMETER)


def test_unknown_user_information_sub_item_is_kept_but_ignored():
    unknown = items.UnknownSubItem(0x7E, b"whatever")
    data = associate_rq_bytes(user_information=items.UserInformation([items.MaximumLength(1), unknown]))
    decoded = pdu.decode_pdu(bytes(data))
    assert decoded.user_information.maximum_length == 1
    assert decoded.user_information.sub_items[1] == unknown


def test_pdv_length_must_fit_its_pdu():
    good = pdu.encode_pdu(pdu.PDataTF([pdu.PDV(1, 3, b"abcd")]))
    for bad_length in (0, 1, 7, 1000):
        data = bytearray(good)
        data[6:10] = struct.pack(">I", bad_length)
        raises_with(bytes(data), AbortReason.INVALID_PDU_PARAMETER_VALUE)


def test_empty_pdata_is_refused():
    raises_with(bytes([4, 0, 0, 0, 0, 0]), AbortReason.INVALID_PDU_PARAMETER_VALUE)


def test_pdata_over_the_negotiated_maximum_is_refused_from_its_header():
    reader = PduReader(max_pdata_length=16384)
    header = bytes([4, 0]) + struct.pack(">I", 16385)  # no body sent at all
    with pytest.raises(RemoteProtocolError) as caught:
        list(reader.feed(header))
    assert caught.value.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_huge_length_allocates_nothing_up_front():
    reader = PduReader()
    claim = bytes([1, 0]) + struct.pack(">I", 0xFFFFFFFF)
    with pytest.raises(RemoteProtocolError):
        list(reader.feed(claim))
    reader = PduReader()
    # Under the control-PDU cap, the body is gathered as it arrives, not preallocated.
    list(reader.feed(bytes([1, 0]) + struct.pack(">I", 1_000_000) + b"\0" * 10))
    assert len(reader._staged) == 10


@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_or_raise_the_protocol_error(data):
    try:
        pdu.decode_pdu(data)
    except RemoteProtocolError:
        pass
    try:
        read_pdus(pieces(data, 7))
    except RemoteProtocolError:
        pass


@given(pdus, st.data())
def test_mutated_pdus_decode_or_raise_the_protocol_error(message, data):
    encoded = bytearray(pdu.encode_pdu(message))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(encoded) - 1))
        encoded[at] = data.draw(st.integers(0, 255))
    try:
        pdu.decode_pdu(bytes(encoded))
    except RemoteProtocolError:
        pass


def test_user_identity_repr_hides_the_passcode():
    identity = items.UserIdentityRQ(2, True, b"alice", b"s3cret")
    assert "s3cret" not in repr(identity) and "alice" not in repr(identity)


def test_ae_title_longer_than_16_is_refused_on_encode():
    with pytest.raises(ValueError):
        pdu.encode_pdu(pdu.AAssociateRQ("A" * 17, "SCU"))
