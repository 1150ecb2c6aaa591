"""Raw-socket DICOM peers and the service check, for tests against the running multiprocess SCP.

A :class:`Requestor` makes the legitimate parts of an association with a
requestor engine on a blocking socket; the rest a test sends by hand.
``storescu_is_served`` is the check after every attack: a normal DCMTK
storescu is served at once and its files are stored byte for byte.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from hsscp import dimse, items, pdu
from hsscp.engine import Engine, Role
from hsscp.indications import AssociationAccepted

from .datagen import CT_IMAGE_STORAGE, dataset_of, instance, stored_files, write_instance
from .engine_pair import associate_rq
from .hsscp_process import RunningSCP, hsscp_storescp
from .peers import dcmtk_env, require_binary

HOST = "127.0.0.1"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
MAX_PDU = 16384
studies = itertools.count(100)  # each service check stores instances no earlier check stored


@contextlib.contextmanager
def serving(out: Path, *args: str, workers: int = 2, writers: int = 1) -> Iterator[RunningSCP]:
    """``hsscp_storescp``, started again on another port if something took the free one first.

    A short graceful timeout comes first (``args`` may override it): a test that fails
    with an association open must not wait the default 30 s for the server to stop.
    """
    for attempt in range(3):
        started = False
        try:
            with hsscp_storescp(out, "--graceful-timeout", "2", *args, workers=workers, writers=writers) as running:
                started = True
                yield running
            return
        except RuntimeError as exc:
            if started or attempt == 2 or "before listening" not in str(exc):
                raise


def storescu_is_served(scp: RunningSCP, folder: Path, count: int = 3) -> None:
    """A normal DCMTK storescu succeeds at once and its files are stored byte for byte."""
    study = next(studies)
    source = folder / f"check-{study}"
    source.mkdir(parents=True)
    paths = [write_instance(source, instance(i, pixel_bytes=1024, study=study)) for i in range(1, count + 1)]
    started = time.monotonic()
    done = subprocess.run(
        [require_binary("storescu"), "-R", "-to", "10", "-ta", "10", "-td", "10", HOST, str(scp.port), *map(str, paths)],
        env=dcmtk_env(), capture_output=True, text=True, timeout=60,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert elapsed < 10, f"storescu needed {elapsed:.1f} s"
    stored = stored_files(scp.out)
    for path in paths:
        assert path.stem in stored, f"{path.stem} was not stored"
        assert dataset_of(stored[path.stem]) == dataset_of(path)


def connect(port: int, receive_buffer: int | None = None) -> socket.socket:
    """A TCP connection to the server; ``receive_buffer`` caps what the kernel reads ahead for us."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # before connecting, so the window the server sees is small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def split(data: bytes) -> tuple[list, bytes]:
    """Decode the complete PDUs at the start of ``data``; return them and the bytes left."""
    pdus, offset = [], 0
    while len(data) - offset >= 6:
        end = offset + 6 + int.from_bytes(data[offset + 2 : offset + 6], "big")
        if end > len(data):
            break
        pdus.append(pdu.decode_pdu(data[offset:end]))
        offset = end
    return pdus, data[offset:]


class Requestor:
    """A requestor engine on a blocking socket: legitimate PDUs from the engine, the rest by hand."""

    def __init__(self, port: int, contexts=((CT_IMAGE_STORAGE, (EXPLICIT_LE,)),), calling: str = "TEST-SCU",
                 window: int | None = None, receive_buffer: int | None = None) -> None:
        """``window``: propose an asynchronous operations window of that many requests."""
        request = associate_rq(list(contexts), MAX_PDU)
        request.calling_ae_title = calling
        if window is not None:
            request.user_information.sub_items.append(items.AsyncOperationsWindow(window, 1))
        self.engine = Engine(Role.REQUESTOR)
        self.engine.request_association(request)
        self.sock = connect(port, receive_buffer)
        self.engine.connection_made()
        self.granted_window = 1  # outstanding requests the server allows, once associated

    def send(self, *buffers) -> None:
        self.sock.sendall(b"".join(bytes(b) for b in [*buffers, *self.engine.pop_output()]))

    def receive(self, kind, timeout: float = 10.0) -> list:
        """Indications up to and including the first of ``kind`` (a class or a tuple of them)."""
        indications: list = []
        self.sock.settimeout(timeout)
        while not any(isinstance(i, kind) for i in indications):
            data = self.sock.recv(65536)
            assert data, f"connection closed while waiting for {kind!r}: {indications}"
            indications += self.engine.receive_data(data)
        return indications

    def associate(self) -> Requestor:
        self.send()
        accepted = self.receive(AssociationAccepted)[-1]
        granted = accepted.response.user_information.async_operations_window
        if granted is not None:
            self.granted_window = granted.max_performed
        return self

    def store_wire(self, path: Path, message_id: int = 1) -> bytes:
        """A whole C-STORE (command and data set) as the engine would send it."""
        request = dimse.CStoreRQ(message_id, CT_IMAGE_STORAGE, path.stem)
        return b"".join(bytes(b) for b in self.engine.send_message(1, request, dataset_of(path)))

    def close(self) -> None:
        self.sock.close()
