"""Variable items of A-ASSOCIATE PDUs and their user-information sub-items.

PS3.8 9.3.2-9.3.3 and PS3.7 annex D.3.3. Each item knows how to encode
itself to bytes and is decoded from a memoryview without copying the PDU.
Every length read from the wire is checked against the bytes it claims
before it is used, so a lying length raises :class:`RemoteProtocolError`
instead of reading past the item.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from hsscp.errors import AbortReason, RemoteProtocolError, invalid

ITEM_HEADER = struct.Struct(">BxH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U16_PAIR = struct.Struct(">HH")

# Item types (PS3.8 table 9-12 ff., PS3.7 D.3.3).
APPLICATION_CONTEXT = 0x10
PRESENTATION_CONTEXT_RQ = 0x20
PRESENTATION_CONTEXT_AC = 0x21
ABSTRACT_SYNTAX = 0x30
TRANSFER_SYNTAX = 0x40
USER_INFORMATION = 0x50
MAXIMUM_LENGTH = 0x51
IMPLEMENTATION_CLASS_UID = 0x52
ASYNC_OPERATIONS_WINDOW = 0x53
ROLE_SELECTION = 0x54
IMPLEMENTATION_VERSION_NAME = 0x55
SOP_CLASS_EXTENDED = 0x56
SOP_CLASS_COMMON_EXTENDED = 0x57
USER_IDENTITY_RQ = 0x58
USER_IDENTITY_AC = 0x59


def iter_items(data: memoryview, what: str):
    """Yield ``(item_type, value_view)`` for each item packed in ``data``."""
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < 4:
            raise invalid(f"truncated item header in {what}")
        item_type, length = ITEM_HEADER.unpack_from(data, offset)
        offset += 4
        if offset + length > end:
            raise invalid(f"item 0x{item_type:02X} in {what} overruns its container")
        yield item_type, data[offset : offset + length]
        offset += length


def pack_item(item_type: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"item 0x{item_type:02X} value of {len(value)} bytes exceeds 65535")
    return ITEM_HEADER.pack(item_type, len(value)) + value


# UIDs and names are ASCII by the standard; latin-1 decodes any byte and encodes
# back to the same byte, so what a peer sent always re-encodes exactly.
WIRE_TEXT = "latin-1"


def text(data: memoryview) -> str:
    """UIDs and names from the wire, without their NUL or space padding."""
    return bytes(data).decode(WIRE_TEXT).rstrip("\0 ")


def split_prefixed(data: memoryview, offset: int, what: str) -> tuple[memoryview, int]:
    """Read a 2-byte-length-prefixed field at ``offset``; return it and the next offset."""
    if offset + 2 > len(data):
        raise invalid(f"truncated length in {what}")
    (length,) = _U16.unpack_from(data, offset)
    offset += 2
    if offset + length > len(data):
        raise invalid(f"field length overruns {what}")
    return data[offset : offset + length], offset + length


def prefixed(value: bytes) -> bytes:
    return _U16.pack(len(value)) + value


# -- presentation contexts ---------------------------------------------------


@dataclass(slots=True)
class PresentationContextRQ:
    """A proposed presentation context (item 20H)."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: list[str] = field(default_factory=list)
    # Reserved, "not tested"; DCMTK sends 0xFF in the middle one. Kept so a
    # decoded PDU re-encodes byte for byte.
    reserved: bytes = b"\0\0\0"

    def encode(self) -> bytes:
        subs = [pack_item(ABSTRACT_SYNTAX, self.abstract_syntax.encode(WIRE_TEXT))]
        subs += [pack_item(TRANSFER_SYNTAX, ts.encode(WIRE_TEXT)) for ts in self.transfer_syntaxes]
        return pack_item(PRESENTATION_CONTEXT_RQ, bytes((self.context_id,)) + self.reserved + b"".join(subs))

    @classmethod
    def decode(cls, data: memoryview) -> PresentationContextRQ:
        if len(data) < 4:
            raise invalid("presentation context item shorter than 4 bytes")
        abstract = None
        transfer: list[str] = []
        for sub_type, value in iter_items(data[4:], "presentation context"):
            if sub_type == ABSTRACT_SYNTAX:
                abstract = text(value)
            elif sub_type == TRANSFER_SYNTAX:
                transfer.append(text(value))
            else:
                raise RemoteProtocolError(
                    f"unexpected sub-item 0x{sub_type:02X} in presentation context",
                    AbortReason.UNRECOGNIZED_PDU_PARAMETER,
                )
        if abstract is None or not transfer:
            raise invalid("presentation context lacks an abstract or transfer syntax")
        return cls(data[0], abstract, transfer, bytes(data[1:4]))


@dataclass(slots=True)
class PresentationContextAC:
    """The acceptor's answer for one context (item 21H).

    ``result``: 0 acceptance, 1 user-rejection, 2 no-reason, 3 abstract
    syntax not supported, 4 transfer syntaxes not supported.
    """

    context_id: int
    result: int
    transfer_syntax: str | None

    def encode(self) -> bytes:
        sub = b"" if self.transfer_syntax is None else pack_item(
            TRANSFER_SYNTAX, self.transfer_syntax.encode(WIRE_TEXT)
        )
        return pack_item(PRESENTATION_CONTEXT_AC, bytes((self.context_id, 0, self.result, 0)) + sub)

    @classmethod
    def decode(cls, data: memoryview) -> PresentationContextAC:
        if len(data) < 4:
            raise invalid("presentation context item shorter than 4 bytes")
        transfer = None
        for sub_type, value in iter_items(data[4:], "presentation context"):
            if sub_type == TRANSFER_SYNTAX:
                transfer = text(value)
        # A rejected context's transfer syntax "shall not be tested" (PS3.8 9.3.3.2).
        if transfer is None and data[2] == 0:
            raise invalid("accepted presentation context lacks a transfer syntax")
        return cls(data[0], data[2], transfer)


# -- user information sub-items ---------------------------------------------


@dataclass(slots=True)
class MaximumLength:
    """Maximum length of a P-DATA-TF PDU's variable field the sender can receive (0 = none)."""

    maximum_length: int

    def encode(self) -> bytes:
        return pack_item(MAXIMUM_LENGTH, _U32.pack(self.maximum_length))

    @classmethod
    def decode(cls, data: memoryview) -> MaximumLength:
        if len(data) != 4:
            raise invalid("maximum length sub-item is not 4 bytes")
        return cls(_U32.unpack_from(data)[0])


@dataclass(slots=True)
class ImplementationClassUID:
    uid: str

    def encode(self) -> bytes:
        return pack_item(IMPLEMENTATION_CLASS_UID, self.uid.encode(WIRE_TEXT))

    @classmethod
    def decode(cls, data: memoryview) -> ImplementationClassUID:
        return cls(text(data))


@dataclass(slots=True)
class ImplementationVersionName:
    name: str

    def encode(self) -> bytes:
        return pack_item(IMPLEMENTATION_VERSION_NAME, self.name.encode(WIRE_TEXT))

    @classmethod
    def decode(cls, data: memoryview) -> ImplementationVersionName:
        return cls(text(data))


@dataclass(slots=True)
class AsyncOperationsWindow:
    """Outstanding operations invoked/performed; 0 means unlimited."""

    max_invoked: int
    max_performed: int

    def encode(self) -> bytes:
        return pack_item(ASYNC_OPERATIONS_WINDOW, _U16_PAIR.pack(self.max_invoked, self.max_performed))

    @classmethod
    def decode(cls, data: memoryview) -> AsyncOperationsWindow:
        if len(data) != 4:
            raise invalid("asynchronous operations window sub-item is not 4 bytes")
        return cls(*_U16_PAIR.unpack_from(data))


@dataclass(slots=True)
class RoleSelection:
    sop_class_uid: str
    scu_role: int
    scp_role: int

    def encode(self) -> bytes:
        value = prefixed(self.sop_class_uid.encode(WIRE_TEXT)) + bytes((self.scu_role, self.scp_role))
        return pack_item(ROLE_SELECTION, value)

    @classmethod
    def decode(cls, data: memoryview) -> RoleSelection:
        uid, offset = split_prefixed(data, 0, "role selection")
        if len(data) - offset != 2:
            raise invalid("role selection sub-item has the wrong length")
        return cls(text(uid), data[offset], data[offset + 1])


@dataclass(slots=True)
class SOPClassExtendedNegotiation:
    sop_class_uid: str
    service_class_application_information: bytes

    def encode(self) -> bytes:
        value = prefixed(self.sop_class_uid.encode(WIRE_TEXT))
        return pack_item(SOP_CLASS_EXTENDED, value + self.service_class_application_information)

    @classmethod
    def decode(cls, data: memoryview) -> SOPClassExtendedNegotiation:
        uid, offset = split_prefixed(data, 0, "SOP class extended negotiation")
        return cls(text(uid), bytes(data[offset:]))


@dataclass(slots=True)
class SOPClassCommonExtendedNegotiation:
    sop_class_uid: str
    service_class_uid: str
    related_general_sop_class_uids: list[str] = field(default_factory=list)
    version: int = 0  # the sub-item version, carried where other items have a reserved byte

    def encode(self) -> bytes:
        related = b"".join(prefixed(uid.encode(WIRE_TEXT)) for uid in self.related_general_sop_class_uids)
        value = (
            prefixed(self.sop_class_uid.encode(WIRE_TEXT))
            + prefixed(self.service_class_uid.encode(WIRE_TEXT))
            + prefixed(related)
        )
        return struct.pack(">BBH", SOP_CLASS_COMMON_EXTENDED, self.version, len(value)) + value

    @classmethod
    def decode(cls, data: memoryview, version: int = 0) -> SOPClassCommonExtendedNegotiation:
        what = "SOP class common extended negotiation"
        sop_class, offset = split_prefixed(data, 0, what)
        service_class, offset = split_prefixed(data, offset, what)
        related_block, offset = split_prefixed(data, offset, what)
        related, inner = [], 0
        while inner < len(related_block):
            uid, inner = split_prefixed(related_block, inner, what)
            related.append(text(uid))
        return cls(text(sop_class), text(service_class), related, version)


@dataclass(slots=True)
class UserIdentityRQ:
    """User identity negotiation, request (PS3.7 D.3.3.7.1).

    ``identity_type``: 1 username, 2 username and passcode, 3 Kerberos,
    4 SAML, 5 JWT.
    """

    identity_type: int
    positive_response_requested: bool
    primary_field: bytes
    secondary_field: bytes = b""

    def encode(self) -> bytes:
        value = (
            bytes((self.identity_type, int(self.positive_response_requested)))
            + prefixed(self.primary_field)
            + prefixed(self.secondary_field)
        )
        return pack_item(USER_IDENTITY_RQ, value)

    @classmethod
    def decode(cls, data: memoryview) -> UserIdentityRQ:
        if len(data) < 2:
            raise invalid("user identity sub-item shorter than 2 bytes")
        primary, offset = split_prefixed(data, 2, "user identity")
        secondary, offset = split_prefixed(data, offset, "user identity")
        return cls(data[0], bool(data[1]), bytes(primary), bytes(secondary))

    def __repr__(self) -> str:  # never print a passcode into a log
        return (
            f"UserIdentityRQ(identity_type={self.identity_type}, "
            f"positive_response_requested={self.positive_response_requested}, "
            f"primary_field=<{len(self.primary_field)} bytes>, "
            f"secondary_field=<{len(self.secondary_field)} bytes>)"
        )


@dataclass(slots=True)
class UserIdentityAC:
    server_response: bytes

    def encode(self) -> bytes:
        return pack_item(USER_IDENTITY_AC, prefixed(self.server_response))

    @classmethod
    def decode(cls, data: memoryview) -> UserIdentityAC:
        response, offset = split_prefixed(data, 0, "user identity response")
        return cls(bytes(response))


@dataclass(slots=True)
class UnknownSubItem:
    """A sub-item this implementation does not know; kept so it round-trips, otherwise ignored."""

    item_type: int
    value: bytes

    def encode(self) -> bytes:
        return pack_item(self.item_type, self.value)


SUB_ITEM_DECODERS = {
    MAXIMUM_LENGTH: MaximumLength.decode,
    IMPLEMENTATION_CLASS_UID: ImplementationClassUID.decode,
    ASYNC_OPERATIONS_WINDOW: AsyncOperationsWindow.decode,
    ROLE_SELECTION: RoleSelection.decode,
    IMPLEMENTATION_VERSION_NAME: ImplementationVersionName.decode,
    SOP_CLASS_EXTENDED: SOPClassExtendedNegotiation.decode,
    USER_IDENTITY_RQ: UserIdentityRQ.decode,
    USER_IDENTITY_AC: UserIdentityAC.decode,
}

SubItem = (
    MaximumLength
    | ImplementationClassUID
    | ImplementationVersionName
    | AsyncOperationsWindow
    | RoleSelection
    | SOPClassExtendedNegotiation
    | SOPClassCommonExtendedNegotiation
    | UserIdentityRQ
    | UserIdentityAC
    | UnknownSubItem
)


@dataclass(slots=True)
class UserInformation:
    """The user information item (50H): its sub-items in the order they came."""

    sub_items: list[SubItem] = field(default_factory=list)

    def encode(self) -> bytes:
        return pack_item(USER_INFORMATION, b"".join(sub.encode() for sub in self.sub_items))

    @classmethod
    def decode(cls, data: memoryview) -> UserInformation:
        subs: list[SubItem] = []
        offset, end = 0, len(data)
        while offset < end:
            if end - offset < 4:
                raise invalid("truncated user information sub-item header")
            sub_type, version, length = struct.unpack_from(">BBH", data, offset)
            value = data[offset + 4 : offset + 4 + length]
            if len(value) != length:
                raise invalid(f"sub-item 0x{sub_type:02X} overruns the user information item")
            offset += 4 + length
            if sub_type == SOP_CLASS_COMMON_EXTENDED:
                subs.append(SOPClassCommonExtendedNegotiation.decode(value, version))
            elif sub_type in SUB_ITEM_DECODERS:
                subs.append(SUB_ITEM_DECODERS[sub_type](value))
            else:  # PS3.7 D.3.3: unknown sub-items are ignored, not refused
                subs.append(UnknownSubItem(sub_type, bytes(value)))
        return cls(subs)

    def first(self, kind: type) -> SubItem | None:
        return next((sub for sub in self.sub_items if isinstance(sub, kind)), None)

    def all(self, kind: type) -> list:
        return [sub for sub in self.sub_items if isinstance(sub, kind)]

    @property
    def maximum_length(self) -> int | None:
        sub = self.first(MaximumLength)
        return None if sub is None else sub.maximum_length

    @property
    def implementation_class_uid(self) -> str | None:
        sub = self.first(ImplementationClassUID)
        return None if sub is None else sub.uid

    @property
    def implementation_version_name(self) -> str | None:
        sub = self.first(ImplementationVersionName)
        return None if sub is None else sub.name

    @property
    def async_operations_window(self) -> AsyncOperationsWindow | None:
        return self.first(AsyncOperationsWindow)

    @property
    def role_selections(self) -> list[RoleSelection]:
        return self.all(RoleSelection)

    @property
    def user_identity(self) -> UserIdentityRQ | UserIdentityAC | None:
        return self.first(UserIdentityRQ) or self.first(UserIdentityAC)
