"""A writer on a slow disk: a batch syncs in threads while the next is taken, each answered after its own sync.

A real writer (its socket, its select loop, a real shared-memory arena)
with a storage double whose ``sync`` blocks until the test lets it go, so
the order of staging, syncing, naming and answering can be seen.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from hsscp.storage import StoreOutcome
from workers import writer_main
from workers.arena import Arena
from workers.heartbeat import HeartbeatTable
from workers.messages import frame
from workers.writer_main import Writer

from .test_writer_batch import RecordingStorage, Unanswered, answers, job


class SlowDiskStorage(RecordingStorage):
    """Its commit is two phases; each ``sync`` waits for its own gate."""

    def __init__(self, unanswered: Unanswered) -> None:
        super().__init__(unanswered)
        self.journal = None
        self.gates: list[threading.Event] = []
        self.syncing = 0
        self.most_syncing = 0
        self._lock = threading.Lock()

    def commit(self, staged):
        raise AssertionError("on a slow disk the writer syncs apart, then installs")

    def sync(self, staged):
        gate = threading.Event()
        with self._lock:
            self.gates.append(gate)
            self.calls.append(("sync", [s.uid for s in staged]))
            self.syncing += 1
            self.most_syncing = max(self.most_syncing, self.syncing)
        assert gate.wait(10)
        with self._lock:
            self.syncing -= 1
        return OSError(5, "I/O error") if any(s.uid.endswith(".66") for s in staged) else None

    def install(self, staged, sync_error=None):
        self.calls.append(("install", [s.uid for s in staged]))
        if sync_error is not None:
            return [StoreOutcome(0xA700, error_comment="out of resources") for _ in staged]
        return [StoreOutcome(0, f"/out/{s.uid}.dcm", bytes_written=10) for s in staged]


@pytest.fixture
def arena():
    arena = Arena(64 * 1024, 4)
    yield arena
    arena.close()


@pytest.fixture
def slow_writer(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_main, "fsync_waits", lambda: True)  # as measured on a slow disk
    unanswered = Unanswered()
    storage = SlowDiskStorage(unanswered)
    table = HeartbeatTable(1)
    writer = Writer(str(tmp_path / "w.sock"), storage, table.heartbeat(0, 1.0))
    listener = writer._listen()
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
    for client in clients:
        client.connect(writer.socket_path)
    while len(writer._selector.get_map()) < 4:  # the listener, the wake-up pipe and both connections
        writer.turn(1.0)
    yield writer, storage, clients, table
    for gate in storage.gates:
        gate.set()
    for client in clients:
        client.close()
    listener.close()
    writer.arenas.close()


def turn_until(writer: Writer, done, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline
        writer.turn(0.05)


def answered(writer: Writer, client: socket.socket):
    """The one result ``client`` is sent, the writer's loop turning meanwhile."""
    turn_until(writer, lambda: not nothing_for(client))
    (done,), _ = answers(client, 1)
    return done


def nothing_for(client: socket.socket) -> bool:
    try:
        client.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK)
    except BlockingIOError:
        return True
    return False


def two_batches_syncing(slow_writer, arena, first_uid: str) -> None:
    """A job from the first client, then one from the second while the first's sync is held."""
    writer, storage, (first, second), _ = slow_writer
    first.sendall(frame(job(arena, 1, first_uid, 0)))
    turn_until(writer, lambda: len(storage.gates) == 1)
    second.sendall(frame(job(arena, 2, "1.2.3.2", 100)))
    # The second job does not wait for the first batch's sync: it is staged and syncing too.
    turn_until(writer, lambda: len(storage.gates) == 2)


def test_jobs_arriving_while_a_batch_syncs_are_staged_and_synced_at_once(slow_writer, arena):
    writer, storage, (first, second), _ = slow_writer
    two_batches_syncing(slow_writer, arena, "1.2.3.1")
    assert storage.most_syncing == 2
    assert nothing_for(first) and nothing_for(second)  # no answer before its own sync
    storage.gates[1].set()  # the later batch's sync ends first: it is answered first
    done = answered(writer, second)
    assert done.job_id == 2 and done.outcome.status == 0
    assert nothing_for(first)
    storage.gates[0].set()
    done = answered(writer, first)
    assert done.job_id == 1 and done.outcome.path == "/out/1.2.3.1.dcm"
    kinds = [call[0] for call in storage.calls]
    assert kinds == ["stage", "sync", "stage", "sync", "install", "install"]
    assert storage.calls[4] == ("install", ["1.2.3.2"])


def test_a_failed_sync_fails_its_batch_alone(slow_writer, arena):
    writer, storage, (first, second), _ = slow_writer
    two_batches_syncing(slow_writer, arena, "1.2.3.66")
    for gate in storage.gates:
        gate.set()
    bad, good = answered(writer, first), answered(writer, second)
    assert (bad.outcome.status, good.outcome.status) == (0xA700, 0)


def test_a_batch_stuck_in_its_sync_stops_the_heartbeat(slow_writer, arena):
    writer, storage, (first, _), table = slow_writer
    first.sendall(frame(job(arena, 1, "1.2.3.1", 0)))
    turn_until(writer, lambda: len(storage.gates) == 1)
    writer.turn(0.01)
    assert not table.overdue(0)  # the loop turns and beats while the sync is young
    time.sleep(1.3)  # past the heartbeat timeout (1 s) and the job's allowance
    writer.turn(0.01)  # still turning, but it no longer promises to
    time.sleep(1.1)
    assert table.overdue(0)
    storage.gates[0].set()
    assert answered(writer, first).outcome.status == 0
