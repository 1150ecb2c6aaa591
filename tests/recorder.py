"""A TCP proxy that records the DICOM Upper Layer PDUs two real peers exchange.

The requestor connects to the proxy instead of the acceptor; the proxy opens
its own connection to the acceptor and relays bytes both ways, keeping a copy
of each direction. Each direction's stream is cut into PDUs with the 6-byte
PDU header (type, reserved, 4-byte big-endian length of the rest).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"
RQ = "rq"  # from the connecting side, the association requestor
AC = "ac"  # from the side the proxy connects to, the association acceptor
HEADER_LEN = 6

PDU_NAMES = {
    0x01: "A-ASSOCIATE-RQ",
    0x02: "A-ASSOCIATE-AC",
    0x03: "A-ASSOCIATE-RJ",
    0x04: "P-DATA-TF",
    0x05: "A-RELEASE-RQ",
    0x06: "A-RELEASE-RP",
    0x07: "A-ABORT",
}


def pdu_length(header: bytes) -> int:
    """Length of the whole PDU that starts with ``header`` (at least 6 bytes)."""
    return HEADER_LEN + int.from_bytes(header[2:6], "big")


def take_pdus(buffer: bytearray) -> list[bytes]:
    """Remove and return the complete PDUs at the front of ``buffer``."""
    pdus = []
    while len(buffer) >= HEADER_LEN and len(buffer) >= pdu_length(buffer):
        end = pdu_length(buffer)
        pdus.append(bytes(buffer[:end]))
        del buffer[:end]
    return pdus


def split_pdus(stream: bytes) -> list[bytes]:
    """Cut one direction's byte stream into PDUs; trailing partial bytes are an error."""
    buffer = bytearray(stream)
    pdus = take_pdus(buffer)
    if buffer:
        raise ValueError(f"{len(buffer)} bytes after the last complete PDU")
    return pdus


@dataclass
class Connection:
    """What one relayed TCP connection carried."""

    streams: dict[str, bytearray] = field(
        default_factory=lambda: {RQ: bytearray(), AC: bytearray()}
    )
    pending: dict[str, bytearray] = field(
        default_factory=lambda: {RQ: bytearray(), AC: bytearray()}
    )
    closed: bool = False


class RecordingProxy:
    """Relay connections from 127.0.0.1:<port> to a target and record the PDUs.

    Use as a context manager; connections are accepted one after another or
    concurrently, and ``pdus`` lists every complete PDU of every connection
    in order of arrival.
    """

    def __init__(self, target_port: int, target_host: str = HOST) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Condition()
        self._connections: list[Connection] = []
        self._pdus: list[tuple[str, bytes]] = []
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()

    def __enter__(self) -> RecordingProxy:
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pdus(self) -> list[tuple[str, bytes]]:
        """``(direction, pdu_bytes)`` of every complete PDU so far, in order of arrival."""
        with self._lock:
            return list(self._pdus)

    @property
    def streams(self) -> list[dict[str, bytes]]:
        """The raw bytes of each connection, keyed by direction."""
        with self._lock:
            return [{d: bytes(s) for d, s in c.streams.items()} for c in self._connections]

    @property
    def incomplete(self) -> bool:
        """True if some direction ended (so far) in the middle of a PDU."""
        with self._lock:
            return any(any(c.pending.values()) for c in self._connections)

    def wait_closed(self, count: int = 1, timeout: float = 10.0) -> None:
        """Block until ``count`` connections were accepted and have fully closed."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while sum(c.closed for c in self._connections) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"fewer than {count} relayed connections closed in {timeout}s"
                    )
                self._lock.wait(left)

    def close(self) -> None:
        """Stop accepting, drop open connections and join the relay threads."""
        self._stopping.set()
        self._listener.close()
        with self._lock:
            for sock in self._open:
                _shutdown(sock, socket.SHUT_RDWR)
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5.0)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        conn = Connection()
        with self._lock:
            self._connections.append(conn)
        try:
            with client, socket.create_connection(self.target, timeout=10.0) as upstream:
                for sock in (client, upstream):
                    sock.settimeout(None)
                    # The proxy must not add Nagle delays the real peers do not have.
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._relay_both(conn, client, upstream)
        finally:
            with self._lock:
                conn.closed = True
                self._lock.notify_all()

    def _relay_both(self, conn: Connection, client: socket.socket, upstream: socket.socket) -> None:
        pair = {client, upstream}
        with self._lock:
            self._open |= pair
        if self._stopping.is_set():
            for sock in pair:
                _shutdown(sock, socket.SHUT_RDWR)
        back = threading.Thread(target=self._relay, args=(conn, AC, upstream, client), daemon=True)
        back.start()
        self._relay(conn, RQ, client, upstream)
        back.join()
        with self._lock:
            self._open -= pair

    def _relay(
        self, conn: Connection, direction: str, src: socket.socket, dst: socket.socket
    ) -> None:
        try:
            while chunk := src.recv(65536):
                # Record before forwarding so a reply can never be logged before its cause.
                self._record(conn, direction, chunk)
                dst.sendall(chunk)
        except OSError:
            # A reset on one side: make the other side see it too.
            _shutdown(src, socket.SHUT_RDWR)
            _shutdown(dst, socket.SHUT_RDWR)
            return
        _shutdown(dst, socket.SHUT_WR)

    def _record(self, conn: Connection, direction: str, chunk: bytes) -> None:
        with self._lock:
            conn.streams[direction] += chunk
            conn.pending[direction] += chunk
            self._pdus.extend((direction, pdu) for pdu in take_pdus(conn.pending[direction]))


def _shutdown(sock: socket.socket, how: int) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(how)
