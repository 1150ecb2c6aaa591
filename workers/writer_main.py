"""Writer-pool process: store jobs in, Part 10 files and outcomes out.

Each writer listens on its own Unix socket; every association worker
connects to every writer. At each wake-up a writer takes every job that
has arrived on all its connections and does them as one batch (group
commit): every file is written under its temporary name, the batch is made
durable together and moved into place (:func:`hsscp.storage.store_batch`),
the journal records of the batch are appended with one write and synced,
and only then are the results sent, one write per connection. A result
therefore never goes out before its file (and its journal record) is as
durable as the policy says, and the syscalls that make it so are shared by
the batch. Dataset bytes are read from the worker's shared-memory arena
and written to the file from there, with no copy in between.

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
from hsscp.journal import journal_of, store_record
from hsscp.storage import InstanceFact, StorageBackend, StoreOutcome, os_error_outcome, store_batch
from workers.arena import SHM_FOLDER
from workers.child import BOOT_FAILED, PARENT_DIED
from workers.heartbeat import Heartbeat
from workers.messages import FrameReader, JobDone, SpoolJob, StoreJob, frames

log = logging.getLogger("hsscp.writer")

PROCESSING_FAILURE = Status.PROCESSING_FAILURE
SELECT_TIMEOUT = 0.5  # the loop beats at least this often while idle
MIN_WRITE_RATE = 8 * 1024 * 1024  # bytes per second: the slowest disk a job is given time for
UNREADABLE = StoreOutcome(PROCESSING_FAILURE, error_comment="data set not readable by the writer")
MAX_BATCH = 64  # jobs committed together at most: each holds an open file until its commit
# A read takes every job a worker has queued (each ~200 bytes). Into one reused buffer: a fresh
# bytes object this large per recv() would be an mmap and a munmap each time.
RECV_SIZE = 256 * 1024


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
        self._recv_buffer = bytearray(RECV_SIZE)
        self._recv_view = memoryview(self._recv_buffer)

    def handle(self, jobs: list[StoreJob | SpoolJob]) -> list[JobDone]:
        """Store a batch of jobs; their results, each durable (and journaled) as the policy says."""
        results = self._store(jobs)
        journal = journal_of(self.storage)
        if journal is not None:
            try:
                journal.append([store_record(fact) for _, fact in results])
                journal.sync()  # the records are as durable as their files before any answer
            except OSError as exc:  # stored but not recorded: failure is the true answer
                log.error("cannot write the journal: %s", exc)
                failed = os_error_outcome(exc)
                results = [(failed, fact) for _, fact in results]
        return [JobDone(job.job_id, outcome, fact) for job, (outcome, fact) in zip(jobs, results, strict=True)]

    def _store(self, jobs: list[StoreJob | SpoolJob]) -> list[tuple[StoreOutcome, InstanceFact]]:
        results: list[tuple[StoreOutcome, InstanceFact]] = [None] * len(jobs)  # type: ignore[list-item]
        held: list[memoryview] = []
        items, positions = [], []
        for position, job in enumerate(jobs):
            if isinstance(job, StoreJob):
                try:
                    views = self.arenas.views(job.arena, job.segments)
                except (OSError, ValueError) as exc:
                    log.error("store job %d names an arena this writer cannot map: %s", job.job_id, exc)
                    results[position] = (UNREADABLE, InstanceFact.of(job.request, UNREADABLE))
                    continue
                held += views
                items.append((job.request, views))
            else:
                items.append((job.request, (job.spool_path, memoryview(job.head))))
            positions.append(position)
        try:
            stored = store_batch(self.storage, items)
        except Exception as exc:  # a bug must not become a false Success, nor kill the pool
            log.exception("a batch of %d store jobs failed", len(items))
            failed = StoreOutcome(PROCESSING_FAILURE, error_comment=type(exc).__name__)
            stored = [(failed, InstanceFact.of(request, failed)) for request, _ in items]
        finally:
            for view in held:
                view.release()
        for position, result in zip(positions, stored, strict=True):
            results[position] = result
        return results

    def serve(self) -> int:
        """Serve jobs until told to stop; the exit code."""
        try:
            listener = self._listen()
        except OSError as exc:
            log.error("writer cannot listen on %s: %s", self.socket_path, exc)
            return BOOT_FAILED
        try:
            while not self.stopping:
                self.turn(SELECT_TIMEOUT)
        finally:
            listener.close()
            _unlink(self.socket_path)
            self.arenas.close()
        return 0

    def turn(self, timeout: float) -> int:
        """One wake-up: accept, take every job that has arrived, do them as one batch; the batch size."""
        self.heartbeat.beat()
        batch: list[tuple[socket.socket, StoreJob | SpoolJob]] = []
        for key, _ in self._selector.select(timeout=timeout):
            if key.data is None:
                conn, _ = key.fileobj.accept()
                self._selector.register(conn, selectors.EVENT_READ, _Connection())
            else:
                self._read(key.fileobj, key.data, batch)
        for start in range(0, len(batch), MAX_BATCH):
            self._run(batch[start : start + MAX_BATCH])
        return len(batch)

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _unlink(self.socket_path)  # left by the writer this one replaces
        listener.bind(self.socket_path)
        listener.listen(128)
        self._selector.register(listener, selectors.EVENT_READ, None)
        return listener

    def _read(self, conn: socket.socket, link: _Connection, batch: list) -> None:
        """Add the jobs that ``conn`` has sent to ``batch``."""
        try:
            received = conn.recv_into(self._recv_buffer)
        except OSError:
            received = 0
        if not received:  # the worker went away: its unanswered jobs and its memory with it
            self._selector.unregister(conn)
            conn.close()
            for name in link.arenas:
                self.arenas.drop(name)
            return
        for job in link.reader.feed(self._recv_view[:received]):
            if isinstance(job, StoreJob):
                link.arenas.add(job.arena)
            batch.append((conn, job))

    def _run(self, batch: list[tuple[socket.socket, StoreJob | SpoolJob]]) -> None:
        """Do one batch, then answer each connection with one write."""
        jobs = [job for _, job in batch]
        self.heartbeat.beat(sum(map(time_allowed, jobs)))
        answers: dict[socket.socket, list[JobDone]] = {}
        for (conn, _), done in zip(batch, self.handle(jobs), strict=True):
            answers.setdefault(conn, []).append(done)
        for conn, results in answers.items():
            try:
                conn.sendall(frames(results))
            except OSError:
                pass  # the worker is gone; its connection is dropped at the next read


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
