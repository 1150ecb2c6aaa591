"""DIMSE command sets for verification and storage (PS3.7 9.3, E.1): group 0000, Implicit VR LE.

:func:`encode_command` / :func:`decode_command` for C-ECHO and C-STORE; any
other command decodes to :class:`UnknownCommand`. Pure and pydicom-free;
:mod:`hsscp.dimse` re-exports everything here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from enum import IntEnum
from typing import ClassVar

import msgspec

from hsscp import dimse_aliases as alias
from hsscp.errors import invalid

__all__ = [
    "CEchoRQ",
    "CEchoRSP",
    "COMMAND_NAMES",
    "CStoreRQ",
    "CStoreRSP",
    "C_CANCEL_RQ",
    "C_ECHO_RQ",
    "C_ECHO_RSP",
    "C_STORE_RQ",
    "C_STORE_RSP",
    "Command",
    "DATASET_PRESENT",
    "NO_DATASET",
    "Priority",
    "SUCCESS",
    "UnknownCommand",
    "VERIFICATION_SOP_CLASS",
    "command_name",
    "decode_command",
    "encode_command",
]

# Command Field values (PS3.7 E.1); the names only serve logging.
COMMAND_NAMES: dict[int, str] = {
    0x0001: "C-STORE-RQ",
    0x8001: "C-STORE-RSP",
    0x0010: "C-GET-RQ",
    0x8010: "C-GET-RSP",
    0x0020: "C-FIND-RQ",
    0x8020: "C-FIND-RSP",
    0x0021: "C-MOVE-RQ",
    0x8021: "C-MOVE-RSP",
    0x0030: "C-ECHO-RQ",
    0x8030: "C-ECHO-RSP",
    0x0FFF: "C-CANCEL-RQ",
    0x0100: "N-EVENT-REPORT-RQ",
    0x8100: "N-EVENT-REPORT-RSP",
    0x0110: "N-GET-RQ",
    0x8110: "N-GET-RSP",
    0x0120: "N-SET-RQ",
    0x8120: "N-SET-RSP",
    0x0130: "N-ACTION-RQ",
    0x8130: "N-ACTION-RSP",
    0x0140: "N-CREATE-RQ",
    0x8140: "N-CREATE-RSP",
    0x0150: "N-DELETE-RQ",
    0x8150: "N-DELETE-RSP",
}
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
C_CANCEL_RQ = 0x0FFF

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
SUCCESS = 0x0000
NO_DATASET = 0x0101  # CommandDataSetType: any other value means a data set follows
DATASET_PRESENT = 0x0001


class Priority(IntEnum):
    """C-STORE-RQ / C-FIND-RQ Priority (0000,0700)."""

    MEDIUM = 0x0000
    HIGH = 0x0001
    LOW = 0x0002


def command_name(command_field: int) -> str:
    """Name of a Command Field for logs, hex for values PS3.7 does not define."""
    return COMMAND_NAMES.get(command_field, f"0x{command_field:04X}")


# Group 0000 element numbers; the group is always 0000 so the element is the tag.
_GROUP_LENGTH = 0x0000
_AFFECTED_SOP_CLASS_UID = 0x0002
_COMMAND_FIELD = 0x0100
_MESSAGE_ID = 0x0110
_MESSAGE_ID_BEING_RESPONDED_TO = 0x0120
_PRIORITY = 0x0700
_DATASET_TYPE = 0x0800
_STATUS = 0x0900
_OFFENDING_ELEMENT = 0x0901
_ERROR_COMMENT = 0x0902
_ERROR_ID = 0x0903
_AFFECTED_SOP_INSTANCE_UID = 0x1000
_MOVE_ORIGINATOR_AET = 0x1030
_MOVE_ORIGINATOR_MESSAGE_ID = 0x1031

_LO_MAX = 64

_ELEMENT = struct.Struct("<HHI")
_US_ELEMENT = struct.Struct("<HHIH")
_UL_ELEMENT = struct.Struct("<HHII")
_AT_VALUE = struct.Struct("<HH")


# --- encoding helpers -------------------------------------------------------


def _enc_us(tag: int, value: int) -> bytes:
    return _US_ELEMENT.pack(0, tag, 2, value)


def _enc_raw(tag: int, raw: bytes, pad: bytes) -> bytes:
    if len(raw) & 1:
        raw += pad
    return _ELEMENT.pack(0, tag, len(raw)) + raw


def _enc_uid(tag: int, uid: str) -> bytes:
    return _enc_raw(tag, uid.encode("ascii"), b"\0")


def _enc_text(tag: int, text: str) -> bytes:
    return _enc_raw(tag, text.encode("ascii", "replace"), b" ")


def _enc_tags(tag: int, tags: list[int]) -> bytes:
    return _enc_raw(tag, b"".join(_AT_VALUE.pack(t >> 16, t & 0xFFFF) for t in tags), b"")


# --- commands ---------------------------------------------------------------


class CEchoRQ(msgspec.Struct, frozen=True, gc=False):
    message_id: int
    affected_sop_class_uid: str = VERIFICATION_SOP_CLASS

    command_field: ClassVar[int] = C_ECHO_RQ
    has_dataset: ClassVar[bool] = False

    MessageID = alias.plain("message_id", alias.MESSAGE_ID)
    AffectedSOPClassUID = alias.uid("affected_sop_class_uid", alias.CLASS)

    def _encode_body(self) -> list[bytes]:
        parts = [_enc_uid(_AFFECTED_SOP_CLASS_UID, self.affected_sop_class_uid)]
        parts += (_enc_us(_COMMAND_FIELD, C_ECHO_RQ), _enc_us(_MESSAGE_ID, self.message_id))
        parts.append(_enc_us(_DATASET_TYPE, NO_DATASET))
        return parts


class CEchoRSP(msgspec.Struct, frozen=True, gc=False):
    message_id_being_responded_to: int
    status: int = SUCCESS
    affected_sop_class_uid: str = VERIFICATION_SOP_CLASS
    error_comment: str | None = None

    command_field: ClassVar[int] = C_ECHO_RSP
    has_dataset: ClassVar[bool] = False

    MessageIDBeingRespondedTo = alias.plain("message_id_being_responded_to", alias.RESPONDED_TO)
    Status = alias.plain("status", alias.STATUS)
    AffectedSOPClassUID = alias.uid("affected_sop_class_uid", alias.CLASS)

    def _encode_body(self) -> list[bytes]:
        parts = []
        if self.affected_sop_class_uid:
            parts.append(_enc_uid(_AFFECTED_SOP_CLASS_UID, self.affected_sop_class_uid))
        parts.append(_enc_us(_COMMAND_FIELD, C_ECHO_RSP))
        parts.append(_enc_us(_MESSAGE_ID_BEING_RESPONDED_TO, self.message_id_being_responded_to))
        parts.append(_enc_us(_DATASET_TYPE, NO_DATASET))
        parts.append(_enc_us(_STATUS, self.status))
        if self.error_comment is not None:
            parts.append(_enc_text(_ERROR_COMMENT, self.error_comment[:_LO_MAX]))
        return parts


class CStoreRQ(msgspec.Struct, frozen=True, gc=False):
    message_id: int
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    priority: int = Priority.MEDIUM
    move_originator_aet: str | None = None
    move_originator_message_id: int | None = None

    command_field: ClassVar[int] = C_STORE_RQ
    has_dataset: ClassVar[bool] = True

    MessageID = alias.plain("message_id", alias.MESSAGE_ID)
    AffectedSOPClassUID = alias.uid("affected_sop_class_uid", alias.CLASS)
    AffectedSOPInstanceUID = alias.uid("affected_sop_instance_uid", alias.INSTANCE)
    Priority = alias.plain("priority", "(0000,0700) Priority: 0 medium, 1 high, 2 low, as pynetdicom names it.")
    MoveOriginatorApplicationEntityTitle = alias.plain(
        "move_originator_aet", "(0000,1030) Move Originator AE Title (None if absent), as pynetdicom names it."
    )
    MoveOriginatorMessageID = alias.plain(
        "move_originator_message_id", "(0000,1031) Move Originator Message ID (None if absent), as pynetdicom names it."
    )

    def _encode_body(self) -> list[bytes]:
        parts = [
            _enc_uid(_AFFECTED_SOP_CLASS_UID, self.affected_sop_class_uid),
            _enc_us(_COMMAND_FIELD, C_STORE_RQ),
            _enc_us(_MESSAGE_ID, self.message_id),
            _enc_us(_PRIORITY, self.priority),
            _enc_us(_DATASET_TYPE, DATASET_PRESENT),
            _enc_uid(_AFFECTED_SOP_INSTANCE_UID, self.affected_sop_instance_uid),
        ]
        if self.move_originator_aet is not None:
            parts.append(_enc_text(_MOVE_ORIGINATOR_AET, self.move_originator_aet))
        if self.move_originator_message_id is not None:
            parts.append(_enc_us(_MOVE_ORIGINATOR_MESSAGE_ID, self.move_originator_message_id))
        return parts


class CStoreRSP(msgspec.Struct, frozen=True, gc=False):
    message_id_being_responded_to: int
    status: int = SUCCESS
    affected_sop_class_uid: str = ""
    affected_sop_instance_uid: str = ""
    error_comment: str | None = None
    offending_element: list[int] | None = None
    error_id: int | None = None

    command_field: ClassVar[int] = C_STORE_RSP
    has_dataset: ClassVar[bool] = False

    MessageIDBeingRespondedTo = alias.plain("message_id_being_responded_to", alias.RESPONDED_TO)
    Status = alias.plain("status", alias.STATUS)
    AffectedSOPClassUID = alias.uid("affected_sop_class_uid", alias.CLASS)
    AffectedSOPInstanceUID = alias.uid("affected_sop_instance_uid", alias.INSTANCE)
    ErrorComment = alias.plain("error_comment", alias.COMMENT)
    OffendingElement = alias.tags("offending_element", alias.OFFENDING)

    def _encode_body(self) -> list[bytes]:
        parts = []
        if self.affected_sop_class_uid:
            parts.append(_enc_uid(_AFFECTED_SOP_CLASS_UID, self.affected_sop_class_uid))
        parts.append(_enc_us(_COMMAND_FIELD, C_STORE_RSP))
        parts.append(_enc_us(_MESSAGE_ID_BEING_RESPONDED_TO, self.message_id_being_responded_to))
        parts.append(_enc_us(_DATASET_TYPE, NO_DATASET))
        parts.append(_enc_us(_STATUS, self.status))
        if self.offending_element is not None:
            parts.append(_enc_tags(_OFFENDING_ELEMENT, self.offending_element))
        if self.error_comment is not None:
            # LO holds at most 64 characters; strict peers reject longer values.
            parts.append(_enc_text(_ERROR_COMMENT, self.error_comment[:_LO_MAX]))
        if self.error_id is not None:
            parts.append(_enc_us(_ERROR_ID, self.error_id))
        if self.affected_sop_instance_uid:
            parts.append(_enc_uid(_AFFECTED_SOP_INSTANCE_UID, self.affected_sop_instance_uid))
        return parts


class UnknownCommand(msgspec.Struct, frozen=True, gc=False):
    """A command this module does not model; ``elements`` maps tag to raw value."""

    command_field: int
    message_id: int | None
    elements: dict[int, bytes]
    has_dataset: bool = False
    message_id_being_responded_to: int | None = None

    def _encode_body(self) -> list[bytes]:
        return [
            _ELEMENT.pack(0, tag, len(raw)) + raw
            for tag, raw in sorted(self.elements.items())
            if tag != _GROUP_LENGTH
        ]


Command = CEchoRQ | CEchoRSP | CStoreRQ | CStoreRSP | UnknownCommand


def encode_command(command: Command) -> bytes:
    """Encode ``command`` as an Implicit VR Little Endian group 0000 command set."""
    body = b"".join(command._encode_body())
    return _UL_ELEMENT.pack(0, _GROUP_LENGTH, 4, len(body)) + body


# --- decoding ---------------------------------------------------------------


def _parse_elements(data: bytes | bytearray | memoryview) -> dict[int, bytes]:
    buf = data if type(data) is bytes else bytes(data)
    unpack = _ELEMENT.unpack_from
    end = len(buf)
    pos = 0
    elements: dict[int, bytes] = {}
    while pos < end:
        if end - pos < 8:
            raise invalid(f"command set truncated inside an element header at byte {pos}")
        group, tag, length = unpack(buf, pos)
        if group != 0:
            raise invalid(f"command set holds element ({group:04X},{tag:04X}) outside group 0000")
        pos += 8
        stop = pos + length
        if stop > end:
            raise invalid(f"command element (0000,{tag:04X}) length {length} overruns the set")
        elements[tag] = buf[pos:stop]
        pos = stop
    return elements


def _us(raw: bytes, tag: int) -> int:
    if len(raw) != 2:
        raise invalid(f"command element (0000,{tag:04X}) is US but {len(raw)} bytes long")
    return int.from_bytes(raw, "little")


def _required_us(elements: dict[int, bytes], tag: int) -> int:
    raw = elements.get(tag)
    if raw is None:
        raise invalid(f"command set lacks required element (0000,{tag:04X})")
    return _us(raw, tag)


def _optional_us(elements: dict[int, bytes], tag: int) -> int | None:
    raw = elements.get(tag)
    return None if raw is None else _us(raw, tag)


def _uid(elements: dict[int, bytes], tag: int) -> str:
    raw = elements.get(tag)
    if raw is None:
        return ""
    try:
        return raw.rstrip(b"\0 ").decode("ascii")
    except UnicodeDecodeError:
        raise invalid(f"command element (0000,{tag:04X}) is not an ASCII UID") from None


def _text(elements: dict[int, bytes], tag: int) -> str | None:
    raw = elements.get(tag)
    # The command set has no character set: keep going on stray bytes.
    return None if raw is None else raw.decode("ascii", "replace").strip(" \0")


def _tags(elements: dict[int, bytes], tag: int) -> list[int] | None:
    raw = elements.get(tag)
    if raw is None:
        return None
    if len(raw) % 4:
        raise invalid(f"command element (0000,{tag:04X}) is AT but {len(raw)} bytes long")
    return [group << 16 | elem for group, elem in _AT_VALUE.iter_unpack(raw)]


def _decode_echo_rq(el: dict[int, bytes]) -> CEchoRQ:
    return CEchoRQ(_required_us(el, _MESSAGE_ID), _uid(el, _AFFECTED_SOP_CLASS_UID))


def _decode_echo_rsp(el: dict[int, bytes]) -> CEchoRSP:
    return CEchoRSP(
        _required_us(el, _MESSAGE_ID_BEING_RESPONDED_TO),
        _required_us(el, _STATUS),
        _uid(el, _AFFECTED_SOP_CLASS_UID),
        _text(el, _ERROR_COMMENT),
    )


def _decode_store_rq(el: dict[int, bytes]) -> CStoreRQ:
    return CStoreRQ(
        _required_us(el, _MESSAGE_ID),
        _uid(el, _AFFECTED_SOP_CLASS_UID),
        _uid(el, _AFFECTED_SOP_INSTANCE_UID),
        _optional_us(el, _PRIORITY) or 0,  # required, but harmless to default
        _text(el, _MOVE_ORIGINATOR_AET),
        _optional_us(el, _MOVE_ORIGINATOR_MESSAGE_ID),
    )


def _decode_store_rsp(el: dict[int, bytes]) -> CStoreRSP:
    return CStoreRSP(
        _required_us(el, _MESSAGE_ID_BEING_RESPONDED_TO),
        _required_us(el, _STATUS),
        _uid(el, _AFFECTED_SOP_CLASS_UID),
        _uid(el, _AFFECTED_SOP_INSTANCE_UID),
        _text(el, _ERROR_COMMENT),
        _tags(el, _OFFENDING_ELEMENT),
        _optional_us(el, _ERROR_ID),
    )


def _decode_unknown(field: int, el: dict[int, bytes], has_dataset: bool) -> UnknownCommand:
    # Responses and C-CANCEL-RQ carry the ID of the request they refer to.
    if field & 0x8000 or field == C_CANCEL_RQ:
        responded_to = _required_us(el, _MESSAGE_ID_BEING_RESPONDED_TO)
        return UnknownCommand(field, _optional_us(el, _MESSAGE_ID), el, has_dataset, responded_to)
    return UnknownCommand(field, _required_us(el, _MESSAGE_ID), el, has_dataset)


_DECODERS: dict[int, Callable[[dict[int, bytes]], Command]] = {
    C_STORE_RQ: _decode_store_rq,
    C_STORE_RSP: _decode_store_rsp,
    C_ECHO_RQ: _decode_echo_rq,
    C_ECHO_RSP: _decode_echo_rsp,
}


def decode_command(data: bytes | bytearray | memoryview) -> Command:
    """Decode an Implicit VR Little Endian command set received from a peer.

    The group length is not checked (peers differ); anything else malformed
    raises :class:`RemoteProtocolError`.
    """
    elements = _parse_elements(data)
    field = _required_us(elements, _COMMAND_FIELD)
    has_dataset = _required_us(elements, _DATASET_TYPE) != NO_DATASET
    decoder = _DECODERS.get(field)
    if decoder is None:
        return _decode_unknown(field, elements, has_dataset)
    command = decoder(elements)
    if command.has_dataset != has_dataset:
        raise invalid(
            f"{command_name(field)} with CommandDataSetType saying "
            f"{'a' if has_dataset else 'no'} data set follows"
        )
    return command
