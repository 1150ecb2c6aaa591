"""The multiprocess SCP as a real process: shared socket, global limit, crashes, drain, memory."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

from hsscp import AE, pdu
from hsscp.items import MaximumLength, PresentationContextRQ, UserInformation

from .datagen import (
    CT_IMAGE_STORAGE,
    dataset_of,
    stored_files,
    temp_files,
    write_huge_instance,
    write_instances,
)
from .hsscp_process import hsscp_storescp
from .peers import dcmtk_env, require_binary

VERIFICATION = "1.2.840.10008.1.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def scu() -> AE:
    ae = AE("TESTSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(VERIFICATION)
    ae.add_requested_context(CT_IMAGE_STORAGE, EXPLICIT_LE)
    return ae


def send_files(port: int, paths: list[Path], acks: dict[str, int], stop: threading.Event | None = None) -> None:
    """Send files over one association at a time, reconnecting after an abort; record every status."""
    ae = scu()
    pending = list(paths)
    while pending and not (stop and stop.is_set()):
        assoc = ae.associate("127.0.0.1", port, ae_title="HSSCP")
        if not assoc.is_established:
            time.sleep(0.05)
            continue
        while pending and assoc.is_established:
            path = pending[0]
            status = assoc.send_c_store(str(path))
            if "Status" not in status:  # aborted under us: try this file again
                break
            acks[path.stem] = status.Status
            pending.pop(0)
        if assoc.is_established:
            assoc.release()


def assert_acknowledged_are_stored(acks: dict[str, int], sources: dict[str, Path], out: Path) -> None:
    stored = stored_files(out)
    for uid, status in acks.items():
        if status == 0x0000:
            assert uid in stored, f"{uid} acknowledged but not stored"
            assert dataset_of(stored[uid]) == dataset_of(sources[uid]), f"{uid} differs from what was sent"
    assert not temp_files(out), temp_files(out)


def test_store_and_echo_with_dcmtk(tmp_path):
    import subprocess

    sources = write_instances(tmp_path / "src", 12)
    with hsscp_storescp(tmp_path / "out", "--layout", "study") as scp:
        env = dcmtk_env()
        echo = subprocess.run([require_binary("echoscu"), "127.0.0.1", str(scp.port)], env=env, capture_output=True)
        assert echo.returncode == 0
        store = subprocess.run([require_binary("storescu"), "-R", "127.0.0.1", str(scp.port), *map(str, sources)],
                               env=env, capture_output=True, text=True)
        assert store.returncode == 0, store.stderr
        assert scp.stop() == 0
    stored = stored_files(tmp_path / "out")
    assert set(stored) == {p.stem for p in sources}
    for path in sources:
        file = stored[path.stem]
        assert file.parent.parent.parent == tmp_path / "out"  # <out>/<study>/<series>/<sop>.dcm
        assert dataset_of(file) == dataset_of(path)
    assert "received 12 instances" in scp.output


def test_associations_land_on_more_than_one_worker(tmp_path):
    with hsscp_storescp(tmp_path / "out") as scp:
        holders = []
        for _ in range(16):  # held open together, so one worker cannot take them one by one
            assoc = scu().associate("127.0.0.1", scp.port, ae_title="HSSCP")
            assert assoc.is_established
            holders.append(assoc)
        for assoc in holders:
            assoc.release()
        assert scp.stop() == 0
    counts = [int(n) for n in scp.output.split("associations per worker:")[1].split()]
    assert sum(counts) == 16 and sum(1 for n in counts if n) > 1, scp.output


def raw_associate(port: int) -> socket.socket:
    rq = pdu.AAssociateRQ(
        "HSSCP", "BURST",
        presentation_contexts=[PresentationContextRQ(1, VERIFICATION, ["1.2.840.10008.1.2"])],
        user_information=UserInformation([MaximumLength(16384)]),
    )
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(pdu.encode_pdu(rq))
    return sock


def read_pdu(sock: socket.socket) -> pdu.PDU:
    data = b""
    while len(data) < 6 or len(data) < 6 + int.from_bytes(data[2:6], "big"):
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a whole PDU"
        data += chunk
    return pdu.decode_pdu(data[: 6 + int.from_bytes(data[2:6], "big")])


def test_global_limit_holds_under_a_burst(tmp_path):
    with hsscp_storescp(tmp_path / "out", "--max-associations", "4") as scp:
        barrier = threading.Barrier(20)
        answers, sockets, lock = [], [], threading.Lock()

        def requestor():
            barrier.wait()
            sock = raw_associate(scp.port)
            answer = read_pdu(sock)
            with lock:
                answers.append(answer)
                sockets.append(sock)

        threads = [threading.Thread(target=requestor) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        accepted = [a for a in answers if isinstance(a, pdu.AAssociateAC)]
        rejected = [a for a in answers if isinstance(a, pdu.AAssociateRJ)]
        assert len(accepted) == 4 and len(rejected) == 16
        assert {(r.result, r.source, r.reason) for r in rejected} == {(2, 3, 2)}
        for sock in sockets:
            sock.close()
        # Service resumes when they go.
        deadline = time.monotonic() + 10
        while True:
            again = scu().associate("127.0.0.1", scp.port, ae_title="HSSCP")
            if again.is_established:
                again.release()
                break
            assert time.monotonic() < deadline, "slots were not given back"
            time.sleep(0.1)


def kill_during_load(tmp_path: Path, victim: str) -> None:
    sources = write_instances(tmp_path / "src", 240, pixel_bytes=16384)
    by_uid = {p.stem: p for p in sources}
    out = tmp_path / "out"
    with hsscp_storescp(out, "--layout", "flat", "--max-associations", "8") as scp:
        acks: dict[str, int] = {}
        shares = [sources[i::4] for i in range(4)]
        threads = [threading.Thread(target=send_files, args=(scp.port, share, acks)) for share in shares]
        for t in threads:
            t.start()
        while len(acks) < 40:
            time.sleep(0.01)
        before = scp.children()
        os.kill(before[victim], signal.SIGKILL)
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        after = scp.wait_for_children(2, 2)
        assert after[victim] != before[victim], "the killed process was not replaced"
        assert not [name for name in os.listdir("/dev/shm") if name.startswith(f"hsscp-{before[victim]}-")]
        assert len(acks) == len(sources)  # every file was eventually answered
        assert scp.stop() == 0
    assert_acknowledged_are_stored(acks, by_uid, out)
    assert all(status == 0 for status in acks.values()) or victim == "hsscp-writer-0"


def test_worker_killed_mid_transfer_loses_nothing_acknowledged(tmp_path):
    kill_during_load(tmp_path, "hsscp-worker-0")


def test_writer_killed_mid_transfer_gives_no_false_success(tmp_path):
    kill_during_load(tmp_path, "hsscp-writer-0")


def test_graceful_shutdown_lets_a_transfer_in_flight_finish(tmp_path):
    from hsscp import dimse
    from hsscp.engine import Engine, Role
    from hsscp.indications import AssociationAccepted, MessageReceived

    from .engine_pair import associate_rq

    (source,) = write_instances(tmp_path / "src", 1, pixel_bytes=4 * 1024 * 1024)
    dataset = dataset_of(source)
    out = tmp_path / "out"
    with hsscp_storescp(out, "--layout", "flat", "--graceful-timeout", "30") as scp:
        engine = Engine(Role.REQUESTOR)
        engine.request_association(associate_rq([(CT_IMAGE_STORAGE, (EXPLICIT_LE,))]))
        sock = socket.create_connection(("127.0.0.1", scp.port))
        engine.connection_made()

        def exchange(*buffers) -> list:
            sock.sendall(b"".join(bytes(b) for b in [*buffers, *engine.pop_output()]))
            indications = []
            while not indications:
                indications = engine.receive_data(sock.recv(65536))
            return indications

        (accepted,) = exchange()
        assert isinstance(accepted, AssociationAccepted)
        request = dimse.CStoreRQ(1, CT_IMAGE_STORAGE, source.stem)
        wire = b"".join(bytes(b) for b in engine.send_message(1, request, dataset))
        sock.sendall(wire[: len(wire) // 2])  # half of the dataset is in flight...
        time.sleep(0.5)
        scp.proc.send_signal(signal.SIGTERM)  # ...when the server is told to stop
        time.sleep(0.5)
        sock.sendall(wire[len(wire) // 2 :])
        indications = []
        while not any(isinstance(i, MessageReceived) for i in indications):
            indications += engine.receive_data(sock.recv(65536))
        (response,) = [i for i in indications if isinstance(i, MessageReceived)]
        assert response.command.status == 0
        exchange(*engine.release())
        sock.close()
        assert scp.stop() == 0
    assert dataset_of(stored_files(out)[source.stem]) == dataset
    assert not temp_files(out)


def dataset_length(path: Path) -> int:
    from hsscp.part10 import read_file_meta

    with open(path, "rb") as fp:
        return path.stat().st_size - read_file_meta(fp).dataset_offset


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_worker_memory_stays_bounded_for_a_1_gib_instance(tmp_path):
    huge = write_huge_instance(tmp_path / "huge.dcm", 1024 * 1024 * 1024)
    out = Path("/dev/shm") / f"hsscp-test-{os.getpid()}"
    try:
        with hsscp_storescp(out, "--layout", "flat", "--fsync", "none", workers=1, writers=1) as scp:
            worker = scp.children()["hsscp-worker-0"]
            assoc = scu().associate("127.0.0.1", scp.port, ae_title="HSSCP", max_pdu=0)
            assert assoc.send_c_store(str(huge)).Status == 0
            peak = peak_rss_kib(worker)
            assoc.release()
            assert scp.stop() == 0
        print(f"worker peak RSS {peak} KiB")
        assert peak < 200 * 1024, f"worker peak RSS {peak} KiB"
        (stored,) = stored_files(out).values()
        assert dataset_length(stored) == dataset_length(huge)
    finally:
        import shutil

        shutil.rmtree(out, ignore_errors=True)


def test_a_uid_that_is_not_a_uid_never_becomes_a_path(tmp_path):
    from pydicom.uid import ExplicitVRLittleEndian

    from .datagen import instance, write_instance

    ds = instance(1)
    ds.SOPInstanceUID = "../../escape"
    path = write_instance(tmp_path, ds)
    out = tmp_path / "out"
    with hsscp_storescp(out, "--layout", "flat") as scp:
        ae = scu()
        ae.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="HSSCP")
        status = assoc.send_c_store(str(path)).Status
        assoc.release()
    assert 0xC000 <= status <= 0xCFFF
    assert not list(tmp_path.glob("escape*")) and not stored_files(out)


def test_a_worker_whose_loop_is_stuck_is_replaced(tmp_path):
    with hsscp_storescp(tmp_path / "out", "--heartbeat-timeout", "1", workers=2) as scp:
        before = scp.children()
        os.kill(before["hsscp-worker-0"], signal.SIGSTOP)  # alive, but its loop turns no more
        after = scp.wait_for_children(2, 2, timeout=15, exclude={before["hsscp-worker-0"]})
        assert after["hsscp-worker-0"] != before["hsscp-worker-0"]
        assoc = scu().associate("127.0.0.1", scp.port, ae_title="HSSCP")
        assert assoc.is_established and assoc.send_c_echo().Status == 0
        assoc.release()
        assert scp.stop() == 0
    assert "stopped beating" in scp.output
    # Its Python stacks were written to the log before it was killed.
    from .test_supervision import stack_dump_between

    stuck = before["hsscp-worker-0"]
    assert stack_dump_between(
        scp.output, f"worker 0 (pid {stuck}) stopped beating", f"worker 0 (pid {stuck}) ended", "worker_main.py"
    ), scp.output


def test_a_worker_that_cannot_boot_is_not_respawned_forever(tmp_path, monkeypatch):
    from hsscp.config import ServerConfig
    from workers import child, scp

    monkeypatch.setattr(scp, "run_worker", lambda ctx: child.BOOT_FAILED)
    config = ServerConfig(port=0, bind="127.0.0.1", output_directory=str(tmp_path / "out"), workers=1, writers=1)
    started = time.monotonic()
    result = scp.serve(config)
    assert result.exit_code == 1
    assert time.monotonic() - started < 30


def test_where_fsync_costs_nothing_durable_small_instances_are_stored_by_the_worker_itself(tmp_path):
    """On a tmpfs an fsync is free, and the worker stores what it can with no hop; elsewhere, the writers."""
    sources = write_instances(tmp_path / "src", 10)
    tmpfs_out = Path("/dev/shm") / f"hsscp-test-inline-{os.getpid()}"
    disk_out = Path(tempfile.mkdtemp(prefix="hsscp-test-inline-", dir="/var/tmp"))  # where an fsync waits
    try:
        from hsscp.storage import Storage
        from hsscp.storage.durable import CHEAP_FSYNC

        # The rule under test: stored by the worker exactly where an fsync measures cheap.
        disk_is_slow = Storage(disk_out / "probe").fsync_cost() >= CHEAP_FSYNC
        assert disk_is_slow, "this disk acknowledges fsyncs at once: the writers' case needs another folder"
        for out, by_worker in ((tmpfs_out, True), (disk_out / "out", False)):
            acks: dict[str, int] = {}
            with hsscp_storescp(out, "--fsync", "file", workers=1, writers=1) as scp:
                writer = scp.children()["hsscp-writer-0"]
                os.kill(writer, signal.SIGSTOP)  # no writer can answer now
                try:
                    sender = threading.Thread(target=send_files, args=(scp.port, sources, acks))
                    sender.start()
                    sender.join(10 if by_worker else 2)
                    assert (not sender.is_alive() and set(acks.values()) == {0}) is by_worker, out
                finally:
                    os.kill(writer, signal.SIGCONT)
                sender.join(30)
                assert scp.stop() == 0
            assert_acknowledged_are_stored(acks, {p.stem: p for p in sources}, out)
    finally:
        import shutil

        shutil.rmtree(tmpfs_out, ignore_errors=True)
        shutil.rmtree(disk_out, ignore_errors=True)


def test_without_fsync_small_instances_are_stored_by_the_worker_itself(tmp_path):
    sources = write_instances(tmp_path / "src", 10)
    big = write_instances(tmp_path / "big", 1, pixel_bytes=600_000)
    out = tmp_path / "out"
    acks: dict[str, int] = {}
    with hsscp_storescp(out, "--layout", "flat", "--fsync", "none", "--inline-limit", "64K",
                        workers=1, writers=1) as scp:
        writer = scp.children()["hsscp-writer-0"]
        os.kill(writer, signal.SIGSTOP)  # no writer can answer now...
        try:
            send_files(scp.port, sources, acks)  # ...yet small instances are stored
            assert set(acks.values()) == {0}
            blocked: dict[str, int] = {}
            sender = threading.Thread(target=send_files, args=(scp.port, big, blocked))
            sender.start()
            sender.join(2)
            assert sender.is_alive() and not blocked  # a big one waits for the writer
        finally:
            os.kill(writer, signal.SIGCONT)
        sender.join(30)
        assert blocked == {big[0].stem: 0}
        assert scp.stop() == 0
    assert_acknowledged_are_stored({**acks, **blocked}, {p.stem: p for p in [*sources, *big]}, out)


def test_an_asynchronous_operations_window_is_granted_and_used(tmp_path):
    import json
    import subprocess
    import sys

    sources = write_instances(tmp_path / "src", 60, pixel_bytes=8192)
    out = tmp_path / "out"
    report = tmp_path / "report.json"
    with hsscp_storescp(out, "--layout", "flat", "--async-ops", "8") as scp:
        sent = subprocess.run(
            [sys.executable, "-m", "hsscp", "storescu", "-q", "-aec", "HSSCP", "--async-ops", "8",
             "--json", str(report), "127.0.0.1", str(scp.port), str(tmp_path / "src")],
            capture_output=True, text=True, timeout=120,
        )
        assert sent.returncode == 0, sent.stderr
        assert scp.stop() == 0
    stats = json.loads(report.read_text())
    assert stats["max_outstanding"] > 1  # several C-STOREs were in flight on one association
    acks = {p.stem: 0 for p in sources}
    assert_acknowledged_are_stored(acks, {p.stem: p for p in sources}, out)
