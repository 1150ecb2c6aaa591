"""K associations on one event loop, each sending from a shared work queue until it is empty.

An association that fails after doing some work is replaced by a new one
(an item it had taken but not sent goes back to the queue); one that fails
to open, or fails before sending anything, is not, so a run against a peer
that refuses always ends. Every failure is counted in the stats.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from hsscp.loadgen.driver import Association, AssociationError, Peer
from hsscp.loadgen.progress import INTERVAL
from hsscp.loadgen.report import Stats
from hsscp.presentation import PresentationContext

log = logging.getLogger("hsscp.loadgen")

# Sends from the queue on one open association until the queue is empty.
SendLoop = Callable[[Association], Awaitable[None]]


async def _association_worker(peer: Peer, contexts: list[PresentationContext], stats: Stats, send_loop: SendLoop) -> None:
    while True:
        assoc = Association(peer, contexts, stats)
        try:
            setup = await assoc.open()
        except AssociationError as exc:
            log.warning("association to %s:%s failed: %s", peer.host, peer.port, exc)
            stats.event(exc.kind)
            return
        stats.association_opened(setup)
        log.info("association accepted in %.1f ms: %d context(s) accepted, %d refused, window %d",
                 setup * 1000, len(assoc.accepted), len(assoc.refused), assoc.window)
        if assoc.refused:
            stats.event("presentation context refused", len(assoc.refused))
            for pc in assoc.refused:
                log.debug("refused: %s %s", pc.abstract_syntax, [str(ts) for ts in pc.transfer_syntax])
        try:
            await send_loop(assoc)
            await assoc.release()
            log.info("association released after %d request(s)", assoc.requests_sent)
            stats.event("released")
            return
        except AssociationError as exc:
            log.warning("association ended after %d request(s): %s", assoc.requests_sent, exc)
            stats.event(exc.kind)
            assoc.abort()
            if assoc.requests_sent == 0:
                return  # it failed before doing anything: do not loop on a failing peer


async def run_associations(
    peer: Peer,
    contexts: list[PresentationContext],
    count: int,
    stats: Stats,
    send_loop: SendLoop,
    on_progress: Callable[[Stats], None] | None = None,
) -> None:
    reporter = asyncio.get_running_loop().create_task(_report_progress(stats, on_progress)) if on_progress else None
    try:
        await asyncio.gather(*(_association_worker(peer, contexts, stats, send_loop) for _ in range(count)))
    finally:
        if reporter is not None:
            reporter.cancel()


async def _report_progress(stats: Stats, on_progress: Callable[[Stats], None]) -> None:
    while True:
        on_progress(stats)
        await asyncio.sleep(INTERVAL)
