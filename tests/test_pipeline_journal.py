"""With ``--journal``: completions are journal records, and a restart reads the journal back."""

from __future__ import annotations

import os
import signal
import time

from hsscp.journal import read_journal

from .hsscp_process import hsscp_storescp
from .test_hooks import calls, recorder, wait_until
from .test_pipeline import dcmtk_storescu, series_uid, study_uid, write_study


def events_in(path) -> list[str]:
    return [record["event"] for record in read_journal(path)] if path.exists() else []


def test_a_study_quiet_while_the_server_was_down_completes_from_the_journal(tmp_path):
    program, record = recorder(tmp_path)
    sources = write_study(tmp_path / "src", 5, 2, 3)
    out, journal = tmp_path / "out", tmp_path / "journal.jsonl"
    flags = ("--journal", str(journal), "-xcs", f"{program} {record} study #p", "-tos", "2",
             "--eoseries-timeout", "2")
    with hsscp_storescp(out, *flags) as scp:
        dcmtk_storescu(scp.port, sources)  # each answer came after its "stored" record
        os.killpg(scp.proc.pid, signal.SIGKILL)  # the study is not quiet yet
        scp.proc.wait()
    assert events_in(journal) == ["stored"] * 6 and calls(record) == []
    assert not (out / ".hsscp-completion.json").exists()  # the journal is the state
    with hsscp_storescp(out, *flags) as scp:
        wait_until(lambda: calls(record) and events_in(journal).count("series_complete") == 2)
        assert scp.stop() == 0
    assert calls(record) == [["study", str(out / study_uid(5))]]
    completions = {(r["event"], r["series_instance_uid"]): r for r in read_journal(journal)
                   if r["event"] != "stored"}
    study = completions[("study_complete", None)]
    assert (study["study_instance_uid"], study["instances"], study["path"]) == (study_uid(5), 6, str(out / study_uid(5)))
    for s in (1, 2):
        series = completions[("series_complete", series_uid(5, s))]
        assert (series["instances"], series["path"]) == (3, str(out / study_uid(5) / series_uid(5, s)))
    assert set(completions) == {("study_complete", None), *(("series_complete", series_uid(5, s)) for s in (1, 2))}
    # Once recorded, a completion is not repeated by the next start.
    with hsscp_storescp(out, *flags) as scp:
        time.sleep(1)
        assert scp.stop() == 0
    assert len(calls(record)) == 1
