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

Where an fsync waits for a disk (the storage measures it), a batch's
syncs run in threads while the writer goes on: the jobs that arrive in
the meantime are staged at once and their syncs start too, instead of
waiting a whole round behind the batch before them, and the file system
commits the syncs in flight together. Each batch is named, journaled and
answered when its own syncs are done; the order of those steps, and the
rule that no result goes out before its file is durable, are the same.

The writer beats its heartbeat at every turn of its loop (at least once a
select timeout) and before each job. A job is one blocking step (a writev
and an fsync of up to gigabytes) that cannot beat in its middle, so the beat
before it claims time in proportion to its size, as if the disk did no
better than :data:`MIN_WRITE_RATE`: a long job is not taken for a stuck
writer, and a writer stuck on a small one is still found within the
heartbeat timeout. While a batch syncs in threads the loop still turns, so
it beats only as long as no batch in sync has overrun the time it claimed:
a writer stuck on its disk is still found.
"""

from __future__ import annotations

import logging
import mmap
import os
import selectors
import signal
import socket
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from hsscp.dimse import Status
from hsscp.journal import journal_of, store_record
from hsscp.storage import InstanceFact, StorageBackend, StoreOutcome, os_error_outcome, store_batch
from hsscp.storage.batch import install_batch, splits_commit, stage_batch, sync_batch
from hsscp.storage.durable import fsync_waits
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
MAX_SYNCING = 8  # batches syncing in threads at once; past that, the next waits for one


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


class _Batch:
    """Jobs taken together: their data sets, results so far, and (while syncing) what they wait on."""

    __slots__ = ("conns", "jobs", "results", "items", "positions", "held", "staged", "deadline")

    def __init__(self, conns: list[socket.socket], jobs: list[StoreJob | SpoolJob]) -> None:
        self.conns = conns
        self.jobs = jobs
        self.results: list[tuple[StoreOutcome, InstanceFact]] = [None] * len(jobs)  # type: ignore[list-item]
        self.items: list = []  # (request, source) of the jobs that reach the storage
        self.positions: list[int] = []  # where each item's result goes
        self.held: list[memoryview] = []  # arena views, released once the batch is stored
        self.staged: list = []
        self.deadline = 0.0  # monotonic time by which its sync should be done


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
        # Syncs in threads: a storage that splits its commit, where fsync waits for the disk.
        self._can_sync_apart = splits_commit(storage)
        self._syncing: dict[Future, _Batch] = {}  # in the order they were taken
        self._sync_threads: ThreadPoolExecutor | None = None
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def handle(self, jobs: list[StoreJob | SpoolJob]) -> list[JobDone]:
        """Store a batch of jobs; their results, each durable (and journaled) as the policy says."""
        return self._store_now(self._prepare([None] * len(jobs), jobs))

    def _store_now(self, batch: _Batch) -> list[JobDone]:
        """Store, sync and journal ``batch`` in this thread; its results, to send."""
        try:
            stored = store_batch(self.storage, batch.items)
        except Exception as exc:  # a bug must not become a false Success, nor kill the pool
            stored = _failed(batch.items, exc)
        return self._conclude(batch, stored)

    def _prepare(self, conns: list, jobs: list[StoreJob | SpoolJob]) -> _Batch:
        """A batch of ``jobs``, their data sets located (a job naming an arena not mappable fails alone)."""
        batch = _Batch(conns, jobs)
        for position, job in enumerate(jobs):
            if isinstance(job, StoreJob):
                try:
                    views = self.arenas.views(job.arena, job.segments)
                except (OSError, ValueError) as exc:
                    log.error("store job %d names an arena this writer cannot map: %s", job.job_id, exc)
                    batch.results[position] = (UNREADABLE, InstanceFact.of(job.request, UNREADABLE))
                    continue
                batch.held += views
                batch.items.append((job.request, views))
            else:
                batch.items.append((job.request, (job.spool_path, memoryview(job.head))))
            batch.positions.append(position)
        return batch

    def _conclude(self, batch: _Batch, stored: list[tuple[StoreOutcome, InstanceFact]]) -> list[JobDone]:
        """Journal a stored batch; its results, to send."""
        for view in batch.held:
            view.release()
        for position, result in zip(batch.positions, stored, strict=True):
            batch.results[position] = result
        results = batch.results
        journal = journal_of(self.storage)
        if journal is not None:
            try:
                journal.append([store_record(fact) for _, fact in results])
                journal.sync()  # the records are as durable as their files before any answer
            except OSError as exc:  # stored but not recorded: failure is the true answer
                log.error("cannot write the journal: %s", exc)
                failed = os_error_outcome(exc)
                results = [(failed, fact) for _, fact in results]
        return [JobDone(job.job_id, outcome, fact) for job, (outcome, fact) in zip(batch.jobs, results, strict=True)]

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
            while self._syncing:  # the batches in hand are finished first
                self.turn(SELECT_TIMEOUT)
        finally:
            listener.close()
            os.close(self._wake_read)
            os.close(self._wake_write)
            _unlink(self.socket_path)
            self.arenas.close()
        return 0

    def turn(self, timeout: float) -> int:
        """One wake-up: accept, take every job that has arrived, do them as one batch; the batch size."""
        if not self._sync_overdue():
            self.heartbeat.beat()
        batch: list[tuple[socket.socket, StoreJob | SpoolJob]] = []
        for key, _ in self._selector.select(timeout=timeout):
            if key.data is None:
                conn, _ = key.fileobj.accept()
                self._selector.register(conn, selectors.EVENT_READ, _Connection())
            elif key.data is _WAKE:
                _drain(self._wake_read)
            else:
                self._read(key.fileobj, key.data, batch)
        self._answer_synced()
        for start in range(0, len(batch), MAX_BATCH):
            self._run(batch[start : start + MAX_BATCH])
        return len(batch)

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _unlink(self.socket_path)  # left by the writer this one replaces
        listener.bind(self.socket_path)
        listener.listen(128)
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_read, selectors.EVENT_READ, _WAKE)
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

    def _run(self, taken: list[tuple[socket.socket, StoreJob | SpoolJob]]) -> None:
        """Do one batch, then answer each connection with one write (now, or once its syncs are done)."""
        jobs = [job for _, job in taken]
        allowance = sum(map(time_allowed, jobs))
        self.heartbeat.beat(allowance)
        batch = self._prepare([conn for conn, _ in taken], jobs)
        if not (self._can_sync_apart and fsync_waits()):
            self._send(batch, self._store_now(batch))
            return
        try:
            batch.staged = stage_batch(self.storage, batch.items)
        except Exception as exc:
            self._send(batch, self._conclude(batch, _failed(batch.items, exc)))
            return
        while len(self._syncing) >= MAX_SYNCING:  # a bound on open files and threads
            if not self._sync_overdue():
                self.heartbeat.beat()
            wait(self._syncing, SELECT_TIMEOUT, return_when=FIRST_COMPLETED)
            self._answer_synced()
        batch.deadline = time.monotonic() + self.heartbeat.timeout + allowance
        future = self._threads().submit(sync_batch, self.storage, batch.staged)
        self._syncing[future] = batch
        future.add_done_callback(self._synced_in_thread)

    def _synced_in_thread(self, future: Future) -> None:
        """In the sync thread: wake the loop, which answers the batch."""
        os.write(self._wake_write, b"\0")

    def _answer_synced(self) -> None:
        """Name, journal and answer the batches whose syncs are done, in the order they were taken."""
        for future in [future for future in self._syncing if future.done()]:
            batch = self._syncing.pop(future)
            try:
                stored = install_batch(self.storage, batch.items, batch.staged, future.result)
            except Exception as exc:  # a bug must not become a false Success, nor kill the pool
                stored = _failed(batch.items, exc)
            self._send(batch, self._conclude(batch, stored))

    def _sync_overdue(self) -> bool:
        """Whether a batch has been syncing longer than it claimed: then the loop stops beating."""
        now = time.monotonic()
        return any(batch.deadline < now for batch in self._syncing.values())

    def _threads(self) -> ThreadPoolExecutor:
        if self._sync_threads is None:
            self._sync_threads = ThreadPoolExecutor(MAX_SYNCING, thread_name_prefix="sync")
        return self._sync_threads

    def _send(self, batch: _Batch, done: list[JobDone]) -> None:
        answers: dict[socket.socket, list[JobDone]] = {}
        for conn, result in zip(batch.conns, done, strict=True):
            answers.setdefault(conn, []).append(result)
        for conn, results in answers.items():
            try:
                conn.sendall(frames(results))
            except OSError:
                pass  # the worker is gone; its connection is dropped at the next read


_WAKE = object()  # the selector key data of the wake-up pipe


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _failed(items: list, exc: Exception) -> list[tuple[StoreOutcome, InstanceFact]]:
    log.error("a batch of %d store jobs failed", len(items), exc_info=exc)
    failed = StoreOutcome(PROCESSING_FAILURE, error_comment=type(exc).__name__)
    return [(failed, InstanceFact.of(request, failed)) for request, _ in items]


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
