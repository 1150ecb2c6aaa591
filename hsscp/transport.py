"""Sockets and event loops: the listener both servers share, and the blocking SCU connection.

A blocking TCP (or TLS) connection drives an engine from one thread.

Writes are scatter/gather: the engine's buffers (PDU headers and views of
the caller's dataset bytes) go to the kernel in one ``sendmsg`` call, never
joined first. Reads land in one reusable buffer; a read's bytes are only
valid until the next read, which is all the engine needs (it copies what it
keeps).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

# Most buffers one sendmsg call may carry (POSIX IOV_MAX; Linux says 1024).
try:
    IOV_MAX = max(16, os.sysconf("SC_IOV_MAX"))
except (AttributeError, ValueError, OSError):
    IOV_MAX = 1024

RECEIVE_BUFFER_SIZE = 256 * 1024

Address = tuple  # (host, port) or (host, port, flowinfo, scope_id)


def address_family(host: str) -> socket.AddressFamily:
    """IPv6 for a literal with a colon, IPv4 otherwise (as pynetdicom decides)."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class BlockingTransport:
    """One connected stream socket with per-call timeouts."""

    __slots__ = ("_buffer", "_timeout", "_view", "is_tls", "sock")

    def __init__(self, sock: socket.socket, receive_size: int = RECEIVE_BUFFER_SIZE) -> None:
        self.sock = sock
        self.is_tls = isinstance(sock, ssl.SSLSocket)
        self._buffer = bytearray(receive_size)
        self._view = memoryview(self._buffer)
        self._timeout: float | None = sock.gettimeout()

    @classmethod
    def connect(
        cls,
        address: Address,
        *,
        bind_address: Address | None = None,
        timeout: float | None = None,
        tls_args: tuple[ssl.SSLContext, str | None] | None = None,
    ) -> BlockingTransport:
        """Connect to ``address`` (raises OSError, e.g. ConnectionRefusedError or TimeoutError).

        ``timeout`` bounds the TCP connect and the TLS handshake.
        """
        family = address_family(address[0])
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # DIMSE is request/response: Nagle would hold each small PDU for the peer's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if bind_address is not None:
                sock.bind(tuple(bind_address))
            sock.settimeout(timeout)
            sock.connect(tuple(address))
            if tls_args is not None:
                context, server_hostname = tls_args
                sock = context.wrap_socket(sock, server_hostname=server_hostname)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    @property
    def local_address(self) -> tuple:
        return self.sock.getsockname()

    @property
    def peer_address(self) -> tuple:
        return self.sock.getpeername()

    def set_timeout(self, timeout: float | None) -> None:
        """Seconds the next send or receive may block; None blocks forever."""
        if timeout is not None and timeout <= 0:
            timeout = 1e-6  # 0 would make the socket non-blocking: expire at once instead
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout

    def send(self, buffers: Sequence) -> None:
        """Write every buffer, in order; raises OSError (TimeoutError on a stall)."""
        if self.is_tls:
            # SSLSocket has no sendmsg; each buffer becomes (at least) one TLS record.
            for buffer in buffers:
                self.sock.sendall(buffer)
            return
        pending = list(buffers)
        start, end = 0, len(pending)
        sendmsg = self.sock.sendmsg
        while start < end:
            sent = sendmsg(pending[start : start + IOV_MAX])
            start = _advance(pending, start, sent)

    def receive(self, timeout: float | None) -> memoryview:
        """The bytes one read returned, empty at end of stream; valid until the next call.

        Raises TimeoutError when nothing arrives within ``timeout`` seconds.
        """
        self.set_timeout(timeout)
        count = self.sock.recv_into(self._buffer)
        return self._view[:count]

    def close(self) -> None:
        """Shut down both directions (so the peer sees the end at once) and close."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _advance(pending: list, start: int, sent: int) -> int:
    """Skip the buffers ``sent`` bytes covered; trim a partly sent one in place."""
    while sent:
        buffer = pending[start]
        size = len(buffer)
        if sent < size:
            pending[start] = memoryview(buffer)[sent:]
            return start
        sent -= size
        start += 1
    # Skip empty buffers too, so the loop ends once nothing is left to send.
    while start < len(pending) and not len(pending[start]):
        start += 1
    return start


LISTEN_BACKLOG = 512


def bind_listener(address: tuple[str, int]) -> socket.socket:
    """A listening TCP socket, bound once, ready to be shared or inherited."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        # Name the address: "[Errno 98] Address already in use" alone does not say which.
        where = f"[{address[0]}]" if ":" in address[0] else address[0] or "*"
        raise OSError(exc.errno, f"cannot listen on {where}:{address[1]}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop (imported here: the blocking SCU never needs it)."""
    import uvloop

    return uvloop.new_event_loop()


def set_nodelay(sock: socket.socket | None) -> None:
    """TCP_NODELAY on a TCP socket: a request/response protocol stalls ~40 ms a message without it."""
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
