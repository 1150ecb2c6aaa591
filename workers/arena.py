"""Where a worker puts received dataset bytes: shared-memory slots, or a spool file.

Each worker owns one shared-memory arena cut into fixed-size slots. A
C-STORE's dataset is copied once, from the receive buffer into a slot,
and the writer process writes the file straight from that slot. A dataset
that outgrows its slot (or finds none free) is streamed to a temporary
file in the output folder instead, meta group first, so a worker's memory
stays bounded whatever the size of an instance.
"""

from __future__ import annotations

import os
import secrets
from multiprocessing import shared_memory

from hsscp.storage import Storage, StoreRequest

SPOOL_HEAD = 64 * 1024  # what the UID checks need of a spooled dataset


class Arena:
    """Fixed-size slots in one shared-memory segment, owned by this process."""

    def __init__(self, slot_size: int, slots: int) -> None:
        self.slot_size = slot_size
        name = f"hsscp-{os.getpid()}-{secrets.token_hex(4)}"
        self.shm = shared_memory.SharedMemory(name=name, create=True, size=slot_size * slots)
        self.name = self.shm.name
        self._free = list(range(slots - 1, -1, -1))

    def take(self) -> int | None:
        return self._free.pop() if self._free else None

    def give(self, slot: int) -> None:
        self._free.append(slot)

    def view(self, slot: int) -> memoryview:
        start = slot * self.slot_size
        return self.shm.buf[start : start + self.slot_size]

    def close(self) -> None:
        try:
            self.shm.close()
        except BufferError:
            pass  # a slot view is still referenced; unmapped at exit
        self.shm.unlink()


class StoreSink:
    """A dimse.DatasetSink that fills an arena slot, spilling to a spool file past it."""

    __slots__ = ("arena", "storage", "request", "slot", "view", "length", "spool_path", "spool_fd", "head", "error")

    def __init__(self, arena: Arena, storage: Storage, request: StoreRequest) -> None:
        self.arena = arena
        self.storage = storage
        self.request = request
        self.slot = arena.take()
        self.view = None if self.slot is None else arena.view(self.slot)
        self.length = 0
        self.spool_path: str | None = None
        self.spool_fd: int | None = None
        self.head = b""
        # A failed spool write (disk full, ...) is answered with a failure status
        # when the message completes; the rest of the dataset is read and dropped.
        self.error: OSError | None = None

    def write(self, data: memoryview) -> None:
        if self.error is not None:
            return
        try:
            self._write(data)
        except OSError as exc:
            self.error = exc
            self.discard()

    def _write(self, data: memoryview) -> None:
        n = len(data)
        if self.spool_fd is None:
            if self.view is not None and self.length + n <= self.arena.slot_size:
                self.view[self.length : self.length + n] = data  # the one copy
                self.length += n
                return
            self._spill()
        if len(self.head) < SPOOL_HEAD:
            self.head += bytes(data[: SPOOL_HEAD - len(self.head)])
        _write_all(self.spool_fd, data)
        self.length += n

    def _spill(self) -> None:
        path = str(self.storage.temp_path(f"w{os.getpid()}"))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self.spool_path, self.spool_fd = path, fd
        _write_all(fd, self.storage.meta_for(self.request))
        if self.view is not None:
            held = self.view[: self.length]
            self.head = bytes(held[:SPOOL_HEAD])
            _write_all(fd, held)
            held.release()
            self._free_slot()

    def finish(self) -> StoreSink:
        if self.spool_fd is not None:
            os.close(self.spool_fd)
            self.spool_fd = None
        return self

    def abort(self) -> None:
        self.discard()

    def discard(self) -> None:
        """Forget the dataset: free the slot, remove any spool file."""
        self._free_slot()
        if self.spool_fd is not None:
            os.close(self.spool_fd)
            self.spool_fd = None
        if self.spool_path is not None:
            try:
                os.unlink(self.spool_path)
            except FileNotFoundError:
                pass  # the writer already renamed it into place
            self.spool_path = None

    def _free_slot(self) -> None:
        if self.view is not None:
            self.view.release()
            self.view = None
        if self.slot is not None:
            self.arena.give(self.slot)
            self.slot = None


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
