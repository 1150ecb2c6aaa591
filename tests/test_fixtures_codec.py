"""The codec against PDUs recorded from DCMTK and pynetdicom (see fixtures/MANIFEST.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hsscp import dimse, pdu
from hsscp.reader import PduReader

from .streams import pieces, read_pdus

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "MANIFEST.json").read_text())["fixtures"]
IDS = [entry["file"] for entry in MANIFEST]


def load(entry) -> bytes:
    return (FIXTURES / entry["file"]).read_bytes()


@pytest.fixture(params=MANIFEST, ids=IDS)
def fixture(request):
    return request.param, load(request.param)


def test_decodes_whole_and_re_encodes_byte_for_byte(fixture):
    entry, data = fixture
    decoded = pdu.decode_pdu(data)
    assert decoded.pdu_type == entry["pdu_type"]
    assert pdu.encode_pdu(decoded) == data


def test_decodes_one_byte_at_a_time(fixture):
    _, data = fixture
    reader = PduReader()
    assert read_pdus(pieces(data, 1), reader) == [pdu.decode_pdu(data)]
    assert reader.idle


def test_decodes_with_trailing_bytes_left_for_the_next_pdu(fixture):
    _, data = fixture
    reader = PduReader()
    assert read_pdus([data + data[:3]], reader) == [pdu.decode_pdu(data)]
    assert not reader.idle
    assert read_pdus([data[3:]], reader) == [pdu.decode_pdu(data)]
    assert reader.idle


def test_pdata_commands_decode_to_what_the_manifest_recorded(fixture):
    entry, data = fixture
    if entry["pdu_type"] != pdu.PduType.P_DATA_TF:
        return
    decoded = pdu.decode_pdu(data)
    for pdv, recorded in zip(decoded.pdvs, entry["pdvs"], strict=True):
        assert (pdv.context_id, pdv.is_command, pdv.is_last) == (
            recorded["context_id"],
            recorded["command"],
            recorded["last"],
        )
        if recorded.get("dimse"):
            command = dimse.decode_command(pdv.data)
            assert dimse.command_name(command.command_field) == recorded["dimse"]


def test_a_whole_recorded_conversation_read_as_one_stream():
    names = sorted(e["file"] for e in MANIFEST if e["scenario"] == "echoscu-storescp")
    stream = b"".join((FIXTURES / name).read_bytes() for name in names)
    decoded = read_pdus(pieces(stream, 5))
    assert [p.pdu_type for p in decoded] == [1, 2, 4, 4, 5, 6]


def test_real_requests_carry_what_the_peers_put_in_them():
    by_file = {e["file"]: e for e in MANIFEST}
    dcmtk = pdu.decode_pdu(load(by_file["dcmtk/storescu-storescp-00-a-associate-rq.bin"]))
    assert len(dcmtk.presentation_contexts) == 128
    assert dcmtk.user_information.implementation_version_name.startswith("OFFIS_DCMTK")
    assert dcmtk.user_information.maximum_length == 16384
    extneg = pdu.decode_pdu(load(by_file["pynetdicom/pynetdicom-scu-pynetdicom-scp-extneg-00-a-associate-rq.bin"]))
    kinds = {type(sub).__name__ for sub in extneg.user_information.sub_items}
    assert {
        "RoleSelection",
        "AsyncOperationsWindow",
        "UserIdentityRQ",
        "SOPClassExtendedNegotiation",
        "SOPClassCommonExtendedNegotiation",
    } <= kinds
    response = pdu.decode_pdu(
        load(by_file["pynetdicom/pynetdicom-scu-pynetdicom-scp-userid-response-01-a-associate-ac.bin"])
    )
    assert response.user_information.user_identity.server_response == b"server-response"
