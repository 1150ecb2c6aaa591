"""C-ECHO round trips over K associations: the pure request/response rate of a peer."""

from __future__ import annotations

from collections.abc import Callable

from hsscp.loadgen.driver import Association, NotSent, Peer
from hsscp.loadgen.report import Stats
from hsscp.loadgen.sessions import run_associations
from hsscp.loadgen.work import WorkQueue, share_of
from hsscp.presentation import PresentationContext, build_context
from hsscp.uid import VERIFICATION_SOP_CLASS, ExplicitVRLittleEndian, ImplicitVRLittleEndian


def verification_contexts() -> list[PresentationContext]:
    return [build_context(VERIFICATION_SOP_CLASS, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])]


async def run_echo_share(
    peer: Peer,
    associations: int,
    repeat: int | None,
    deadline: float | None,
    share: tuple[int, int],
    stats: Stats,
    on_progress: Callable[[Stats], None] | None = None,
) -> int:
    """This process's part of ``repeat`` C-ECHOs (or until ``deadline``) over its share of the
    associations; return how many were not sent."""
    queue = WorkQueue(1, repeat, deadline, share)

    async def send_loop(assoc: Association) -> None:
        if not assoc.accepted:
            stats.event("no usable presentation context")
            return
        context_id = assoc.accepted[0].context_id
        while (item := queue.next()) is not None:
            try:
                await assoc.echo(context_id)
            except NotSent:
                queue.put_back(item)
                raise

    count = share_of(associations, *share)
    await run_associations(peer, verification_contexts(), count, stats, send_loop, on_progress)
    return queue.remaining()
