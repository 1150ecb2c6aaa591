"""Backpressure, against the running multiprocess SCP: peers past their window, peers that never read.

One worker serves a flooder and a normal DCMTK storescu at once. The
flooder negotiates an asynchronous operations window (or none: one
request at a time), then sends requests as fast as its socket takes them
and never reads a response. The worker must stop reading from it rather
than queue what it sends, so that its memory and spool files stay
bounded whatever the flooder does, while the storescu is served as usual;
once the flooder is gone, nothing of it is left held.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hsscp import dimse
from hsscp.indications import AssociationAccepted, AssociationRejected

from .datagen import instance, temp_files, write_instance
from .hsscp_process import RunningSCP
from .raw_peers import (
    IMPLICIT_LE,
    MAX_PDU,
    VERIFICATION,
    Requestor,
    serving,
    storescu_is_served,
    studies,
)

NETWORK_TIMEOUT = 3.0
MAX_ASSOCIATIONS = 3
SERVER_ARGS = (
    "-ta", "2", "-tn", str(NETWORK_TIMEOUT), "--max-pdu", str(MAX_PDU), "--layout", "flat",
    "--spool-threshold", "64K", "--fsync", "none", "--inline-limit", "0", "--async-ops", "4",
    "--max-associations", str(MAX_ASSOCIATIONS),
)
SPOOLED = 100_000  # data set bytes: past a 64 KiB arena slot, so each flooded C-STORE has a spool file
FLOODER_RECEIVE_BUFFER = 4096  # the flooder's kernel reads ahead little of what it never reads
RSS_GROWTH_BOUND = 64 * 1024 * 1024  # without backpressure the worker passes this within a second


@pytest.fixture(scope="module")
def scp(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("backpressure") / "out", *SERVER_ARGS, workers=1, writers=1) as running:
        yield running


def worker_pid(scp: RunningSCP) -> int:
    (pid,) = [pid for name, pid in scp.children().items() if name.startswith("hsscp-worker")]
    return pid


def resident_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


class Background(threading.Thread):
    """A thread for the length of a ``with`` block: ``run`` loops until ``_halt`` is set."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self._halt = threading.Event()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self._halt.set()
        self.join()


class Flooder(Background):
    """Sends one request's bytes again and again and never reads; counts what the server took."""

    def __init__(self, peer: Requestor, wire: bytes) -> None:
        super().__init__()
        self.peer = peer
        self.wire = wire
        self.sent = 0
        self.last_taken = time.monotonic()  # when the server last took bytes of it
        self.dropped = False  # the server ended the connection

    def run(self) -> None:
        sock = self.peer.sock
        sock.settimeout(0.05)
        many = memoryview(self.wire * 16)
        offset = 0
        while not self._halt.is_set():
            try:
                n = sock.send(many[offset:])
            except TimeoutError:
                continue
            except OSError:
                self.dropped = True
                return
            self.sent += n
            self.last_taken = time.monotonic()
            offset = (offset + n) % len(self.wire)


class Sampler(Background):
    """The most the worker held while it ran: resident memory, files in the temporary folder."""

    def __init__(self, pid: int, tmp_dir: Path) -> None:
        super().__init__()
        self.pid = pid
        self.tmp_dir = tmp_dir
        self.baseline = resident_bytes(pid)
        self.most_resident = self.baseline
        self.most_temp_files = 0

    def run(self) -> None:
        while not self._halt.wait(0.01):
            self.most_resident = max(self.most_resident, resident_bytes(self.pid))
            self.most_temp_files = max(self.most_temp_files, len(os.listdir(self.tmp_dir)))

    @property
    def growth(self) -> int:
        return self.most_resident - self.baseline


def every_association_slot_is_free(port: int) -> bool:
    """Whether as many fresh associations as the limit allows are accepted at once."""
    peers = [Requestor(port) for _ in range(MAX_ASSOCIATIONS)]
    try:
        for peer in peers:
            peer.send()
        answers = [peer.receive((AssociationAccepted, AssociationRejected))[-1] for peer in peers]
        return all(isinstance(answer, AssociationAccepted) for answer in answers)
    finally:
        for peer in peers:
            peer.close()


@pytest.mark.parametrize("window", [None, 4], ids=["no-window", "window-4"])
def test_a_store_flood_past_the_window_is_held_to_it(scp, tmp_path, window):
    """Past its window the flooder is not read: at most a window's worth of its data sets is held.

    Without backpressure every C-STORE read while the window is full waits in a
    queue with its spool file: thousands of files and hundreds of MB within seconds.
    """
    path = write_instance(tmp_path, instance(1, pixel_bytes=SPOOLED, study=next(studies)))
    flooder = Requestor(scp.port, window=window, receive_buffer=FLOODER_RECEIVE_BUFFER).associate()
    assert flooder.granted_window == (window or 1)
    wire = flooder.store_wire(path)
    tmp_dir = scp.out / ".hsscp-tmp"
    with Sampler(worker_pid(scp), tmp_dir) as sampler, Flooder(flooder, wire) as flood:
        wait_for(lambda: flood.sent > 20 * len(wire), 10, "the flood did not get going")
        storescu_is_served(scp, tmp_path, count=10)
        assert not flood.dropped
    # Spool files: those of the requests in flight (the window), of what one read
    # completed past it, of the one being received, and the storescu's.
    assert sampler.most_temp_files <= flooder.granted_window + 6, sampler.most_temp_files
    assert sampler.growth < RSS_GROWTH_BOUND, f"the worker grew by {sampler.growth / 2**20:.0f} MiB"
    flooder.close()
    wait_for(lambda: not os.listdir(tmp_dir) and not temp_files(scp.out), 10,
             f"temporary files left: {os.listdir(tmp_dir)}")
    wait_for(lambda: every_association_slot_is_free(scp.port), 10, "the flooder's association slot was kept")


def test_a_peer_that_never_reads_its_responses_is_paused_then_dropped(scp, tmp_path):
    """C-ECHOs, one after another, and never a read: the responses pile up, then reading stops.

    Once the server stops reading, the flooder's socket stops taking bytes; with
    nothing read for the network timeout the server drops it (it would never
    read an A-ABORT) and its association slot comes back.
    """
    flooder = Requestor(scp.port, contexts=((VERIFICATION, (IMPLICIT_LE,)),),
                        receive_buffer=FLOODER_RECEIVE_BUFFER).associate()
    wire = b"".join(bytes(b) for b in flooder.engine.send_message(1, dimse.CEchoRQ(1)))
    with Sampler(worker_pid(scp), scp.out / ".hsscp-tmp") as sampler, Flooder(flooder, wire) as flood:
        stalled = []

        def stalled_for_half_a_second() -> bool:
            stalled.append(flood.sent)
            return len(stalled) > 25 and stalled[-1] == stalled[-26]

        wait_for(stalled_for_half_a_second, 30, f"the server read on: {flood.sent} bytes taken")
        assert not flood.dropped
        storescu_is_served(scp, tmp_path)
        # A pause to work through one read's requests looks like a stall too, and the
        # flood goes on after it: the timeout runs from when the server last took bytes.
        wait_for(lambda: flood.dropped or time.monotonic() - flood.last_taken > NETWORK_TIMEOUT + 10, 120,
                 "the server never stopped reading the flood")
        assert flood.dropped, f"a peer that sent nothing for {time.monotonic() - flood.last_taken:.0f} s was kept"
    assert sampler.growth < RSS_GROWTH_BOUND, f"the worker grew by {sampler.growth / 2**20:.0f} MiB"
    flooder.close()
    wait_for(lambda: every_association_slot_is_free(scp.port), 10, "the flooder's association slot was kept")
