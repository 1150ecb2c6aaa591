"""The pipeline's parts on their own: frames, the worker's notifier, journal replay, when it runs."""

from __future__ import annotations

import asyncio
import logging

import msgspec
import pytest

from hsscp import AE, evt
from hsscp.cli import main
from hsscp.completion import CompletionKind, CompletionTracker
from hsscp.config import ProcessSettings
from workers.messages import frame
from workers.notify import InstanceStored, Notifier, frame_reader
from workers.pipeline_state import STATE_FILE_NAME, SnapshotState, replay_journal
from workers.scp import StorageSCP


def message(index: int) -> InstanceStored:
    return InstanceStored(f"/out/{index}.dcm", "1.2.3", f"1.2.3.{index}", "", "", 0, 100 + index,
                          "CALLING", "CALLED", "127.0.0.1", 4000 + index, 1.5 * index)


def test_frames_come_back_whole_however_the_stream_is_cut() -> None:
    sent = [message(i) for i in range(3)]
    stream = b"".join(frame(m) for m in sent)
    assert frame_reader().feed(stream) == sent
    reader = frame_reader()
    assert [m for i in range(len(stream)) for m in reader.feed(stream[i : i + 1])] == sent
    with pytest.raises(ValueError, match="frame of"):
        frame_reader().feed(b"\x7f\xff\xff\xff")
    with pytest.raises(msgspec.DecodeError):
        frame_reader().feed(b"\x00\x00\x00\x02\xc1\xc1")


def test_the_notifier_keeps_messages_until_the_pipeline_listens_and_drops_past_its_bound(
    tmp_path, caplog
) -> None:
    path = str(tmp_path / "pipeline.sock")
    received: list[InstanceStored] = []

    class Collect(asyncio.Protocol):
        def __init__(self) -> None:
            self.reader = frame_reader()

        def data_received(self, data: bytes) -> None:
            received.extend(self.reader.feed(data))

    async def scenario() -> int:
        notifier = Notifier(path, max_pending=3)
        for i in range(5):  # nobody listens yet
            notifier.send(message(i))
        server = await asyncio.get_running_loop().create_unix_server(Collect, path)
        for _ in range(200):
            if len(received) == 3:
                break
            await asyncio.sleep(0.02)
        notifier.send(message(9))  # connected now: straight through
        await notifier.close(2.0)
        await asyncio.sleep(0.05)
        server.close()
        return notifier.dropped

    with caplog.at_level(logging.WARNING, logger="hsscp.pipeline"):
        dropped = asyncio.run(scenario())
    assert dropped == 2
    assert [m.sop_instance_uid for m in received] == ["1.2.3.0", "1.2.3.1", "1.2.3.2", "1.2.3.9"]
    drops = [r for r in caplog.records if "dropped so far" in r.getMessage()]
    assert len(drops) == 1  # at most one warning a second


def stored(uid: str, study: str, series: str, when: str) -> dict:
    return {"event": "stored", "status": 0, "sop_instance_uid": uid, "study_instance_uid": study,
            "series_instance_uid": series, "path": f"/out/{study}/{series}/{uid}.dcm",
            "calling_ae": "CT1", "called_ae": "HSSCP", "peer": "10.0.0.7:5104", "time": when}


def test_journal_replay_reopens_only_what_no_completion_record_follows() -> None:
    records = [
        stored("1.1", "9.1", "9.1.1", "2026-01-01T10:00:00+00:00"),
        {"event": "failed", "status": 0xA700, "sop_instance_uid": "1.9"},
        stored("1.2", "9.1", "9.1.2", "2026-01-01T10:00:05+00:00"),
        {"event": "series_complete", "study_instance_uid": "9.1", "series_instance_uid": "9.1.1",
         "instances": 1, "path": "/out/9.1/9.1.1"},
        stored("2.1", "9.2", "9.2.1", "2026-01-01T10:00:01+00:00"),
        {"event": "study_complete", "study_instance_uid": "9.2", "series_instance_uid": None,
         "instances": 1, "path": "/out/9.2"},
        {"event": "series_complete", "study_instance_uid": "9.2", "series_instance_uid": "9.2.1"},
    ]
    tracker = CompletionTracker(60, 30)
    assert replay_journal(records, tracker) == {"1.1", "1.2"}
    assert (tracker.tracked(CompletionKind.STUDY), tracker.tracked(CompletionKind.SERIES)) == (1, 1)
    series, study = tracker.due(4e9)
    assert (series.series_uid, series.instances, series.folder) == ("9.1.2", 1, "/out/9.1/9.1.2")
    assert (study.study_uid, study.instances, study.folder) == ("9.1", 2, "/out/9.1")
    assert study.last_arrival == series.last_arrival == 1767261605.0
    assert study.facts == {"calling_ae": "CT1", "called_ae": "HSSCP", "peer": "10.0.0.7", "peer_port": "5104"}


def roles(settings: ProcessSettings, handlers: list | None = None) -> dict[str, int]:
    scp = StorageSCP(AE("HSSCP"), settings, evt_handlers=handlers)
    return {role.name: role.count for role in scp.roles}


def test_the_pipeline_process_runs_only_when_something_needs_it(tmp_path) -> None:
    base = {"workers": 1, "writers": 1, "output_directory": str(tmp_path)}
    assert roles(ProcessSettings(**base))["pipe"] == 0
    assert roles(ProcessSettings(**base, exec_on_reception="/bin/true #f"))["pipe"] == 1
    assert roles(ProcessSettings(**base), [(evt.EVT_SERIES_COMPLETE, print)])["pipe"] == 1
    assert roles(ProcessSettings(**base), [(evt.EVT_ACCEPTED, print)])["pipe"] == 0
    # Nothing is stored by the built-in storage, so nothing would ever reach it.
    assert roles(ProcessSettings(**base, ignore=True, exec_on_eostudy="/bin/true"))["pipe"] == 0
    handlers = [(evt.EVT_C_STORE, lambda event: 0), (evt.EVT_INSTANCE_STORED, print)]
    assert roles(ProcessSettings(**base), handlers)["pipe"] == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-xcr", "'unclosed"], "exec_on_reception cannot run: hook command \"'unclosed\": No closing quotation"),
        (["-xcs", "zip #f"], "exec_on_eostudy cannot run: hook command 'zip #f': #f not available"),
        (["--exec-on-eoseries", "#p/run"], "must not hold a placeholder"),
        (["-tos", "-1"], "eostudy_timeout must be 0 seconds or more"),
        (["--hook-concurrency", "0"], "hook_concurrency must be at least 1"),
    ],
)
def test_a_bad_hook_setting_is_a_one_line_configuration_error(flags, message, capsys) -> None:
    assert main(["storescp", *flags, "--print-config"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_hook_flags_map_onto_the_configuration(capsys) -> None:
    assert main(["storescp", "-xcr", "/bin/echo #p #f", "-xcs", "zip -r #p.zip #p", "-tos", "5",
                 "--exec-on-eoseries", "/bin/true", "--eoseries-timeout", "2.5", "--hook-timeout", "9",
                 "--hook-concurrency", "2", "--print-config"]) == 0
    text = capsys.readouterr().out
    for line in ('exec_on_reception = "/bin/echo #p #f"', 'exec_on_eostudy = "zip -r #p.zip #p"',
                 "eostudy_timeout = 5.0", 'exec_on_eoseries = "/bin/true"', "eoseries_timeout = 2.5",
                 "hook_timeout = 9.0", "hook_concurrency = 2"):
        assert line in text.splitlines()


def test_the_snapshot_keeps_open_periods_and_sets_an_unreadable_one_aside(tmp_path, caplog) -> None:
    path = tmp_path / STATE_FILE_NAME

    async def save_then_restore() -> CompletionTracker:
        state = SnapshotState(str(path), interval=0.01)
        tracker = CompletionTracker(60, None)
        tracker.note("9.1", "9.1.1", "/out/9.1", "/out/9.1/9.1.1", 100.0, calling_ae="CT1")
        state.changed(tracker)
        await asyncio.sleep(0.1)  # the throttled save ran
        restored = CompletionTracker(60, None)
        SnapshotState(str(path)).restore(restored)
        return restored

    (study,) = asyncio.run(save_then_restore()).due(1e9)
    assert (study.study_uid, study.folder, study.instances, study.facts) == ("9.1", "/out/9.1", 1, {"calling_ae": "CT1"})
    path.write_text("{not json")
    tracker = CompletionTracker(60, None)
    with caplog.at_level(logging.WARNING, logger="hsscp.pipeline"):
        SnapshotState(str(path)).restore(tracker)
    assert tracker.next_deadline() is None and not path.exists()
    assert (tmp_path / f"{STATE_FILE_NAME}.bad").read_text() == "{not json"
    assert "set aside, starting empty" in caplog.text
