"""Where a worker's received bytes land: shared-memory slots the writers read from.

Each worker owns one shared-memory arena cut into fixed-size slots. Every
association reads from its socket straight into the free tail of a slot
(its :class:`Landing`), so a C-STORE's dataset bytes are *received* into
the memory the writer process will write the file from: the dataset is
never copied in user space. A dataset is a list of segments of the slot
(the PDV values between the PDU headers), written with one ``writev``.

Bytes that did not land in the association's slot (the first fragment of
a message that arrived in the read that completed the previous one, or
reads made while no slot was free) are copied once into it. A dataset that
outgrows its slot goes on in a spool file instead (:mod:`workers.spool`),
so a worker's memory stays bounded whatever the size of an instance.

Three jobs, three classes: the :class:`Arena` allocates and reference
counts slots (the landing, an unfinished dataset, and each store job in
flight hold one; a slot is reused once nothing holds it); the
:class:`Landing` picks where the next read goes; the :class:`StoreSink`
decides where each dataset's bytes go (left in place, copied into the
slot, or appended to its spool file).
"""

from __future__ import annotations

import ctypes
import os
import secrets
from multiprocessing import resource_tracker, shared_memory

from hsscp.storage import StorageBackend, StoreRequest
from workers.spool import SpoolFile

MIN_ROOM = 64 * 1024  # a slot with less free room than this is not read into

_c_char_at = ctypes.c_char.from_buffer
_address_of = ctypes.addressof


SHM_FOLDER = "/dev/shm"  # where Linux keeps POSIX shared memory by name


def arena_prefix(pid: int) -> str:
    return f"hsscp-{pid}-"


def remove_arenas_of(pid: int) -> int:
    """Unlink the arenas a dead worker could not unlink itself (killed); returns the count."""
    removed = 0
    try:
        names = os.listdir(SHM_FOLDER)
    except OSError:
        return 0
    for name in names:
        if name.startswith(arena_prefix(pid)):
            try:
                os.unlink(os.path.join(SHM_FOLDER, name))
                removed += 1
            except FileNotFoundError:
                pass
    return removed


class Arena:
    """Fixed-size, reference-counted slots in one shared-memory segment owned by this process."""

    def __init__(self, slot_size: int, slots: int) -> None:
        self.slot_size = slot_size
        self.size = slot_size * slots
        name = arena_prefix(os.getpid()) + secrets.token_hex(4)
        self.shm = shared_memory.SharedMemory(name=name, create=True, size=self.size)
        # Owned here: unlinked by close() on a clean exit, by the supervisor after a death.
        # Python's resource tracker would claim it too, and report it as leaked.
        resource_tracker.unregister(self.shm._name, "shared_memory")  # type: ignore[attr-defined]
        self.name = self.shm.name
        self._base = _address_of(_c_char_at(self.shm.buf))
        self._free = list(range(slots - 1, -1, -1))
        self.refs = [0] * slots

    def take(self) -> int | None:
        if not self._free:
            return None
        slot = self._free.pop()
        self.refs[slot] = 1
        return slot

    def retain(self, slot: int) -> None:
        self.refs[slot] += 1

    def release(self, slot: int) -> None:
        self.refs[slot] -= 1
        if self.refs[slot] == 0:
            self._free.append(slot)

    def view(self, slot: int) -> memoryview:
        start = slot * self.slot_size
        return self.shm.buf[start : start + self.slot_size]

    def locate(self, chunk: memoryview) -> tuple[int, int] | None:
        """(slot, offset) of bytes that lie in this arena, else None."""
        try:
            offset = _address_of(_c_char_at(chunk)) - self._base
        except TypeError:  # read-only memory: not ours
            return None
        if 0 <= offset < self.size:
            return divmod(offset, self.slot_size)
        return None

    def close(self) -> None:
        try:
            self.shm.close()
        except BufferError:
            pass  # a slot view is still referenced; unmapped at exit
        os.unlink(os.path.join(SHM_FOLDER, self.name))  # shm.unlink() would message the tracker


class Landing:
    """Where one association's next socket read goes: the free tail of an arena slot."""

    __slots__ = ("arena", "fallback", "slot", "view", "pos", "sink", "_in_slot")

    def __init__(self, arena: Arena, fallback: memoryview) -> None:
        self.arena = arena
        self.fallback = fallback  # used while every slot is taken
        self.slot: int | None = None
        self.view: memoryview | None = None
        self.pos = 0
        self.sink: StoreSink | None = None  # the dataset being received, if any
        self._in_slot = False

    def buffer(self) -> memoryview:
        if self.slot is None or self.arena.slot_size - self.pos < MIN_ROOM:
            self._move_on()
        self._in_slot = self.slot is not None
        return self.view[self.pos :] if self._in_slot else self.fallback

    def landed(self, nbytes: int) -> memoryview:
        """The bytes the last read put where ``buffer()`` said."""
        if not self._in_slot:
            return self.fallback[:nbytes]
        start = self.pos
        self.pos += nbytes
        return self.view[start : self.pos]

    def reserve(self, nbytes: int) -> int | None:
        """Room for ``nbytes`` copied in, past what was read; its offset, or None if full."""
        if self.slot is None or self.arena.slot_size - self.pos < nbytes:
            return None
        start = self.pos
        self.pos += nbytes
        return start

    def read_done(self) -> None:
        """After the bytes of a read are parsed: nothing may point into them any more."""
        sink = self.sink
        if sink is not None and sink.spool is not None:
            sink.flush()
        if self.slot is not None and self.arena.refs[self.slot] == 1:
            self.pos = 0  # nothing else lives in the slot: start it over

    def _move_on(self) -> None:
        """The slot is full (or there is none): make room, in place if nothing else holds it."""
        sink = self.sink
        carried = sink is not None and sink.slot is not None and sink.slot == self.slot
        if carried and sink.length > self.arena.slot_size // 2:
            sink.spill_or_fail()  # a big dataset: it goes on in its spool file
            carried = False
        if self.slot is not None:
            if not carried and self.arena.refs[self.slot] == 1:
                self.pos = 0
                return
            self._let_go()
        self.slot = self.arena.take()
        self.pos = 0
        if self.slot is None:
            if carried:
                sink.spill_or_fail()  # nowhere to carry it: the spool file it is
            return
        self.view = self.arena.view(self.slot)
        if carried:
            # A dataset that began late in the full slot: carried whole to the new one
            # (its only copy), so it stays in memory.
            self.pos = sink.move_to(self.slot, self.view)

    def _let_go(self) -> None:
        self.view.release()
        self.view = None
        self.arena.release(self.slot)
        self.slot = None

    def close(self) -> None:
        if self.sink is not None:
            self.sink.discard()
        if self.slot is not None:
            self._let_go()


class StoreSink:
    """A dimse.DatasetSink recording where its dataset landed, spilling to a spool file past a slot."""

    __slots__ = ("landing", "arena", "storage", "request", "slot", "segments", "length", "spool", "error")

    def __init__(self, landing: Landing, storage: StorageBackend, request: StoreRequest) -> None:
        self.landing = landing
        self.arena = landing.arena
        self.storage = storage
        self.request = request
        self.slot: int | None = None
        self.segments: list[list[int]] = []  # [offset in the slot, length]
        self.length = 0
        self.spool: SpoolFile | None = None
        # A failed spool write (disk full, ...) is answered with a failure status
        # when the message completes; the rest of the dataset is read and dropped.
        # Every failure discards, so a sink with an error holds no slot and no spool.
        self.error: OSError | None = None
        landing.sink = self

    @property
    def spool_path(self) -> str | None:
        """The spool file holding the dataset, if it spilled."""
        return None if self.spool is None else self.spool.path

    @property
    def head(self) -> bytes:
        """The first bytes of a spooled dataset, for the UID checks."""
        return b"" if self.spool is None else self.spool.head

    def write(self, data: memoryview) -> None:
        if self.error is not None or not data:
            return
        try:
            self._write(data)
        except OSError as exc:
            self._fail(exc)

    def _write(self, data: memoryview) -> None:
        n = len(data)
        self.length += n
        if self.spool is not None:
            self.spool.append(data)
            return
        landing = self.landing
        where = self.arena.locate(data)
        if where is not None and where[0] == landing.slot and self.slot in (None, where[0]):
            self._add(where[0], where[1], n)  # received in place: nothing to copy
            return
        if self.slot in (None, landing.slot):
            offset = landing.reserve(n)
            if offset is not None:
                landing.view[offset : offset + n] = data  # the one copy
                self._add(landing.slot, offset, n)
                return
        self.spill()
        self.spool.append(data)

    def _add(self, slot: int, offset: int, n: int) -> None:
        if self.slot is None:
            self.slot = slot
            self.arena.retain(slot)
        segments = self.segments
        if segments and segments[-1][0] + segments[-1][1] == offset:
            segments[-1][1] += n
        else:
            segments.append([offset, n])

    def move_to(self, slot: int, view: memoryview) -> int:
        """Copy the held bytes to the start of ``slot`` (whose ``view`` is given); their length."""
        size = 0
        for piece in self.views():
            view[size : size + len(piece)] = piece
            size += len(piece)
        self.arena.release(self.slot)
        self.slot = slot
        self.arena.retain(slot)
        self.segments = [[0, size]] if size else []
        return size

    def views(self) -> list[memoryview]:
        if self.slot is None:  # an empty data set
            return []
        slot = self.arena.view(self.slot)
        return [slot[offset : offset + n] for offset, n in self.segments]

    def spill(self) -> None:
        """Move what is held in the slot to a spool file; later bytes go straight there."""
        self.spool = SpoolFile(self.storage, self.request, self.views())
        self._let_go_of_slot()

    def spill_or_fail(self) -> None:
        """Spill between reads: a failure (disk full, read-only) is the dataset's, not the read's."""
        try:
            self.spill()
        except OSError as exc:
            self._fail(exc)

    def flush(self) -> None:
        """Write the fragments of this read to the spool file (before the read buffer is reused)."""
        try:
            self.spool.flush()
        except OSError as exc:
            self._fail(exc)

    def finish(self) -> StoreSink:
        if self.spool is not None:
            self.flush()
        if self.spool is not None:  # still there: the flush worked
            self.spool.close()
        self._detach()
        return self

    def abort(self) -> None:
        self.discard()

    def discard(self) -> None:
        """Forget the dataset: give back its slot, remove any spool file."""
        self._let_go_of_slot()
        if self.spool is not None:
            self.spool.remove()
            self.spool = None
        self._detach()

    def _fail(self, exc: OSError) -> None:
        # Kept without its traceback: the frames would pin views of the slot (and the arena).
        self.error = exc.with_traceback(None)
        self.discard()

    def _let_go_of_slot(self) -> None:
        if self.slot is not None:
            self.arena.release(self.slot)
            self.slot = None
            self.segments = []

    def _detach(self) -> None:
        if self.landing.sink is self:
            self.landing.sink = None
