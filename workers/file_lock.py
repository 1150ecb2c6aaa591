"""An exclusive lock between forked processes that the kernel drops when its holder dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator


class FileLock:
    """An ``flock`` on a file that each process opens for itself after fork.

    A descriptor inherited across fork would share one lock among all the
    processes; a semaphore would stay taken for ever if its holder were
    killed while holding it. This is neither.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        open(path, "ab").close()
        self._fd: int | None = None
        self._pid = 0

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            self._pid = os.getpid()
        return self._fd

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fd = self._descriptor()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
