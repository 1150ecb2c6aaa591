"""Give a data set new Study/Series/SOP Instance UIDs without decoding it.

The top-level elements are walked (implicit VR little endian, explicit VR
little or big endian) only as far as (0020,000E); sequences and other
elements of undefined length are skipped item by item. A copy is then the
original bytes cut around the UID elements: each UID element gets a fresh
header and value (padded with NUL to even length), so its length is right
whatever the new UID's length, and the bytes in between are reused as
memoryview slices. A group length element (0008,0000)/(0020,0000), retired
but still found in old files, is rewritten to match.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import blake2b

SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
TARGETS = (SOP_INSTANCE_UID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID)
_LOCATED = (SOP_CLASS_UID, *TARGETS)
_GROUP_LENGTHS = (0x00080000, 0x00200000)
_LAST_TAG = SERIES_INSTANCE_UID  # elements come in tag order: nothing to find past it

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_TRANSFER_SYNTAXES = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1"})

MODES = ("instance", "series", "study")

_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})


class PatchError(ValueError):
    """The data set cannot have its UIDs replaced in place."""


class NeedMoreData(Exception):
    """The bytes given end before the walk could finish: read more and try again."""


@dataclass(frozen=True, slots=True)
class Encoding:
    implicit: bool
    little: bool

    @property
    def byte_order(self) -> str:
        return "<" if self.little else ">"


def encoding_of(transfer_syntax: str) -> Encoding:
    """How a data set in ``transfer_syntax`` is encoded (compressed ones are explicit VR LE)."""
    if transfer_syntax in DEFLATED_TRANSFER_SYNTAXES:
        raise PatchError(
            "deflated data sets cannot have their UIDs replaced without inflating them; "
            "send deflated files without --new-uids"
        )
    return Encoding(transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN, transfer_syntax != EXPLICIT_VR_BIG_ENDIAN)


@dataclass(frozen=True, slots=True)
class UidElement:
    tag: int
    start: int  # offset of the element's tag
    end: int  # offset just past its value
    value: str


@dataclass(frozen=True, slots=True)
class PatchPlan:
    """Where the UIDs of one data set are, within its first ``end`` bytes."""

    encoding: Encoding
    uids: dict[int, UidElement]
    group_length_offsets: dict[int, int]  # group -> offset of its 4-byte UL value
    end: int

    def original(self, tag: int) -> str:
        element = self.uids.get(tag)
        return element.value if element is not None else ""


class _Walker:
    """Skips elements of one encoding; raises NeedMoreData at the end of the buffer."""

    def __init__(self, buffer, encoding: Encoding) -> None:
        self.buffer = buffer
        self.encoding = encoding
        order = encoding.byte_order
        self.tag_length = struct.Struct(order + "HHI")
        self.tag_vr = struct.Struct(order + "HH2s")
        self.u16 = struct.Struct(order + "H")
        self.u32 = struct.Struct(order + "I")

    def need(self, end: int) -> None:
        if end > len(self.buffer):
            raise NeedMoreData

    def header(self, pos: int, implicit: bool) -> tuple[int, int, int]:
        """(tag, header length, value length) of the element at ``pos``."""
        self.need(pos + 8)
        group, element, length = self.tag_length.unpack_from(self.buffer, pos)
        tag = group << 16 | element
        if implicit or group == 0xFFFE:  # item and delimiter tags never carry a VR
            return tag, 8, length
        _, _, vr = self.tag_vr.unpack_from(self.buffer, pos)
        if vr in _LONG_VRS:
            self.need(pos + 12)
            return tag, 12, self.u32.unpack_from(self.buffer, pos + 8)[0]
        return tag, 8, self.u16.unpack_from(self.buffer, pos + 6)[0]

    def vr_is_un(self, pos: int, implicit: bool) -> bool:
        return not implicit and bytes(self.buffer[pos + 4 : pos + 6]) == b"UN"

    def skip_undefined(self, pos: int, implicit: bool) -> int:
        """Skip a sequence (or encapsulated pixel data) of undefined length; return the end."""
        while True:
            tag, header, length = self.header(pos, True)
            pos += header
            if tag == _SEQUENCE_END:
                return pos
            if tag != _ITEM:
                raise PatchError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) where an item was expected")
            pos = self.skip_item(pos, implicit) if length == _UNDEFINED else pos + length

    def skip_item(self, pos: int, implicit: bool) -> int:
        while True:
            tag, header, length = self.header(pos, implicit)
            if tag == _ITEM_END:
                return pos + header
            pos = self.skip_value(pos, header, length, implicit)

    def skip_value(self, pos: int, header: int, length: int, implicit: bool) -> int:
        if length != _UNDEFINED:
            return pos + header + length
        # A UN of undefined length holds an implicit VR little endian sequence (PS3.5 6.2.2).
        nested_implicit = implicit or self.vr_is_un(pos, implicit)
        return self.skip_undefined(pos + header, nested_implicit)


def plan(buffer, transfer_syntax: str, complete: bool = True) -> PatchPlan:
    """Locate the UID elements in the data set bytes ``buffer``; it must have a SOP Instance UID.

    With ``complete=False`` the buffer is only the start of the data set and
    NeedMoreData is raised if the walk runs past it.
    """
    return require_instance_uid(locate(buffer, transfer_syntax, complete))


def require_instance_uid(plan: PatchPlan) -> PatchPlan:
    if SOP_INSTANCE_UID not in plan.uids:
        raise PatchError("data set has no SOP Instance UID (0008,0018)")
    return plan


def locate(buffer, transfer_syntax: str, complete: bool = True) -> PatchPlan:
    """Where the SOP Class, SOP Instance, Study and Series UIDs are, those that are there."""
    encoding = encoding_of(transfer_syntax)
    walker = _Walker(buffer, encoding)
    uids: dict[int, UidElement] = {}
    group_lengths: dict[int, int] = {}
    pos = 0
    passed_last = False
    try:
        while pos < len(buffer):
            tag, header, length = walker.header(pos, encoding.implicit)
            if tag > _LAST_TAG:
                passed_last = True
                break
            if tag in _LOCATED or tag in _GROUP_LENGTHS:
                if length == _UNDEFINED:
                    raise PatchError(f"UID element ({tag >> 16:04X},{tag & 0xFFFF:04X}) has undefined length")
                walker.need(pos + header + length)
                value = bytes(buffer[pos + header : pos + header + length])
                if tag in _GROUP_LENGTHS:
                    group_lengths[tag >> 16] = pos + header
                else:
                    uids[tag] = UidElement(tag, pos, pos + header + length, value.rstrip(b"\0 ").decode("ascii", "replace"))
            pos = walker.skip_value(pos, header, length, encoding.implicit)
    except NeedMoreData:
        if complete:
            raise PatchError("data set ends in the middle of an element") from None
        raise
    except struct.error:
        raise PatchError("data set ends in the middle of an element") from None
    if not complete and not passed_last:
        raise NeedMoreData  # the UIDs wanted may still follow
    if pos > len(buffer):
        raise PatchError("data set ends in the middle of an element")
    return PatchPlan(encoding, uids, group_lengths, pos)


def _uid_element(tag: int, uid: str, encoding: Encoding) -> bytes:
    value = uid.encode("ascii")
    if len(value) & 1:
        value += b"\0"
    order = encoding.byte_order
    if encoding.implicit:
        return struct.pack(order + "HHI", tag >> 16, tag & 0xFFFF, len(value)) + value
    return struct.pack(order + "HH2sH", tag >> 16, tag & 0xFFFF, b"UI", len(value)) + value


def render(plan: PatchPlan, head: memoryview, new_uids: Mapping[int, str]) -> list:
    """The first ``plan.end`` bytes of the data set with ``new_uids`` (tag -> UID) in place.

    Returns chunks: slices of ``head`` and the few new bytes. Tags not in the
    data set are ignored.
    """
    replacements: list[tuple[int, int, bytes]] = []
    growth: dict[int, int] = {}
    for tag, uid in new_uids.items():
        element = plan.uids.get(tag)
        if element is None:
            continue
        encoded = _uid_element(tag, uid, plan.encoding)
        replacements.append((element.start, element.end, encoded))
        growth[tag >> 16] = growth.get(tag >> 16, 0) + len(encoded) - (element.end - element.start)
    u32 = struct.Struct(plan.encoding.byte_order + "I")
    for group, offset in plan.group_length_offsets.items():
        if growth.get(group):
            old = u32.unpack_from(head, offset)[0]
            replacements.append((offset, offset + 4, u32.pack(old + growth[group])))
    replacements.sort()
    chunks: list = []
    pos = 0
    for start, end, data in replacements:
        if start > pos:
            chunks.append(head[pos:start])
        chunks.append(data)
        pos = end
    if plan.end > pos:
        chunks.append(head[pos : plan.end])
    return chunks


class UidMaker:
    """New UIDs for the copies of one run: a function of (original UID, copy number).

    Deterministic within the run (every instance of series S in copy k gets
    the same new series UID) and different across runs (a random salt). The
    UIDs are UUID-derived (PS3.5 B.2), at most 44 characters.
    """

    def __init__(self, mode: str, salt: bytes | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"--new-uids must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self._salt = salt if salt is not None else uuid.uuid4().bytes

    def derive(self, original: str, copy: int) -> str:
        digest = blake2b(f"{original}/{copy}".encode(), digest_size=16, key=self._salt).digest()
        return f"2.25.{uuid.UUID(bytes=digest, version=4).int}"

    def new_uids(self, plan: PatchPlan, copy: int) -> dict[int, str]:
        tags = {"instance": (SOP_INSTANCE_UID,), "series": (SOP_INSTANCE_UID, SERIES_INSTANCE_UID)}.get(
            self.mode, TARGETS
        )
        return {tag: self.derive(plan.original(tag), copy) for tag in tags if tag in plan.uids}
