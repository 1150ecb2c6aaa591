"""The global association limit of the multiprocess SCP, shared by every worker."""

from __future__ import annotations

import multiprocessing

from workers.file_lock import FileLock


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
        self._lock = FileLock(lock_path)
        self.slot = -1  # which counter this process owns; set in each worker

    def try_acquire(self) -> bool:
        with self._lock.held():
            if sum(self.counts) >= self.maximum:
                return False
            self.counts[self.slot] += 1
            return True

    def release(self) -> None:
        with self._lock.held():
            self.counts[self.slot] = max(0, self.counts[self.slot] - 1)

    def reclaim(self, slot: int) -> None:
        """Give back every association a dead worker held (supervisor only)."""
        with self._lock.held():
            self.counts[slot] = 0

    @property
    def active(self) -> int:
        return sum(self.counts)
