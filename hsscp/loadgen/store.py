"""One process's part of a storage run: its share of the (file, copy) items, paced, routed
to the accepted contexts and sent as C-STOREs over K associations."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hsscp.loadgen.driver import Association, NotSent, Peer
from hsscp.loadgen.files import ContextMap, Instance
from hsscp.loadgen.pacing import Pacer
from hsscp.loadgen.payload import Payloads
from hsscp.loadgen.report import Stats
from hsscp.loadgen.sessions import run_associations
from hsscp.loadgen.work import WorkQueue, share_of
from hsscp.presentation import PresentationContext

log = logging.getLogger("hsscp.loadgen")

NO_CONTEXT = "no accepted presentation context"


@dataclass(slots=True)
class StoreJob:
    peer: Peer
    instances: Sequence[Instance]
    payloads: Payloads
    contexts: list[PresentationContext]
    associations: int = 1
    repeat: int | None = 1
    duration: float | None = None
    rate: float | None = None  # instances per second, for the whole run


@dataclass(slots=True)
class Share:
    """Which part of the run this process does, on the run's shared clock."""

    index: int = 0
    processes: int = 1
    epoch: float = 0.0  # time.monotonic() at the start of the run, same in every process


async def _send_all(job: StoreJob, assoc: Association, queue: WorkQueue, stats: Stats, pacer: Pacer | None) -> None:
    """Send from the queue on ``assoc`` until the queue is empty."""
    routes = ContextMap(assoc.accepted)
    warned: set[int] = set()  # files already named in the log, so repeats do not flood it
    while (item := queue.next()) is not None:
        index, copy = item
        instance = job.instances[index]
        route = routes.route(instance.sop_class_uid, instance.transfer_syntax)
        if route is None:
            stats.failure(NO_CONTEXT, path=instance.path)
            if index not in warned:
                warned.add(index)
                log.warning("%s: %s for SOP class %s in transfer syntax %s", instance.path, NO_CONTEXT,
                            instance.sop_class_uid, instance.transfer_syntax)
            continue
        if route.transfer_syntax != instance.transfer_syntax and index not in warned:
            warned.add(index)  # the peer accepted nothing else: say so once per file
            log.info("%s: converted from %s to %s, the only syntax the peer accepted for it",
                     instance.path, instance.transfer_syntax, route.transfer_syntax)
        try:
            payload = job.payloads.get(index, copy, route)
        except Exception as exc:  # an unreadable file or a failed re-encoding: that file only
            stats.failure(f"cannot read file: {type(exc).__name__}", path=instance.path)
            if index not in warned:
                warned.add(index)
                log.warning("%s: cannot read file: %s", instance.path, exc)
            continue
        if pacer is not None:
            await pacer.wait()
        try:
            await assoc.store(route.context_id, instance.sop_class_uid, payload.sop_instance_uid,
                              payload.chunks, payload.nbytes, instance.path)
        except NotSent:
            queue.put_back(item)
            raise


def _any_route(job: StoreJob, assoc: Association) -> bool:
    routes = ContextMap(assoc.accepted)
    pairs = {(i.sop_class_uid, i.transfer_syntax) for i in job.instances}
    return any(routes.route(*pair) is not None for pair in pairs)


async def run_share(
    job: StoreJob, share: Share, stats: Stats, on_progress: Callable[[Stats], None] | None = None
) -> int:
    """Run this process's part; return how many items were never sent."""
    start = max(time.monotonic(), share.epoch)
    deadline = start + job.duration if job.duration is not None else None
    repeat = None if job.duration is not None else job.repeat
    queue = WorkQueue(len(job.instances), repeat, deadline, (share.index, share.processes))
    pacer = None
    if job.rate:
        rate = job.rate / share.processes
        # Processes interleave their slots rather than all sending at once.
        pacer = Pacer(rate, start + share.index / job.rate)

    async def send_loop(assoc: Association) -> None:
        if _any_route(job, assoc):
            await _send_all(job, assoc, queue, stats, pacer)
        else:
            stats.event("no usable presentation context")

    associations = share_of(job.associations, share.index, share.processes)
    await run_associations(job.peer, job.contexts, associations, stats, send_loop, on_progress)
    stats.conversions = job.payloads.conversions
    return queue.remaining()
