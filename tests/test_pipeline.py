"""After the file lands, against the running multiprocess server: hooks, completion, restarts, events.

Instances are sent with DCMTK's storescu and hsscp's own SCU; hooks are small
Python scripts that record their argv as JSON lines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hsscp import AE, AllStoragePresentationContexts, evt

from .datagen import CT_IMAGE_STORAGE, ROOT, instance, stored_files, write_instance, write_instances
from .hsscp_process import hsscp_storescp
from .peers import dcmtk_env, require_binary
from .test_hooks import calls, recorder, script, wait_until

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def dcmtk_storescu(port: int, paths: list[Path], *args: str) -> None:
    sent = subprocess.run([require_binary("storescu"), *args, "127.0.0.1", str(port), *map(str, paths)],
                          env=dcmtk_env(), capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr


def hsscp_storescu(port: int, paths: list[Path], *args: str) -> None:
    sent = subprocess.run([sys.executable, "-m", "hsscp", "storescu", "-q", *args, "127.0.0.1", str(port),
                           *map(str, paths)],
                          capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stdout + sent.stderr


def write_study(folder: Path, study: int, series: int, per_series: int, first: int = 1) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_instance(folder, instance(i, study=study, series=s))
            for s in range(1, series + 1) for i in range(first, first + per_series)]


def study_uid(study: int) -> str:
    return f"{ROOT}.1.{study}"


def series_uid(study: int, series: int) -> str:
    return f"{ROOT}.2.{study}.{series}"


def test_one_reception_call_per_stored_instance_with_its_placeholders(tmp_path):
    program, record = recorder(tmp_path)
    sources = write_instances(tmp_path / "src", 6)
    out = tmp_path / "out"
    with hsscp_storescp(out, "-xcr", f"{program} {record} #p #f #a #c #r") as scp:
        dcmtk_storescu(scp.port, sources[:3], "-aet", "DCMTKSCU", "-aec", "HSSCP")
        hsscp_storescu(scp.port, sources[3:], "-aet", "HSSCU", "-aec", "ARCHIVE")
        wait_until(lambda: len(calls(record)) >= 6)
        assert scp.stop() == 0
    stored = stored_files(out)
    got = sorted(calls(record), key=lambda argv: argv[1])
    assert len(got) == 6  # none more after the stop either
    for folder, filename, calling, called, peer in got:
        uid = filename.removesuffix(".dcm")
        assert Path(folder, filename) == stored[uid]
        source = next(p for p in sources if p.stem == uid)
        assert (calling, called) == (("DCMTKSCU", "HSSCP") if source in sources[:3] else ("HSSCU", "ARCHIVE"))
        assert peer == "127.0.0.1"


def test_exactly_one_completion_per_quiet_period_for_studies_interleaved_over_workers(tmp_path):
    program, record = recorder(tmp_path)
    src = tmp_path / "src"
    first = write_study(src / "a", 1, 2, 4) + write_study(src / "a", 2, 2, 4)
    out = tmp_path / "out"
    with hsscp_storescp(
        out,
        "-xcs", f"{program} {record} study #p #a",
        "-tos", "1.5",
        "--exec-on-eoseries", f"{program} {record} series #p",
        "--eoseries-timeout", "1",
    ) as scp:
        # Four associations at once share the files of both studies: each study arrives
        # interleaved with the other, over several associations, through both workers.
        hsscp_storescu(scp.port, [src / "a"], "-c", "4", "-aet", "MODALITY")
        wait_until(lambda: len([c for c in calls(record) if c[0] == "study"]) >= 2)
        # A second quiet period of study 1: it completes once more, and only it.
        later = write_study(src / "b", 1, 1, 3, first=10)
        dcmtk_storescu(scp.port, later, "-aet", "LATER")
        wait_until(lambda: len([c for c in calls(record) if c[0] == "study"]) >= 3)
        time.sleep(2)  # time for a wrong extra completion to show
        assert scp.stop() == 0
    per_worker = scp.output.split("associations per worker:")[1].split()
    assert all(int(n) > 0 for n in per_worker), scp.output  # both workers took some
    assert len(stored_files(out)) == len(first) + len(later)
    studies = [c[1:] for c in calls(record) if c[0] == "study"]
    series = [c[1] for c in calls(record) if c[0] == "series"]
    assert sorted(studies[:2]) == sorted([[str(out / study_uid(1)), "MODALITY"],
                                          [str(out / study_uid(2)), "MODALITY"]])
    assert studies[2:] == [[str(out / study_uid(1)), "LATER"]]
    expected = [str(out / study_uid(st) / series_uid(st, se)) for st in (1, 2) for se in (1, 2)]
    assert sorted(series[:4]) == sorted(expected)
    assert series[4:] == [str(out / study_uid(1) / series_uid(1, 1))]


def test_ae_titles_with_shell_metacharacters_reach_the_hook_as_one_literal_argument(tmp_path):
    program, record = recorder(tmp_path)
    sources = write_instances(tmp_path / "src", 2)
    canary = Path("/tmp") / f"hz{os.getpid() % 100000}"
    titles = ["A&B|C;$X", f";touch {canary}"[:16]]
    with hsscp_storescp(tmp_path / "out", "-xcr", f"{program} {record} #a:#c", "-xcs",
                        f"{program} {record} study #a", "-tos", "0.5") as scp:
        for title, source in zip(titles, sources, strict=True):
            dcmtk_storescu(scp.port, [source], "-aet", title, "-aec", "$(id)|x&")
        wait_until(lambda: len(calls(record)) >= 3)
        assert scp.stop() == 0
    got = calls(record)
    assert sorted(c for c in got if c[0] != "study") == sorted([[f"{t}:$(id)|x&"] for t in titles])
    assert ["study", titles[1]] in got  # the study's last instance came from the second title
    assert not canary.exists()


def test_a_failing_or_hanging_hook_is_logged_and_the_server_goes_on(tmp_path):
    hang = script(tmp_path, "hang.py", "time.sleep(60)")
    fail = script(tmp_path, "fail.py", "print('no space left in the archive'); sys.exit(3)")
    sources = write_instances(tmp_path / "src", 4)
    out = tmp_path / "out"
    with hsscp_storescp(out, "-xcr", fail, "-xcs", hang, "-tos", "0.2", "--hook-timeout", "1") as scp:
        dcmtk_storescu(scp.port, sources[:2])
        time.sleep(1.5)  # the end-of-study hook runs and times out meanwhile
        dcmtk_storescu(scp.port, sources[2:])  # the server still stores and answers Success
        time.sleep(1.5)
        assert scp.stop() == 0
    assert len(stored_files(out)) == 4
    assert scp.output.count("failed, exit status 3; output: 'no space left in the archive\\n'") == 4
    assert "timed out after 1s, its process group was killed" in scp.output


def test_a_busy_hook_never_holds_back_a_response(tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    busy = script(tmp_path, "busy.py", f"open({str(started)!r}, 'a').write('x')\n"
                  f"while not os.path.exists({str(release)!r}):\n    time.sleep(0.05)")
    sources = write_instances(tmp_path / "src", 5)
    with hsscp_storescp(tmp_path / "out", "-xcr", busy, "--hook-concurrency", "1") as scp:
        dcmtk_storescu(scp.port, sources)  # every one answered Success (checked), ...
        wait_until(started.exists)
        assert started.read_text() == "x"  # ... while the first hook still runs and the rest wait
        release.touch()
        wait_until(lambda: started.read_text() == "xxxxx")
        assert scp.stop() == 0
    assert len(stored_files(tmp_path / "out")) == 5


def test_with_the_flat_layout_completion_reads_the_uids_from_the_files(tmp_path):
    program, record = recorder(tmp_path)
    sources = write_study(tmp_path / "src", 4, 2, 2)
    out = tmp_path / "out"
    with hsscp_storescp(out, "--layout", "flat", "--exec-on-eoseries", f"{program} {record} series #p",
                        "--eoseries-timeout", "0.3") as scp:
        dcmtk_storescu(scp.port, sources)
        wait_until(lambda: len(calls(record)) >= 2)
        assert scp.stop() == 0
    assert calls(record) == [["series", str(out)]] * 2  # one per series, each in the one folder


def test_completion_hooks_run_after_a_sigkill_of_the_whole_tree(tmp_path):
    program, record = recorder(tmp_path)
    sources = write_study(tmp_path / "src", 7, 2, 3)
    out = tmp_path / "out"
    hooks = ("-xcs", f"{program} {record} study #p", "-tos", "3",
             "--exec-on-eoseries", f"{program} {record} series #p", "--eoseries-timeout", "3")
    state = out / ".hsscp-completion.json"
    with hsscp_storescp(out, *hooks) as scp:
        dcmtk_storescu(scp.port, sources)  # every instance acknowledged
        wait_until(lambda: state.exists() and study_uid(7) in state.read_text())
        os.killpg(scp.proc.pid, signal.SIGKILL)  # before the quiet period ended
        scp.proc.wait()
    assert calls(record) == []
    with hsscp_storescp(out, *hooks) as scp:
        wait_until(lambda: len(calls(record)) >= 3)
        time.sleep(0.5)
        assert scp.stop() == 0
    got = calls(record)
    assert sorted(got) == sorted([["study", str(out / study_uid(7))],
                                  *(["series", str(out / study_uid(7) / series_uid(7, s))] for s in (1, 2))])
    assert json.loads(state.read_text())["periods"] == []


def test_a_killed_pipeline_process_is_replaced_and_the_workers_send_it_what_they_kept(tmp_path):
    program, record = recorder(tmp_path)
    sources = write_instances(tmp_path / "src", 6)
    with hsscp_storescp(tmp_path / "out", "-xcr", f"{program} {record} #f") as scp:
        dcmtk_storescu(scp.port, sources[:3])
        wait_until(lambda: len(calls(record)) >= 3)
        old = scp.children()["hsscp-pipe-0"]
        os.kill(old, signal.SIGKILL)
        dcmtk_storescu(scp.port, sources[3:])  # while it is down, or just back
        wait_until(lambda: len(calls(record)) >= 6)
        assert scp.children()["hsscp-pipe-0"] != old
        assert scp.stop() == 0
    assert sorted(argv for argv in calls(record)) == sorted([[f"{p.stem}.dcm"] for p in sources])
    assert f"pipe 0 (pid {old}) ended with signal 9" in scp.output


def _record_event(event, folder: Path) -> None:
    attrs = {name: getattr(event, name) for name in (
        "study_instance_uid", "series_instance_uid", "calling_ae", "called_ae", "peer")}
    if event.event == evt.EVT_INSTANCE_STORED:
        attrs.update(path=event.path, sop_instance_uid=event.sop_instance_uid, status=event.status)
    else:
        attrs.update(folder=event.folder, instances=event.instances, kind=event.kind)
    attrs.update(event=event.event.name, pid=os.getpid(), assoc=event.assoc)
    with open(folder / "events.jsonl", "a") as fp:
        fp.write(json.dumps(attrs) + "\n")


def test_api_events_with_workers_run_in_the_pipeline_process(tmp_path):
    sources = write_study(tmp_path / "src", 3, 2, 2)
    out = tmp_path / "out"
    ae = AE("HSSCP")
    ae.supported_contexts = AllStoragePresentationContexts
    handlers = [(event, _record_event, [tmp_path]) for event in evt.PIPELINE_EVENTS]
    server = ae.start_server(("127.0.0.1", 0), block=False, workers=2, evt_handlers=handlers,
                             output_directory=str(out), eostudy_timeout=0.6, eoseries_timeout=0.3)
    log = tmp_path / "events.jsonl"
    try:
        scu = AE("EVENTSCU")
        scu.add_requested_context(CT_IMAGE_STORAGE, EXPLICIT_LE)
        assoc = scu.associate("127.0.0.1", server.server_address[1], ae_title="HSSCP")
        assert [assoc.send_c_store(str(path)).Status for path in sources] == [0] * 4
        assoc.release()
        wait_until(lambda: log.exists() and log.read_text().count("EVT_STUDY_COMPLETE") == 1)
    finally:
        ae.shutdown()
    got = [json.loads(line) for line in log.read_text().splitlines()]
    assert {e["pid"] for e in got} - {os.getpid()} == {e["pid"] for e in got}  # not in this process
    assert len({e["pid"] for e in got}) == 1 and all(e["assoc"] is None for e in got)
    stored = [e for e in got if e["event"] == "EVT_INSTANCE_STORED"]
    assert sorted(e["sop_instance_uid"] for e in stored) == sorted(p.stem for p in sources)
    for e in stored:
        assert e["path"] == str(stored_files(out)[e["sop_instance_uid"]])
        assert (e["status"], e["calling_ae"], e["called_ae"]) == (0, "EVENTSCU", "HSSCP")
        assert e["study_instance_uid"] == study_uid(3) and e["peer"][0] == "127.0.0.1"
        assert e["peer"][1] > 0
    series = sorted((e["series_instance_uid"], e["instances"], e["folder"])
                    for e in got if e["event"] == "EVT_SERIES_COMPLETE")
    assert series == [(series_uid(3, s), 2, str(out / study_uid(3) / series_uid(3, s))) for s in (1, 2)]
    (study,) = [e for e in got if e["event"] == "EVT_STUDY_COMPLETE"]
    assert (study["kind"], study["instances"], study["folder"]) == ("study", 4, str(out / study_uid(3)))
    assert study["series_instance_uid"] is None and study["calling_ae"] == "EVENTSCU"
