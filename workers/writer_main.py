"""Writer-pool process: store jobs in, Part 10 files and outcomes out.

Each writer listens on its own Unix socket; every association worker
connects to every writer. Jobs are done one at a time, in order of arrival
per connection: a writer is a disk pipeline, and M writers give M of them.
Dataset bytes are read from the worker's shared-memory arena and written
to the file from there, with no copy in between.

The writer beats its heartbeat at every turn of its loop (at least once a
select timeout) and before each job. A job is one blocking step (a writev
and an fsync of up to gigabytes) that cannot beat in its middle, so the beat
before it claims time in proportion to its size, as if the disk did no
better than :data:`MIN_WRITE_RATE`: a long job is not taken for a stuck
writer, and a writer stuck on a small one is still found within the
heartbeat timeout.
"""

from __future__ import annotations

import logging
import mmap
import os
import selectors
import signal
import socket

from hsscp.dimse import Status
from hsscp.storage import StorageBackend, StoreOutcome
from workers.arena import SHM_FOLDER
from workers.child import BOOT_FAILED, PARENT_DIED
from workers.heartbeat import Heartbeat
from workers.messages import FrameReader, JobDone, SpoolJob, StoreJob, frame

log = logging.getLogger("hsscp.writer")

PROCESSING_FAILURE = Status.PROCESSING_FAILURE
SELECT_TIMEOUT = 0.5  # the loop beats at least this often while idle
MIN_WRITE_RATE = 8 * 1024 * 1024  # bytes per second: the slowest disk a job is given time for


class ArenaCache:
    """Worker arenas this writer has mapped, read-only, by name.

    Mapped straight from /dev/shm rather than through ``SharedMemory``: the
    worker that created an arena owns it (it, or the supervisor after its
    death, unlinks it), so this process registers nothing with Python's
    resource tracker, which would otherwise claim it at exit.
    """

    def __init__(self) -> None:
        self._arenas: dict[str, mmap.mmap] = {}

    def views(self, name: str, segments: list[tuple[int, int]]) -> list[memoryview]:
        buffer = memoryview(self._attach(name))
        try:
            return [buffer[offset : offset + length] for offset, length in segments]
        finally:
            buffer.release()

    def _attach(self, name: str) -> mmap.mmap:
        arena = self._arenas.get(name)
        if arena is None:
            if not name.startswith("hsscp-") or "/" in name:
                raise ValueError(f"{name!r} is not an arena name")
            fd = os.open(os.path.join(SHM_FOLDER, name), os.O_RDONLY | os.O_CLOEXEC)
            try:
                arena = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
            self._arenas[name] = arena
        return arena

    def drop(self, name: str) -> None:
        """Unmap one arena: its worker is gone, and with it the last use of that memory."""
        arena = self._arenas.pop(name, None)
        if arena is not None:
            try:
                arena.close()
            except BufferError:
                pass  # a view is still alive; the OS unmaps at exit

    def close(self) -> None:
        for name in list(self._arenas):
            self.drop(name)


class _Connection:
    """One worker's link: its unread bytes, and the arenas its jobs named."""

    __slots__ = ("reader", "arenas")

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.arenas: set[str] = set()


def time_allowed(job: StoreJob | SpoolJob) -> float:
    """Seconds a job may take past the heartbeat timeout, by its size."""
    if isinstance(job, StoreJob):
        return sum(length for _, length in job.segments) / MIN_WRITE_RATE
    return job.length / MIN_WRITE_RATE


class Writer:
    """The job loop of one writer process."""

    def __init__(self, socket_path: str, storage: StorageBackend, heartbeat: Heartbeat) -> None:
        self.socket_path = socket_path
        self.storage = storage
        self.heartbeat = heartbeat
        self.arenas = ArenaCache()
        self.stopping = False
        self._selector = selectors.DefaultSelector()

    def handle(self, job: StoreJob | SpoolJob) -> JobDone:
        try:
            if isinstance(job, StoreJob):
                views = self.arenas.views(job.arena, job.segments)
                try:
                    outcome = self.storage.store_segments(job.request, views)
                finally:
                    for view in views:
                        view.release()
            else:
                outcome = self.storage.store_spooled(job.request, job.spool_path, memoryview(job.head))
        except Exception as exc:  # a bug must not become a false Success, nor kill the pool
            log.exception("store job %d failed", job.job_id)
            outcome = StoreOutcome(PROCESSING_FAILURE, error_comment=type(exc).__name__)
        return JobDone(job.job_id, outcome)

    def serve(self) -> int:
        """Serve jobs until told to stop; the exit code."""
        try:
            listener = self._listen()
        except OSError as exc:
            log.error("writer cannot listen on %s: %s", self.socket_path, exc)
            return BOOT_FAILED
        try:
            while not self.stopping:
                self.heartbeat.beat()
                for key, _ in self._selector.select(timeout=SELECT_TIMEOUT):
                    if key.data is None:
                        conn, _ = listener.accept()
                        self._selector.register(conn, selectors.EVENT_READ, _Connection())
                    else:
                        self._read(key.fileobj, key.data)
        finally:
            listener.close()
            _unlink(self.socket_path)
            self.arenas.close()
        return 0

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _unlink(self.socket_path)  # left by the writer this one replaces
        listener.bind(self.socket_path)
        listener.listen(128)
        self._selector.register(listener, selectors.EVENT_READ, None)
        return listener

    def _read(self, conn: socket.socket, link: _Connection) -> None:
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:  # the worker went away: its unanswered jobs and its memory with it
            self._selector.unregister(conn)
            conn.close()
            for name in link.arenas:
                self.arenas.drop(name)
            return
        for job in link.reader.feed(data):
            if isinstance(job, StoreJob):
                link.arenas.add(job.arena)
            self.heartbeat.beat(time_allowed(job))
            result = frame(self.handle(job))
            try:
                conn.sendall(result)
            except OSError:
                break


def run_writer(socket_path: str, storage: StorageBackend, heartbeat: Heartbeat) -> int:
    """Process entry point after fork; returns the exit code when told to stop (SIGTERM)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    writer = Writer(socket_path, storage, heartbeat)

    def stop(signum, frame_) -> None:
        writer.stopping = True  # the job in hand is finished first

    signal.signal(signal.SIGTERM, stop)
    signal.signal(PARENT_DIED, stop)  # no worker is left to answer: stop as on SIGTERM
    return writer.serve()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
