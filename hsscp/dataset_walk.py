"""Walk the element headers of an encoded data set without decoding it (PS3.5 7.1, 7.5).

The one reader of raw data set structure: :mod:`hsscp.dataset_peek` uses it to
read a few top-level values of a received data set, the load generator's
:mod:`hsscp.loadgen.uidpatch` to find the UIDs it replaces in place. The input
is untrusted: every length is checked against the bytes actually given before
it is used, nesting is walked without recursion, and anything malformed raises
:class:`MalformedDataset`. Bytes that run out mid-element raise
:class:`OutOfData`, which callers turn into "read more" or "truncated".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from hsscp.errors import HsscpError, InvalidInput

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"

UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
DELIMITER_GROUP = 0xFFFE

# Explicit VR header length by VR (PS3.5 7.1.2): 12 for VRs with a 32-bit length.
LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split())
HEADER_LENGTH = dict.fromkeys(LONG_VRS, 12) | dict.fromkeys(SHORT_VRS, 8)
# Undefined length is legal for sequences, UN holding a sequence, and encapsulated pixel data.
UNDEFINED_LENGTH_VRS = frozenset({b"SQ", b"UN", b"OB", b"OW"})


class MalformedDataset(InvalidInput):
    """The bytes are not a data set: an unknown VR, a misplaced delimiter, an impossible length."""


class OutOfData(HsscpError):
    """The walk needs bytes past the end of the buffer; ``offset`` is the element it was reading."""

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Encoding:
    """How a data set's elements are encoded; equal when ``implicit`` and ``little`` are."""

    implicit: bool
    little: bool
    # explicit: group, element, VR, 16-bit length; implicit: group, element, 32-bit length
    header: struct.Struct = field(compare=False, repr=False)
    tag: struct.Struct = field(compare=False, repr=False)
    u32: struct.Struct = field(compare=False, repr=False)

    @property
    def byte_order(self) -> str:
        return "<" if self.little else ">"


def _encoding(implicit: bool, little: bool) -> Encoding:
    order = "<" if little else ">"
    header = struct.Struct(order + ("HHI" if implicit else "HH2sH"))
    return Encoding(
        implicit, little, header, struct.Struct(order + "HH"), struct.Struct(order + "I")
    )


IMPLICIT_LE = _encoding(implicit=True, little=True)
EXPLICIT_LE = _encoding(implicit=False, little=True)
EXPLICIT_BE = _encoding(implicit=False, little=False)


def encoding_of(transfer_syntax: str) -> Encoding:
    """The encoding of a data set in ``transfer_syntax`` as sent (a deflated one once inflated).

    Every syntax but the two implicit/big-endian ones is explicit VR little
    endian outside its pixel data.
    """
    if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return IMPLICIT_LE
    if transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
        return EXPLICIT_BE
    return EXPLICIT_LE


def tag_name(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def unknown_vr(tag: int, pos: int, vr: bytes) -> MalformedDataset:
    return MalformedDataset(f"{tag_name(tag)} at offset {pos} has an unknown VR {vr!r}")


def element_header(view: memoryview, pos: int, encoding: Encoding) -> tuple[int, bytes, int, int]:
    """Tag, VR (b"" if not known), length and value offset of the element at ``pos``."""
    size = len(view)
    if pos + 8 > size:
        raise OutOfData(pos)
    group, element = encoding.tag.unpack_from(view, pos)
    tag = group << 16 | element
    if group == DELIMITER_GROUP or encoding.implicit:  # items and delimiters have no VR
        (length,) = encoding.u32.unpack_from(view, pos + 4)
        return tag, b"", length, pos + 8
    _group, _element, vr, length = encoding.header.unpack_from(view, pos)
    header_length = HEADER_LENGTH.get(vr)
    if header_length is None:
        raise unknown_vr(tag, pos, vr)
    if header_length == 12:
        if pos + 12 > size:
            raise OutOfData(pos)
        (length,) = encoding.u32.unpack_from(view, pos + 8)
    return tag, vr, length, pos + header_length


def element_end(
    view: memoryview, pos: int, tag: int, vr: bytes, length: int, start: int, encoding: Encoding
) -> int:
    """Offset just past the element at ``pos`` whose header :func:`element_header` read."""
    if length == UNDEFINED_LENGTH:
        return skip_undefined(view, pos, tag, vr, encoding)
    return _value_end(view, pos, start, length)


def skip_undefined(view: memoryview, pos: int, tag: int, vr: bytes, encoding: Encoding) -> int:
    """Offset past the element of undefined length at ``pos`` (a sequence, or encapsulated pixel data)."""
    content = _content_encoding(tag, pos, vr, encoding)
    try:
        return _skip_sequence(view, pos + (12 if vr else 8), content)
    except OutOfData:
        # Report the element's own offset: bytes ending inside it are never a clean end.
        raise OutOfData(pos) from None


def _content_encoding(tag: int, pos: int, vr: bytes, encoding: Encoding) -> Encoding:
    """The encoding of what an element of undefined length holds; refuses VRs that cannot."""
    if vr and vr not in UNDEFINED_LENGTH_VRS:
        raise MalformedDataset(
            f"{tag_name(tag)} at offset {pos}: VR {vr.decode()} cannot have undefined length"
        )
    # PS3.5 6.2.2: a UN of undefined length holds an implicit VR LE sequence.
    return IMPLICIT_LE if vr == b"UN" else encoding


def _skip_sequence(view: memoryview, pos: int, encoding: Encoding) -> int:
    """Offset just past the sequence delimiter of an undefined-length value starting at ``pos``.

    Iterative, so hostile nesting cannot exhaust the stack. Each level is a
    sequence (holding items) or an item (holding elements), with the encoding
    of its content.
    """
    levels: list[tuple[bool, Encoding]] = [(False, encoding)]
    while levels:
        in_item, encoding = levels[-1]
        tag, vr, length, start = element_header(view, pos, encoding)
        if tag == (ITEM_END if in_item else SEQUENCE_END):
            levels.pop()
            pos = start
        elif (in_item and tag >> 16 != DELIMITER_GROUP) or (not in_item and tag == ITEM):
            if length != UNDEFINED_LENGTH:
                pos = _value_end(view, pos, start, length)
                continue
            # An element of undefined length opens a sequence; an item, its elements.
            content = encoding if tag == ITEM else _content_encoding(tag, pos, vr, encoding)
            levels.append((not in_item, content))
            pos = start
        else:
            raise MalformedDataset(f"unexpected {tag_name(tag)} at offset {pos} in a sequence")
    return pos


def _value_end(view: memoryview, pos: int, start: int, length: int) -> int:
    stop = start + length
    if stop > len(view):
        raise OutOfData(pos)
    return stop
