"""The global association limit of the multiprocess SCP, shared by every worker."""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
from collections.abc import Iterator


class SharedLimiter:
    """A global association limit across forked worker processes.

    One counter per worker in shared memory; admission sums them under a
    lock. The lock is an ``flock`` on a file each process opens for itself
    after fork, so the kernel drops it if its holder is killed mid-admission
    (a semaphore would stay taken forever). The supervisor zeroes the counter
    of a worker that died, giving its slots back.
    """

    def __init__(self, workers: int, maximum: int, lock_path: str) -> None:
        self.maximum = maximum
        self.counts = multiprocessing.RawArray("i", workers)
        self._lock_path = lock_path
        open(lock_path, "ab").close()
        self._lock_fd: int | None = None
        self._lock_pid = 0
        self.slot = -1  # which counter this process owns; set in each worker

    def _fd(self) -> int:
        if self._lock_fd is None or self._lock_pid != os.getpid():
            # A descriptor inherited across fork would share one lock among all workers.
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CLOEXEC)
            self._lock_pid = os.getpid()
        return self._lock_fd

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = self._fd()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def try_acquire(self) -> bool:
        with self._locked():
            if sum(self.counts) >= self.maximum:
                return False
            self.counts[self.slot] += 1
            return True

    def release(self) -> None:
        with self._locked():
            self.counts[self.slot] = max(0, self.counts[self.slot] - 1)

    def reclaim(self, slot: int) -> None:
        """Give back every association a dead worker held (supervisor only)."""
        with self._locked():
            self.counts[slot] = 0

    @property
    def active(self) -> int:
        return sum(self.counts)
