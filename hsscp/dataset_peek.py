"""Read a few top-level elements from the first bytes of a data set, without decoding it.

A writer checks a received data set's own UIDs (SOP Class, SOP Instance,
Study, Series) before the file gets its final name. They come early (groups
0008 and 0020), so the walk reads element headers only, skips every value it
does not want by its length, and stops at the first tag past the last one
asked for (sequences are skipped by :mod:`hsscp.dataset_walk`). The input is
untrusted: every length is checked against the bytes actually given before it
is used, and anything malformed raises :class:`PeekError`.
"""

from __future__ import annotations

import functools
import struct
import zlib

from hsscp.dataset_walk import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_LE,
    HEADER_LENGTH,
    IMPLICIT_LE,
    ITEM,
    UNDEFINED_LENGTH,
    Encoding,
    MalformedDataset,
    OutOfData,
    encoding_of,
    skip_undefined,
    tag_name,
    unknown_vr,
)
from hsscp.errors import InvalidInput

__all__ = ["PeekError", "peek_elements", "peek_prefix"]

_TEXT_VRS = frozenset(b"AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT".split())

# Deflated data sets: inflate a small prefix first, grow it only if the tags lie further.
_INFLATE_FIRST = 16 * 1024
_INFLATE_LIMIT = 4 * 1024 * 1024
_INFLATE_INPUT_CHUNK = 16 * 1024


class PeekError(InvalidInput):
    """The data set is malformed, or the tags asked for are not in the bytes given."""


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
    return peek_prefix(data, transfer_syntax, tags, complete=complete)[0]


def peek_prefix(
    data: bytes | bytearray | memoryview,
    transfer_syntax: str,
    tags: frozenset[int],
    *,
    complete: bool = False,
) -> tuple[dict[int, str], int]:
    """As :func:`peek_elements`, and how far the walk went: a top-level element boundary.

    The structure up to that offset is whole (headers in the bytes, sequences
    closed), so a completeness check may start there. 0 for a deflated data set.
    """
    if not tags:
        return {}, 0
    if _bounds(tags)[0] >= ITEM:
        # Items and delimiters end the walk as tags past the last one asked for.
        raise ValueError("only data element tags below (FFFE,E000) can be peeked")
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return _peek_deflated(view, tags, complete), 0
    found, short_at, walked = _walk(view, encoding_of(transfer_syntax), tags)
    found = _conclude(found, short_at, len(view), tags, complete, "bytes")
    return found, walked if short_at is None else len(view)


def _walk(
    view: memoryview, encoding: Encoding, tags: frozenset[int]
) -> tuple[dict[int, str], int | None, int]:
    """Values found; None if the walk was decided or the offset where the bytes ran out; how far it went."""
    found: dict[int, str] = {}
    try:
        if encoding.implicit:
            short_at, walked = _walk_implicit(view, tags, found)
        else:
            short_at, walked = _walk_explicit(view, encoding, tags, found)
    except OutOfData as short:
        short_at, walked = short.offset, 0
    except MalformedDataset as error:
        raise PeekError(str(error)) from None
    return found, short_at, walked


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
    missing = " ".join(tag_name(tag) for tag in sorted(tags - found.keys()))
    # The size first: cut to fit a 64-character error comment, only tags are lost.
    raise PeekError(f"not found in the first {size} {unit}: {missing}")


_MORE = -1  # what _take answers while the walk goes on


def _walk_explicit(
    view: memoryview, encoding: Encoding, tags: frozenset[int], found: dict[int, str]
) -> tuple[int | None, int]:
    """Fill ``found``; None once decided (and the offset reached), or the offset where the bytes ran out.

    The hot loop, kept to a few operations per element: unpack_from raising
    struct.error is the bounds check for headers (a skipped value is checked
    by the next header's unpack), and the full tag is only computed in the
    groups that matter. Items and delimiters at the top level are past
    ``last``: they end the walk.
    """
    header = encoding.header.unpack_from
    u32 = encoding.u32.unpack_from
    header_lengths = HEADER_LENGTH
    last, last_group, groups = _bounds(tags)
    pos = 0
    try:
        while True:
            group, element, vr, length = header(view, pos)
            if group >= last_group and (group << 16 | element) > last:
                return None, pos
            try:
                header_length = header_lengths[vr]
            except KeyError:
                raise unknown_vr(group << 16 | element, pos, vr) from None
            if header_length == 12:
                (length,) = u32(view, pos + 8)
                if length == UNDEFINED_LENGTH:
                    pos = skip_undefined(view, pos, group << 16 | element, vr, encoding)
                    continue
            pos += header_length + length
            if (
                group in groups
                and (tag := group << 16 | element) in tags
                and (decided := _take(view, tag, vr, pos, length, tags, found)) != _MORE
            ):
                return decided, pos
    except struct.error:
        return pos, 0


def _walk_implicit(
    view: memoryview, tags: frozenset[int], found: dict[int, str]
) -> tuple[int | None, int]:
    """Fill ``found``; None once decided, or the offset where the bytes ran out (as above)."""
    header = IMPLICIT_LE.header.unpack_from
    last, last_group, groups = _bounds(tags)
    pos = 0
    try:
        while True:
            group, element, length = header(view, pos)
            if group >= last_group and (group << 16 | element) > last:
                return None, pos
            if length == UNDEFINED_LENGTH:  # implicit VR: only a sequence has undefined length
                pos = skip_undefined(view, pos, group << 16 | element, b"", IMPLICIT_LE)
                continue
            pos += 8 + length
            if (
                group in groups
                and (tag := group << 16 | element) in tags
                and (decided := _take(view, tag, b"", pos, length, tags, found)) != _MORE
            ):
                return decided, pos
    except struct.error:
        return pos, 0


@functools.lru_cache(maxsize=64)  # a few tag sets, asked for once per stored instance each
def _bounds(tags: frozenset[int]) -> tuple[int, int, frozenset[int]]:
    """The last tag asked for, its group, and the groups worth computing a full tag in."""
    last = max(tags)
    return last, last >> 16, frozenset(tag >> 16 for tag in tags)


def _take(
    view: memoryview,
    tag: int,
    vr: bytes,
    end: int,
    length: int,
    tags: frozenset[int],
    found: dict[int, str],
) -> int | None:
    """Record the value of a wanted element ending at ``end``; _MORE, or what the walk answers."""
    if end > len(view):
        return end
    # PS3.5 6.2.2: a known tag written as UN (some toolkits do) is read with its
    # dictionary VR; the tags peeked are text, whose value bytes UN carries unchanged.
    if vr and vr != b"UN" and vr not in _TEXT_VRS:
        raise PeekError(f"{tag_name(tag)} has VR {vr.decode()}, not a text VR")
    found[tag] = str(view[end - length : end], "latin-1").rstrip("\0 ")
    return None if len(found) == len(tags) else _MORE


def _peek_deflated(view: memoryview, tags: frozenset[int], complete: bool) -> dict[int, str]:
    """Inflate a growing prefix (never more than _INFLATE_LIMIT) until the walk is decided."""
    inflater = _Inflater(view)
    target = _INFLATE_FIRST
    while True:
        inflated = inflater.inflate_to(target)
        # Released on exit, so the next round may grow the bytearray.
        with memoryview(inflated) as prefix:
            found, short_at, _walked = _walk(prefix, EXPLICIT_LE, tags)
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
