"""Writer-pool process: store jobs in, Part 10 files and outcomes out.

Each writer listens on its own Unix socket; every association worker
connects to every writer. Jobs are done one at a time, in order of arrival
per connection: a writer is a disk pipeline, and M writers give M of them.
Dataset bytes are read from the worker's shared-memory arena and written
to the file from there, with no copy in between.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
from multiprocessing import resource_tracker, shared_memory

from hsscp.dimse import Status
from hsscp.storage import StorageBackend, StoreOutcome
from workers.messages import FrameReader, JobDone, SpoolJob, StoreJob, frame

log = logging.getLogger("hsscp.writer")

PROCESSING_FAILURE = Status.PROCESSING_FAILURE


class ArenaCache:
    """Worker arenas this writer has attached to, by name."""

    def __init__(self) -> None:
        self._arenas: dict[str, shared_memory.SharedMemory] = {}

    def views(self, name: str, segments: list[tuple[int, int]]) -> list[memoryview]:
        buffer = self._attach(name).buf
        return [buffer[offset : offset + length] for offset, length in segments]

    def _attach(self, name: str) -> shared_memory.SharedMemory:
        arena = self._arenas.get(name)
        if arena is None:
            arena = shared_memory.SharedMemory(name=name)
            # Python 3.11 registers attached segments for unlinking at exit; the
            # worker that created one owns it, not us.
            resource_tracker.unregister(arena._name, "shared_memory")  # type: ignore[attr-defined]
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


class Writer:
    """The job loop of one writer process."""

    def __init__(self, socket_path: str, storage: StorageBackend) -> None:
        self.socket_path = socket_path
        self.storage = storage
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

    def serve(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)  # left by the writer this one replaces
        listener.bind(self.socket_path)
        listener.listen(128)
        self._selector.register(listener, selectors.EVENT_READ, None)
        while not self.stopping:
            for key, _ in self._selector.select(timeout=0.5):
                if key.data is None:
                    conn, _ = listener.accept()
                    self._selector.register(conn, selectors.EVENT_READ, _Connection())
                else:
                    self._read(key.fileobj, key.data)
        listener.close()
        self.arenas.close()

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
            result = frame(self.handle(job))
            try:
                conn.sendall(result)
            except OSError:
                break


def run_writer(socket_path: str, storage: StorageBackend) -> None:
    """Process entry point after fork; returns when told to stop (SIGTERM)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    writer = Writer(socket_path, storage)

    def stop(signum, frame_) -> None:
        writer.stopping = True

    signal.signal(signal.SIGTERM, stop)
    writer.serve()
