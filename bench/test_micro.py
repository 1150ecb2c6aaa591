"""Micro benchmarks of the protocol path and of the store path's checks (pytest-benchmark).

Run: make bench   (or: .venv/bin/python -m pytest bench -q --benchmark-only)
The 16 KiB and 1 MiB P-DATA-TF decodes should cost about the same: values
are views into the buffer, never copies.
"""

from __future__ import annotations

import os

import pytest

from hsscp import dimse, items, pdu
from hsscp.dataset_walk import encoding_of, find_defect
from hsscp.engine import Engine, Role
from hsscp.loadgen import uidpatch
from hsscp.loadgen.datasets import KINDS
from hsscp.reader import PduReader
from hsscp.storage import Storage, StoreRequest
from hsscp.storage.content import Spooled
from tests.engine_pair import IMPLICIT_LE, Pair

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SIZES = {"16KiB": 16 * 1024, "1MiB": 1024 * 1024}


def pdata(size: int) -> bytes:
    return pdu.encode_pdu(pdu.PDataTF([pdu.PDV(1, 0, bytes(size - 12))]))


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_decode_pdata(benchmark, size):
    data = memoryview(pdata(size))
    decoded = benchmark(pdu.decode_pdu, data)
    assert len(decoded.pdvs[0].data) == size - 12


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_stream_pdata_through_the_reader(benchmark, size):
    data = memoryview(pdata(size))
    reader = PduReader()

    def read():
        return sum(1 for _ in reader.feed(data))

    assert benchmark(read) == 1  # one PDV, all in the buffer: one step


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_encode_pdata(benchmark, size):
    payload = memoryview(bytes(size - 12))
    buffers = benchmark(pdu.pdata_buffers, 1, 2, payload)
    assert buffers[1] is payload


def associate_rq_128() -> pdu.AAssociateRQ:
    return pdu.AAssociateRQ(
        "ANY-SCP",
        "STORESCU",
        presentation_contexts=[
            items.PresentationContextRQ(2 * i + 1, f"1.2.840.10008.5.1.4.1.1.{i}", [IMPLICIT_LE, "1.2.840.10008.1.2.1"])
            for i in range(128)
        ],
        user_information=items.UserInformation([items.MaximumLength(16384), items.ImplementationClassUID("1.2.3")]),
    )


def test_decode_associate_rq_128_contexts(benchmark):
    data = memoryview(pdu.encode_pdu(associate_rq_128()))
    assert len(benchmark(pdu.decode_pdu, data).presentation_contexts) == 128


def test_encode_associate_rq_128_contexts(benchmark):
    request = associate_rq_128()
    assert benchmark(request.encode)[0][0] == 1


STORE_RQ = dimse.CStoreRQ(7, CT_IMAGE_STORAGE, "1.2.826.0.1.3680043.8.498.12345678901234567890", 0, "MOVESCU", 3)


def test_encode_c_store_rq(benchmark):
    assert benchmark(dimse.encode_command, STORE_RQ)


def test_decode_c_store_rq(benchmark):
    data = memoryview(dimse.encode_command(STORE_RQ))
    assert benchmark(dimse.decode_command, data) == STORE_RQ


def test_whole_c_store_512k_through_two_engines(benchmark):
    """Send, read and answer one 512 KiB C-STORE between two established engines (16 KiB PDUs)."""
    dataset = bytes(512 * 1024)
    pair = Pair()
    pair.associate([(CT_IMAGE_STORAGE, (IMPLICIT_LE,))])
    requestor, acceptor = pair.requestor, pair.acceptor

    def store():
        received = []
        for buffer in requestor.send_message(1, STORE_RQ, dataset):
            received += acceptor.receive_data(buffer)
        (message,) = received
        response = dimse.CStoreRSP(message.command.message_id, 0, CT_IMAGE_STORAGE, STORE_RQ.affected_sop_instance_uid)
        for buffer in acceptor.send_message(1, response):
            requestor.receive_data(buffer)
        return len(message.dataset)

    assert benchmark(store) == len(dataset)


def test_engines_can_be_built_cheaply(benchmark):
    benchmark(Engine, Role.ACCEPTOR)


# The same work done by pynetdicom, measured in the same run for ratios.


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_peer_pynetdicom_decode_pdata(benchmark, size):
    from pynetdicom.pdu import P_DATA_TF

    data = pdata(size)

    def decode():
        decoded = P_DATA_TF()
        decoded.decode(data)
        return decoded

    assert len(benchmark(decode).presentation_data_value_items) == 1


def test_peer_pynetdicom_decode_associate_rq_128_contexts(benchmark):
    from pynetdicom.pdu import A_ASSOCIATE_RQ

    data = pdu.encode_pdu(associate_rq_128())

    def decode():
        decoded = A_ASSOCIATE_RQ()
        decoded.decode(data)
        return decoded

    assert len(benchmark(decode).presentation_context) == 128


# The store path's completeness check (hsscp.dataset_walk.find_defect) on the data sets of
# `hsscp bench`: whole, and in the pieces a worker holds them in (one per PDV). Its cost
# beside a whole store of the same instance (fsync none, the file removed between rounds).

WALKS = [("tiny", None), ("ct", None), ("ct", 16 * 1024), ("multiframe", None), ("multiframe", 1024 * 1024)]


def bench_data_set(kind: str) -> tuple[str, memoryview]:
    syntax, data = KINDS[kind].template(0)
    return syntax, memoryview(data)


@pytest.mark.parametrize(("kind", "piece"), WALKS, ids=[f"{k}-{p or 'whole'}" for k, p in WALKS])
def test_completeness_walk(benchmark, kind, piece):
    syntax, view = bench_data_set(kind)
    segments = [view] if piece is None else [view[i : i + piece] for i in range(0, len(view), piece)]
    assert benchmark(find_defect, segments, encoding_of(syntax)) is None


def test_completeness_walk_of_a_spooled_multiframe(benchmark, tmp_path):
    """64 MiB in a spool file, 64 KiB of it in memory: the walk reads at the headers it needs."""
    syntax, view = bench_data_set("multiframe")
    path = tmp_path / "spool"
    path.write_bytes(view)
    fd = os.open(path, os.O_RDONLY)
    try:
        content = Spooled(fd, 0, len(view), view[: 64 * 1024])
        assert benchmark(content.structure_defect, syntax) is None
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", ["tiny", "ct"])
def test_store_in_memory_without_fsync(benchmark, tmp_path, kind):
    """A whole new-instance store (checks, write, link into place), for the walk's share of it."""
    syntax, view = bench_data_set(kind)
    plan = uidpatch.plan(view, syntax)
    request = StoreRequest(plan.original(uidpatch.SOP_CLASS_UID), plan.original(uidpatch.SOP_INSTANCE_UID), syntax)
    storage = Storage(tmp_path / "out", layout="flat", fsync="none")
    stored = storage.out_dir / f"{request.sop_instance_uid}.dcm"

    def store():
        return storage.store_segments(request, [view]).duplicate

    def fresh():  # every round a new instance, not a duplicate
        if stored.exists():
            os.unlink(stored)

    assert benchmark.pedantic(store, setup=fresh, rounds=200, warmup_rounds=5) is None
