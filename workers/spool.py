"""A data set's spool file: what outgrew its arena slot, streamed to disk as it arrives.

The file is made under a unique temporary name in the storage's temporary
folder, its File Meta Information group first, so a writer process can
rename it into place as it is. Fragments point into the read buffer:
they are batched (one ``writev`` per read, at most ``MAX_PENDING`` at a
time) and must be flushed before that buffer is read into again. The
first ``SPOOL_HEAD`` bytes stay in memory for the writer's UID checks,
so it need not read the file back.

Every ``OSError`` (disk full, read-only folder) is raised to the caller,
which answers the store with a failure status; ``remove`` leaves nothing.
"""

from __future__ import annotations

import os

from hsscp.storage import StorageBackend, StoreRequest, write_all

SPOOL_HEAD = 64 * 1024  # what the UID checks need of a spooled data set
MAX_PENDING = 256  # spool writes batched at most this many fragments at a time


class SpoolFile:
    """One data set's temporary file, open for appending."""

    __slots__ = ("path", "fd", "pending", "head")

    def __init__(self, storage: StorageBackend, request: StoreRequest, held: list[memoryview]) -> None:
        """Create the file with the meta group and the bytes ``held`` so far."""
        self.path: str | None = str(storage.temp_path(f"w{os.getpid()}"))
        self.fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self.pending: list[memoryview] = []  # fragments of this read not yet in the file
        self.head = b""
        try:
            write_all(self.fd, [memoryview(storage.meta_for(request)), *held])
        except OSError:
            self.remove()
            raise
        for view in held:
            self._keep_head(view)

    def append(self, data: memoryview) -> None:
        """Queue ``data`` (valid until the read buffer is reused); writes a full batch at once."""
        self._keep_head(data)
        self.pending.append(data)
        if len(self.pending) >= MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        """Write the queued fragments, in order."""
        pending, self.pending = self.pending, []
        write_all(self.fd, pending)

    def close(self) -> None:
        """Done writing: the file stays for the writer to rename (or for ``remove``)."""
        self.pending = []
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def remove(self) -> None:
        """Close and delete the file, unless a writer has already renamed it into place."""
        self.close()
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None

    def _keep_head(self, data: memoryview) -> None:
        if len(self.head) < SPOOL_HEAD:
            self.head += bytes(data[: SPOOL_HEAD - len(self.head)])
