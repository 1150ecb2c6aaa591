"""Walk the element headers of an encoded data set without decoding it (PS3.5 7.1, 7.5).

The one reader of raw data set structure: :mod:`hsscp.dataset_peek` uses it to
read a few top-level values of a received data set, the load generator's
:mod:`hsscp.loadgen.uidpatch` to find the UIDs it replaces in place, and the
storage to refuse a data set that is not whole (:class:`StructureWalk`,
:func:`find_defect`: an element running past the end, a sequence, item or
encapsulated pixel data never closed). The input is untrusted: every length is
checked against the bytes actually given before it is used, nesting is walked
without recursion (and without memory growing with its depth), and anything
malformed raises :class:`MalformedDataset` (or is a :class:`Defect`). Bytes
that run out mid-element raise :class:`OutOfData`, which callers turn into
"read more" or "truncated".
"""

from __future__ import annotations

import bisect
import itertools
import struct
from collections.abc import Sequence
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
    walk = StructureWalk(encoding, len(view))
    walk.enter(pos, tag, vr, 12 if vr else 8)
    walk.walk(view)
    if walk.defect is None:
        return walk.end
    if walk.defect.cut:
        # Report the element's own offset: bytes ending inside it are never a clean end.
        raise OutOfData(pos)
    raise MalformedDataset(walk.defect.message)


def _value_end(view: memoryview, pos: int, start: int, length: int) -> int:
    stop = start + length
    if stop > len(view):
        raise OutOfData(pos)
    return stop


# -- structure: is a data set whole? --------------------------------------------------------

# The longest element header (explicit VR, 32-bit length): all that may straddle two segments.
MAX_HEADER = 12
# Open levels whose tag and offset are kept for the message; deeper ones are only counted,
# so hostile nesting costs no memory.
RECORDED_LEVELS = 64


@dataclass(frozen=True, slots=True)
class Defect:
    """Why a data set is not whole. ``cut``: its bytes end too early; else they are malformed.

    The message names a tag and an offset in the data set (never wire text) and fits an
    error comment (64 characters).
    """

    offset: int
    message: str
    cut: bool

    def __str__(self) -> str:
        return self.message


class StructureWalk:
    """Checks that ``length`` bytes of a data set are structurally whole, fed as windows.

    Sans-IO and resumable: :meth:`walk` takes a window of the data set (its bytes from
    an offset at or before the next header needed) and answers the offset of the next
    header the window does not hold whole, or None once decided. Then ``defect`` says
    what is wrong, or is None and ``end`` is where the walk ended. Values are never
    read, only skipped by their length, so a caller may seek past them (a file) or go
    to the segment holding the offset (memory). Undefined-length sequences, their
    items and encapsulated pixel data are entered, without recursion, up to their
    delimiters; a defined-length value is whole once it fits in ``length``.
    """

    __slots__ = ("length", "defect", "end", "_top", "_encoding", "_pos", "_depth",
                 "_switched_at", "_opened", "_until_closed")

    def __init__(self, encoding: Encoding, length: int, start: int = 0) -> None:
        """Walk ``length`` bytes in ``encoding`` from ``start``, a top-level element boundary."""
        self.length = length
        self.defect: Defect | None = None
        self.end: int | None = None
        self._top = encoding  # the data set's encoding
        self._encoding = encoding  # the innermost level's: implicit VR LE inside a UN
        self._pos = start
        # Levels alternate: even depths (0 is the data set itself, then items) hold
        # elements; odd depths (sequences, encapsulated pixel data) hold items.
        self._depth = 0
        self._switched_at = 0  # the depth of the UN that made content implicit VR LE
        self._opened: list[tuple[int, int]] = []  # tag and offset of the outer open levels
        self._until_closed = False

    def enter(self, pos: int, tag: int, vr: bytes, header_length: int) -> None:
        """Start inside the undefined-length element at ``pos``; the walk ends past its delimiter."""
        self._until_closed = True
        opened = self._open(pos, tag, vr, header_length)
        if opened is not None:
            self._pos = opened

    def walk(self, window: memoryview, base: int = 0) -> int | None:
        """Walk the headers that lie whole in ``window``, the data set's bytes from offset ``base``.

        Returns the offset of the next header needed, or None once decided.
        """
        if self.defect is not None or self.end is not None:
            return None
        if self._pos < base:
            raise ValueError(f"the window starts at {base}, past the next header at {self._pos}")
        if base + len(window) > self.length:
            window = window[: self.length - base]
        at = self._pos - base  # offsets in the window from here on
        limit = self.length - base
        header_lengths = HEADER_LENGTH
        while True:  # once per sequence, item or delimiter: the level's encoding as locals
            encoding = self._encoding
            header = encoding.header.unpack_from
            u32 = encoding.u32.unpack_from
            try:
                if self._depth & 1:  # in a sequence: items and its delimiter, no VR
                    group, element = encoding.tag.unpack_from(window, at)
                    (value_length,) = u32(window, at + 4)
                    vr, header_length = b"", 8
                elif encoding.implicit:
                    while True:  # the hot loops: one element of defined length per turn
                        group, element, value_length = header(window, at)
                        if value_length == UNDEFINED_LENGTH or group == DELIMITER_GROUP:
                            break
                        at += 8 + value_length
                        if at > limit:
                            return self._overran(base + at - 8 - value_length, group << 16 | element)
                    vr, header_length = b"", 8
                else:
                    while True:
                        group, element, vr, value_length = header(window, at)
                        if group == DELIMITER_GROUP:  # items and delimiters have no VR
                            (value_length,) = u32(window, at + 4)
                            vr, header_length = b"", 8
                            break
                        header_length = header_lengths.get(vr, 0)
                        if header_length == 12:
                            (value_length,) = u32(window, at + 8)
                            if value_length == UNDEFINED_LENGTH:
                                break
                        elif not header_length:
                            message = str(unknown_vr(group << 16 | element, base + at, vr))
                            return self._fail(base + at, message, cut=False)
                        at += header_length + value_length
                        if at > limit:
                            start = base + at - header_length - value_length
                            return self._overran(start, group << 16 | element)
            except struct.error:  # struct's bounds check: the header is not whole in the window
                return self._ran_out(base + at, base + len(window))
            pos = self._structure(base + at, group << 16 | element, vr, value_length, header_length)
            if pos is None:
                return None
            at = pos - base

    def _structure(self, pos: int, tag: int, vr: bytes, value_length: int, header_length: int) -> int | None:
        """Past the sequence, item or delimiter at ``pos``: the next offset, or None once decided."""
        if self._depth & 1:  # in a sequence: items, then its delimiter
            if tag == ITEM:
                if value_length == UNDEFINED_LENGTH:
                    return self._open(pos, tag, vr, 8)
                end = pos + 8 + value_length
                return end if end <= self.length else self._overran(pos, tag)
            if tag == SEQUENCE_END:
                return self._close(pos + 8)
        elif tag >> 16 != DELIMITER_GROUP:  # an element of undefined length opens a sequence
            return self._open(pos, tag, vr, header_length)
        elif tag == ITEM_END and self._depth:
            return self._close(pos + 8)
        where = " in a sequence" if self._depth else ""
        return self._fail(pos, f"unexpected {tag_name(tag)} at offset {pos}{where}", cut=False)

    def _open(self, pos: int, tag: int, vr: bytes, header_length: int) -> int | None:
        if vr and vr not in UNDEFINED_LENGTH_VRS:
            message = f"{tag_name(tag)} at offset {pos}: VR {vr.decode()} cannot have undefined length"
            return self._fail(pos, message, cut=False)
        self._depth += 1
        if self._depth <= RECORDED_LEVELS:
            self._opened.append((tag, pos))
        if vr == b"UN":  # PS3.5 6.2.2: it holds an implicit VR LE sequence
            self._switched_at = self._depth
            self._encoding = IMPLICIT_LE
        return pos + header_length

    def _close(self, pos: int) -> int | None:
        if self._depth <= RECORDED_LEVELS:
            self._opened.pop()
        if self._depth == self._switched_at:
            self._switched_at = 0
            self._encoding = self._top
        self._depth -= 1
        if self._until_closed and not self._depth:
            self.end = pos
            return None
        return pos

    def _ran_out(self, pos: int, window_end: int) -> int | None:
        """The header at ``pos`` is not whole in the window: the end, a cut, or more bytes needed."""
        if pos >= self.length:
            if self._depth:
                tag, offset = self._opened[-1]
                if tag == ITEM:
                    return self._fail(offset, f"item at offset {offset}: no item delimiter", cut=True)
                message = f"{tag_name(tag)} at offset {offset}: no sequence delimiter"
                return self._fail(offset, message, cut=True)
            self.end = pos
            return None
        if window_end >= self.length:
            return self._fail(pos, f"element header at offset {pos} cut short", cut=True)
        self._pos = pos
        return pos

    def _overran(self, pos: int, tag: int) -> None:
        what = "item" if tag == ITEM else tag_name(tag)
        return self._fail(pos, f"{what} at offset {pos} runs past the end of the data", cut=True)

    def _fail(self, pos: int, message: str, cut: bool) -> None:
        self.defect = Defect(pos, message, cut)
        return None


def find_defect(segments: Sequence[memoryview], encoding: Encoding, start: int = 0) -> Defect | None:
    """The first structural defect of the data set held in ``segments`` (in order), or None.

    ``start``: the walk begins there, a top-level element boundary up to which
    the structure is known to be whole (:func:`hsscp.dataset_peek.peek_prefix`).

    Each segment is walked in place; only a header that straddles segments is
    copied (MAX_HEADER bytes at most). Segments a skipped value covers are
    passed over by bisection. Offsets count from the data set's start.
    """
    if len(segments) == 1:  # the common case: a data set received into one stretch of memory
        walk = StructureWalk(encoding, len(segments[0]), start)
        walk.walk(segments[0])
        return walk.defect
    ends = list(itertools.accumulate(map(len, segments)))
    length = ends[-1] if ends else 0
    walk = StructureWalk(encoding, length, start)
    need: int | None = start
    while need is not None:
        index = bisect.bisect_right(ends, need)  # the segment holding the header at need
        if index == len(ends):  # past the last byte: the walk decides
            walk.walk(memoryview(b""), length)
            break
        segment = segments[index]
        base = ends[index] - len(segment)
        need = walk.walk(segment, base)
        if need is not None and need < ends[index]:  # it straddles into the next segments
            need = walk.walk(_straddling(segments, index, need - base), need)
    return walk.defect


def _straddling(segments: Sequence[memoryview], index: int, offset: int) -> memoryview:
    """The MAX_HEADER bytes (or fewer, at the end) from ``offset`` in segment ``index`` on."""
    pieces = [segments[index][offset:]]
    size = len(pieces[0])
    for segment in segments[index + 1 :]:
        if size >= MAX_HEADER:
            break
        pieces.append(segment[: MAX_HEADER - size])
        size += len(pieces[-1])
    return memoryview(b"".join(pieces))
