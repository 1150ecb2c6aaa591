"""An AcceptorProtocol on an in-memory transport, with a real requestor engine as the peer.

:class:`MemoryTransport` does for the protocol what an event loop's socket
transport does: bytes the peer sent wait in a "kernel" queue and are read
into the protocol's buffer only while reading is not paused (resuming
reads what waited, on the next loop turn); what the protocol writes is
kept for the peer to take; ``close`` and ``abort`` report the loss of the
connection on the next loop turn. ``unsent`` stands for bytes the peer did
not read: the transport's write buffer size. Everything runs on a real
event loop, so timers and handler threads behave as they do in a server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from hsscp import AE, dimse, events, items, pdu
from hsscp.engine import Engine, Role
from hsscp.indications import AssociationAccepted, AssociationRejected, MessageReceived
from hsscp.limits import LocalLimiter
from hsscp.protocol import AcceptorProtocol
from hsscp.service import AcceptorService

from .engine_pair import IMPLICIT_LE, VERIFICATION, associate_rq

CT = "1.2.840.10008.5.1.4.1.1.2"
PEER = ("127.0.0.1", 40000)
LOCAL = ("127.0.0.1", 11112)
READ_SIZE = 65536
HANDLER_THREADS = ThreadPoolExecutor(8, thread_name_prefix="test-handler")  # shared: tests make many services


class MemoryTransport(asyncio.Transport):
    def __init__(self, protocol: AcceptorProtocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.loop = asyncio.get_running_loop()
        self.inbound = bytearray()  # sent by the peer, not read yet
        self.written = bytearray()  # written by the protocol, not taken by the peer yet
        self.reading = True
        self.pauses = 0
        self.resumes = 0
        self.closing = False
        self.aborted = False
        self.unsent = 0

    def get_extra_info(self, name, default=None):
        return {"peername": PEER, "sockname": LOCAL}.get(name, default)

    # -- the peer's side ------------------------------------------------------------

    def deliver(self, data: bytes, read_size: int = READ_SIZE) -> None:
        self.inbound += data
        self._read(read_size)

    def take(self) -> bytes:
        data, self.written = bytes(self.written), bytearray()
        return data

    def _read(self, read_size: int = READ_SIZE) -> None:
        while self.inbound and self.reading and not self.closing:
            buffer = self.protocol.get_buffer(-1)
            n = min(len(buffer), len(self.inbound), read_size)
            buffer[:n] = self.inbound[:n]
            del self.inbound[:n]
            self.protocol.buffer_updated(n)

    # -- the protocol's side --------------------------------------------------------

    def write(self, data) -> None:
        self.written += data

    def writelines(self, buffers) -> None:
        for buffer in buffers:
            self.written += buffer

    def pause_reading(self) -> None:
        assert self.reading, "paused twice"
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        assert not self.reading, "resumed while reading"
        self.reading = True
        self.resumes += 1
        self.loop.call_soon(self._read)

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()


def new_ae(**settings) -> AE:
    ae = AE("ANY-SCP")
    ae.add_supported_context(VERIFICATION, IMPLICIT_LE)
    ae.add_supported_context(CT, IMPLICIT_LE)
    for name, value in settings.items():
        setattr(ae, name, value)
    return ae


class WindowService(AcceptorService):
    """An AcceptorService granting up to ``window`` outstanding requests, as the storage service does."""

    window = 1

    def policy(self):
        return dataclasses.replace(super().policy(), max_operations_performed=self.window)


def new_service(ae: AE, handlers: Sequence = (), window: int = 1, service_class=WindowService) -> AcceptorService:
    service = service_class(
        ae, "ANY-SCP", ae.supported_contexts, events.HandlerSet(list(handlers)),
        LocalLimiter(lambda: ae.maximum_associations), HANDLER_THREADS,
    )
    service.window = window
    return service


class Link:
    """One connection to ``service``: the protocol, its transport, and the peer's engine."""

    def __init__(self, service: AcceptorService) -> None:
        self.protocol = AcceptorProtocol(service)
        self.transport = MemoryTransport(self.protocol)
        self.protocol.connection_made(self.transport)
        self.peer = Engine(Role.REQUESTOR)
        self.received: list = []  # the peer's indications, in order

    def send(self, *buffers, read_size: int = READ_SIZE) -> None:
        data = b"".join(bytes(b) for b in [*buffers, *self.peer.pop_output()])
        self.transport.deliver(data, read_size)

    def receive(self) -> list:
        """What the peer makes of everything written since the last call."""
        new = self.peer.receive_data(self.transport.take())
        self.received += new
        return new

    def request(self, request: pdu.AAssociateRQ | None = None, window: int | None = None) -> list:
        if request is None:
            request = associate_rq([(VERIFICATION, (IMPLICIT_LE,)), (CT, (IMPLICIT_LE,))])
        if window is not None:
            request.user_information.sub_items.append(items.AsyncOperationsWindow(window, 1))
        self.peer.request_association(request)
        self.peer.connection_made()
        self.send()
        return self.receive()

    def associate(self, window: int | None = None) -> Link:
        (answer,) = self.request(window=window)
        assert isinstance(answer, AssociationAccepted), answer
        return self

    def echo_wire(self, *message_ids: int) -> bytes:
        return b"".join(
            bytes(b) for message_id in message_ids for b in self.peer.send_message(1, dimse.CEchoRQ(message_id))
        )

    def store_wire(self, message_id: int, dataset: bytes, uid: str = "1.2.3.4") -> bytes:
        request = dimse.CStoreRQ(message_id, CT, uid)
        return b"".join(bytes(b) for b in self.peer.send_message(3, request, dataset))

    def responses(self) -> list:
        """The DIMSE responses the peer has received so far."""
        self.receive()
        return [i.command for i in self.received if isinstance(i, MessageReceived)]

    @property
    def rejection(self) -> tuple[int, int, int] | None:
        found = [i for i in self.received if isinstance(i, AssociationRejected)]
        return (found[0].result, found[0].source, found[0].reason) if found else None


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the loop run until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def run(test: Callable) -> Callable:
    """Run an ``async def`` test on a fresh event loop."""

    @functools.wraps(test)  # pytest reads the test's own parameters through this
    def runner(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return runner
