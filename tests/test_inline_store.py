"""A worker storing a data set in its own loop: synced as the policy says, and given up once fsync waits."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest

from hsscp import dimse, events
from hsscp.storage import FsyncPolicy, Storage, durable
from workers.storage_service import StorageService

from .test_storage import SERIES, make_dataset, request


class HeldDataSet:
    """What a StoreSink gives the inline store: the request, and the data set's pieces."""

    def __init__(self, uid: str) -> None:
        self.request = request(uid)
        self._data = make_dataset(uid)

    def views(self) -> list[memoryview]:
        return [memoryview(self._data)]


def service(out, monkeypatch, round_cost: float) -> StorageService:
    """A worker's service storing in its loop, its fsyncs so far measured at ``round_cost`` seconds each."""
    syncer = durable.BatchSyncer()
    syncer.recent.extend([round_cost] * durable.RECENT_ROUNDS)
    monkeypatch.setattr(durable, "_syncer", syncer)
    return StorageService(None, "HSSCP", [], events.HandlerSet([]), None, arena=None,
                          storage=Storage(out, fsync=FsyncPolicy.FILE), writers=None, stats=None,
                          inline_limit=1 << 20)


def store(svc: StorageService, uid: str):
    return svc._store_inline(HeldDataSet(uid), dimse.CStoreRQ(1, "1.2.840.10008.5.1.4.1.1.2", uid))


@pytest.fixture
def tmpfs_dir():
    """A folder on a tmpfs, where an fsync costs next to nothing (a disk's may take milliseconds)."""
    folder = tempfile.mkdtemp(prefix="hsscp-test-inline-", dir="/dev/shm")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_data_set_stored_in_the_loop_is_synced_and_in_place(tmpfs_dir, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    svc = service(os.path.join(tmpfs_dir, "out"), monkeypatch, round_cost=0.0)
    outcome, fact = store(svc, f"{SERIES}.1")
    assert outcome.status == 0 and os.path.exists(outcome.path) and fact.path == outcome.path
    assert len(synced) == 1 and svc.inline_limit == 1 << 20  # fsync is cheap here: it stays so


def slow_fsyncs(monkeypatch, seconds: float, times: int | None = None) -> None:
    """fsync waits ``seconds`` more, as on a disk (only the next ``times`` calls, if given)."""
    real_fsync = os.fsync
    left = [times]

    def fsync(fd):
        if left[0] is None or left[0] > 0:
            time.sleep(seconds)
            left[0] = None if left[0] is None else left[0] - 1
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("round_cost", [0.005, 0.05])  # well past CONCURRENT_FROM
def test_once_fsync_waits_for_the_disk_the_writers_store_everything(tmp_path, monkeypatch, round_cost):
    svc = service(tmp_path / "out", monkeypatch, round_cost=round_cost)
    slow_fsyncs(monkeypatch, round_cost)
    outcome, _ = store(svc, f"{SERIES}.2")
    assert outcome.status == 0 and os.path.exists(outcome.path)  # this one is stored all the same
    assert svc.inline_limit == 0


def test_one_slow_fsync_on_a_busy_machine_does_not_send_the_stores_to_the_writers(tmpfs_dir, monkeypatch):
    svc = service(os.path.join(tmpfs_dir, "out"), monkeypatch, round_cost=0.0)
    slow_fsyncs(monkeypatch, 0.05, times=1)  # as if descheduled for 50 ms in the middle of it
    for n in range(3):
        outcome, _ = store(svc, f"{SERIES}.{10 + n}")
        assert outcome.status == 0 and os.path.exists(outcome.path)
    assert svc.inline_limit == 1 << 20
