"""``hsscp storescu``/``echoscu`` against a scripted in-process acceptor built on hsscp's engine.

The acceptor grants an asynchronous operations window, answers with chosen
statuses (in reverse order when it holds several), rejects, refuses
contexts, aborts or stays silent on request, and records what arrived and
when: every way a load run can go is counted, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom.filereader import read_dataset

from hsscp import acse, dimse
from hsscp.engine import Engine, Role
from hsscp.indications import AssociationRequested, MessageReceived, ReleaseRequested
from hsscp.loadgen import cli, datasets, uidpatch
from hsscp.presentation import build_context
from hsscp.uid import ALL_TRANSFER_SYNTAXES, IMPLEMENTATION_CLASS_UID
from tests.peers import free_port
from tests.scp_fixtures import dataset_bytes, sample_path

CT = "1.2.840.10008.5.1.4.1.1.2"


@dataclass
class Script:
    """How the acceptor behaves."""

    window: int = 1  # operations it performs at once, granted when asked
    hold: int = 1  # answer once this many requests wait (or after HOLD_SECONDS)
    status: int = 0x0000
    reject: tuple[int, int, int] | None = None
    reject_first: int = 0  # reject this many associations (with reject, or called AE title), then accept
    refuse: tuple[str, ...] = ()  # SOP classes it does not accept
    abort_after: int | None = None  # A-ABORT when this request of an association arrives
    silent: bool = False  # never answer C-STOREs


@dataclass
class Record:
    stores: list[tuple[str, bytes]] = field(default_factory=list)  # (affected SOP instance UID, data set)
    arrivals: list[float] = field(default_factory=list)
    message_ids: list[int] = field(default_factory=list)
    max_outstanding: int = 0
    associations: int = 0


HOLD_SECONDS = 0.02


class _Acceptor(asyncio.Protocol):
    def __init__(self, script: Script, record: Record) -> None:
        self.script, self.record = script, record
        self.engine = Engine(Role.ACCEPTOR)
        self.waiting: list[tuple[int, dimse.CStoreRQ]] = []
        self.requests = 0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.engine.connection_made()

    def data_received(self, data: bytes) -> None:
        for indication in self.engine.receive_data(memoryview(data)):
            if isinstance(indication, AssociationRequested):
                self._answer(indication.request)
            elif isinstance(indication, MessageReceived):
                self._message(indication)
            elif isinstance(indication, ReleaseRequested):
                self._send(self.engine.release_response())
        self._send(self.engine.pop_output())

    def _send(self, buffers: list) -> None:
        if buffers:
            self.transport.writelines(buffers)
        if self.engine.close_requested:
            self.transport.close()

    def _answer(self, request) -> None:
        self.record.associations += 1
        if self.script.reject or self.record.associations <= self.script.reject_first:
            self._send(self.engine.reject(*(self.script.reject or (1, 1, 7))))
            return
        supported = [
            build_context(pc.abstract_syntax, ALL_TRANSFER_SYNTAXES)
            for pc in request.presentation_contexts
            if pc.abstract_syntax not in self.script.refuse
        ]
        identity = acse.LocalIdentity("SCRIPTED", 16384, str(IMPLEMENTATION_CLASS_UID), "")
        policy = acse.AcceptorPolicy(identity, supported, max_operations_performed=self.script.window)
        self._send(self.engine.accept(acse.answer_request(request, policy).response))

    def _message(self, message: MessageReceived) -> None:
        command = message.command
        if isinstance(command, dimse.CEchoRQ):
            self._send(self.engine.send_message(message.context_id, dimse.CEchoRSP(command.message_id)))
            return
        self.requests += 1
        record = self.record
        record.arrivals.append(time.monotonic())
        record.message_ids.append(command.message_id)
        record.stores.append((command.affected_sop_instance_uid, bytes(message.dataset)))
        if self.script.abort_after == self.requests:
            self._send(self.engine.abort())
            return
        if self.script.silent:
            return
        self.waiting.append((message.context_id, command))
        record.max_outstanding = max(record.max_outstanding, len(self.waiting))
        if len(self.waiting) >= self.script.hold:
            self._respond()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(HOLD_SECONDS, self._respond)

    def _respond(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        # Newest first: the requestor must match responses by message ID, not by order.
        for context_id, command in reversed(self.waiting):
            response = dimse.CStoreRSP(command.message_id, self.script.status, command.affected_sop_class_uid,
                                       command.affected_sop_instance_uid)
            if self.engine.is_established:
                self._send(self.engine.send_message(context_id, response))
        self.waiting.clear()


@contextlib.contextmanager
def scripted_scp(script: Script | None = None) -> Iterator[tuple[int, Record]]:
    """The acceptor on a free loopback port, on its own event loop thread."""
    script, record = script or Script(), Record()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(lambda: _Acceptor(script, record), "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1], record
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


def storescu(port: int, *args: str) -> int:
    return cli.main(["storescu", "127.0.0.1", str(port), *args])


def run_json(port: int, tmp_path, *args: str, command: str = "storescu") -> tuple[int, dict]:
    out = tmp_path / f"report-{time.monotonic_ns()}.json"
    code = cli.main([command, "127.0.0.1", str(port), "-q", "--json", str(out), *args])
    return code, json.loads(out.read_text())


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> list[str]:
    return datasets.generate("tiny", 12, str(tmp_path_factory.mktemp("tiny")))


SAMPLES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "MR_small_bigendian.dcm"]


def test_everything_arrives_as_in_the_files(tmp_path):
    paths = [sample_path(name) for name in SAMPLES]
    with scripted_scp() as (port, record):
        code, report = run_json(port, tmp_path, *paths, "-c", "2")
    assert code == 0
    assert report["succeeded"] == len(paths) and report["failed"] == 0
    assert sorted(record.stores) == sorted(dataset_bytes(path) for path in paths)
    assert report["latency"]["count"] == len(paths)
    assert report["latency_definition"].startswith("from the request's first PDU")


def test_a_folder_is_sent_recursively_with_repeats_over_shared_associations(tmp_path, tiny_files):
    folder = tmp_path / "nested"
    (folder / "a" / "b").mkdir(parents=True)
    for i, path in enumerate(tiny_files[:4]):
        (folder / ("a" if i % 2 else "a/b") / f"{i}.dcm").write_bytes(Path(path).read_bytes())
    (folder / "README").write_text("not DICOM")  # skipped, named, and the exit status says so
    with scripted_scp() as (port, record):
        code, report = run_json(port, tmp_path, str(folder), "-c", "3", "--repeat", "5")
    assert code == cli.EXIT_SKIPPED
    assert list(report["skipped_files"]) == [str(folder / "README")]
    assert report["succeeded"] == 20 and report["associations"] == 3
    assert len(record.stores) == 20


def test_async_window_keeps_several_requests_outstanding(tmp_path, tiny_files):
    with scripted_scp(Script(window=8, hold=4)) as (port, record):
        code, report = run_json(port, tmp_path, *tiny_files, "--async-ops", "16", "--repeat", "4")
    assert code == 0 and report["succeeded"] == 48
    assert record.max_outstanding == 4  # the acceptor saw 4 at once
    assert 4 <= report["max_outstanding"] <= 8  # never past the negotiated window
    # IDs of requests outstanding together are distinct (they were answered newest first).
    for start in range(0, 48, 4):
        assert len(set(record.message_ids[start : start + 4])) == 4


def test_without_async_ops_one_request_at_a_time(tmp_path, tiny_files):
    with scripted_scp(Script(window=8, hold=4)) as (port, record):
        code, report = run_json(port, tmp_path, *tiny_files[:4])
    assert code == 0 and record.max_outstanding == 1 and report["max_outstanding"] == 1


def test_failure_statuses_are_counted_and_fail_the_run(tmp_path, tiny_files):
    with scripted_scp(Script(status=0xA700)) as (port, _):
        code, report = run_json(port, tmp_path, *tiny_files[:5], "-c", "2")
    assert code == cli.EXIT_FAILED
    assert report["failed"] == 5 and report["succeeded"] == 0
    assert report["statuses"] == {"0xA700": 5}


def test_warnings_count_as_stored_but_are_reported(tmp_path, tiny_files):
    with scripted_scp(Script(status=0xB000)) as (port, _):
        code, report = run_json(port, tmp_path, *tiny_files[:3])
    assert code == cli.EXIT_WARNINGS
    assert report["warnings"] == 3 and report["failed"] == 0 and report["statuses"] == {"0xB000": 3}


def test_rejected_association_is_counted_and_nothing_is_lost(tmp_path, tiny_files):
    with scripted_scp(Script(reject=(1, 1, 7))) as (port, _):
        code, report = run_json(port, tmp_path, *tiny_files[:6], "-c", "2")
    assert code == cli.EXIT_FAILED
    assert report["association_events"] == {"association rejected": 2}
    assert report["not_sent"] == 6


def test_refused_contexts_are_counted_per_instance(tmp_path, tiny_files):
    paths = [*tiny_files[:3], sample_path("MR_small.dcm")]  # three CTs, one MR
    with scripted_scp(Script(refuse=(CT,))) as (port, record):
        code, report = run_json(port, tmp_path, *paths)
    assert code == cli.EXIT_FAILED
    assert report["failures"] == {"no accepted presentation context": 3}
    # Both CT contexts were refused: the one in the files' own syntax and its fallback.
    assert report["association_events"]["presentation context refused"] == 2
    assert report["succeeded"] == 1 and len(record.stores) == 1


def test_abort_fails_what_was_outstanding_and_a_new_association_goes_on(tmp_path, tiny_files):
    with scripted_scp(Script(abort_after=3)) as (port, record):
        code, report = run_json(port, tmp_path, *tiny_files[:8])
    assert code == cli.EXIT_FAILED
    assert report["failures"] == {"aborted": report["association_events"]["aborted"]}
    assert report["succeeded"] + report["failed"] + report["not_sent"] == 8
    assert report["succeeded"] >= 4 and record.associations >= 3


def test_connection_refused_is_counted(tmp_path, tiny_files):
    code, report = run_json(free_port(), tmp_path, *tiny_files[:2], "-c", "2")
    assert code == cli.EXIT_FAILED
    assert report["association_events"] == {"connection refused": 2} and report["not_sent"] == 2


def test_dimse_timeout_aborts_and_is_counted(tmp_path, tiny_files):
    with scripted_scp(Script(silent=True)) as (port, _):
        started = time.monotonic()
        code, report = run_json(port, tmp_path, *tiny_files[:2], "-td", "0.3")
    assert code == cli.EXIT_FAILED and time.monotonic() - started < 5
    # Each request times out on its own association: the first did send, so a second is opened.
    assert report["failures"] == {"DIMSE timeout": 2}
    assert report["association_events"]["DIMSE timeout"] == 2


def test_rate_is_held(tmp_path, tiny_files):
    """200/s for 1.5 s: the count sent is within bounds, and no 100 ms holds a burst."""
    with scripted_scp() as (port, record):
        code, report = run_json(port, tmp_path, *tiny_files, "--rate", "200", "--duration", "1.5", "-c", "4")
    assert code == 0
    assert 255 <= report["succeeded"] <= 305
    arrivals = record.arrivals
    busiest = max(sum(1 for t in arrivals if start <= t < start + 0.1) for start in arrivals)
    assert busiest <= 24  # 20 expected in any 100 ms


@pytest.mark.parametrize("name,syntax", [
    ("CT_small.dcm", "1.2.840.10008.1.2.1"),
    ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
    ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
])
def test_new_uids_are_patched_into_the_bytes_sent(tmp_path, name, syntax):
    _, original = dataset_bytes(sample_path(name))
    plan = uidpatch.plan(memoryview(original), syntax)
    with scripted_scp() as (port, record):
        code, report = run_json(port, tmp_path, sample_path(name), "--new-uids", "series", "--repeat", "3", "-c", "2")
    assert code == 0 and report["succeeded"] == 3
    encoding = uidpatch.encoding_of(syntax)
    series = set()
    for affected_uid, data in record.stores:
        stored = read_dataset(io.BytesIO(data), encoding.implicit, encoding.little)
        assert stored.SOPInstanceUID == affected_uid != plan.original(uidpatch.SOP_INSTANCE_UID)
        assert stored.StudyInstanceUID == plan.original(uidpatch.STUDY_INSTANCE_UID)  # kept in series mode
        new = {uidpatch.SOP_INSTANCE_UID: stored.SOPInstanceUID, uidpatch.SERIES_INSTANCE_UID: stored.SeriesInstanceUID}
        expected = b"".join(bytes(c) for c in uidpatch.render(plan, memoryview(original), new))
        assert data == expected + original[plan.end :]  # exactly our patch, nothing else changed
        series.add(stored.SeriesInstanceUID)
    assert len({uid for uid, _ in record.stores}) == 3 and len(series) == 3  # each copy a new series


def test_big_instance_is_streamed_from_the_file_intact(tmp_path):
    """Bigger than one read: sent in file chunks through transport flow control."""
    path = tmp_path / "big.dcm"
    syntax, data = datasets._image(datasets.CT_IMAGE_STORAGE, 1024, 1024, 6)  # 12 MiB
    from hsscp.part10 import build_file_meta

    plan = uidpatch.plan(memoryview(data), syntax)
    path.write_bytes(build_file_meta(CT, plan.original(uidpatch.SOP_INSTANCE_UID), syntax, "1.2.3") + data)
    with scripted_scp() as (port, record):
        code, report = run_json(port, tmp_path, str(path), "--repeat", "2", "-pdu", "0")
    assert code == 0 and report["succeeded"] == 2
    assert all(stored == data for _, stored in record.stores) and len(record.stores) == 2


def test_processes_merge_their_reports(tmp_path, tiny_files):
    with scripted_scp() as (port, record):
        code, report = run_json(port, tmp_path, *tiny_files, "--processes", "2", "-c", "3", "--repeat", "3")
    assert code == 0
    assert report["processes"] == 2 and report["associations"] == 3
    assert report["succeeded"] == 36 and report["latency"]["count"] == 36
    assert sorted(uid for uid, _ in record.stores) == sorted(
        uidpatch.plan(memoryview(dataset_bytes(p)[1]), "1.2.840.10008.1.2.1").original(uidpatch.SOP_INSTANCE_UID)
        for p in tiny_files * 3
    )


def test_echoscu_counts_round_trips(tmp_path):
    with scripted_scp() as (port, _):
        code, report = run_json(port, tmp_path, "--repeat", "50", "-c", "3", command="echoscu")
    assert code == 0
    assert report["operation"] == "C-ECHO" and report["succeeded"] == 50 and report["associations"] == 3


def test_deflated_files_refuse_new_uids_with_a_clear_message(capsys):
    code = storescu(free_port(), sample_path("image_dfl.dcm"), "--new-uids", "instance")
    assert code == cli.EXIT_USAGE
    assert "deflated" in capsys.readouterr().err


def test_plot_without_matplotlib_is_a_clear_usage_error(monkeypatch, capsys, tiny_files):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert storescu(free_port(), tiny_files[0], "--plot", "out.png") == cli.EXIT_USAGE
    assert "pip install" in capsys.readouterr().err


def test_plot_is_drawn_when_matplotlib_is_there(tmp_path, tiny_files):
    with scripted_scp() as (port, _):
        assert storescu(port, *tiny_files, "-q", "--plot", str(tmp_path / "run.png")) == 0
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the truth about a run: exit status, which file failed, what the run was -----------


def test_a_refused_association_fails_a_timed_run_that_stored_everything_else(tmp_path, tiny_files):
    with scripted_scp(Script(reject_first=1)) as (port, record):
        code, report = run_json(port, tmp_path, *tiny_files[:3], "-c", "2", "--duration", "0.3")
    assert report["association_events"]["association rejected"] == 1
    assert report["failed"] == 0 and report["not_sent"] == 0 and report["succeeded"] > 0
    assert code == cli.EXIT_FAILED  # one of the two associations asked for never did anything


def test_each_failure_names_its_file(tmp_path, tiny_files, capsys):
    paths = [*tiny_files[:2], sample_path("MR_small.dcm")]
    out = tmp_path / "report.json"
    with scripted_scp(Script(refuse=(CT,))) as (port, _):
        code = storescu(port, *paths, "--repeat", "2", "--json", str(out))
    report = json.loads(out.read_text())
    assert code == cli.EXIT_FAILED
    assert report["failed_files"] == {
        path: {"no accepted presentation context": 2} for path in tiny_files[:2]
    }
    err = capsys.readouterr().err
    # Logged once per file, however often it is repeated.
    assert err.count(f"{tiny_files[0]}: no accepted presentation context") == 1
    with scripted_scp(Script(status=0xA700)) as (port, _):
        code, report = run_json(port, tmp_path, tiny_files[0])
    assert report["failed_files"] == {tiny_files[0]: {"status 0xA700": 1}}


def test_an_abort_names_the_files_that_were_outstanding(tmp_path, tiny_files):
    with scripted_scp(Script(abort_after=2)) as (port, record):
        code, report = run_json(port, tmp_path, *tiny_files[:4])
    assert code == cli.EXIT_FAILED
    aborted = {path for path, reasons in report["failed_files"].items() if "aborted" in reasons}
    assert len(aborted) == report["failures"]["aborted"] and aborted <= set(tiny_files[:4])


def test_the_printed_report_lists_failed_and_skipped_files(tmp_path, tiny_files, capsys):
    junk = tmp_path / "notes.txt"
    junk.write_text("not DICOM")
    with scripted_scp(Script(status=0xC000)) as (port, _):
        code = storescu(port, tiny_files[0], str(junk))
    out = capsys.readouterr().out
    assert code == cli.EXIT_FAILED
    assert f"{tiny_files[0]}: status 0xC000" in out
    assert f"{junk}: " in out and "skipped files (1)" in out


def test_json_holds_the_runs_parameters(tmp_path, tiny_files):
    from datetime import datetime

    from hsscp import __version__

    with scripted_scp(Script(window=4)) as (port, _):
        code, report = run_json(port, tmp_path, *tiny_files[:2], "-c", "2", "--async-ops", "4",
                                "--rate", "500", "--repeat", "3", "-aec", "PACS")
    assert code == 0
    params = report["parameters"]
    assert params["target"] == f"127.0.0.1:{port}" and params["called_ae_title"] == "PACS"
    assert (params["associations"], params["async_ops"], params["rate"], params["repeat"]) == (2, 4, 500.0, 3)
    assert params["duration"] is None and params["files"] == tiny_files[:2] and params["instances"] == 2
    assert params["hsscp_version"] == __version__
    assert datetime.fromisoformat(params["started"]).tzinfo is not None


@pytest.mark.parametrize(
    ("flag", "title", "reason"),
    [("-aec", "THIS_AE_TITLE_IS_TOO_LONG", "longer than 16 characters"),
     ("-aet", "ÄRZTE", "is not ASCII"),
     ("-aet", "A\\B", "contains a backslash")],
)
def test_a_bad_ae_title_is_one_line_with_its_reason(tiny_files, capsys, flag, title, reason):
    assert storescu(free_port(), tiny_files[0], flag, title) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err and flag in err and "Traceback" not in err


def test_dcmtk_storescu_flags_are_accepted_where_hsscp_does_the_same(tmp_path, tiny_files):
    with scripted_scp() as (port, record):
        code, _ = run_json(port, tmp_path, "+sd", "+r", "-R", "--aetitle", "MINE", "--call", "THEIRS",
                           "-ll", "warn", *tiny_files[:2])
    assert code == 0 and len(record.stores) == 2


@pytest.mark.parametrize("flag", ["-xe", "-x=", "-xb", "+C", "-r"])
def test_dcmtk_storescu_flags_hsscp_cannot_honour_are_refused_by_name(tiny_files, capsys, flag):
    from hsscp import cli as hsscp_cli

    assert hsscp_cli.main(["storescu", "127.0.0.1", str(free_port()), flag, tiny_files[0]]) == cli.EXIT_USAGE
    assert f"argument {flag}" in capsys.readouterr().err


def test_an_unknown_flag_with_a_value_is_named_not_taken_for_the_port(tiny_files, capsys):
    from hsscp import cli as hsscp_cli

    code = hsscp_cli.main(["storescu", "--frob", "5", "127.0.0.1", "104", tiny_files[0]])
    assert code == cli.EXIT_USAGE
    error = capsys.readouterr().err.splitlines()[-1]
    assert "--frob" in error and "PORT" not in error


def test_plot_starts_at_zero_with_latency_on_a_log_scale_and_says_what_failed(tmp_path, tiny_files):
    from hsscp.loadgen import report as report_module
    from hsscp.loadgen.plot import build_figure

    stats = report_module.Stats(epoch=0.0)
    for i in range(50):
        stats.response(0x0000, 100, 0.0005 * (1 + i), 0.01 * i, tiny_files[0])
    stats.response(0xA700, 100, 2.5, 0.6, tiny_files[1])
    raw = stats.result()
    report = report_module.summarize(raw, "C-STORE", 51, 0, 1)
    fig = build_figure(report, raw)
    try:
        throughput, latency = fig.axes
        assert throughput.get_ylim()[0] == 0 and latency.get_ylim()[0] == 0
        assert latency.get_xscale() == "log"
        assert latency.get_xlim()[1] >= 2500  # the slowest answer is on the axis, not cut off
        assert "failed 1" in fig._suptitle.get_text()
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
