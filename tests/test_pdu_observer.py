"""PduObserver: whole PDUs for PDU events, out of the one streaming reader.

Fed recorded PDUs whole, one byte at a time and in odd pieces, it must give
back what ``decode_pdu`` makes of each, and values that outlive the buffer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hsscp import pdu
from hsscp.errors import RemoteProtocolError
from hsscp.pdu_observer import PduObserver

from .streams import pieces

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED = sorted(FIXTURES.glob("*/*.bin"))


def recorded_stream() -> tuple[bytes, list[bytes]]:
    """Every recorded PDU, one after another, and each PDU's own bytes."""
    each = [path.read_bytes() for path in RECORDED]
    return b"".join(each), each


def encoded(pdus) -> list[bytes]:
    return [pdu.encode_pdu(item) for item in pdus]


def test_there_are_recorded_pdus_of_every_kind():
    kinds = {type(pdu.decode_pdu(raw)) for raw in recorded_stream()[1]}
    assert {pdu.AAssociateRQ, pdu.AAssociateAC, pdu.AAssociateRJ, pdu.PDataTF} <= kinds
    assert {pdu.AReleaseRQ, pdu.AReleaseRP, pdu.AAbort} <= kinds


@pytest.mark.parametrize("size", [None, 1, 7, 4096])
def test_each_recorded_pdu_comes_out_as_decode_pdu_reads_it(size):
    stream, each = recorded_stream()
    observer = PduObserver()
    chunks = [stream] if size is None else pieces(stream, size)
    seen = [item for chunk in chunks for item in observer.feed(chunk)]
    assert [type(item) for item in seen] == [type(pdu.decode_pdu(raw)) for raw in each]
    assert encoded(seen) == each


def test_a_p_data_tf_of_several_pdvs_is_one_pdu_with_all_of_them():
    pdvs = [pdu.PDV(1, 0x03, b"command!"), pdu.PDV(1, 0x00, b"ab" * 300), pdu.PDV(3, 0x02, b"")]
    raw = pdu.encode_pdu(pdu.PDataTF(pdvs)) + pdu.encode_pdu(pdu.AReleaseRQ())
    for size in (1, 5, len(raw)):
        observer = PduObserver()
        seen = [item for chunk in pieces(raw, size) for item in observer.feed(chunk)]
        assert seen == [pdu.PDataTF(pdvs), pdu.AReleaseRQ()]


def test_values_are_copies_that_outlive_the_buffer_fed():
    raw = pdu.encode_pdu(pdu.PDataTF([pdu.PDV(1, 0x02, b"dataset bytes")]))
    buffer = bytearray(raw)
    (seen,) = PduObserver().feed(buffer)
    buffer[-13:] = b"X" * 13  # the transport reuses its receive buffer
    assert seen.pdvs[0].data == b"dataset bytes"


def test_malformed_input_raises_the_protocol_error():
    with pytest.raises(RemoteProtocolError):
        list(PduObserver().feed(b"\x55\x00\x00\x00\x00\x04abcd"))
