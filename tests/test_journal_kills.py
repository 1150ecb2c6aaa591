"""Every instance answered 0x0000 has its journal record, whichever process is SIGKILLed when.

The multiprocess SCP runs with ``--journal`` under four sending
associations (hsscp's SCU); a worker, a writer or the whole process tree is
killed mid-load; then the set the senders saw acknowledged is compared with
the journal's "stored" records.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from hsscp.journal import read_journal

from .datagen import instance, write_instance, write_instances
from .test_hostile_peers import serving
from .test_multiprocess_scp import send_files


def wait_for(acks: dict, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(status == 0 for status in list(acks.values())) < count:
        assert time.monotonic() < deadline, f"only {len(acks)} answers under load"
        time.sleep(0.01)


@pytest.mark.parametrize("victim", ["worker", "writer", "tree"])
def test_the_journal_holds_every_acknowledged_instance_after_sigkill(tmp_path, victim):
    paths = write_instances(tmp_path / "src", 600, pixel_bytes=4096)
    out, journal = tmp_path / "out", tmp_path / "journal.jsonl"
    acks: dict[str, int] = {}
    stop = threading.Event()
    with serving(out, "--journal", str(journal), "--graceful-timeout", "1", workers=2, writers=2) as scp:
        senders = [threading.Thread(target=send_files, args=(scp.port, paths[i::4], acks, stop), daemon=True)
                   for i in range(4)]
        for sender in senders:
            sender.start()
        wait_for(acks, 60)
        children = scp.wait_for_children(2, 2)
        if victim == "tree":
            os.killpg(scp.proc.pid, signal.SIGKILL)
            scp.proc.wait()
        else:
            os.kill(children[f"hsscp-{victim}-0"], signal.SIGKILL)
            wait_for(acks, sum(status == 0 for status in list(acks.values())) + 60)  # it serves on
        stop.set()
        for sender in senders:
            sender.join(60)
        assert not any(sender.is_alive() for sender in senders)
    acknowledged = {uid for uid, status in acks.items() if status == 0}
    records = read_journal(journal)
    stored = {r["sop_instance_uid"]: r for r in records if r["event"] == "stored"}
    missing = acknowledged - set(stored)
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged instances have no journal record"
    for uid in acknowledged:
        record = stored[uid]
        assert os.path.exists(record["path"]) and record["path"].endswith(f"{uid}.dcm")
        assert record["calling_ae"] == "TESTSCU" and record["called_ae"] == "HSSCP"
        assert record["peer"].startswith("127.0.0.1:") and record["study_instance_uid"] and record["series_instance_uid"]


def test_inline_stores_and_failures_are_journaled_as_answered(tmp_path):
    # --fsync none: small data sets are stored by the worker itself, which journals them; a data set
    # cut in its pixel data is refused, and journaled as failed.
    paths = write_instances(tmp_path / "src", 12, pixel_bytes=1024)
    (tmp_path / "cut").mkdir()
    cut = write_instance(tmp_path / "cut", instance(99, pixel_bytes=1024))
    with open(cut, "r+b") as f:
        f.truncate(os.path.getsize(cut) - 100)
    out, journal = tmp_path / "out", tmp_path / "journal.jsonl"
    acks: dict[str, int] = {}
    with serving(out, "--journal", str(journal), "--fsync", "none", workers=1, writers=1) as scp:
        send_files(scp.port, [*paths, cut], acks)
    records = read_journal(journal)
    stored = {r["sop_instance_uid"]: r for r in records if r["event"] == "stored"}
    assert {uid for uid, status in acks.items() if status == 0} == set(stored) == {p.stem for p in paths}
    assert all(r["study_instance_uid"] == instance(1).StudyInstanceUID and r["bytes"] > 1024 for r in stored.values())
    (failed,) = [r for r in records if r["event"] == "failed"]
    assert failed["sop_instance_uid"] == cut.stem and 0xC000 <= failed["status"] == acks[cut.stem] <= 0xCFFF
