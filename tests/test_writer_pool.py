"""A worker's writer pool over real Unix sockets, against a writer loop that answers or holds jobs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hsscp.storage import StoreOutcome, StoreRequest
from workers.messages import FrameReader, JobDone, StoreJob, frame
from workers.writer_main import MIN_WRITE_RATE, time_allowed
from workers.writer_pool import WriterPool

PROCESSING_FAILURE = 0x0110
REQUEST = StoreRequest(
    sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid="1.2.3.4", transfer_syntax="1.2.840.10008.1.2.1"
)


def job(job_id: int) -> StoreJob:
    return StoreJob(job_id, REQUEST, "hsscp-1-test", [(0, 16)])


class FakeWriter:
    """A writer's socket protocol: records each job, answers it at once (or holds it)."""

    def __init__(self, path: Path, answer: bool = True) -> None:
        self.path = str(path)
        self.answer = answer
        self.jobs: list[int] = []
        self.links: list[asyncio.Transport] = []
        self.closed_links = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> FakeWriter:
        self.server = await asyncio.get_running_loop().create_unix_server(lambda: _FakeLink(self), self.path)
        return self

    async def crash(self) -> None:
        """As a writer process dying: its socket and every link close."""
        self.server.close()
        await self.server.wait_closed()
        for transport in self.links:
            transport.abort()


class _FakeLink(asyncio.Protocol):
    def __init__(self, writer: FakeWriter) -> None:
        self.writer = writer
        self.reader = FrameReader()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.writer.links.append(transport)

    def data_received(self, data: bytes) -> None:
        for message in self.reader.feed(data):
            self.writer.jobs.append(message.job_id)
            if self.writer.answer:
                self.transport.write(frame(JobDone(message.job_id, StoreOutcome(0, bytes_written=16))))

    def connection_lost(self, exc) -> None:
        self.writer.closed_links += 1


async def until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def connected(*writers: FakeWriter) -> WriterPool:
    """A pool linked to ``writers``, once each writer has its side of the link too."""
    pool = WriterPool([w.path for w in writers], "hsscp-1-test", 1024)
    await pool.connect()
    await until(lambda: all(w.links for w in writers))
    return pool


class Outcomes(dict):
    """job id -> the outcome its callback got."""

    def done_for(self, job_id: int):
        return lambda outcome: self.__setitem__(job_id, outcome)


def test_a_job_goes_to_the_live_writer_with_the_fewest_jobs_outstanding(tmp_path):
    async def scenario():
        holding = await FakeWriter(tmp_path / "a.sock", answer=False).start()
        answering = await FakeWriter(tmp_path / "b.sock").start()
        pool = await connected(holding, answering)
        outcomes = Outcomes()
        for job_id in range(1, 6):
            pool.dispatch(job(job_id), outcomes.done_for(job_id))
            await until(lambda j=job_id: j == 1 or j in outcomes)  # each answer is back before the next
        assert holding.jobs == [1]  # it still holds one: every later job had a less loaded writer
        assert answering.jobs == [2, 3, 4, 5]
        assert {j: o.status for j, o in outcomes.items()} == dict.fromkeys([2, 3, 4, 5], 0)
        assert pool.in_flight == 1
        pool.close()

    asyncio.run(scenario())


def test_a_lost_writers_jobs_fail_and_are_not_handed_on(tmp_path):
    async def scenario():
        lost = await FakeWriter(tmp_path / "a.sock", answer=False).start()
        other = await FakeWriter(tmp_path / "b.sock", answer=False).start()
        pool = await connected(lost, other)
        outcomes = Outcomes()
        for job_id in range(1, 5):
            pool.dispatch(job(job_id), outcomes.done_for(job_id))
        await until(lambda: len(lost.jobs) == 2 and len(other.jobs) == 2)
        await lost.crash()
        await until(lambda: len(outcomes) == 2)
        assert {j: (o.status, o.error_comment) for j, o in outcomes.items()} == {
            j: (PROCESSING_FAILURE, "writer lost") for j in lost.jobs
        }
        await asyncio.sleep(0.1)
        assert len(other.jobs) == 2  # nothing was handed to the other writer
        pool.close()

    asyncio.run(scenario())


def test_the_pool_reconnects_to_a_replacement_and_sends_what_waited(tmp_path):
    async def scenario():
        path = tmp_path / "a.sock"
        first = await FakeWriter(path).start()
        pool = await connected(first)
        await first.crash()
        await until(lambda: not pool.links)
        path.unlink()
        outcomes = Outcomes()
        pool.dispatch(job(7), outcomes.done_for(7))  # no writer is up: it waits
        await asyncio.sleep(0.05)
        assert 7 not in outcomes
        replacement = await FakeWriter(path).start()
        await until(lambda: 7 in outcomes)
        assert replacement.jobs == [7] and outcomes[7].status == 0
        pool.dispatch(job(8), outcomes.done_for(8))
        await until(lambda: 8 in outcomes)
        assert replacement.jobs == [7, 8]
        pool.close()

    asyncio.run(scenario())


def test_close_fails_waiting_jobs_and_closes_every_link(tmp_path):
    async def scenario():
        writer = await FakeWriter(tmp_path / "a.sock").start()
        pool = await connected(writer)
        await writer.crash()
        await until(lambda: not pool.links)
        outcomes = Outcomes()
        pool.dispatch(job(1), outcomes.done_for(1))  # waiting for a writer
        pool.close()
        pool.dispatch(job(2), outcomes.done_for(2))
        assert {j: (o.status, o.error_comment) for j, o in outcomes.items()} == {
            1: (PROCESSING_FAILURE, "shutting down"), 2: (PROCESSING_FAILURE, "shutting down")
        }

    asyncio.run(scenario())


def test_close_closes_the_links(tmp_path):
    async def scenario():
        writers = [await FakeWriter(tmp_path / f"{n}.sock").start() for n in "ab"]
        pool = await connected(*writers)
        pool.close()
        await until(lambda: all(w.closed_links == 1 for w in writers))

    asyncio.run(scenario())


def test_a_long_job_claims_time_by_its_size():
    big = StoreJob(1, REQUEST, "hsscp-1-test", [(0, MIN_WRITE_RATE), (MIN_WRITE_RATE, 2 * MIN_WRITE_RATE)])
    assert time_allowed(big) == 3.0
    assert time_allowed(job(1)) < 0.001
