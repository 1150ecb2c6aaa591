"""Faults under the running multiprocess SCP: a full disk, a read-only output folder, SIGTERM under load.

The output folder is a small tmpfs mounted for the test (the tests run as
root; a failed mount fails the test rather than skipping it), so the disk
really fills and really turns read-only under the server.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .datagen import dataset_of, instance, stored_files, temp_files, write_instance, write_instances
from .test_hostile_peers import serving
from .test_multiprocess_scp import scu, send_files

OUT_OF_RESOURCES = 0xA700
PROCESSING_FAILURE = 0x0110
INSTANCE_BYTES = 300_000  # seven fit on a 2 MiB file system, the rest do not
# Below the threshold a data set waits in shared memory and the writer writes the file;
# above it the worker spills it to a temporary file as it arrives.
PATHS = {"in-memory": "1M", "spooled": "64K"}


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"mount {' '.join(args)} failed (these tests need root): {done.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs of our own, unmounted afterwards whatever happens."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point))
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def wait_until_no_temp_files(out: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while temp_files(out):
        assert time.monotonic() < deadline, f"temporary files left: {temp_files(out)}"
        time.sleep(0.02)


def store_each(port: int, paths: list[Path]) -> dict[str, int]:
    """Status of each C-STORE, over one association; every request must get its response."""
    assoc = scu().associate("127.0.0.1", port, ae_title="HSSCP")
    assert assoc.is_established
    statuses = {}
    for path in paths:
        response = assoc.send_c_store(str(path))
        assert "Status" in response, (
            f"no C-STORE-RSP for {path.stem} (association {'aborted' if assoc.is_aborted else 'lost'}): "
            "a failed store must be answered with a failure status"
        )
        statuses[path.stem] = response.Status
    assoc.release()
    return statuses


def assert_stored_exactly(out: Path, sources: dict[str, Path], uids) -> None:
    stored = stored_files(out)
    assert set(stored) == set(uids)
    for uid in uids:
        assert dataset_of(stored[uid]) == dataset_of(sources[uid]), f"{uid} differs from what was sent"


@pytest.mark.parametrize("path", PATHS)
def test_disk_full_answers_out_of_resources_and_storing_resumes_when_space_is_freed(tmp_path, small_disk, path):
    sources = {p.stem: p for p in write_instances(tmp_path / "src", 10, pixel_bytes=INSTANCE_BYTES)}
    with serving(small_disk, "--layout", "flat", "--fsync", "none", "--spool-threshold", PATHS[path],
                 workers=1, writers=1) as scp:
        statuses = store_each(scp.port, list(sources.values()))
        stored = [uid for uid, status in statuses.items() if status == 0]
        refused = [uid for uid, status in statuses.items() if status != 0]
        assert stored and refused, statuses
        assert {statuses[uid] for uid in refused} == {OUT_OF_RESOURCES}, statuses
        wait_until_no_temp_files(small_disk)
        assert_stored_exactly(small_disk, sources, stored)  # nothing partial, nothing extra

        for file in stored_files(small_disk).values():  # make room
            file.unlink()
        again = store_each(scp.port, [sources[uid] for uid in refused])
        assert set(again.values()) == {0}, again
        wait_until_no_temp_files(small_disk)
        assert_stored_exactly(small_disk, sources, refused)
        assert scp.stop() == 0
    assert "out of resources" in scp.output


@pytest.mark.parametrize("path", PATHS)
def test_read_only_output_folder_is_answered_with_a_failure_status(tmp_path, small_disk, path):
    sources = {p.stem: p for p in write_instances(tmp_path / "src", 4, pixel_bytes=100_000)}
    first, *rest = sources
    with serving(small_disk, "--layout", "flat", "--spool-threshold", PATHS[path], workers=1, writers=1) as scp:
        assert store_each(scp.port, [sources[first]]) == {first: 0}
        _mount("-o", "remount,ro", str(small_disk))
        try:
            statuses = store_each(scp.port, [sources[uid] for uid in rest])
        finally:
            _mount("-o", "remount,rw", str(small_disk))
        assert set(statuses.values()) <= {PROCESSING_FAILURE, OUT_OF_RESOURCES}, statuses
        assert_stored_exactly(small_disk, sources, [first])
        assert not temp_files(small_disk)
        # Writable again: the same instances are stored.
        assert set(store_each(scp.port, [sources[uid] for uid in rest]).values()) == {0}
        assert_stored_exactly(small_disk, sources, list(sources))
        assert scp.stop() == 0


def test_sigterm_under_sustained_load_loses_nothing_acknowledged(tmp_path):
    small = write_instances(tmp_path / "src", 400, pixel_bytes=16 * 1024)
    large = [write_instance(tmp_path / "src", instance(1000 + i, pixel_bytes=600_000)) for i in range(8)]
    sources = {p.stem: p for p in [*small, *large]}
    ordered = list(sources.values())
    out = tmp_path / "out"
    acks: dict[str, int] = {}
    stop = threading.Event()
    with serving(out, "--layout", "flat", "--spool-threshold", "256K", "--graceful-timeout", "2",
                 workers=2, writers=2) as scp:
        senders = [
            threading.Thread(target=send_files, args=(scp.port, ordered[i::4], acks, stop)) for i in range(4)
        ]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 30
        while len(acks) < 80:
            assert time.monotonic() < deadline, f"only {len(acks)} answers under load"
            time.sleep(0.01)
        code = scp.stop()  # SIGTERM while four associations are sending
        stop.set()
        for sender in senders:
            sender.join(60)
        assert not any(sender.is_alive() for sender in senders)
    assert code == 0, scp.output
    acknowledged = [uid for uid, status in acks.items() if status == 0]
    assert len(acknowledged) >= 80
    stored = stored_files(out)
    missing = [uid for uid in acknowledged if uid not in stored]
    assert not missing, f"{len(missing)} acknowledged instances are not on disk"
    for uid, file in stored.items():  # acknowledged or not, a file under its final name is whole
        assert dataset_of(file) == dataset_of(sources[uid]), f"{uid} differs from what was sent"
    assert not temp_files(out)


def shared_memory_mapped(pid: int) -> set[str]:
    """Names of the hsscp shared-memory segments (arenas) process ``pid`` has mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return set(re.findall(r"/dev/shm/(hsscp-\S+)", maps))


def test_writers_let_go_of_the_arena_of_a_killed_worker(tmp_path):
    """A writer maps each worker's arena to write from it; a dead worker's arena must not stay mapped.

    Otherwise every worker crash pins up to a whole arena of shared memory in
    every writer for as long as the writer lives, unlinked or not.
    """
    sources = write_instances(tmp_path / "src", 4, pixel_bytes=64 * 1024)
    # fsync on (the default): every data set goes through a writer, none is stored by its worker.
    with serving(tmp_path / "out", "--layout", "flat", workers=1, writers=1) as scp:
        for _ in range(3):
            worker = scp.children()["hsscp-worker-0"]
            assert set(store_each(scp.port, sources).values()) == {0}  # the writer maps this worker's arena
            os.kill(worker, signal.SIGKILL)
            scp.wait_for_children(1, 1, exclude=(worker,))
        assert set(store_each(scp.port, sources).values()) == {0}
        children = scp.children()
        live = shared_memory_mapped(children["hsscp-worker-0"])
        held = shared_memory_mapped(children["hsscp-writer-0"])
        assert scp.stop() == 0
    assert held <= live, f"the writer still maps {len(held - live)} arenas of dead workers: {sorted(held - live)}"
