"""DIMSE command sets, fragmentation and reassembly."""

from __future__ import annotations

import contextlib
import string
import struct
from io import BytesIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pynetdicom.dimse_messages import C_ECHO_RQ as PnC_ECHO_RQ
from pynetdicom.dimse_messages import C_ECHO_RSP as PnC_ECHO_RSP
from pynetdicom.dimse_messages import C_FIND_RQ as PnC_FIND_RQ
from pynetdicom.dimse_messages import C_STORE_RQ as PnC_STORE_RQ
from pynetdicom.dimse_messages import C_STORE_RSP as PnC_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_FIND, C_STORE
from pynetdicom.dsutils import encode

from hsscp.dimse import (
    C_ECHO_RQ,
    C_ECHO_RSP,
    C_STORE_RQ,
    C_STORE_RSP,
    BytesSink,
    CEchoRQ,
    CEchoRSP,
    CStoreRQ,
    CStoreRSP,
    DimseMessage,
    MessageAssembler,
    Status,
    StatusCategory,
    UnknownCommand,
    command_name,
    decode_command,
    encode_command,
    iter_fragments,
    status_category,
)
from hsscp.errors import AbortReason, RemoteProtocolError

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
INSTANCE = "1.2.826.0.1.3680043.8.498.12345678901234567890"
ELEMENT = struct.Struct("<HHI")

COMMANDS = [
    CEchoRQ(1),
    CEchoRQ(65535, "1.2.3"),
    CEchoRSP(1),
    CEchoRSP(2, 0x0110, ""),
    CStoreRQ(3, CT_IMAGE, INSTANCE),
    CStoreRQ(4, CT_IMAGE, INSTANCE + "1", 2, "MOVE_SCU", 77),
    CStoreRQ(5, CT_IMAGE, INSTANCE, move_originator_aet="ODD"),
    CStoreRSP(3),
    CStoreRSP(4, Status.SUCCESS, CT_IMAGE, INSTANCE),
    CStoreRSP(
        5,
        Status.CANNOT_UNDERSTAND,
        CT_IMAGE,
        INSTANCE,
        error_comment="Could not parse",
        offending_element=[0x00100010, 0x7FE00010],
        error_id=12,
    ),
]


def walk(data: bytes) -> list[tuple[int, int, bytes]]:
    """(group, element, value) of each element, parsed independently of hsscp."""
    out, pos = [], 0
    while pos < len(data):
        group, elem, length = ELEMENT.unpack_from(data, pos)
        out.append((group, elem, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length
    assert pos == len(data)
    return out


def element(tag: int, value: bytes) -> bytes:
    return ELEMENT.pack(0, tag, len(value)) + value


def us(value: int) -> bytes:
    return struct.pack("<H", value)


def raw_command(*elements: bytes, group_length: bool = True) -> bytes:
    body = b"".join(elements)
    return (element(0, struct.pack("<I", len(body))) if group_length else b"") + body


def store_rq_elements(**override: bytes) -> list[bytes]:
    values = {
        0x0002: b"1.2\0",
        0x0100: us(C_STORE_RQ),
        0x0110: us(9),
        0x0700: us(0),
        0x0800: us(0x0001),
        0x1000: b"1.2.3\0",
    }
    values.update({int(k[1:], 16): v for k, v in override.items()})
    return [element(tag, value) for tag, value in sorted(values.items()) if value is not None]


# --- command sets -----------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=repr)
def test_round_trip(command):
    assert decode_command(encode_command(command)) == command


@pytest.mark.parametrize("command", COMMANDS, ids=repr)
def test_group_length_first_and_elements_ascending(command):
    elements = walk(encode_command(command))
    assert all(group == 0 for group, _, _ in elements)
    assert elements[0][:2] == (0, 0)
    assert struct.unpack("<I", elements[0][2])[0] == sum(8 + len(v) for _, _, v in elements[1:])
    tags = [elem for _, elem, _ in elements]
    assert tags == sorted(tags) and len(set(tags)) == len(tags)
    assert all(len(value) % 2 == 0 for _, _, value in elements)


@pytest.mark.parametrize("command", COMMANDS, ids=repr)
def test_command_field_and_has_dataset(command):
    decoded = decode_command(encode_command(command))
    assert decoded.command_field == command.command_field
    assert decoded.has_dataset is (command.command_field == C_STORE_RQ)


def pydicom_bytes(**keywords) -> bytes:
    ds = Dataset()
    ds.CommandGroupLength = 0
    for keyword, value in keywords.items():
        setattr(ds, keyword, value)
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, ds)
    ds.CommandGroupLength = len(fp.getvalue()) - 12
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize(
    ("command", "keywords"),
    [
        (
            CEchoRQ(7),
            dict(
                AffectedSOPClassUID="1.2.840.10008.1.1",
                CommandField=0x0030,
                MessageID=7,
                CommandDataSetType=0x0101,
            ),
        ),
        (
            CEchoRSP(7, 0),
            dict(
                AffectedSOPClassUID="1.2.840.10008.1.1",
                CommandField=0x8030,
                MessageIDBeingRespondedTo=7,
                CommandDataSetType=0x0101,
                Status=0,
            ),
        ),
        (
            CStoreRQ(9, CT_IMAGE, INSTANCE, 1, "ORIGIN", 3),
            dict(
                AffectedSOPClassUID=CT_IMAGE,
                CommandField=0x0001,
                MessageID=9,
                Priority=1,
                CommandDataSetType=0x0001,
                AffectedSOPInstanceUID=INSTANCE,
                MoveOriginatorApplicationEntityTitle="ORIGIN",
                MoveOriginatorMessageID=3,
            ),
        ),
        (
            CStoreRSP(9, 0xA900, CT_IMAGE, INSTANCE + "9", "Bad", [0x00080016], 5),
            dict(
                AffectedSOPClassUID=CT_IMAGE,
                CommandField=0x8001,
                MessageIDBeingRespondedTo=9,
                CommandDataSetType=0x0101,
                Status=0xA900,
                OffendingElement=[0x00080016],
                ErrorComment="Bad",
                ErrorID=5,
                AffectedSOPInstanceUID=INSTANCE + "9",
            ),
        ),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, dict) else "",
)
def test_byte_exact_with_pydicom(command, keywords):
    assert encode_command(command) == pydicom_bytes(**keywords)


def pynetdicom_bytes(message_class, primitive) -> bytes:
    message = message_class()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)


def test_decode_pynetdicom_c_store_rq():
    primitive = C_STORE()
    primitive.MessageID = 12
    primitive.AffectedSOPClassUID = CT_IMAGE
    primitive.AffectedSOPInstanceUID = INSTANCE
    primitive.Priority = 2
    primitive.MoveOriginatorApplicationEntityTitle = "MOVER"
    primitive.MoveOriginatorMessageID = 34
    primitive.DataSet = BytesIO(b"\x08\x00")
    command = decode_command(pynetdicom_bytes(PnC_STORE_RQ, primitive))
    assert command == CStoreRQ(12, CT_IMAGE, INSTANCE, 2, "MOVER", 34)
    assert command.has_dataset


def test_decode_pynetdicom_c_store_rsp():
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = 12
    primitive.AffectedSOPClassUID = CT_IMAGE
    primitive.AffectedSOPInstanceUID = INSTANCE
    primitive.Status = 0xC211
    primitive.ErrorComment = "handler failed"
    primitive.OffendingElement = [0x00100020, 0x00080018]
    command = decode_command(pynetdicom_bytes(PnC_STORE_RSP, primitive))
    assert command == CStoreRSP(
        12,
        Status.NO_HANDLER,
        CT_IMAGE,
        INSTANCE,
        "handler failed",
        [0x00100020, 0x00080018],
    )
    assert not command.has_dataset


def test_decode_pynetdicom_c_echo():
    primitive = C_ECHO()
    primitive.MessageID = 3
    primitive.AffectedSOPClassUID = "1.2.840.10008.1.1"
    assert decode_command(pynetdicom_bytes(PnC_ECHO_RQ, primitive)) == CEchoRQ(3)

    primitive = C_ECHO()
    primitive.MessageIDBeingRespondedTo = 3
    primitive.AffectedSOPClassUID = "1.2.840.10008.1.1"
    primitive.Status = 0x0000
    assert decode_command(pynetdicom_bytes(PnC_ECHO_RSP, primitive)) == CEchoRSP(3, 0)


def test_pynetdicom_echo_rq_is_byte_identical():
    primitive = C_ECHO()
    primitive.MessageID = 3
    primitive.AffectedSOPClassUID = "1.2.840.10008.1.1"
    assert encode_command(CEchoRQ(3)) == pynetdicom_bytes(PnC_ECHO_RQ, primitive)


def test_other_commands_decode_to_unknown_command():
    primitive = C_FIND()
    primitive.MessageID = 8
    primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.1.1"
    primitive.Priority = 0
    primitive.Identifier = BytesIO(b"\x08\x00")
    data = pynetdicom_bytes(PnC_FIND_RQ, primitive)
    command = decode_command(data)
    assert isinstance(command, UnknownCommand)
    assert command_name(command.command_field) == "C-FIND-RQ"
    assert command.message_id == 8
    assert command.has_dataset
    assert command.elements[0x0002] == b"1.2.840.10008.5.1.4.1.2.1.1\0"
    assert encode_command(command) == data


def test_unknown_response_carries_the_request_id():
    data = raw_command(
        element(0x0100, us(0x8020)),
        element(0x0120, us(4)),
        element(0x0800, us(0x0101)),
        element(0x0900, us(0xFF00)),
    )
    command = decode_command(data)
    assert isinstance(command, UnknownCommand)
    assert (command.message_id, command.message_id_being_responded_to) == (None, 4)
    assert not command.has_dataset


def test_decode_strips_padding_and_accepts_any_buffer():
    data = raw_command(
        *store_rq_elements(
            x0002=b"1.2.3 ",
            x1000=b"1.2.4\0",
            x1030=b" MOVER  ",
            x1031=us(5),
        )
    )
    expected = CStoreRQ(9, "1.2.3", "1.2.4", 0, "MOVER", 5)
    for buffer in (data, bytearray(data), memoryview(data)):
        assert decode_command(buffer) == expected


def test_group_length_is_not_checked_on_decode():
    body = store_rq_elements()
    expected = CStoreRQ(9, "1.2", "1.2.3")
    assert decode_command(raw_command(*body, group_length=False)) == expected
    wrong = element(0, struct.pack("<I", 3)) + b"".join(body)
    assert decode_command(wrong) == expected


def test_any_dataset_type_but_0101_means_dataset_present():
    data = raw_command(*store_rq_elements(x0800=us(0xFEFE)))
    assert decode_command(data).has_dataset


def test_error_comment_is_truncated_to_lo_length():
    data = encode_command(CStoreRSP(1, 0xC000, error_comment="x" * 100))
    assert decode_command(data).error_comment == "x" * 64


def test_status_category():
    assert status_category(Status.SUCCESS) == "success"
    assert status_category(Status.ELEMENTS_DISCARDED) == "warning"
    assert status_category(Status.OUT_OF_RESOURCES) == "failure"
    assert status_category(Status.SOP_CLASS_NOT_SUPPORTED) == "failure"
    assert status_category(0xFF00) == "pending"
    assert command_name(C_ECHO_RSP) == "C-ECHO-RSP" and command_name(0x1234) == "0x1234"


@pytest.mark.parametrize(
    ("status", "category"),
    [
        (0x0000, "success"),
        (0x0001, "warning"),
        (0x0107, "warning"),  # attribute list error: a warning, unlike the other 01xx
        (0x0116, "warning"),  # attribute value out of range
        (0xB000, "warning"),
        (0xBFFF, "warning"),
        (0x0105, "failure"),
        (0x0110, "failure"),
        (0x0117, "failure"),
        (0x0211, "failure"),
        (0xA700, "failure"),
        (0xC000, "failure"),
        (0xFE00, "cancel"),
        (0xFF00, "pending"),
        (0xFF01, "pending"),
        (0xFF02, "failure"),
    ],
)
def test_status_classes_follow_ps3_7_annex_c(status: int, category: str) -> None:
    assert status_category(status) is StatusCategory(category)


VALID = raw_command(*store_rq_elements())


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(VALID[:-1], id="truncated value"),
        pytest.param(VALID[:5], id="truncated header"),
        pytest.param(VALID + b"\0\0\0", id="trailing garbage"),
        pytest.param(VALID + ELEMENT.pack(0, 0x2000, 100), id="overrunning length"),
        pytest.param(VALID + ELEMENT.pack(0, 0x2000, 0xFFFFFFFF), id="undefined length"),
        pytest.param(VALID + ELEMENT.pack(8, 0x0016, 0), id="wrong group"),
        pytest.param(b"", id="empty"),
        pytest.param(raw_command(*store_rq_elements(x0100=None)), id="no command field"),
        pytest.param(raw_command(*store_rq_elements(x0110=None)), id="no message id"),
        pytest.param(raw_command(*store_rq_elements(x0800=None)), id="no dataset type"),
        pytest.param(raw_command(*store_rq_elements(x0110=b"\x01")), id="short US"),
        pytest.param(raw_command(*store_rq_elements(x0100=b"\x01\0\0\0")), id="long US"),
        pytest.param(raw_command(*store_rq_elements(x1000=b"1.\xff\0")), id="non-ascii UID"),
        pytest.param(
            raw_command(*store_rq_elements(x0800=us(0x0101))), id="C-STORE without data set"
        ),
        pytest.param(
            raw_command(
                element(0x0100, us(C_ECHO_RQ)), element(0x0110, us(1)), element(0x0800, us(1))
            ),
            id="C-ECHO with data set",
        ),
        pytest.param(
            raw_command(
                element(0x0100, us(C_STORE_RSP)),
                element(0x0120, us(1)),
                element(0x0800, us(0x0101)),
            ),
            id="response without status",
        ),
        pytest.param(
            raw_command(
                element(0x0100, us(C_STORE_RSP)),
                element(0x0120, us(1)),
                element(0x0800, us(0x0101)),
                element(0x0900, us(0)),
                element(0x0901, b"\x10\x00\x10\x00\x20\x00"),
            ),
            id="AT not a multiple of 4",
        ),
        pytest.param(
            raw_command(
                element(0x0100, us(0x8020)), element(0x0110, us(1)), element(0x0800, us(0x0101))
            ),
            id="unknown response without responded-to id",
        ),
    ],
)
def test_malformed_command_sets_raise_remote_protocol_error(data):
    with pytest.raises(RemoteProtocolError) as info:
        decode_command(data)
    assert info.value.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_protocol_error(data):
    with contextlib.suppress(RemoteProtocolError):
        decode_command(data)


@given(st.sampled_from(COMMANDS), st.data())
def test_corrupted_command_sets_decode_or_raise_protocol_error(command, data):
    encoded = bytearray(encode_command(command))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] = data.draw(st.integers(0, 255))
    encoded = encoded[: data.draw(st.integers(0, len(encoded)))]
    with contextlib.suppress(RemoteProtocolError):
        decode_command(encoded)


uids = st.from_regex(r"\A[1-9][0-9]{0,8}(\.[0-9]{1,8}){0,6}\Z")
message_ids = st.integers(0, 0xFFFF)
ae_titles = st.text(string.ascii_uppercase + string.digits + "_", min_size=1, max_size=16)
comments = st.text(string.ascii_letters + " ", max_size=64).map(str.strip)

any_command = st.one_of(
    st.builds(CEchoRQ, message_ids, uids),
    st.builds(CEchoRSP, message_ids, message_ids, uids | st.just("")),
    st.builds(
        CStoreRQ,
        message_ids,
        uids,
        uids,
        st.sampled_from([0, 1, 2]),
        st.none() | ae_titles,
        st.none() | message_ids,
    ),
    st.builds(
        CStoreRSP,
        message_ids,
        message_ids,
        uids | st.just(""),
        uids | st.just(""),
        st.none() | comments,
        st.none() | st.lists(st.integers(0, 0xFFFFFFFF), max_size=4),
        st.none() | message_ids,
    ),
)


@given(any_command)
def test_round_trip_property(command):
    assert decode_command(encode_command(command)) == command


# --- fragmentation ----------------------------------------------------------

COMMAND = encode_command(CStoreRQ(1, CT_IMAGE, INSTANCE))


def test_command_only_fragments():
    fragments = list(iter_fragments(COMMAND, None, 40))
    assert [control for control, _ in fragments] == [1] * (len(fragments) - 1) + [3]
    assert [len(p) for _, p in fragments[:-1]] == [40] * (len(fragments) - 1)
    assert 0 < len(fragments[-1][1]) <= 40
    assert b"".join(fragments_payloads(fragments)) == COMMAND


def fragments_payloads(fragments):
    return [bytes(payload) for _, payload in fragments]


def test_exact_multiple_has_no_empty_trailing_fragment():
    dataset = bytes(range(90))
    fragments = list(iter_fragments(b"\0" * 8, dataset, 30))[1:]
    assert [(c, len(p)) for c, p in fragments] == [(0, 30), (0, 30), (2, 30)]


def test_whole_message_in_one_pdv_each():
    fragments = list(iter_fragments(COMMAND, b"abc", 1000))
    assert [(c, bytes(p)) for c, p in fragments] == [(3, COMMAND), (2, b"abc")]


@pytest.mark.parametrize("factory", [bytes, bytearray], ids=["bytes", "bytearray"])
def test_bytes_like_dataset_is_sliced_not_copied(factory):
    dataset = factory(range(256)) * 4
    fragments = list(iter_fragments(COMMAND, dataset, 100))
    data_fragments = [(c, p) for c, p in fragments if not c & 1]
    assert all(isinstance(p, memoryview) and p.obj is dataset for _, p in data_fragments)
    assert [c for c, _ in data_fragments] == [0] * 10 + [2]
    assert b"".join(fragments_payloads(data_fragments)) == dataset


def test_memoryview_dataset_is_sliced_not_copied():
    backing = bytes(500)
    fragments = list(iter_fragments(COMMAND, memoryview(backing)[100:], 64))
    assert all(p.obj is backing for c, p in fragments if not c & 1)


def test_chunked_dataset_fragments_follow_chunk_boundaries():
    chunks = [b"abcde", b"", b"fg", b"hijklmn", b""]
    fragments = [f for f in iter_fragments(b"\0" * 8, iter(chunks), 3) if not f[0] & 1]
    assert [(c, bytes(p)) for c, p in fragments] == [
        (0, b"abc"),
        (0, b"de"),
        (0, b"fg"),
        (0, b"hij"),
        (0, b"klm"),
        (2, b"n"),
    ]
    owners = [p.obj for _, p in fragments]
    assert owners[0] is chunks[0] and owners[2] is chunks[2] and owners[-1] is chunks[3]


@pytest.mark.parametrize("dataset", [b"", bytearray(), [], [b"", b""]], ids=repr)
def test_empty_dataset_is_one_empty_last_fragment(dataset):
    fragments = list(iter_fragments(b"\0" * 8, dataset, 16))
    assert [(c, bytes(p)) for c, p in fragments] == [(3, b"\0" * 8), (2, b"")]


def test_no_dataset_means_no_dataset_fragment():
    assert [c for c, _ in iter_fragments(b"\0" * 8, None, 4)] == [1, 3]


@pytest.mark.parametrize("budget", [0, -1])
def test_max_pdv_data_must_be_positive(budget):
    with pytest.raises(ValueError):
        iter_fragments(COMMAND, b"x", budget)


# --- reassembly -------------------------------------------------------------


class RecordingSink:
    def __init__(self, context_id, command):
        self.context_id = context_id
        self.command = command
        self.writes: list[bytes] = []
        self.finished = False
        self.aborted = False

    def write(self, data: memoryview) -> None:
        self.writes.append(bytes(data))

    def finish(self) -> object:
        self.finished = True
        return b"".join(self.writes)

    def abort(self) -> None:
        self.aborted = True


class Recorder:
    def __init__(self):
        self.sinks: list[RecordingSink] = []

    def __call__(self, context_id, command):
        self.sinks.append(RecordingSink(context_id, command))
        return self.sinks[-1]


def feed_fragments(assembler, context_id, fragments, rng=None):
    """Feed PDVs (optionally cut into chunks) through reused buffers; return the results."""
    results = []
    for control, payload in fragments:
        payload = bytes(payload)
        cuts = (
            sorted(rng.sample(range(1, len(payload)), min(3, len(payload) - 1)))
            if rng and len(payload) > 1
            else []
        )
        bounds = [0, *cuts, len(payload)]
        for start, stop in zip(bounds, bounds[1:], strict=False):
            receive_buffer = bytearray(payload[start:stop])
            results.append(
                assembler.feed(
                    context_id, control, memoryview(receive_buffer), stop == len(payload)
                )
            )
            receive_buffer[:] = b"\xee" * len(receive_buffer)  # the engine reuses its buffer
    return results


def test_echo_completes_on_last_command_fragment():
    assembler = MessageAssembler()
    results = feed_fragments(assembler, 1, iter_fragments(encode_command(CEchoRQ(5)), None, 7))
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] == DimseMessage(1, CEchoRQ(5), None)
    assert assembler.messages_received == 1


def test_default_sink_returns_the_bytearray():
    assembler = MessageAssembler()
    dataset = bytes(range(256)) * 10
    message = feed_fragments(assembler, 3, iter_fragments(COMMAND, dataset, 1000))[-1]
    assert type(message.dataset) is bytearray and message.dataset == dataset
    assert message.command == CStoreRQ(1, CT_IMAGE, INSTANCE)
    assert message.context_id == 3


def test_bytes_sink():
    sink = BytesSink()
    sink.write(memoryview(b"ab"))
    sink.write(memoryview(b"cd"))
    result = sink.finish()
    assert result == bytearray(b"abcd") and type(result) is bytearray
    sink.abort()


def test_custom_sink_sees_bytes_in_order_and_finish_value():
    recorder = Recorder()
    assembler = MessageAssembler(recorder)
    message = feed_fragments(assembler, 5, iter_fragments(COMMAND, [b"abc", b"defg"], 2))[-1]
    (sink,) = recorder.sinks
    assert sink.writes == [b"ab", b"c", b"de", b"fg"]
    assert (sink.context_id, sink.command) == (5, CStoreRQ(1, CT_IMAGE, INSTANCE))
    assert sink.finished and not sink.aborted
    assert message.dataset == b"abcdefg"


def test_sink_created_only_when_command_complete():
    recorder = Recorder()
    assembler = MessageAssembler(recorder)
    fragments = list(iter_fragments(COMMAND, b"xyz", 10))
    feed_fragments(assembler, 1, fragments[:-2])
    assert recorder.sinks == []
    feed_fragments(assembler, 1, fragments[-2:-1])
    assert len(recorder.sinks) == 1


def test_consecutive_messages_on_different_contexts():
    assembler = MessageAssembler()
    first = feed_fragments(assembler, 1, iter_fragments(encode_command(CEchoRQ(1)), None, 16))[-1]
    second = feed_fragments(assembler, 3, iter_fragments(COMMAND, b"data", 16))[-1]
    assert (first.context_id, first.command) == (1, CEchoRQ(1))
    assert (second.context_id, second.dataset) == (3, b"data")
    assert assembler.messages_received == 2


def test_reserved_control_bits_are_ignored():
    assembler = MessageAssembler()
    command = encode_command(CStoreRQ(2, CT_IMAGE, INSTANCE))
    assert assembler.feed(1, 0xFF, memoryview(command), True) is None
    assert assembler.feed(1, 0xF8, memoryview(b"ab"), True) is None
    message = assembler.feed(1, 0xFE, memoryview(b"cd"), True)
    assert message.dataset == b"abcd"


def test_last_bit_counts_only_on_the_pdv_end():
    assembler = MessageAssembler()
    command = encode_command(CEchoRQ(2))
    assert assembler.feed(1, 0x03, memoryview(command[:10]), False) is None
    assert assembler.feed(1, 0x03, memoryview(command[10:]), True) == DimseMessage(1, CEchoRQ(2))


def started_store(recorder):
    assembler = MessageAssembler(recorder)
    assembler.feed(1, 0x03, memoryview(COMMAND), True)
    assembler.feed(1, 0x00, memoryview(b"part"), True)
    return assembler


@pytest.mark.parametrize(
    ("context_id", "control"),
    [(1, 0x01), (1, 0x03), (3, 0x00), (3, 0x02)],
    ids=["command", "last command", "context change", "context change last"],
)
def test_protocol_errors_mid_dataset_abort_the_sink(context_id, control):
    recorder = Recorder()
    assembler = started_store(recorder)
    with pytest.raises(RemoteProtocolError) as info:
        assembler.feed(context_id, control, memoryview(COMMAND), True)
    assert info.value.reason == AbortReason.UNEXPECTED_PDU_PARAMETER
    assert recorder.sinks[0].aborted and not recorder.sinks[0].finished


def test_assembler_abort_aborts_open_sink_and_resets():
    recorder = Recorder()
    assembler = started_store(recorder)
    assembler.abort()
    assert recorder.sinks[0].aborted
    assembler.abort()  # nothing open: harmless
    message = feed_fragments(assembler, 7, iter_fragments(COMMAND, b"new", 100))[-1]
    assert message.dataset == b"new" and message.context_id == 7


def test_sink_write_failure_aborts_the_sink():
    class FullDisk(RecordingSink):
        def write(self, data):
            raise OSError("no space")

    sinks = []
    assembler = MessageAssembler(lambda c, cmd: sinks.append(FullDisk(c, cmd)) or sinks[-1])
    assembler.feed(1, 0x03, memoryview(COMMAND), True)
    with pytest.raises(OSError):
        assembler.feed(1, 0x02, memoryview(b"x"), True)
    assert sinks[0].aborted


def test_dataset_before_command_complete():
    assembler = MessageAssembler()
    assembler.feed(1, 0x01, memoryview(COMMAND[:20]), True)
    with pytest.raises(RemoteProtocolError) as info:
        assembler.feed(1, 0x00, memoryview(b"x"), True)
    assert info.value.reason == AbortReason.UNEXPECTED_PDU_PARAMETER


def test_dataset_for_command_without_dataset():
    assembler = MessageAssembler()
    assert assembler.feed(1, 0x03, memoryview(encode_command(CEchoRQ(1))), True) is not None
    with pytest.raises(RemoteProtocolError) as info:
        assembler.feed(1, 0x02, memoryview(b"x"), True)
    assert info.value.reason == AbortReason.UNEXPECTED_PDU_PARAMETER


def test_command_longer_than_limit():
    assembler = MessageAssembler(max_command_length=64)
    assembler.feed(1, 0x01, memoryview(bytes(60)), True)
    with pytest.raises(RemoteProtocolError) as info:
        assembler.feed(1, 0x01, memoryview(bytes(5)), False)
    assert info.value.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_malformed_command_raises_and_resets():
    assembler = MessageAssembler()
    with pytest.raises(RemoteProtocolError):
        assembler.feed(1, 0x03, memoryview(b"\x08\x00\x00\x00"), True)
    message = assembler.feed(2, 0x03, memoryview(encode_command(CEchoRQ(4))), True)
    assert message == DimseMessage(2, CEchoRQ(4))


store_or_echo = st.one_of(
    st.builds(CEchoRQ, message_ids),
    st.builds(CStoreRQ, message_ids, uids, uids, st.sampled_from([0, 1, 2]), st.none() | ae_titles),
)


@settings(max_examples=150, deadline=None)
@given(
    command=store_or_echo,
    dataset=st.binary(max_size=3000),
    chunked=st.booleans(),
    cut_points=st.lists(st.integers(0, 3000), max_size=8),
    max_pdv_data=st.integers(1, 700),
    context_id=st.integers(1, 255).filter(lambda n: n % 2),
    rng=st.randoms(use_true_random=False),
)
def test_fragment_then_reassemble_is_identity(
    command, dataset, chunked, cut_points, max_pdv_data, context_id, rng
):
    source = None
    if command.has_dataset:
        source = dataset
        if chunked:
            bounds = [0, *sorted(min(p, len(dataset)) for p in cut_points), len(dataset)]
            source = (dataset[a:b] for a, b in zip(bounds, bounds[1:], strict=False))
    fragments = iter_fragments(encode_command(command), source, max_pdv_data)
    assembler = MessageAssembler()
    results = feed_fragments(assembler, context_id, fragments, rng)
    assert all(result is None for result in results[:-1])
    expected = dataset if command.has_dataset else None
    assert results[-1] == DimseMessage(context_id, command, expected)
    assert assembler.messages_received == 1
