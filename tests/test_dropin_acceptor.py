"""An acceptor that releases or aborts (a handler asked), step by step against a requestor engine.

PS3.8 lets either side ask for release: the acceptor sends A-RELEASE-RQ and
waits for A-RELEASE-RP (Sta7), aborting if none comes within the ACSE
timeout; when both ask at once, each answers the other (Sta10, Sta12).
"""

from __future__ import annotations

from hsscp import events
from hsscp.indications import Aborted, ReleaseConfirmed, ReleaseRequested

from .acceptor_link import Link, new_ae, new_service, run, until


class Seen:
    def __init__(self) -> None:
        self.names: list[str] = []

    def handlers(self) -> list:
        return [(event, lambda e: self.names.append(e.event.name))
                for event in (events.EVT_RELEASED, events.EVT_ABORTED, events.EVT_ACSE_SENT)]  # fmt: skip


@run
async def test_the_acceptor_asks_and_the_requestor_answers():
    seen = Seen()
    link = Link(new_service(new_ae(), seen.handlers())).associate()
    link.protocol.assoc.release()  # from the loop's thread: returns at once, done on the loop
    await until(lambda: any(isinstance(i, ReleaseRequested) for i in link.received + link.receive()))
    link.send(*link.peer.release_response())
    await until(lambda: link.protocol.assoc.is_released)
    assert seen.names == ["EVT_ACSE_SENT", "EVT_ACSE_SENT", "EVT_RELEASED"]  # A-ASSOCIATE-AC, A-RELEASE-RQ
    assert not link.protocol.assoc.is_aborted and link.protocol.engine.is_closed


@run
async def test_no_answer_to_the_acceptors_request_within_the_acse_timeout_aborts():
    seen = Seen()
    link = Link(new_service(new_ae(acse_timeout=0.1), seen.handlers())).associate()
    link.protocol.release()
    await until(lambda: link.protocol.assoc.is_aborted)
    assert any(isinstance(i, Aborted) for i in link.receive())
    assert seen.names == ["EVT_ACSE_SENT"] * 3 + ["EVT_ABORTED"]  # A-ASSOCIATE-AC, A-RELEASE-RQ, A-ABORT


@run
async def test_both_asking_at_once_ends_released_on_both_sides():
    seen = Seen()
    link = Link(new_service(new_ae(), seen.handlers())).associate()
    link.protocol.release()
    link.send(*link.peer.release())  # the requestor's A-RELEASE-RQ crosses ours
    collision = [i for i in link.receive() if isinstance(i, ReleaseRequested)]
    assert collision and collision[0].collision
    link.send(*link.peer.release_response())  # the requestor answers ours first (PS3.8 Sta9)
    await until(lambda: any(isinstance(i, ReleaseConfirmed) for i in link.received + link.receive()))
    assert link.protocol.assoc.is_released and seen.names.count("EVT_RELEASED") == 1


@run
async def test_a_handler_abort_is_an_aborted_association_with_its_event():
    seen = Seen()
    link = Link(new_service(new_ae(), seen.handlers())).associate()
    link.protocol.assoc.abort()
    await until(lambda: link.protocol.assoc.is_aborted)
    assert seen.names == ["EVT_ACSE_SENT", "EVT_ACSE_SENT", "EVT_ABORTED"]  # A-ASSOCIATE-AC, A-ABORT
    assert any(isinstance(i, Aborted) and i.by_peer for i in link.receive())
