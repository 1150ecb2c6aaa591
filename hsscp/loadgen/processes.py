"""Running a load over P processes, each with its own uvloop event loop.

Children are forked once the files are scanned (and preloaded: the pages
are shared copy-on-write), run their share, and talk to the parent over a
pipe in msgspec messages: progress a few times a second, then their raw
result, which the parent merges. A child that dies without a result is
counted as a failure, not ignored.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection, wait

import msgspec

from hsscp.dimse import status_category
from hsscp.loadgen.progress import INTERVAL, ProgressLine
from hsscp.loadgen.report import RawResult, Stats, merge

# The part of a run one process does: (share index, process count, stats, progress callback) -> items not sent.
ShareRunner = Callable[[int, int, Stats, Callable[[Stats], None]], Awaitable[int]]


class ProgressMessage(msgspec.Struct, tag="progress", array_like=True):
    completed: int
    failed: int
    nbytes: int


class DoneMessage(msgspec.Struct, tag="done", array_like=True):
    result: RawResult
    not_sent: int


Message = ProgressMessage | DoneMessage
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def new_event_loop() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


def run_in_this_process(run_share: ShareRunner, epoch: float, progress: ProgressLine) -> tuple[RawResult, int]:
    stats = Stats(epoch)

    def show(s: Stats) -> None:
        progress.update(s.completed, s.failed, s.stored_bytes)

    loop = new_event_loop()
    try:
        not_sent = loop.run_until_complete(run_share(0, 1, stats, show))
    finally:
        loop.close()
    show(stats)
    return stats.result(), not_sent


def _child(run_share: ShareRunner, index: int, processes: int, epoch: float, pipe: Connection) -> None:
    stats = Stats(epoch)

    def send_progress(s: Stats) -> None:
        pipe.send_bytes(_encoder.encode(ProgressMessage(s.completed, s.failed, s.stored_bytes)))

    loop = new_event_loop()
    try:
        not_sent = loop.run_until_complete(run_share(index, processes, stats, send_progress))
    finally:
        loop.close()
    pipe.send_bytes(_encoder.encode(DoneMessage(stats.result(), not_sent)))
    pipe.close()


def run(run_share: ShareRunner, processes: int, progress: ProgressLine) -> tuple[RawResult, int, int]:
    """Run every share; return the merged result, items not sent and processes that crashed."""
    epoch = time.monotonic()
    if processes == 1:
        result, not_sent = run_in_this_process(run_share, epoch, progress)
        return result, not_sent, 0
    context = multiprocessing.get_context("fork")
    children, readers = [], {}
    for index in range(processes):
        reader, writer = context.Pipe(duplex=False)
        child = context.Process(target=_child, args=(run_share, index, processes, epoch, writer), daemon=True)
        child.start()
        writer.close()
        children.append(child)
        readers[reader] = index
    latest: dict[int, ProgressMessage] = {}
    results: dict[int, DoneMessage] = {}
    try:
        while readers:
            for reader in wait(list(readers), timeout=INTERVAL):
                index = readers[reader]
                try:
                    message = _decoder.decode(reader.recv_bytes())
                except EOFError:
                    del readers[reader]
                    continue
                if isinstance(message, DoneMessage):
                    results[index] = message
                    latest[index] = _as_progress(message.result)
                else:
                    latest[index] = message
            progress.update(
                sum(m.completed for m in latest.values()),
                sum(m.failed for m in latest.values()),
                sum(m.nbytes for m in latest.values()),
            )
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
                child.join()
    merged = merge(done.result for done in results.values())
    return merged, sum(done.not_sent for done in results.values()), processes - len(results)


def _as_progress(result: RawResult) -> ProgressMessage:
    completed = sum(n for status, n in result.statuses.items() if status_category(status) in ("success", "warning"))
    answered = sum(result.statuses.values())
    return ProgressMessage(completed, answered - completed + sum(result.failures.values()), result.stored_bytes)
