"""The writer's group commit: one batch per wake-up, answered only after its files and records are durable.

A real writer (its socket, its select loop, a real shared-memory arena)
with a storage double that records the phases it is asked for, and checks
from inside each phase that no answer has reached the workers yet.
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from hsscp.storage import StoreOutcome, StoreRequest
from workers.arena import Arena
from workers.heartbeat import HeartbeatTable
from workers.messages import FrameReader, JobDone, StoreJob, frame
from workers.writer_main import Writer
from workers.writer_pool import WriterPool

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


class Unanswered:
    """Asserts that no answer has reached any of the clients yet."""

    def __init__(self) -> None:
        self.clients: list[socket.socket] = []
        self.phase_seen: list[str] = []

    def check(self, phase: str) -> None:
        for client in self.clients:
            with pytest.raises(BlockingIOError):
                client.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK)
        self.phase_seen.append(phase)


class RecordingJournal:
    def __init__(self, unanswered: Unanswered, calls: list) -> None:
        self.unanswered, self.calls = unanswered, calls

    def append(self, records) -> None:
        self.unanswered.check("journal append")
        self.calls.append(("append", [r.sop_instance_uid for r in records]))

    def sync(self) -> None:
        self.unanswered.check("journal sync")
        self.calls.append(("sync",))


class Staged:
    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.study_instance_uid, self.series_instance_uid = "1.2.9", f"{uid}.0"



class RecordingStorage:
    """A staging backend that writes nothing and records what it is asked, in order."""

    def __init__(self, unanswered: Unanswered) -> None:
        self.calls: list = []
        self.unanswered = unanswered
        self.journal = RecordingJournal(unanswered, self.calls)

    def stage_segments(self, request: StoreRequest, segments: list[memoryview]):
        self.calls.append(("stage", request.sop_instance_uid, b"".join(segments)))
        if request.sop_instance_uid.endswith(".13"):
            return StoreOutcome(0xA900, error_comment="refused at the check")
        return Staged(request.sop_instance_uid)

    def stage_spooled(self, request, spool_path, head):
        raise AssertionError("no spool jobs here")

    def commit(self, staged) -> list[StoreOutcome]:
        self.unanswered.check("commit")
        self.calls.append(("commit", [s.uid for s in staged]))
        return [StoreOutcome(0, f"/out/{s.uid}.dcm", bytes_written=10) for s in staged]

    def abandon(self, staged) -> None:
        self.calls.append(("abandon", list(staged)))

    def store_segments(self, request, segments):
        raise AssertionError("a staging backend is stored through stage/commit")

    store_spooled = store_segments


@pytest.fixture
def arena():
    arena = Arena(64 * 1024, 4)
    yield arena
    arena.close()


def job(arena: Arena, job_id: int, uid: str, offset: int) -> StoreJob:
    data = f"data of {uid}".encode()
    arena.shm.buf[offset : offset + len(data)] = data
    return StoreJob(job_id, StoreRequest(CT, uid, EXPLICIT_LE), arena.name, [(offset, len(data))])


def answers(client: socket.socket, count: int) -> tuple[list[JobDone], int]:
    """``count`` results, and how many recv() calls they took."""
    reader, results, reads = FrameReader(), [], 0
    client.settimeout(5)
    while len(results) < count:
        results += reader.feed(client.recv(65536))
        reads += 1
    return results, reads


def test_a_wake_up_takes_every_waiting_job_and_answers_after_commit_and_journal_sync(tmp_path, arena):
    unanswered = Unanswered()
    storage = RecordingStorage(unanswered)
    writer = Writer(str(tmp_path / "w.sock"), storage, HeartbeatTable(1).heartbeat(0, 10))
    listener = writer._listen()
    try:
        clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
        for client in clients:
            client.connect(writer.socket_path)
        while len(writer._selector.get_map()) < 4:  # the listener, the wake-up pipe and both connections
            writer.turn(1.0)
        unanswered.clients = clients
        first = [job(arena, n, f"1.2.3.{n}", n * 100) for n in range(10, 15)]
        second = [job(arena, n, f"1.2.3.{n}", n * 100) for n in range(20, 23)]
        clients[0].sendall(b"".join(frame(j) for j in first))
        clients[1].sendall(b"".join(frame(j) for j in second))
        taken = 0
        while taken < 8:
            taken += writer.turn(1.0)
        assert taken == 8
        results0, reads0 = answers(clients[0], 5)
        results1, _ = answers(clients[1], 3)
    finally:
        for client in clients:
            client.close()
        listener.close()
        writer.arenas.close()
    staged = [call for call in storage.calls if call[0] == "stage"]
    assert [call[2] for call in staged] == [f"data of 1.2.3.{n}".encode() for n in (*range(10, 15), *range(20, 23))]
    others = [call for call in storage.calls if call[0] != "stage"]
    everyone = [f"1.2.3.{n}" for n in (*range(10, 15), *range(20, 23))]
    accepted = [uid for uid in everyone if uid != "1.2.3.13"]
    # One batch: one commit for every staged file, then one journal write, then one sync.
    assert others == [("commit", accepted), ("append", everyone), ("sync",)]
    assert unanswered.phase_seen == ["commit", "journal append", "journal sync"]
    assert reads0 == 1  # one client's results went out as one write
    by_id = {r.job_id: r for r in results0 + results1}
    assert by_id[13].outcome.status == 0xA900 and by_id[12].outcome.path == "/out/1.2.3.12.dcm"
    # The fact, built once in the writer, carries what the storage peeked.
    assert (by_id[12].fact.study_instance_uid, by_id[12].fact.series_instance_uid) == ("1.2.9", "1.2.3.12.0")
    assert by_id[13].fact.status == 0xA900 and by_id[13].fact.study_instance_uid == ""


def test_a_job_naming_an_unknown_arena_fails_alone(tmp_path, arena):
    unanswered = Unanswered()
    storage = RecordingStorage(unanswered)
    writer = Writer(str(tmp_path / "w.sock"), storage, HeartbeatTable(1).heartbeat(0, 10))
    good = job(arena, 1, "1.2.3.1", 0)
    bad = StoreJob(2, StoreRequest(CT, "1.2.3.2", EXPLICIT_LE), "hsscp-0-nosuch", [(0, 4)])
    done = writer.handle([good, bad])
    writer.arenas.close()
    assert [d.outcome.status for d in done] == [0, 0x0110]
    assert ("commit", ["1.2.3.1"]) in storage.calls


def test_jobs_sent_in_one_loop_turn_go_to_the_writer_together_at_its_end(tmp_path, arena):
    path = str(tmp_path / "w.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    async def main() -> tuple[bytes, bytes, bytes]:
        pool = WriterPool([path], arena.name, arena.slot_size)
        await pool.connect()
        conn, _ = await asyncio.get_running_loop().sock_accept(server)
        jobs = [job(arena, n, f"1.2.3.{n}", n * 100) for n in range(1, 9)]
        conn.setblocking(False)
        for j in jobs:
            pool.dispatch(j, lambda outcome: None)
        with pytest.raises(BlockingIOError):  # held until the loop turns, then written together
            conn.recv(1)
        await asyncio.sleep(0.05)
        first = conn.recv(1 << 20)
        try:
            more = conn.recv(1 << 20)
        except BlockingIOError:
            more = b""
        conn.close()
        pool.close()
        await asyncio.sleep(0)
        return first, more, b"".join(frame(j) for j in jobs)

    try:
        first, more, expected = asyncio.run(main())
    finally:
        server.close()
        os.unlink(path)
    assert first == expected and more == b""
