"""Making a batch of files durable together, and files with no name until they have their final one.

Group commit: ``--fsync file`` promises an fsync of each file, and where
an fsync has to wait for the disk the fsyncs of a batch are issued at
once, from threads: the file system commits them together (ext4 merges
concurrent syncs into one journal commit), so a batch costs about one
commit instead of one per file. On this project's VM disk a small file's
fsync costs ~0.8-1.1 ms one after another, ~0.42 ms each four at a time
and ~0.2 ms each sixteen at a time (``syncfs`` of the whole file system
did worse at every batch size, and would flush other programs' files
too). Where an fsync costs next to nothing (a tmpfs, a write cache), a
thread hand-off would cost more than the fsync: the batch is then synced
in line, one file after another. Which case holds is measured, not
configured: the quickest of the recent sync rounds decides (an average
would let one round in which a busy machine descheduled this process make
a tmpfs look like a disk).

``O_TMPFILE``: a file opened in a folder without a name, given its final
name with one ``linkat`` once it is whole. Nothing to name, rename or clean
up; a crash leaves nothing behind. Where the file system or kernel lacks it
(or ``/proc``, through which the file is linked), named temporary files
are used as before.
"""

from __future__ import annotations

import errno
import os
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

__all__ = ["CHEAP_FSYNC", "BatchSyncer", "fsync_cost", "fsync_waits", "has_tmpfile", "link_tmpfile",
           "make_durable", "open_tmpfile"]

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
# A sync round slower than this (seconds) waits for a disk: the next batches are synced concurrently.
CONCURRENT_FROM = 200e-6
RECENT_ROUNDS = 8  # sync rounds remembered: fsync waits for a disk when even the quickest of them did
MAX_SYNC_THREADS = 16  # files synced at once; a bigger batch queues on them
# An fsync this fast (seconds) can be done in an event loop: it stalls the loop's other
# associations less than a hop to a writer process costs (a tmpfs, a disk with power-loss protection).
CHEAP_FSYNC = 100e-6
_PROBE_SIZE = 4096


class BatchSyncer:
    """fsyncs batches of files: in line while fsync is cheap, concurrently while it waits for a disk."""

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=RECENT_ROUNDS)  # wall seconds of the last rounds
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0  # threads do not survive a fork: a child makes its own

    def sync(self, fds: Sequence[int]) -> None:
        """Make the files open as ``fds`` durable; raises the first OSError (the batch has then failed)."""
        if not fds:
            return
        started = time.perf_counter()
        if len(fds) > 1 and self.waits():
            for _ in self._threads().map(os.fsync, fds):
                pass
            cost = time.perf_counter() - started  # one round for the whole batch
        else:
            for fd in fds:
                os.fsync(fd)
            cost = (time.perf_counter() - started) / len(fds)  # a round per file
        self.recent.append(cost)

    def waits(self) -> bool:
        """Whether fsync waits for a disk here: even the quickest of the last rounds was slow.

        The least, not an average: a slow round on a busy machine may be this
        process waiting for a CPU, while a disk makes every round slow.
        """
        recent = self.recent
        return len(recent) == RECENT_ROUNDS and min(recent) >= CONCURRENT_FROM

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = ThreadPoolExecutor(MAX_SYNC_THREADS, thread_name_prefix="fsync")
            self._pool_pid = os.getpid()
        return self._pool


_syncer = BatchSyncer()


def fsync_waits() -> bool:
    """Whether the recent fsyncs of this process waited for a disk (worth syncing in other threads)."""
    return _syncer.waits()


def make_durable(fds: Sequence[int]) -> None:
    """Make the files open as ``fds`` durable: an fsync each, concurrent where the disk makes them slow."""
    _syncer.sync(fds)


def open_tmpfile(folder: str) -> int:
    """A new, nameless file in ``folder``, open for writing (raises OSError where unsupported)."""
    return os.open(folder, _O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o644)


_root_fd = -1


def link_tmpfile(fd: int, path: str) -> None:
    """Give the nameless file ``fd`` the name ``path`` (FileExistsError if it is taken)."""
    global _root_fd
    if _root_fd < 0:
        _root_fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    # A dir fd makes Python call linkat(AT_SYMLINK_FOLLOW); without one it calls link(), which
    # would link the /proc symlink itself (EXDEV). The source path is absolute: "/" is only the means.
    os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=_root_fd, follow_symlinks=True)


def has_tmpfile(folder: str) -> bool:
    """Whether nameless files can be made in ``folder`` and named afterwards (tried once, for real)."""
    if not _O_TMPFILE:
        return False
    try:
        fd = open_tmpfile(folder)
    except OSError:
        return False
    probe = os.path.join(folder, f".probe.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        link_tmpfile(fd, probe)
    except OSError as error:
        if error.errno not in (errno.ENOENT, errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EACCES):
            raise
        return False
    finally:
        os.close(fd)
    os.unlink(probe)
    return True


def fsync_cost(paths: Sequence[str]) -> float:
    """Seconds an fsync of a small new file takes: the median over files made (and removed) at ``paths``."""
    costs = []
    block = b"\0" * _PROBE_SIZE
    for path in paths:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, block)
            started = time.perf_counter()
            os.fsync(fd)
            costs.append(time.perf_counter() - started)
        finally:
            os.close(fd)
            os.unlink(path)
    return sorted(costs)[len(costs) // 2]
