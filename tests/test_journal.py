"""The journal: whole JSON lines from several processes, size rotation, a torn last line skipped."""

from __future__ import annotations

import os

import pytest

from hsscp.journal import Journal, read_journal, rotated_paths, store_record
from hsscp.storage import InstanceFact, StoreOutcome, StoreRequest


def fact(uid: str, status: int = 0) -> InstanceFact:
    request = StoreRequest("1.2.840.10008.5.1.4.1.1.2", uid, "1.2.840.10008.1.2.1", "CT1",
                           called_ae_title="HSSCP", peer="127.0.0.1:40000")
    outcome = StoreOutcome(status, f"/out/1.2/1.3/{uid}.dcm", bytes_written=1234)
    return InstanceFact.of(request, outcome, "1.2", "1.3")


def test_a_record_has_every_field_the_journal_promises(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append([store_record(fact("1.9.1")), store_record(fact("1.9.2", status=0xA700))])
    journal.sync()
    first, second = read_journal(tmp_path / "journal.jsonl")
    assert first == {
        "event": "stored", "status": 0, "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "sop_instance_uid": "1.9.1", "study_instance_uid": "1.2", "series_instance_uid": "1.3",
        "path": "/out/1.2/1.3/1.9.1.dcm", "bytes": 1234, "transfer_syntax": "1.2.840.10008.1.2.1",
        "calling_ae": "CT1", "called_ae": "HSSCP", "peer": "127.0.0.1:40000",
        "time": first["time"], "duplicate": None,
    }
    assert first["time"].endswith("Z") and first["time"][10] == "T"  # ISO 8601, UTC
    assert second["event"] == "failed" and second["status"] == 0xA700


def test_other_records_such_as_completions_go_in_as_dicts(tmp_path):
    journal = Journal(tmp_path / "j")
    journal.append([{"event": "study_complete", "study_instance_uid": "1.2", "instances": 3}])
    assert read_journal(tmp_path / "j") == [{"event": "study_complete", "study_instance_uid": "1.2",
                                             "instances": 3}]


def test_a_line_cut_by_a_crash_is_skipped_but_garbage_is_an_error(tmp_path):
    path = tmp_path / "j"
    journal = Journal(path)
    journal.append([store_record(fact("1.9.1"))])
    with open(path, "ab") as f:
        f.write(b'{"event": "sto')
    assert [r["sop_instance_uid"] for r in read_journal(path)] == ["1.9.1"]
    with open(path, "ab") as f:
        f.write(b"\nnot json\n")
    with pytest.raises(ValueError, match="line 2"):
        read_journal(path)


def test_rotation_keeps_n_files_and_every_record_until_they_fall_off(tmp_path):
    path = tmp_path / "j"
    journal = Journal(path, max_bytes=1000, keep=3)
    for n in range(12):
        journal.append([store_record(fact(f"1.9.{n}"))])  # ~300 bytes each
    names = [os.path.basename(p) for p in rotated_paths(path)]
    assert names == ["j.3", "j.2", "j.1", "j"]
    assert all(os.path.getsize(p) <= 1000 + 400 for p in rotated_paths(path))
    uids = [r["sop_instance_uid"] for r in read_journal(path)]
    assert uids == [f"1.9.{n}" for n in range(12 - len(uids), 12)]  # the newest, in order
    assert len(uids) >= 9


def test_processes_appending_at_once_never_interleave_lines_nor_lose_them(tmp_path):
    path = tmp_path / "j"
    journal = Journal(path, max_bytes=20_000, keep=50)  # built before the fork, as the server does
    children = []
    for child in range(4):
        pid = os.fork()
        if pid == 0:
            try:
                for n in range(200):
                    journal.append([store_record(fact(f"1.{child}.{n}")), store_record(fact(f"1.{child}.{n}.1"))])
                    journal.sync()
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    uids = [r["sop_instance_uid"] for r in read_journal(path)]
    assert sorted(uids) == sorted(f"1.{c}.{n}{tail}" for c in range(4) for n in range(200) for tail in ("", ".1"))
    for child in range(4):  # one process's lines stay in its order
        own = [u for u in uids if u.startswith(f"1.{child}.")]
        assert own == [f"1.{child}.{n}{tail}" for n in range(200) for tail in ("", ".1")]
