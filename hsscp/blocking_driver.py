"""The sans-IO engine on a blocking socket: the requestor (SCU) side's I/O and timeouts.

Runs in the caller's thread: each call writes what the engine produces and
reads until the answer the caller waits for arrives, so there is no reactor
thread and no queue between the socket and the engine. ``network_timeout``
bounds any one read or write; the caller's own wait (ACSE, DIMSE) bounds the
whole of it.

Between calls nobody reads, so what the peer sends meanwhile (an A-ABORT, an
A-RELEASE-RQ, the connection closing) waits in the socket until :meth:`poll`
looks: a zero-timeout readiness check, made when the association's state is
read and before each operation, feeds whatever arrived to the engine.
:attr:`idle` is how long nothing has come from the peer, for the caller's
network timeout.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Callable, Iterator
from time import monotonic

from hsscp.engine import Engine
from hsscp.indications import Indication
from hsscp.transport import IOV_MAX, BlockingTransport
from hsscp.wire_watch import WireWatch

__all__ = ["SEND_BATCH_BYTES", "BlockingDriver"]

# The SCU logs under one name, whichever of its modules speaks.
LOGGER = logging.getLogger("hsscp.association")

# Socket writes per batch: big enough to amortise Python and syscall costs,
# small enough that a huge message never sits in memory.
SEND_BATCH_BYTES = 1024 * 1024

class BlockingDriver:
    """One engine and the connected transport it speaks through.

    ``on_indications`` gets what the engine reports, as it reports it;
    ``on_closed`` is called once, after the connection has gone (closed by
    us, by the peer, or failed) and the engine has been told.
    """

    def __init__(
        self,
        engine: Engine,
        transport: BlockingTransport,
        *,
        network_timeout: float | None,
        on_indications: Callable[[list[Indication]], None],
        on_closed: Callable[[], None],
    ) -> None:
        self.engine = engine
        self.transport: BlockingTransport | None = transport
        self.network_timeout = network_timeout
        self._on_indications = on_indications
        self._on_closed = on_closed
        # The per-PDU events' watch while a handler wants them (it costs a copy of every PDU).
        self.watch: WireWatch | None = None
        self._last_received = monotonic()
        self._reading = False
        self._poller = select.poll()
        self._poller.register(transport.sock, select.POLLIN)

    @property
    def idle(self) -> float:
        """Seconds since the peer last sent anything."""
        return monotonic() - self._last_received

    # -- writing ----------------------------------------------------------------

    def write(self, buffers: list) -> bool:
        """Send buffers as they are; False if the connection is gone (the association has ended)."""
        if not buffers:
            return True
        transport = self.transport
        if transport is None:
            return False
        try:
            transport.set_timeout(self.network_timeout)
            transport.send(buffers)
        except OSError as exc:
            LOGGER.error("Connection error while sending: %s", exc)
            self.close()
            return False
        if self.watch is not None:
            self.watch.sent(buffers)
        return True

    def write_message(self, steps: Iterator[None]) -> bool:
        """Write a message the engine queues PDU by PDU (``Engine.iter_message``), in batches."""
        engine = self.engine
        # PDUs per sendmsg: a batch of about SEND_BATCH_BYTES, in what one call may carry.
        batch = max(1, min(IOV_MAX // 2, SEND_BATCH_BYTES // engine.max_fragment))
        count = 0
        for _ in steps:
            count += 1
            if count == batch:
                count = 0
                if not self.write(engine.pop_output()):
                    return False
        return self.write(engine.pop_output())

    # -- reading ----------------------------------------------------------------

    def wait_for(self, wanted: tuple[type, ...], timeout: float | None) -> Indication | None:
        """Read until an indication of a ``wanted`` type; None on timeout or a closed connection."""
        deadline = None if timeout is None else monotonic() + timeout
        read_timeout = _shorter(timeout, self.network_timeout)
        self._reading = True
        try:
            while self.transport is not None:
                indications = self._read(read_timeout)
                if indications is None:
                    return None
                for indication in indications:
                    if isinstance(indication, wanted):
                        return indication
                if deadline is not None:
                    read_timeout = _shorter(deadline - monotonic(), self.network_timeout)
            return None
        finally:
            self._reading = False

    def poll(self) -> None:
        """Feed the engine whatever the peer sent since the last read, without waiting for more.

        Does nothing while a read is already under way (a handler looking at
        the association from inside one).
        """
        if self._reading or self.transport is None:
            return
        self._reading = True
        try:
            # TLS may hold a decrypted record the socket no longer shows as readable.
            while self.transport is not None and (self._poller.poll(0) or self._tls_pending()):
                if self._read(0) is None:
                    break
        finally:
            self._reading = False

    def _tls_pending(self) -> bool:
        transport = self.transport
        return transport is not None and transport.is_tls and transport.sock.pending() > 0

    def _read(self, timeout: float | None) -> list[Indication] | None:
        """One read fed to the engine; None if nothing came within ``timeout``."""
        try:
            data = self.transport.receive(timeout)
        except TimeoutError:
            return None
        except OSError as exc:
            LOGGER.error("Connection error: %s", exc)
            data = b""
        engine = self.engine
        if data:
            self._last_received = monotonic()
            if self.watch is not None:
                self.watch.received(data)
            indications = engine.receive_data(data)
        else:
            indications = engine.connection_lost()
        # What the engine queued on its own (an A-ABORT answering a protocol error) goes first.
        self.write(engine.pop_output())
        self._on_indications(indications)
        if self.transport is not None and (engine.close_requested or engine.is_finished):
            # Closed, or waiting for the peer to close: nothing more can come that we need.
            self.close()
        return indications

    # -- closing ------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (once); the engine learns of it if it does not know yet."""
        transport, self.transport = self.transport, None
        if transport is None:
            return
        self._poller.unregister(transport.sock)
        transport.close()
        if not self.engine.is_closed:
            self._on_indications(self.engine.connection_lost())
        self._on_closed()

def _shorter(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
