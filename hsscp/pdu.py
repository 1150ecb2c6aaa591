"""The seven Upper Layer PDUs (PS3.8 9.3): decode over memoryview, encode to buffer lists.

``decode_pdu`` takes one complete PDU. A P-DATA-TF's PDVs come back as
memoryviews into the caller's buffer, never copies. ``encode()`` returns a
list of buffers for ``transport.writelines``: P-DATA payloads are passed
through as the views they were given, never joined with their headers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from hsscp.errors import AbortReason, RemoteProtocolError, invalid
from hsscp.items import (
    APPLICATION_CONTEXT,
    PRESENTATION_CONTEXT_AC,
    PRESENTATION_CONTEXT_RQ,
    USER_INFORMATION,
    WIRE_TEXT,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
    iter_items,
    pack_item,
    text,
)

PDU_HEADER = struct.Struct(">BxI")
PDV_HEADER = struct.Struct(">IBB")
# A P-DATA-TF carrying one PDV: PDU header and PDV header in one pack call.
PDATA_SINGLE_HEADER = struct.Struct(">BxIIBB")
_ASSOCIATE_FIXED = struct.Struct(">H2x16s16s32x")
_FOUR_BYTE_BODY = struct.Struct(">xxBB")
_REJECT_BODY = struct.Struct(">xBBB")

PDU_HEADER_LENGTH = 6
PDV_HEADER_LENGTH = 6
ASSOCIATE_FIXED_LENGTH = _ASSOCIATE_FIXED.size  # 68
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"


class PduType(IntEnum):
    A_ASSOCIATE_RQ = 0x01
    A_ASSOCIATE_AC = 0x02
    A_ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    A_RELEASE_RQ = 0x05
    A_RELEASE_RP = 0x06
    A_ABORT = 0x07


def ae_title_bytes(title: str) -> bytes:
    raw = title.encode(WIRE_TEXT)
    if len(raw) > 16:
        raise ValueError(f"AE title {title!r} is longer than 16 characters")
    return raw.ljust(16)


# -- association establishment ----------------------------------------------


@dataclass(slots=True)
class _Associate:
    """Fields shared by A-ASSOCIATE-RQ and -AC (the AC echoes the AE titles)."""

    called_ae_title: str = ""
    calling_ae_title: str = ""
    application_context: str = DICOM_APPLICATION_CONTEXT
    presentation_contexts: list = field(default_factory=list)
    user_information: UserInformation = field(default_factory=UserInformation)
    protocol_version: int = 1

    pdu_type = 0
    context_item = 0
    context_class = object

    def encode(self) -> list[bytes]:
        body = [
            _ASSOCIATE_FIXED.pack(
                self.protocol_version,
                ae_title_bytes(self.called_ae_title),
                ae_title_bytes(self.calling_ae_title),
            ),
            pack_item(APPLICATION_CONTEXT, self.application_context.encode(WIRE_TEXT)),
        ]
        body += [context.encode() for context in self.presentation_contexts]
        body.append(self.user_information.encode())
        payload = b"".join(body)
        return [PDU_HEADER.pack(self.pdu_type, len(payload)) + payload]

    @classmethod
    def decode_body(cls, body: memoryview):
        if len(body) < ASSOCIATE_FIXED_LENGTH:
            raise invalid(f"{cls.__name__} shorter than its {ASSOCIATE_FIXED_LENGTH} fixed bytes")
        version, called, calling = _ASSOCIATE_FIXED.unpack_from(body)
        pdu = cls(
            called_ae_title=called.decode(WIRE_TEXT).rstrip(" \0"),
            calling_ae_title=calling.decode(WIRE_TEXT).rstrip(" \0"),
            application_context="",
            protocol_version=version,
        )
        user_information = None
        for item_type, value in iter_items(body[ASSOCIATE_FIXED_LENGTH:], cls.__name__):
            if item_type == APPLICATION_CONTEXT:
                pdu.application_context = text(value)
            elif item_type == cls.context_item:
                pdu.presentation_contexts.append(cls.context_class.decode(value))
            elif item_type == USER_INFORMATION:
                user_information = UserInformation.decode(value)
            else:
                raise RemoteProtocolError(
                    f"unexpected item 0x{item_type:02X} in {cls.__name__}",
                    AbortReason.UNRECOGNIZED_PDU_PARAMETER,
                )
        if not pdu.application_context:
            raise invalid(f"{cls.__name__} has no application context item")
        if user_information is None:
            raise invalid(f"{cls.__name__} has no user information item")
        pdu.user_information = user_information
        return pdu


@dataclass(slots=True)
class AAssociateRQ(_Associate):
    presentation_contexts: list[PresentationContextRQ] = field(default_factory=list)

    pdu_type = PduType.A_ASSOCIATE_RQ
    context_item = PRESENTATION_CONTEXT_RQ
    context_class = PresentationContextRQ


@dataclass(slots=True)
class AAssociateAC(_Associate):
    presentation_contexts: list[PresentationContextAC] = field(default_factory=list)

    pdu_type = PduType.A_ASSOCIATE_AC
    context_item = PRESENTATION_CONTEXT_AC
    context_class = PresentationContextAC


class RejectResult(IntEnum):
    PERMANENT = 1
    TRANSIENT = 2


class RejectSource(IntEnum):
    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


@dataclass(slots=True)
class AAssociateRJ:
    result: int
    source: int
    reason: int

    pdu_type = PduType.A_ASSOCIATE_RJ

    def encode(self) -> list[bytes]:
        return [PDU_HEADER.pack(self.pdu_type, 4) + _REJECT_BODY.pack(self.result, self.source, self.reason)]

    @classmethod
    def decode_body(cls, body: memoryview) -> AAssociateRJ:
        return cls(*_REJECT_BODY.unpack_from(body))


# -- data transfer -----------------------------------------------------------


@dataclass(slots=True)
class PDV:
    """One presentation data value: ``control`` bit 0 = command, bit 1 = last fragment."""

    context_id: int
    control: int
    data: memoryview | bytes

    @property
    def is_command(self) -> bool:
        return bool(self.control & 0x01)

    @property
    def is_last(self) -> bool:
        return bool(self.control & 0x02)


@dataclass(slots=True)
class PDataTF:
    pdvs: list[PDV] = field(default_factory=list)

    pdu_type = PduType.P_DATA_TF

    def encode(self) -> list:
        length = sum(PDV_HEADER_LENGTH + len(pdv.data) for pdv in self.pdvs)
        buffers: list = [PDU_HEADER.pack(self.pdu_type, length)]
        for pdv in self.pdvs:
            buffers.append(PDV_HEADER.pack(len(pdv.data) + 2, pdv.context_id, pdv.control))
            buffers.append(pdv.data)
        return buffers

    @classmethod
    def decode_body(cls, body: memoryview) -> PDataTF:
        pdvs, offset, end = [], 0, len(body)
        if end == 0:
            raise invalid("P-DATA-TF without a presentation data value")
        while offset < end:
            if end - offset < PDV_HEADER_LENGTH:
                raise invalid("truncated PDV header")
            length, context_id, control = PDV_HEADER.unpack_from(body, offset)
            if length < 2 or offset + 4 + length > end:
                raise invalid(f"PDV length {length} does not fit its P-DATA-TF")
            pdvs.append(PDV(context_id, control, body[offset + PDV_HEADER_LENGTH : offset + 4 + length]))
            offset += 4 + length
        return cls(pdvs)


_P_DATA_TF = int(PduType.P_DATA_TF)  # an enum lookup per PDU shows on the send path
_pack_pdata_header = PDATA_SINGLE_HEADER.pack


def pdata_buffers(context_id: int, control: int, payload) -> list:
    """One P-DATA-TF carrying one PDV, as [header, payload]: the send hot path."""
    n = len(payload)
    return [_pack_pdata_header(_P_DATA_TF, n + 6, n + 2, context_id, control), payload]


# -- release and abort -------------------------------------------------------


@dataclass(slots=True)
class AReleaseRQ:
    pdu_type = PduType.A_RELEASE_RQ

    def encode(self) -> list[bytes]:
        return [PDU_HEADER.pack(self.pdu_type, 4) + bytes(4)]

    @classmethod
    def decode_body(cls, body: memoryview):
        return cls()


@dataclass(slots=True)
class AReleaseRP(AReleaseRQ):
    pdu_type = PduType.A_RELEASE_RP


@dataclass(slots=True)
class AAbort:
    """``source``: 0 service user, 2 service provider; ``reason`` matters for source 2 only."""

    source: int = 0
    reason: int = 0

    pdu_type = PduType.A_ABORT

    def encode(self) -> list[bytes]:
        return [PDU_HEADER.pack(self.pdu_type, 4) + _FOUR_BYTE_BODY.pack(self.source, self.reason)]

    @classmethod
    def decode_body(cls, body: memoryview) -> AAbort:
        return cls(*_FOUR_BYTE_BODY.unpack_from(body))


PDU = AAssociateRQ | AAssociateAC | AAssociateRJ | PDataTF | AReleaseRQ | AReleaseRP | AAbort

PDU_CLASSES = {
    PduType.A_ASSOCIATE_RQ: AAssociateRQ,
    PduType.A_ASSOCIATE_AC: AAssociateAC,
    PduType.A_ASSOCIATE_RJ: AAssociateRJ,
    PduType.P_DATA_TF: PDataTF,
    PduType.A_RELEASE_RQ: AReleaseRQ,
    PduType.A_RELEASE_RP: AReleaseRP,
    PduType.A_ABORT: AAbort,
}
FIXED_LENGTH_TYPES = frozenset({PduType.A_ASSOCIATE_RJ, PduType.A_RELEASE_RQ, PduType.A_RELEASE_RP, PduType.A_ABORT})


def check_header(pdu_type: int, length: int) -> None:
    """Refuse a PDU from its header alone, before any of its body is read."""
    if pdu_type not in PDU_CLASSES:
        raise RemoteProtocolError(f"unrecognized PDU type 0x{pdu_type:02X}", AbortReason.UNRECOGNIZED_PDU)
    if pdu_type in FIXED_LENGTH_TYPES and length != 4:
        raise invalid(f"{PduType(pdu_type).name} PDU length {length}, expected 4")


def decode_body(pdu_type: int, body: memoryview) -> PDU:
    """Decode a PDU's variable part; ``check_header`` has already passed."""
    try:
        return PDU_CLASSES[pdu_type].decode_body(body)
    except (struct.error, UnicodeError, ValueError) as exc:
        if isinstance(exc, RemoteProtocolError):
            raise
        raise invalid(f"malformed {PduType(pdu_type).name}: {exc}") from exc


def decode_pdu(data) -> PDU:
    """Decode exactly one complete PDU from a bytes-like object."""
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
    if len(view) < PDU_HEADER_LENGTH:
        raise invalid("truncated PDU header")
    pdu_type, length = PDU_HEADER.unpack_from(view)
    check_header(pdu_type, length)
    if len(view) != PDU_HEADER_LENGTH + length:
        raise invalid(f"PDU length field says {length}, {len(view) - PDU_HEADER_LENGTH} bytes given")
    return decode_body(pdu_type, view[PDU_HEADER_LENGTH:])


def encode_pdu(pdu: PDU) -> bytes:
    """All of a PDU as one bytes object: for tests and logs, not the send path."""
    return b"".join(pdu.encode())
