"""The data set bytes of each C-STORE: from the file or from memory, with new UIDs if asked.

A payload is a list (or, for a big file read as it is sent, an iterator)
of chunks the engine cuts into PDVs without joining them: whole files in
memory with ``--preload``, else read from the file at send time; with
``--new-uids`` the few bytes around the UIDs are new and the rest is
slices of the original.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from hsscp.errors import InvalidInput
from hsscp.loadgen import uidpatch
from hsscp.loadgen.files import Instance, Route, locate_uids, read_range

# Files up to this size are read in one call; bigger ones are streamed chunk by chunk,
# so a multi-GB instance never needs its size in memory.
WHOLE_READ_LIMIT = 4 * 1024 * 1024
READ_CHUNK = 1024 * 1024
JOIN_LIMIT = 32 * 1024


class PayloadError(InvalidInput):
    """A file cannot be sent as asked (e.g. its UIDs cannot be replaced)."""


class Payload(NamedTuple):
    sop_instance_uid: str
    chunks: Iterable  # a tuple or list when in memory, else an iterator reading the file
    nbytes: int


def file_chunks(path: str, offset: int, length: int, pad: bool = False, chunk: int = READ_CHUNK) -> Iterator[bytes]:
    """``length`` bytes of ``path`` from ``offset``, in new buffers of at most ``chunk`` bytes.

    ``pad`` adds a NUL to the last buffer (not as a buffer of its own: every
    chunk becomes a PDV, and an odd one would be refused).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        while length > 0:
            data = os.pread(fd, min(chunk, length), offset)
            if not data:
                raise OSError(f"{path} is shorter than when it was scanned")
            offset += len(data)
            length -= len(data)
            yield data + b"\0" if pad and length == 0 else data
    finally:
        os.close(fd)


def needs_pad(length: int, transfer_syntax: str) -> bool:
    """PS3.5 A.5: a deflated stream is padded to even length. Files without the pad
    exist, and DCMTK aborts on an odd fragment, so one NUL is added when sending."""
    return length % 2 == 1 and transfer_syntax in uidpatch.DEFLATED_TRANSFER_SYNTAXES


def read_dataset(instance: Instance) -> bytes:
    return read_range(instance.path, instance.dataset_offset, instance.dataset_length)


def convert(instance: Instance, transfer_syntax: str) -> bytes:
    """The data set re-encoded in another little endian syntax (pydicom; not the fast path)."""
    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    dataset = dcmread(instance.path)
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = transfer_syntax == uidpatch.IMPLICIT_VR_LITTLE_ENDIAN
    write_dataset(out, dataset)
    return out.getvalue()


@dataclass(slots=True)
class _Source:
    """One data set in one transfer syntax: in memory or in its file, and its UID plan."""

    instance: Instance
    transfer_syntax: str
    data: memoryview | None = None
    plan: uidpatch.PatchPlan | None = None
    head: memoryview | None = None  # the first plan.end bytes, when data stays in the file

    @property
    def length(self) -> int:
        return len(self.data) if self.data is not None else self.instance.dataset_length

    @property
    def padded(self) -> bool:
        """Whether reading the file needs the pad of :func:`needs_pad` (data in memory has it)."""
        return self.data is None and needs_pad(self.instance.dataset_length, self.transfer_syntax)

    def whole(self) -> Iterable:
        if self.data is not None:
            return (self.data,)
        i = self.instance
        if i.dataset_length <= WHOLE_READ_LIMIT:
            data = read_dataset(i)
            return (data + b"\0" if self.padded else data,)
        return file_chunks(i.path, i.dataset_offset, i.dataset_length, self.padded)

    def rest(self, start: int) -> Iterable:
        if self.data is not None:
            return (self.data[start:],)
        i = self.instance
        return file_chunks(i.path, i.dataset_offset + start, i.dataset_length - start)

    def make_plan(self) -> None:
        try:
            if self.data is not None:
                self.plan = uidpatch.plan(self.data, self.transfer_syntax)
                self.head = self.data
                return
            i = self.instance
            plan, head = locate_uids(i.path, i.dataset_offset, i.dataset_length, self.transfer_syntax)
            self.plan, self.head = uidpatch.require_instance_uid(plan), memoryview(head)[: plan.end]
        except uidpatch.PatchError as exc:
            raise PayloadError(f"{self.instance.path}: {exc}") from None


class Payloads:
    """Builds the payload of every (instance, copy) of a run."""

    def __init__(
        self,
        instances: Sequence[Instance],
        preload: bool = False,
        uid_maker: uidpatch.UidMaker | None = None,
    ) -> None:
        self.instances = instances
        self.uid_maker = uid_maker
        self.conversions = 0
        self._sources: dict[tuple[int, str], _Source] = {}
        self._preload = preload

    def prepare(self) -> None:
        """Read what must be read before sending: the preloaded bytes, every UID plan.

        Raises PayloadError naming the files whose UIDs cannot be replaced.
        """
        problems = []
        for index, instance in enumerate(self.instances):
            try:
                self._source(index, instance.transfer_syntax)
            except PayloadError as exc:
                problems.append(str(exc))
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise PayloadError("cannot give new UIDs to: " + "; ".join(problems[:5]) + more)

    def _source(self, index: int, transfer_syntax: str) -> _Source:
        source = self._sources.get((index, transfer_syntax))
        if source is None:
            instance = self.instances[index]
            source = _Source(instance, transfer_syntax)
            if transfer_syntax != instance.transfer_syntax:
                source.data = memoryview(convert(instance, transfer_syntax))
                self.conversions += 1
            elif self._preload:
                data = read_dataset(instance)
                source.data = memoryview(data + b"\0" if needs_pad(len(data), transfer_syntax) else data)
            if self.uid_maker is not None:
                source.make_plan()
            self._sources[(index, transfer_syntax)] = source
        return source

    def get(self, index: int, copy: int, route: Route) -> Payload:
        """The payload of copy ``copy`` of instance ``index``, in the route's transfer syntax."""
        source = self._source(index, route.transfer_syntax)
        if self.uid_maker is None:
            return Payload(self.instances[index].sop_instance_uid, source.whole(), source.length + source.padded)
        plan = source.plan
        new = self.uid_maker.new_uids(plan, copy)
        pieces = uidpatch.render(plan, source.head, new)
        rest = source.length - plan.end
        nbytes = sum(len(p) for p in pieces) + rest
        # Every chunk becomes at least one PDV: the patched start (a few hundred bytes
        # up to the Series UID) is joined into one, and a small data set into one whole.
        if rest and nbytes <= JOIN_LIMIT:
            pieces.extend(source.rest(plan.end))
            rest = 0
        chunks = [b"".join(pieces)]
        if rest:
            if source.data is not None:
                chunks.append(source.data[plan.end :])
            else:
                chunks = _chain(chunks, source.rest(plan.end))
        return Payload(new[uidpatch.SOP_INSTANCE_UID], chunks, nbytes)


def _chain(first: Iterable, rest: Iterable) -> Iterator:
    yield from first
    yield from rest
