"""Reads landing in shared memory: datasets recorded in place, spilled past a slot, slots reused."""

from __future__ import annotations

import os

import pytest

from hsscp import dimse
from hsscp.indications import MessageReceived
from hsscp.part10 import read_file_meta
from hsscp.storage import Storage, StoreRequest
from workers.arena import Arena, Landing, StoreSink

from .engine_pair import IMPLICIT_LE, Pair

CT = "1.2.840.10008.5.1.4.1.1.2"
SLOT = 256 * 1024


class Receiver:
    """An acceptor engine whose reads land where a worker's do, fed like a socket would."""

    def __init__(self, tmp_path, slots: int = 4) -> None:
        self.arena = Arena(SLOT, slots)
        self.storage = Storage(tmp_path / "out")
        self.landing = Landing(self.arena, memoryview(bytearray(SLOT)))
        self.pair = Pair(sink_factory=self.sink)
        self.pair.associate([(CT, (IMPLICIT_LE,))])

    def sink(self, context_id, command) -> StoreSink:
        request = StoreRequest(command.affected_sop_class_uid, command.affected_sop_instance_uid, IMPLICIT_LE)
        return StoreSink(self.landing, self.storage, request)

    def send(self, dataset: bytes, uid: str = "1.2.3", read_size: int = 48 * 1024) -> list:
        wire = b"".join(bytes(b) for b in self.pair.requestor.send_message(1, dimse.CStoreRQ(1, CT, uid), dataset))
        self.wire_length = len(wire)
        received = []
        for start in range(0, len(wire), read_size):
            piece = wire[start : start + read_size]
            buffer = self.landing.buffer()
            buffer[: len(piece)] = piece  # what the kernel does on a read
            received += self.pair.acceptor.receive_data(self.landing.landed(len(piece)))
            self.landing.read_done()
        return [r.dataset for r in received if isinstance(r, MessageReceived)]

    def close(self) -> None:
        self.landing.close()
        self.arena.close()


@pytest.fixture
def receiver(tmp_path):
    r = Receiver(tmp_path)
    yield r
    r.close()


def joined(sink: StoreSink) -> bytes:
    return b"".join(bytes(v) for v in sink.views())


def test_a_dataset_is_recorded_where_it_landed_not_copied(receiver):
    dataset = os.urandom(100_000)
    (sink,) = receiver.send(dataset)
    assert sink.spool_path is None and joined(sink) == dataset
    assert len(sink.segments) > 1  # one per PDV: the PDU headers lie between them
    assert sum(n for _, n in sink.segments) == len(dataset)
    # Nothing was copied into the slot: it holds exactly what the reads put there.
    assert receiver.landing.pos == receiver.wire_length
    assert receiver.arena.refs[sink.slot] == 2  # the landing and the dataset
    sink.discard()
    assert receiver.arena.refs[receiver.landing.slot] == 1


def test_the_slot_starts_over_once_nothing_holds_it(receiver):
    first = receiver.send(os.urandom(20_000), "1.2.3.1")[0]
    second = receiver.send(os.urandom(20_000), "1.2.3.2")[0]
    assert first.slot == second.slot == receiver.landing.slot
    assert receiver.arena.refs[first.slot] == 3
    first.discard()
    second.discard()
    receiver.landing.read_done()
    assert receiver.landing.pos == 0


def test_a_dataset_bigger_than_a_slot_spills_to_a_spool_file(receiver):
    dataset = os.urandom(3 * SLOT)
    (sink,) = receiver.send(dataset)
    assert sink.spool_path is not None and sink.slot is None
    with open(sink.spool_path, "rb") as fp:
        meta = read_file_meta(fp)
        assert meta.sop_instance_uid == "1.2.3"
        assert fp.read() == dataset
    assert sink.head == dataset[: len(sink.head)] and len(sink.head) == 64 * 1024
    sink.discard()
    assert not os.listdir(receiver.storage.tmp_dir)


def test_jobs_holding_a_full_slot_send_the_landing_elsewhere(receiver):
    held = [receiver.send(os.urandom(100_000), f"1.2.3.{i}")[0] for i in range(4)]
    slots = {sink.slot for sink in held}
    assert len(slots) >= 2  # the first slot filled up while its datasets were still held
    assert all(sink.spool_path is None for sink in held)
    for sink, i in zip(held, range(4), strict=True):
        assert sink.request.sop_instance_uid == f"1.2.3.{i}"
    for sink in held:
        sink.discard()
    assert sum(receiver.arena.refs) == 1  # only the landing's own slot is held


def test_with_no_slot_free_reads_fall_back_and_datasets_spill(tmp_path):
    r = Receiver(tmp_path, slots=1)
    try:
        blocker = r.arena.take()  # every slot taken
        assert blocker is not None or r.landing.slot is not None
        dataset = os.urandom(50_000)
        (sink,) = r.send(dataset)
        if sink.spool_path is not None:
            with open(sink.spool_path, "rb") as fp:
                read_file_meta(fp)
                assert fp.read() == dataset
        else:
            assert joined(sink) == dataset
        sink.discard()
    finally:
        r.close()


def test_an_abort_mid_dataset_gives_everything_back(receiver):
    dataset = os.urandom(3 * SLOT)
    wire = b"".join(
        bytes(b) for b in receiver.pair.requestor.send_message(1, dimse.CStoreRQ(1, CT, "1.2.9"), dataset)
    )
    half = wire[: len(wire) // 2]
    for start in range(0, len(half), 40_000):
        piece = half[start : start + 40_000]
        receiver.landing.buffer()[: len(piece)] = piece
        receiver.pair.acceptor.receive_data(receiver.landing.landed(len(piece)))
        receiver.landing.read_done()
    receiver.pair.acceptor.connection_lost()
    receiver.landing.close()
    assert sum(receiver.arena.refs) == 0
    assert not os.listdir(receiver.storage.tmp_dir)


def test_bytes_from_elsewhere_are_copied_once_into_the_slot(receiver):
    dataset = os.urandom(30_000)
    sink = receiver.sink(1, dimse.CStoreRQ(1, CT, "1.2.3"))
    receiver.landing.buffer()  # the landing has a slot, but these bytes were not read into it
    for start in range(0, len(dataset), 10_000):
        sink.write(memoryview(dataset)[start : start + 10_000])
    assert sink.finish() is sink and joined(sink) == dataset and len(sink.segments) == 1
    sink.discard()
