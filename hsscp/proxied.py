"""``--proxy-protocol``: read the PROXY header first, then hand the connection to the association.

Behind HAProxy's ``send-proxy`` / ``send-proxy-v2`` every connection starts
with a header naming the client. :class:`ProxyHeaderProtocol` owns the
connection until that header is read (under the ACSE timeout), then makes
the :class:`~hsscp.protocol.AcceptorProtocol` with the client's address as
its peer, switches the transport over to it, and gives it the bytes that
followed the header in the same read, as if they had just been read. From
then on the transport reads straight into the association's buffers: a
connection without the option never passes through here, so the common
path has no check added. A connection whose first bytes are not a valid
header is closed; a LOCAL header (made by the proxy itself) keeps the
socket's own peer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from hsscp.protocol import AcceptorProtocol
from hsscp.proxy_protocol import ProxyHeaderReader, ProxyProtocolError

if TYPE_CHECKING:
    from hsscp.service import AcceptorService

log = logging.getLogger("hsscp.server")

__all__ = ["ProxyHeaderProtocol", "acceptor_factory"]


def acceptor_factory(service: AcceptorService, proxy_protocol: bool = False) -> Callable[[], asyncio.BaseProtocol]:
    """What ``loop.create_server`` makes for each connection."""
    if proxy_protocol:
        return lambda: ProxyHeaderProtocol(service)
    return lambda: AcceptorProtocol(service)


class ProxyHeaderProtocol(asyncio.Protocol):
    """A connection until its PROXY header is read (a few hundred bytes, once)."""

    def __init__(self, service: AcceptorService) -> None:
        self.service = service
        self.reader = ProxyHeaderReader()
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        timeout = self.service.acse_timeout
        if timeout is not None:
            self._timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        try:
            result = self.reader.feed(data)
        except ProxyProtocolError as exc:
            self._close(f"no valid PROXY header: {exc}")
            return
        if result is None:
            return
        self._cancel_timer()
        header, rest = result
        # header.peer is None for LOCAL and UNKNOWN headers: the socket's own peer stands.
        acceptor = AcceptorProtocol(self.service, peer=header.peer)
        transport, self.transport = self.transport, None
        transport.set_protocol(acceptor)
        acceptor.connection_made(transport)
        _hand_over(acceptor, rest)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.transport = None

    def _timed_out(self) -> None:
        self._timer = None
        self._close("no PROXY header within the ACSE timeout")

    def _close(self, why: str) -> None:
        self._cancel_timer()
        transport = self.transport
        if transport is None:
            return
        peer = transport.get_extra_info("peername") or ("", 0)
        log.warning("closing the connection from %s:%s: %s", *peer[:2], why)
        transport.abort()  # nothing of it was answered, nothing is owed

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _hand_over(acceptor: AcceptorProtocol, rest: memoryview) -> None:
    """Give the association the bytes that came after the header, through its own buffers."""
    while rest and acceptor.transport is not None and not acceptor.transport.is_closing():
        buffer = acceptor.get_buffer(len(rest))
        n = min(len(buffer), len(rest))
        buffer[:n] = rest[:n]  # the one copy of these bytes: they were read before we knew where to
        acceptor.buffer_updated(n)
        rest = rest[n:]
