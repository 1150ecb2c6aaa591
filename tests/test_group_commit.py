"""Group commit in the storage: a batch is durable (as the policy says) before any file of it is named.

The os calls the storage makes are recorded, in order, through wrappers
around the real functions: the files really are written, synced and linked.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time

import pytest

from hsscp.storage import FsyncPolicy, Layout, Storage, durable
from hsscp.storage.local import Staged

from .test_storage import SERIES, STUDY, make_dataset, request


@pytest.fixture
def calls(monkeypatch):
    """(name, detail) of each write, sync and naming call the storage makes, in order."""
    recorded: list[tuple[str, str]] = []

    def wrap(module, name, describe=lambda *a: ""):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            recorded.append((name, describe(*args)))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    def kind(fd, *_):
        return "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"

    wrap(os, "writev")
    wrap(os, "fsync", kind)
    wrap(os, "fdatasync", kind)
    wrap(os, "link", lambda src, dst, **_: os.path.basename(dst))
    wrap(os, "replace", lambda src, dst: os.path.basename(dst))
    return recorded


@pytest.fixture
def slow_disk(monkeypatch):
    """The syncer believes fsync waits for a disk, as on a real one: batches are synced concurrently."""
    syncer = durable.BatchSyncer()
    syncer.recent.extend([1.0] * durable.RECENT_ROUNDS)
    monkeypatch.setattr(durable, "_syncer", syncer)
    monkeypatch.setattr(durable, "CONCURRENT_FROM", 0.0)  # stays so, however fast this file system is
    return syncer


def stage(storage: Storage, n: int, series: str = SERIES) -> Staged:
    uid = f"{series}.{n}"
    staged = storage.stage_segments(request(uid), [memoryview(make_dataset(uid, series=series))])
    assert isinstance(staged, Staged), staged
    return staged


def names(calls) -> list[int]:
    return [i for i, (name, detail) in enumerate(calls) if name in ("link", "replace") and detail.endswith(".dcm")]


def test_a_batch_is_synced_before_any_of_its_files_is_named(tmp_path, calls):
    storage = Storage(tmp_path / "out", fsync=FsyncPolicy.FILE)
    batch = [stage(storage, n) for n in range(4)]
    assert all(s.temp is None for s in batch)  # nameless files (O_TMPFILE) on this file system
    outcomes = storage.commit(batch)
    assert [o.status for o in outcomes] == [0] * 4
    syncs = [i for i, (name, _) in enumerate(calls) if name in ("fsync", "fdatasync")]
    writes = [i for i, (name, _) in enumerate(calls) if name == "writev"]
    assert [calls[i] for i in syncs] == [("fsync", "file")] * 4  # every file of the batch
    assert max(writes) < min(syncs) and max(syncs) < min(names(calls))
    for n, outcome in enumerate(outcomes):
        assert outcome.path == str(tmp_path / "out" / STUDY / SERIES / f"{SERIES}.{n}.dcm")
        with open(outcome.path, "rb") as f:
            assert f.read()[132:].find(f"{SERIES}.{n}".encode()) > 0
    assert os.listdir(storage.tmp_dir) == []


def test_a_batch_of_one_is_fsynced_as_before(tmp_path, calls):
    storage = Storage(tmp_path / "out", fsync=FsyncPolicy.FILE)
    (outcome,) = storage.commit([stage(storage, 1)])
    assert outcome.status == 0
    made = [c for c in calls if c[0] != "writev" and not c[1].startswith(".probe")]  # not the O_TMPFILE probe
    assert made[:2] == [("fsync", "file"), ("link", f"{SERIES}.1.dcm")]


def test_file_and_dir_syncs_each_changed_folder_once_after_the_names(tmp_path, calls):
    storage = Storage(tmp_path / "out", fsync=FsyncPolicy.FILE_AND_DIR)
    other = SERIES + ".9"
    batch = [stage(storage, n) for n in range(3)] + [stage(storage, n, series=other) for n in range(2)]
    assert [o.status for o in storage.commit(batch)] == [0] * 5
    folders = [i for i, c in enumerate(calls) if c == ("fsync", "folder")]
    assert min(folders) > max(names(calls))
    # The two series folders, the study folder (holding both new series) and the output folder.
    assert len(folders) == 4
    calls.clear()
    assert [o.status for o in storage.commit([stage(storage, 7)])] == [0]
    assert [c for c in calls if c[0] == "fsync"] == [("fsync", "file"), ("fsync", "folder")]


def test_on_a_slow_disk_the_fsyncs_of_a_batch_wait_together(tmp_path, slow_disk, monkeypatch):
    """Each fsync waits for a commit: issued at once, the batch waits about one, not one per file."""
    storage = Storage(tmp_path / "out", fsync=FsyncPolicy.FILE)
    batch = [stage(storage, n) for n in range(4)]
    in_sync, most = [0], [0]
    real_fsync = os.fsync

    def slow_fsync(fd):
        in_sync[0] += 1
        most[0] = max(most[0], in_sync[0])
        time.sleep(0.05)  # a journal commit's wait
        real_fsync(fd)
        in_sync[0] -= 1

    monkeypatch.setattr(os, "fsync", slow_fsync)
    started = time.monotonic()
    assert [o.status for o in storage.commit(batch)] == [0] * 4
    assert most[0] == 4 and time.monotonic() - started < 0.19  # not 4 x 0.05 s in a row
    assert slow_disk.recent[-1] >= 0.05  # the round was measured, as one


def test_where_fsync_is_cheap_a_batch_is_synced_in_line(tmp_path, monkeypatch):
    syncer = durable.BatchSyncer()
    monkeypatch.setattr(durable, "_syncer", syncer)
    storage = Storage(tmp_path / "out", fsync=FsyncPolicy.FILE)
    threads = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (threads.append(threading.get_ident()), real_fsync(fd)))
    assert [o.status for o in storage.commit([stage(storage, n) for n in range(3)])] == [0] * 3
    assert threads == [threading.get_ident()] * 3
    assert len(syncer.recent) == 1  # measured, per file


@pytest.fixture(params=["cheap", "slow"])
def either_disk(request, monkeypatch):
    """Both ways a batch is synced: in line, and concurrently."""
    syncer = durable.BatchSyncer()
    syncer.recent.extend([1.0 if request.param == "slow" else 0.0] * durable.RECENT_ROUNDS)
    monkeypatch.setattr(durable, "_syncer", syncer)
    monkeypatch.setattr(durable, "CONCURRENT_FROM", 0.0 if request.param == "slow" else 1e9)


def test_a_failed_sync_fails_the_whole_batch_and_names_nothing(tmp_path, monkeypatch, either_disk):
    storage = Storage(tmp_path / "out", fsync=FsyncPolicy.FILE)
    batch = [stage(storage, n) for n in range(3)]
    real_fsync = os.fsync

    def fail_one(fd):
        if fd == batch[1].fd:
            raise OSError(errno.EIO, "I/O error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fail_one)
    outcomes = storage.commit(batch)
    assert {o.status for o in outcomes} == {0x0110}
    assert not (tmp_path / "out" / STUDY).exists() and os.listdir(storage.tmp_dir) == []


def test_without_nameless_files_named_temporary_files_do_the_same(tmp_path, monkeypatch, calls):
    monkeypatch.setattr("hsscp.storage.local.has_tmpfile", lambda folder: False)
    storage = Storage(tmp_path / "out", layout=Layout.FLAT, fsync=FsyncPolicy.FILE)
    batch = [stage(storage, n) for n in range(3)]
    assert all(s.temp is not None and os.path.exists(s.temp) for s in batch)
    assert [o.status for o in storage.commit(batch)] == [0] * 3
    assert sorted(os.listdir(tmp_path / "out")) == sorted([".hsscp-tmp", *(f"{SERIES}.{n}.dcm" for n in range(3))])
    assert os.listdir(storage.tmp_dir) == []
    assert [c[0] for c in calls if c[0] == "fsync"] == ["fsync"] * 3


def test_abandoned_staged_files_leave_nothing(tmp_path):
    storage = Storage(tmp_path / "out", fsync=FsyncPolicy.FILE)
    storage.abandon([stage(storage, n) for n in range(2)])
    assert os.listdir(storage.tmp_dir) == [] and not (tmp_path / "out" / STUDY).exists()


def test_fsync_waits_for_a_disk_only_when_every_recent_round_was_slow(monkeypatch):
    monkeypatch.setattr(durable, "CONCURRENT_FROM", 0.001)
    syncer = durable.BatchSyncer()
    assert not syncer.waits()  # nothing measured yet: cheap until shown otherwise
    syncer.recent.extend([0.00001] * (durable.RECENT_ROUNDS - 1) + [0.05])
    assert not syncer.waits()  # one slow round among cheap ones: this process waited for a CPU
    syncer.recent.extend([0.002] * (durable.RECENT_ROUNDS - 2))
    assert not syncer.waits()  # a cheap one is still among the last rounds
    syncer.recent.append(0.003)
    assert syncer.waits()  # every recent round slow: a disk
