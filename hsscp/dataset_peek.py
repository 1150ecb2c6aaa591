"""Read a few top-level elements from the first bytes of a data set, without decoding it.

A writer checks a received data set's own UIDs (SOP Class, SOP Instance,
Study, Series) before the file gets its final name. They come early (groups
0008 and 0020), so the walk reads element headers only, skips every value it
does not want by its length, and stops at the first tag past the last one
asked for. The input is untrusted: every length is checked against the bytes
actually given before it is used, and anything malformed raises
:class:`PeekError`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = ["PeekError", "peek_elements"]

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"

UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_DELIMITER_GROUP = 0xFFFE

# Explicit VR header length by VR (PS3.5 7.1.2): 12 for VRs with a 32-bit length.
_LONG_VRS = b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split()
_SHORT_VRS = b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split()
_HEADER_LENGTH = dict.fromkeys(_LONG_VRS, 12) | dict.fromkeys(_SHORT_VRS, 8)
# Undefined length is legal for sequences, UN holding a sequence, and encapsulated pixel data.
_UNDEFINED_LENGTH_VRS = frozenset({b"SQ", b"UN", b"OB", b"OW"})
_TEXT_VRS = frozenset(b"AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT".split())

# Deflated data sets: inflate a small prefix first, grow it only if the tags lie further.
_INFLATE_FIRST = 16 * 1024
_INFLATE_LIMIT = 4 * 1024 * 1024
_INFLATE_INPUT_CHUNK = 16 * 1024


class PeekError(ValueError):
    """The data set is malformed, or the tags asked for are not in the bytes given."""


class _OutOfData(Exception):
    """The walk needs bytes past the end of the buffer (internal)."""

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class _Encoding:
    explicit: bool
    # explicit: group, element, VR, 16-bit length; implicit: group, element, 32-bit length
    header: struct.Struct
    tag: struct.Struct
    u32: struct.Struct


_EXPLICIT_LE = _Encoding(True, struct.Struct("<HH2sH"), struct.Struct("<HH"), struct.Struct("<I"))
_EXPLICIT_BE = _Encoding(True, struct.Struct(">HH2sH"), struct.Struct(">HH"), struct.Struct(">I"))
_IMPLICIT_LE = _Encoding(False, struct.Struct("<HHI"), struct.Struct("<HH"), struct.Struct("<I"))


def _tag_name(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def peek_elements(
    data: bytes | bytearray | memoryview,
    transfer_syntax: str,
    tags: frozenset[int],
    *,
    complete: bool = False,
) -> dict[int, str]:
    """Return the text values of the top-level elements ``tags`` found at the start of ``data``.

    ``data`` is a data set (or its first bytes) in ``transfer_syntax``; tags
    are ``group << 16 | element``. Values are decoded as Latin-1 with trailing
    NUL and space padding removed. A tag absent from the data set is absent
    from the result once the walk reaches a later tag. If the bytes run out
    first, PeekError says the tags were not found in the first N bytes,
    unless ``complete`` says ``data`` is the whole data set: then they are
    simply absent.
    """
    if not tags:
        return {}
    if max(tags) >= _ITEM:
        # Items and delimiters end the walk as tags past the last one asked for.
        raise ValueError("only data element tags below (FFFE,E000) can be peeked")
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return _peek_deflated(view, tags, complete)
    if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        encoding = _IMPLICIT_LE
    elif transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
        encoding = _EXPLICIT_BE
    else:  # Explicit VR LE, and every encapsulated syntax outside the pixel data
        encoding = _EXPLICIT_LE
    return _peek(view, encoding, tags, complete)


def _peek(
    view: memoryview, encoding: _Encoding, tags: frozenset[int], complete: bool
) -> dict[int, str]:
    found, short_at = _walk(view, encoding, tags)
    return _conclude(found, short_at, len(view), tags, complete, "bytes")


def _walk(
    view: memoryview, encoding: _Encoding, tags: frozenset[int]
) -> tuple[dict[int, str], int | None]:
    """Values found, and None if the walk was decided or the offset where the bytes ran out."""
    found: dict[int, str] = {}
    try:
        if encoding.explicit:
            short_at = _walk_explicit(view, encoding, tags, found)
        else:
            short_at = _walk_implicit(view, tags, found)
    except _OutOfData as short:
        short_at = short.offset
    return found, short_at


def _conclude(
    found: dict[int, str],
    short_at: int | None,
    size: int,
    tags: frozenset[int],
    complete: bool,
    unit: str,
) -> dict[int, str]:
    if short_at is None or (complete and short_at == size):
        return found
    if complete:
        raise PeekError(f"data set truncated: an element runs past its {size} {unit}")
    missing = " ".join(_tag_name(tag) for tag in sorted(tags - found.keys()))
    # The size first: cut to fit a 64-character error comment, only tags are lost.
    raise PeekError(f"not found in the first {size} {unit}: {missing}")


def _walk_explicit(
    view: memoryview, encoding: _Encoding, tags: frozenset[int], found: dict[int, str]
) -> int | None:
    """Fill ``found``; None once decided, or the offset where the bytes ran out.

    The hot loop, kept to a few operations per element: unpack_from raising
    struct.error is the bounds check for headers (a skipped value is checked
    by the next header's unpack), and the full tag is only computed in the
    groups that matter. Items and delimiters at the top level are past
    ``last``: they end the walk.
    """
    header = encoding.header.unpack_from
    u32 = encoding.u32.unpack_from
    header_lengths = _HEADER_LENGTH
    last = max(tags)
    last_group = last >> 16
    groups = frozenset(tag >> 16 for tag in tags)
    wanted = len(tags)
    size = len(view)
    pos = 0
    try:
        while True:
            group, element, vr, length = header(view, pos)
            if group >= last_group and (group << 16 | element) > last:
                return None
            try:
                header_length = header_lengths[vr]
            except KeyError:
                raise PeekError(
                    f"{_tag_name(group << 16 | element)} at offset {pos} has an unknown VR {vr!r}"
                ) from None
            if header_length == 12:
                (length,) = u32(view, pos + 8)
                if length == UNDEFINED_LENGTH:
                    pos = _skip_undefined(view, pos, group << 16 | element, vr, encoding)
                    continue
            pos += header_length + length
            if group in groups and (tag := group << 16 | element) in tags:
                if pos > size:
                    return pos
                if vr not in _TEXT_VRS:
                    raise PeekError(f"{_tag_name(tag)} has VR {vr.decode()}, not a text VR")
                found[tag] = _text(view, pos - length, pos)
                if len(found) == wanted:
                    return None
    except struct.error:
        return pos


def _walk_implicit(view: memoryview, tags: frozenset[int], found: dict[int, str]) -> int | None:
    """Fill ``found``; None once decided, or the offset where the bytes ran out (as above)."""
    header = _IMPLICIT_LE.header.unpack_from
    last = max(tags)
    last_group = last >> 16
    groups = frozenset(tag >> 16 for tag in tags)
    wanted = len(tags)
    size = len(view)
    pos = 0
    try:
        while True:
            group, element, length = header(view, pos)
            if group >= last_group and (group << 16 | element) > last:
                return None
            if length == UNDEFINED_LENGTH:  # implicit VR: only a sequence has undefined length
                pos = _skip_undefined(view, pos, group << 16 | element, b"", _IMPLICIT_LE)
                continue
            pos += 8 + length
            if group in groups and (tag := group << 16 | element) in tags:
                if pos > size:
                    return pos
                found[tag] = _text(view, pos - length, pos)
                if len(found) == wanted:
                    return None
    except struct.error:
        return pos


def _skip_undefined(view: memoryview, pos: int, tag: int, vr: bytes, encoding: _Encoding) -> int:
    """Offset past the top-level element of undefined length at ``pos``."""
    if vr and vr not in _UNDEFINED_LENGTH_VRS:
        raise PeekError(
            f"{_tag_name(tag)} at offset {pos}: VR {vr.decode()} cannot have undefined length"
        )
    # PS3.5 6.2.2: a UN of undefined length holds an implicit VR LE sequence.
    content = _IMPLICIT_LE if vr == b"UN" else encoding
    try:
        return _skip_sequence(view, pos + (12 if vr else 8), content)
    except _OutOfData:
        # Report the element's own offset: bytes ending inside it are never a clean end.
        raise _OutOfData(pos) from None


def _text(view: memoryview, start: int, stop: int) -> str:
    return str(view[start:stop], "latin-1").rstrip("\0 ")


def _element_header(view: memoryview, pos: int, encoding: _Encoding) -> tuple[int, bytes, int, int]:
    """Tag, VR (b"" if not known), length and value offset of the element at ``pos``."""
    size = len(view)
    if pos + 8 > size:
        raise _OutOfData(pos)
    group, element = encoding.tag.unpack_from(view, pos)
    tag = group << 16 | element
    if group == _DELIMITER_GROUP or not encoding.explicit:  # items and delimiters have no VR
        (length,) = encoding.u32.unpack_from(view, pos + 4)
        return tag, b"", length, pos + 8
    _group, _element, vr, length = encoding.header.unpack_from(view, pos)
    header_length = _HEADER_LENGTH.get(vr)
    if header_length is None:
        raise PeekError(f"{_tag_name(tag)} at offset {pos} has an unknown VR {vr!r}")
    if header_length == 12:
        if pos + 12 > size:
            raise _OutOfData(pos)
        (length,) = encoding.u32.unpack_from(view, pos + 8)
    return tag, vr, length, pos + header_length


def _skip_sequence(view: memoryview, pos: int, encoding: _Encoding) -> int:
    """Offset just past the sequence delimiter of an undefined-length value starting at ``pos``.

    Iterative, so hostile nesting cannot exhaust the stack. Each level is a
    sequence (holding items) or an item (holding elements), with the encoding
    of its content.
    """
    levels: list[tuple[bool, _Encoding]] = [(False, encoding)]
    while levels:
        in_item, encoding = levels[-1]
        tag, vr, length, start = _element_header(view, pos, encoding)
        if tag == (_ITEM_END if in_item else _SEQUENCE_END):
            levels.pop()
            pos = start
        elif in_item and tag >> 16 != _DELIMITER_GROUP:  # an element of the item
            if length != UNDEFINED_LENGTH:
                pos = _skip_value(view, pos, start, length)
                continue
            if vr and vr not in _UNDEFINED_LENGTH_VRS:
                raise PeekError(
                    f"{_tag_name(tag)} at offset {pos}: VR {vr.decode()} cannot have undefined length"
                )
            levels.append((False, _IMPLICIT_LE if vr == b"UN" else encoding))
            pos = start
        elif not in_item and tag == _ITEM:
            if length != UNDEFINED_LENGTH:
                pos = _skip_value(view, pos, start, length)
                continue
            levels.append((True, encoding))
            pos = start
        else:
            raise PeekError(f"unexpected {_tag_name(tag)} at offset {pos} in a sequence")
    return pos


def _skip_value(view: memoryview, pos: int, start: int, length: int) -> int:
    stop = start + length
    if stop > len(view):
        raise _OutOfData(pos)
    return stop


def _peek_deflated(view: memoryview, tags: frozenset[int], complete: bool) -> dict[int, str]:
    """Inflate a growing prefix (never more than _INFLATE_LIMIT) until the walk is decided."""
    inflater = _Inflater(view)
    target = _INFLATE_FIRST
    while True:
        inflated = inflater.inflate_to(target)
        # Released on exit, so the next round may grow the bytearray.
        with memoryview(inflated) as prefix:
            found, short_at = _walk(prefix, _EXPLICIT_LE, tags)
        if short_at is None or len(inflated) < target or target >= _INFLATE_LIMIT:
            whole = inflater.finished
            if complete and short_at is not None and not whole and len(inflated) < target:
                raise PeekError(f"deflate stream cut short after {len(inflated)} inflated bytes")
            return _conclude(found, short_at, len(inflated), tags, whole, "inflated bytes")
        target = min(target * 4, _INFLATE_LIMIT)


class _Inflater:
    """Inflates a raw deflate stream (PS3.5 A.5) incrementally, in bounded steps."""

    def __init__(self, view: memoryview) -> None:
        self._source = view
        self._consumed = 0
        self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
        self._output = bytearray()

    @property
    def finished(self) -> bool:
        return self._decompressor.eof

    def inflate_to(self, target: int) -> bytearray:
        """Inflate until ``target`` bytes are out or the stream or the input ends."""
        decompressor = self._decompressor
        output = self._output
        while len(output) < target and not decompressor.eof:
            # Feed the input in small slices: unconsumed_tail is a copy of what is left.
            chunk = decompressor.unconsumed_tail
            if not chunk:
                if self._consumed >= len(self._source):
                    break
                chunk = self._source[self._consumed : self._consumed + _INFLATE_INPUT_CHUNK]
                self._consumed += len(chunk)
            try:
                output += decompressor.decompress(chunk, target - len(output))
            except zlib.error as error:
                raise PeekError(f"cannot inflate: {error}") from None
        return output
