"""The acceptor driver (AcceptorProtocol) on an in-memory transport, a real requestor engine as the peer.

What only end-to-end tests showed before: the window is honoured, replies
go out in order, A-RELEASE-RP only after the responses owed, reading
pauses and resumes on the window and on write-buffer pressure, and the
network and ARTIM timers end what they should.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from hsscp import events
from hsscp.indications import Aborted, MessageReceived, ReleaseConfirmed

from .acceptor_link import Link, new_ae, new_service, run, until


class Gate:
    """A C-ECHO handler that waits to be let through: one ``open()`` per request."""

    def __init__(self) -> None:
        self._permits = threading.Semaphore(0)
        self._lock = threading.Lock()
        self.started: list[int] = []  # message IDs, in the order their handlers began
        self.running = 0
        self.most_running = 0

    def __call__(self, event) -> int:
        with self._lock:
            self.started.append(event.request.message_id)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self._permits.acquire(timeout=10)
        with self._lock:
            self.running -= 1
        return 0x0000

    def open(self, count: int = 1) -> None:
        for _ in range(count):
            self._permits.release()

    @property
    def handlers(self) -> list:
        return [(events.EVT_C_ECHO, self)]


def answered(link: Link) -> list[int]:
    return [response.message_id_being_responded_to for response in link.responses()]


@run
async def test_no_more_requests_are_performed_at_once_than_the_window_granted():
    gate = Gate()
    link = Link(new_service(new_ae(), gate.handlers, window=2)).associate(window=8)
    assert link.protocol.window == 2
    link.send(link.echo_wire(1, 2, 3, 4, 5))  # one read, five requests: three past the window
    await until(lambda: len(gate.started) == 2)
    await asyncio.sleep(0.05)  # room for a third handler to start, were the window not honoured
    assert gate.started == [1, 2]
    assert not link.transport.reading  # complete requests wait: read no more from this peer
    gate.open(5)
    await until(lambda: len(answered(link)) == 5)
    assert gate.most_running == 2 and sorted(answered(link)) == [1, 2, 3, 4, 5]
    await until(lambda: link.transport.reading)
    assert (link.transport.pauses, link.transport.resumes) == (1, 1)


@run
async def test_replies_go_out_in_the_order_of_the_requests():
    gate = Gate()
    gate.open(6)
    link = Link(new_service(new_ae(), gate.handlers)).associate()
    link.send(link.echo_wire(1, 2, 3, 4, 5, 6), read_size=100)  # split across many reads
    await until(lambda: len(answered(link)) == 6)
    assert answered(link) == gate.started == [1, 2, 3, 4, 5, 6]


@run
async def test_a_peer_within_its_window_is_never_paused():
    link = Link(new_service(new_ae())).associate()
    for message_id in range(1, 6):
        link.send(link.echo_wire(message_id))
        await until(lambda n=message_id: len(answered(link)) == n)
    assert link.transport.pauses == 0


@run
async def test_release_is_answered_only_after_the_responses_owed():
    gate = Gate()
    link = Link(new_service(new_ae(), gate.handlers)).associate()
    link.send(link.echo_wire(1), *link.peer.release())  # asks for release before its answer came
    await until(lambda: gate.started == [1])
    await asyncio.sleep(0.05)
    assert link.receive() == []  # neither the response nor A-RELEASE-RP yet
    gate.open()
    await until(lambda: any(isinstance(i, ReleaseConfirmed) for i in link.receive() + link.received))
    assert [type(i) for i in link.received[-2:]] == [MessageReceived, ReleaseConfirmed]
    assert answered(link) == [1]


@run
async def test_reading_pauses_while_the_write_buffer_is_over_its_high_water_mark():
    link = Link(new_service(new_ae())).associate()
    link.protocol.pause_writing()  # what the transport calls when the peer stops reading
    assert not link.transport.reading
    link.send(link.echo_wire(1))  # waits in the kernel: nothing is read
    await asyncio.sleep(0.05)
    assert answered(link) == []
    link.protocol.resume_writing()
    assert link.transport.reading
    await until(lambda: answered(link) == [1])


@run
async def test_reading_resumes_only_when_both_window_and_write_buffer_allow():
    gate = Gate()
    link = Link(new_service(new_ae(), gate.handlers)).associate()
    link.send(link.echo_wire(1, 2))
    await until(lambda: gate.started == [1])
    assert not link.transport.reading  # the window is full
    link.protocol.pause_writing()
    gate.open(2)
    await until(lambda: answered(link) == [1, 2])  # responses still go out, into the buffer
    assert not link.transport.reading  # the window is free, but the peer is not reading
    link.protocol.resume_writing()
    assert link.transport.reading and link.transport.pauses == 1


@pytest.mark.parametrize("unsent", [0, 100_000], ids=["peer-reads", "peer-reads-nothing"])
@run
async def test_a_close_that_would_wait_on_a_peer_that_reads_nothing_aborts_the_transport(unsent):
    link = Link(new_service(new_ae())).associate()
    link.transport.unsent = unsent
    link.protocol.abort()
    await until(lambda: link.protocol.transport is None)  # connection_lost came
    assert link.transport.aborted is bool(unsent)
    assert any(isinstance(i, Aborted) for i in link.receive())


@run
async def test_the_network_timeout_aborts_an_idle_association():
    link = Link(new_service(new_ae(network_timeout=0.1))).associate()
    await until(lambda: link.transport.closing, timeout=3)
    (aborted,) = link.receive()
    assert isinstance(aborted, Aborted) and aborted.by_peer


@run
async def test_artim_closes_a_connection_that_never_asks_for_an_association():
    link = Link(new_service(new_ae(acse_timeout=0.1)))
    await until(lambda: link.transport.closing, timeout=3)
    assert link.transport.take() == b""  # PS3.8 AA-2: close, say nothing


@run
async def test_the_network_timer_waits_while_our_own_window_is_full():
    gate = Gate()
    link = Link(new_service(new_ae(network_timeout=0.1), gate.handlers)).associate()
    link.send(link.echo_wire(1, 2))
    await asyncio.sleep(0.4)  # several timeouts with nothing read: because we paused reading
    assert not link.transport.closing
    gate.open(2)
    await until(lambda: answered(link) == [1, 2])
    await until(lambda: link.transport.closing, timeout=3)  # idle now: the peer's silence counts


@run
async def test_requests_still_waiting_when_the_association_ends_are_handed_back():
    gate = Gate()
    service = new_service(new_ae(), gate.handlers)
    dropped = []
    service.request_dropped = lambda message: dropped.append(message.command.message_id)
    link = Link(service).associate()
    link.send(link.echo_wire(1, 2, 3))
    await until(lambda: gate.started == [1])
    link.protocol.abort()  # as a shutdown does
    await until(lambda: link.protocol.transport is None)
    assert dropped == [2, 3]
    gate.open()  # the reply to the request in flight finds the association gone: nothing to send
    await asyncio.sleep(0.05)
    assert not any(isinstance(i, MessageReceived) for i in link.receive())
