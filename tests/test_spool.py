"""Spool files: meta group first, fragments batched in order, the head kept, nothing left on failure.

The full disk is a real one: a tiny tmpfs mounted for the test (the tests run as root).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from hsscp.part10 import read_file_meta
from hsscp.storage import Storage, StoreRequest
from workers.arena import Arena, Landing, StoreSink
from workers.spool import MAX_PENDING, SPOOL_HEAD, SpoolFile

CT = "1.2.840.10008.5.1.4.1.1.2"
REQUEST = StoreRequest(CT, "1.2.3.4", "1.2.840.10008.1.2")


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(tmp_path / "out")


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs, unmounted afterwards whatever happens."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"mount failed (these tests need root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_a_spool_file_holds_the_meta_group_then_every_fragment_in_order(storage):
    held = [memoryview(b"first-"), memoryview(b"second-")]
    spool = SpoolFile(storage, REQUEST, held)
    fragments = [os.urandom(997) for _ in range(MAX_PENDING + 10)]
    for i, fragment in enumerate(fragments):
        spool.append(memoryview(fragment))
        if i == MAX_PENDING - 1:
            assert spool.pending == []  # a full batch is written at once, not held
    assert len(spool.pending) == 10
    spool.flush()
    spool.close()
    expected = b"first-second-" + b"".join(fragments)
    with open(spool.path, "rb") as fp:
        assert read_file_meta(fp).sop_instance_uid == "1.2.3.4"
        assert fp.read() == expected
    assert spool.head == expected[:SPOOL_HEAD]


def test_removing_a_spool_file_a_writer_already_renamed_is_not_an_error(storage, tmp_path):
    spool = SpoolFile(storage, REQUEST, [])
    spool.close()
    os.rename(spool.path, tmp_path / "stored.dcm")
    spool.remove()
    assert spool.path is None and not os.listdir(storage.tmp_dir)


def test_a_spool_file_that_cannot_be_written_raises_and_leaves_nothing(full_disk):
    storage = Storage(full_disk / "out")
    with pytest.raises(OSError):
        SpoolFile(storage, REQUEST, [memoryview(bytes(256 * 1024))])
    assert not os.listdir(storage.tmp_dir)


def test_a_data_set_spilling_onto_a_full_disk_fails_and_gives_back_its_slot(full_disk):
    storage = Storage(full_disk / "out")
    arena = Arena(64 * 1024, 2)
    try:
        landing = Landing(arena, memoryview(bytearray(64 * 1024)))
        landing.buffer()  # the landing takes its slot
        sink = StoreSink(landing, storage, REQUEST)
        for _ in range(8):  # 256 KiB, copied in: the slot overflows and the data set spills
            sink.write(memoryview(bytes(32 * 1024)))
        landing.read_done()
        assert sink.finish() is sink
        assert isinstance(sink.error, OSError) and sink.spool_path is None and sink.slot is None
        assert not os.listdir(storage.tmp_dir)
        landing.close()
        assert sum(arena.refs) == 0
    finally:
        arena.close()
