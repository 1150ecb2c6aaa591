"""The bytes of a data set being stored, in memory or in a spool file, read in bounded pieces.

Two checks read a data set before it gets its final name: whether it is
structurally whole (:func:`hsscp.dataset_walk.find_defect` over the
segments in memory; over a spool file, :class:`~hsscp.dataset_walk.StructureWalk`
fed windows read with ``pread`` at the headers it asks for, values skipped
by seeking, so a 2 GB instance costs a few reads, not 2 GB of memory), and
whether an already stored instance holds the very same bytes (compared
piece by piece, sizes first). Both read it through :class:`DatasetBytes`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Protocol

from hsscp.dataset_walk import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    Defect,
    StructureWalk,
    encoding_of,
    find_defect,
)
from hsscp.part10 import Part10Error, read_file_meta

__all__ = ["DatasetBytes", "InMemory", "Spooled", "defect_of", "stored_dataset_equals"]

# What one read of a spool file or a stored file fetches; also the comparison's step.
READ_CHUNK = 256 * 1024
# A spooled data set is walked through windows this large: a header and its neighbours.
WALK_WINDOW = 64 * 1024


class DatasetBytes(Protocol):
    """A data set's bytes (after its meta group), however they are held."""

    length: int

    def structure_defect(self, transfer_syntax: str, start: int) -> Defect | None:
        """The first structural defect from ``start`` (a top-level element boundary), or None."""
        ...

    def chunks(self) -> Iterator[memoryview]:
        """The bytes in order, in pieces of at most READ_CHUNK (each valid until the next)."""
        ...


class InMemory:
    """A data set held in memory, in segments (one per PDV, as received)."""

    __slots__ = ("segments", "length")

    def __init__(self, segments: list[memoryview], length: int) -> None:
        self.segments = segments
        self.length = length

    def structure_defect(self, transfer_syntax: str, start: int = 0) -> Defect | None:
        return find_defect(self.segments, encoding_of(transfer_syntax), start)

    def chunks(self) -> Iterator[memoryview]:
        for segment in self.segments:
            for start in range(0, len(segment), READ_CHUNK):
                yield segment[start : start + READ_CHUNK]


class Spooled:
    """A data set in an open spool file, from ``start`` (past the meta group) to its end.

    ``head`` holds the first bytes of the data set already, so the walk of a
    small one needs no read at all.
    """

    __slots__ = ("fd", "start", "length", "head")

    def __init__(self, fd: int, start: int, length: int, head: memoryview) -> None:
        self.fd = fd
        self.start = start
        self.length = length
        self.head = head[:length]

    def structure_defect(self, transfer_syntax: str, start: int = 0) -> Defect | None:
        walk = StructureWalk(encoding_of(transfer_syntax), self.length, start)
        need = walk.walk(self.head)
        if need is None:  # decided from the head alone: no read
            return walk.defect
        window = memoryview(bytearray(WALK_WINDOW))
        while need is not None:
            size = self._read_into(window[: min(WALK_WINDOW, self.length - need)], need)
            need = walk.walk(window[:size], need)
        return walk.defect

    def chunks(self) -> Iterator[memoryview]:
        buffer = memoryview(bytearray(READ_CHUNK))
        for offset in range(0, self.length, READ_CHUNK):
            size = self._read_into(buffer[: min(READ_CHUNK, self.length - offset)], offset)
            yield buffer[:size]

    def _read_into(self, buffer: memoryview, offset: int) -> int:
        size = os.preadv(self.fd, [buffer], self.start + offset)
        if size < len(buffer) and offset + size < self.length:
            raise OSError(errno.EIO, "spool file shorter than its data set")
        return size


def defect_of(content: DatasetBytes, transfer_syntax: str, start: int = 0) -> Defect | None:
    """The structural defect of ``content`` past ``start``, or None; deflated data sets are not checked.

    Checking one would mean inflating all of it, at a cost the received size
    does not bound (a deflate stream inflates up to a thousandfold).
    """
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return None
    return content.structure_defect(transfer_syntax, start)


def stored_dataset_equals(path: str, transfer_syntax: str, content: DatasetBytes) -> bool:
    """Whether the Part 10 file at ``path`` holds ``content`` in ``transfer_syntax``.

    Only the data set and its transfer syntax count: the same bytes sent again
    by another AE (another Source AE Title in the meta group) are the same
    instance. The sizes are compared first; the bytes then piece by piece,
    stopping at the first difference. A missing or unreadable file is not equal.
    """
    try:
        stream = open(path, "rb", buffering=0)  # noqa: SIM115 -- closed below, fd reused by pread
    except FileNotFoundError:
        return False
    with stream:
        try:
            meta = read_file_meta(stream)
        except Part10Error:
            return False
        fd = stream.fileno()
        if os.fstat(fd).st_size - meta.dataset_offset != content.length:
            return False
        if meta.transfer_syntax != transfer_syntax:
            return False
        return _same_bytes(fd, meta.dataset_offset, content.chunks())


def _same_bytes(fd: int, offset: int, chunks: Iterator[memoryview]) -> bool:
    stored = bytearray()
    for chunk in chunks:
        if len(stored) != len(chunk):
            stored = bytearray(len(chunk))
        if os.preadv(fd, [stored], offset) != len(chunk):
            return False
        # bytearray == memoryview compares with memcmp (memoryview == bytes goes element by element).
        if stored != chunk:
            return False
        offset += len(chunk)
    return True
