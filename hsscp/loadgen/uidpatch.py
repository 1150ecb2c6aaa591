"""Give a data set new Study/Series/SOP Instance UIDs without decoding it.

The top-level elements are walked (implicit VR little endian, explicit VR
little or big endian) only as far as (0020,000E), with the raw walker of
:mod:`hsscp.dataset_walk`; sequences and other elements of undefined length
are skipped item by item. A copy is then the
original bytes cut around the UID elements: each UID element gets a fresh
header and value (padded with NUL to even length), so its length is right
whatever the new UID's length, and the bytes in between are reused as
memoryview slices. A group length element (0008,0000)/(0020,0000), retired
but still found in old files, is rewritten to match.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import blake2b

# The load generator names transfer syntaxes by the patcher's constants: re-exported.
from hsscp.dataset_walk import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,  # noqa: F401
    IMPLICIT_VR_LITTLE_ENDIAN,  # noqa: F401
    UNDEFINED_LENGTH,
    Encoding,
    MalformedDataset,
    OutOfData,
    element_end,
    element_header,
    tag_name,
)
from hsscp.dataset_walk import encoding_of as _encoding_of
from hsscp.errors import HsscpError, InvalidInput

SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
TARGETS = (SOP_INSTANCE_UID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID)
_LOCATED = (SOP_CLASS_UID, *TARGETS)
_GROUP_LENGTHS = (0x00080000, 0x00200000)
_LAST_TAG = SERIES_INSTANCE_UID  # elements come in tag order: nothing to find past it

# Refused: the deflated data set syntax (PS3.5 A.5), and the deflated image frame one.
DEFLATED_TRANSFER_SYNTAXES = frozenset({DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.8.1"})

MODES = ("instance", "series", "study")


class PatchError(InvalidInput):
    """The data set cannot have its UIDs replaced in place."""


class NeedMoreData(HsscpError):
    """The bytes given end before the walk could finish: read more and try again."""


def encoding_of(transfer_syntax: str) -> Encoding:
    """How a data set in ``transfer_syntax`` is encoded (compressed ones are explicit VR LE)."""
    if transfer_syntax in DEFLATED_TRANSFER_SYNTAXES:
        raise PatchError(
            "deflated data sets cannot have their UIDs replaced without inflating them; "
            "send deflated files without --new-uids"
        )
    return _encoding_of(transfer_syntax)


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
    view = memoryview(buffer)
    try:
        uids, group_lengths, end, passed_last = _walk_to_last_uid(view, encoding)
    except OutOfData:
        if complete:
            raise PatchError("data set ends in the middle of an element") from None
        raise NeedMoreData from None
    except MalformedDataset as error:
        raise PatchError(str(error)) from None
    if not complete and not passed_last:
        raise NeedMoreData  # the UIDs wanted may still follow
    return PatchPlan(encoding, uids, group_lengths, end)


def _walk_to_last_uid(
    view: memoryview, encoding: Encoding
) -> tuple[dict[int, UidElement], dict[int, int], int, bool]:
    """UID elements, group length offsets, the offset the walk stopped at, whether past the last UID."""
    uids: dict[int, UidElement] = {}
    group_lengths: dict[int, int] = {}
    pos = 0
    while pos < len(view):
        tag, vr, length, start = element_header(view, pos, encoding)
        if tag > _LAST_TAG:
            return uids, group_lengths, pos, True
        wanted = tag in _LOCATED or tag in _GROUP_LENGTHS
        if wanted and length == UNDEFINED_LENGTH:
            raise PatchError(f"UID element {tag_name(tag)} has undefined length")
        end = element_end(view, pos, tag, vr, length, start, encoding)
        if tag in _GROUP_LENGTHS:
            group_lengths[tag >> 16] = start
        elif tag in _LOCATED:
            value = bytes(view[start:end]).rstrip(b"\0 ").decode("ascii", "replace")
            uids[tag] = UidElement(tag, pos, end, value)
        pos = end
    return uids, group_lengths, pos, False


def _uid_element(tag: int, uid: str, encoding: Encoding) -> bytes:
    value = uid.encode("ascii")
    if len(value) & 1:
        value += b"\0"
    if encoding.implicit:
        return encoding.header.pack(tag >> 16, tag & 0xFFFF, len(value)) + value
    return encoding.header.pack(tag >> 16, tag & 0xFFFF, b"UI", len(value)) + value


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
    u32 = plan.encoding.u32
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
