"""AE.start_server(..., workers=N): the multiprocess SCP behind the pynetdicom API."""

from __future__ import annotations

import os

from hsscp import AE, AllStoragePresentationContexts, VerificationPresentationContexts, evt

from .datagen import CT_IMAGE_STORAGE, dataset_of, stored_files, write_instances

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def scp_ae() -> AE:
    ae = AE("HSSCP")
    ae.supported_contexts = [*VerificationPresentationContexts, *AllStoragePresentationContexts]
    ae.add_supported_context(CT_IMAGE_STORAGE, EXPLICIT_LE)
    return ae


def store_all(port: int, paths) -> list[int]:
    scu = AE("SCU")
    scu.add_requested_context(CT_IMAGE_STORAGE, EXPLICIT_LE)
    statuses = []
    for _ in range(3):  # several associations, to reach more than one worker
        assoc = scu.associate("127.0.0.1", port, ae_title="HSSCP")
        assert assoc.is_established
        statuses += [assoc.send_c_store(str(path)).Status for path in paths]
        assoc.release()
    return statuses


def test_user_handlers_run_in_the_workers(tmp_path):
    seen = tmp_path / "seen"
    seen.mkdir()

    def on_store(event, folder):
        # Runs in a worker process, inherited at fork.
        (folder / f"{os.getpid()}-{event.request.affected_sop_instance_uid}").write_bytes(
            event.encoded_dataset(include_meta=False)
        )
        return 0x0000

    paths = write_instances(tmp_path / "src", 4)
    ae = scp_ae()
    server = ae.start_server(("127.0.0.1", 0), block=False, workers=2,
                             evt_handlers=[(evt.EVT_C_STORE, on_store, [seen])])
    try:
        assert store_all(server.server_address[1], paths) == [0] * 12
    finally:
        ae.shutdown()
    pids = {int(p.name.split("-")[0]) for p in seen.iterdir()}
    assert os.getpid() not in pids
    for path in paths:
        (copy,) = [p for p in seen.iterdir() if p.name.endswith(path.stem)][:1]
        assert copy.read_bytes() == dataset_of(path)


def test_without_a_handler_the_writer_pool_stores(tmp_path):
    paths = write_instances(tmp_path / "src", 5)
    ae = scp_ae()
    server = ae.start_server(("127.0.0.1", 0), block=False, workers=2, writers=1,
                             output_directory=str(tmp_path / "out"), layout="flat")
    try:
        assert store_all(server.server_address[1], paths) == [0] * 15
    finally:
        ae.shutdown()
    stored = stored_files(tmp_path / "out")
    assert {p.stem for p in paths} == set(stored)
    assert all(dataset_of(stored[p.stem]) == dataset_of(p) for p in paths)


def test_make_run_answers_dcmtk_echoscu(tmp_path):
    import signal
    import subprocess

    from .peers import dcmtk_env, free_port, require_binary, wait_for_port

    port = free_port()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(["make", "-s", "run", f"PORT={port}", "BIND=127.0.0.1", f"OUT={tmp_path / 'received'}"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for_port(port, proc=proc, timeout=60)
        echo = subprocess.run([require_binary("echoscu"), "127.0.0.1", str(port)], env=dcmtk_env(),
                              capture_output=True, text=True, timeout=30)
        assert echo.returncode == 0, echo.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


def test_bad_process_settings_are_refused_before_the_port_is_taken():
    import pytest

    from hsscp.transport import bind_listener

    from .peers import free_port

    port = free_port()
    with pytest.raises(ValueError, match="layout must be one of"):
        scp_ae().start_server(("127.0.0.1", port), block=False, workers=1, layout="tree")
    bind_listener(("127.0.0.1", port)).close()


def test_the_association_limit_is_the_aes_across_workers(tmp_path):
    ae = scp_ae()
    ae.maximum_associations = 1
    server = ae.start_server(("127.0.0.1", 0), block=False, workers=2, writers=1,
                             output_directory=str(tmp_path / "out"))
    try:
        scu = AE("SCU")
        scu.add_requested_context(CT_IMAGE_STORAGE, EXPLICIT_LE)
        first = scu.associate("127.0.0.1", server.server_address[1], ae_title="HSSCP")
        second = scu.associate("127.0.0.1", server.server_address[1], ae_title="HSSCP")
        assert first.is_established and second.is_rejected
        first.release()
    finally:
        ae.shutdown()


USER_PROGRAM = """
import sys, threading
from hsscp import AE, VerificationPresentationContexts

def start():
    ae = AE("HSSCP")
    ae.supported_contexts = VerificationPresentationContexts
    server = ae.start_server(("127.0.0.1", 0), block=False, workers=1, writers=1, output_directory=sys.argv[1])
    print(server.server_address[1], flush=True)

thread = threading.Thread(target=start)  # started from a thread that ends long before the program
thread.start()
thread.join()
sys.stdin.read()  # until killed
"""


def test_a_server_started_without_blocking_stops_when_the_program_that_started_it_is_killed(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from .peers import dcmtk_env, require_binary

    program = subprocess.Popen([sys.executable, "-c", USER_PROGRAM, str(tmp_path / "out")], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        port = int(program.stdout.readline())
        (supervisor,) = children_of(program.pid)
        echo = subprocess.run([require_binary("echoscu"), "127.0.0.1", str(port)], env=dcmtk_env(),
                              capture_output=True, text=True, timeout=30)
        assert echo.returncode == 0, echo.stderr  # it serves, after the thread that started it ended
        server = [supervisor, *children_of(supervisor)]  # and its worker and writer
        assert len(server) == 3
        program.kill()  # no shutdown(): gone as a crash or the OOM killer would end it
        program.wait(10)
        deadline = time.monotonic() + 30
        while any(map(process_lives, server)):
            assert time.monotonic() < deadline, "the server outlived the program that started it"
            time.sleep(0.05)
    finally:
        program.kill()
        os.killpg(program.pid, signal.SIGKILL)  # whatever of it is left: nothing may outlive the test


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (whichever of its threads forked them)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        children.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return children


def process_lives(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False
