"""The multiprocess SCP's processes when something goes wrong: orphans, stuck writers, traces, leaks."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

from hsscp.transport import bind_listener

from .datagen import write_instances
from .hsscp_process import hsscp_storescp
from .test_multiprocess_scp import assert_acknowledged_are_stored, scu, send_files

PROCESSING_FAILURE = 0x0110


def running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie nobody reaped has stopped running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def arenas_of(pids) -> list[str]:
    return [name for name in os.listdir("/dev/shm") for pid in pids if name.startswith(f"hsscp-{pid}-")]


def stack_dump_between(output: str, start: str, end: str, source: str) -> bool:
    """Whether a faulthandler dump naming ``source`` lies between the lines ``start`` and ``end``."""
    window = output[output.index(start) : output.index(end)]
    return re.search(rf'File ".*{re.escape(source)}", line \d+ in ', window) is not None


def test_children_die_with_the_supervisor_and_free_the_port(tmp_path):
    with hsscp_storescp(tmp_path / "out", workers=2, writers=2) as scp:
        children = scp.children()
        held = scu().associate("127.0.0.1", scp.port, ae_title="HSSCP")  # an association stays open
        assert held.is_established
        os.kill(scp.proc.pid, signal.SIGKILL)  # the supervisor alone, as the OOM killer would
        scp.proc.wait(10)
        deadline = time.monotonic() + 8
        while any(running(pid) for pid in children.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [name for name, pid in children.items() if running(pid)], children
        bind_listener(("127.0.0.1", scp.port)).close()  # what the next supervisor does
        workers = [pid for name, pid in children.items() if name.startswith("hsscp-worker")]
        assert not arenas_of(workers)  # the orphaned workers unlinked their shared memory
        held.abort()


def test_a_stuck_writer_is_replaced_and_its_jobs_fail(tmp_path):
    sources = write_instances(tmp_path / "src", 160, pixel_bytes=16384)
    out = tmp_path / "out"
    # One writer: every job in flight is the stuck one's, so some are certainly held by it.
    with hsscp_storescp(out, "--layout", "flat", "--heartbeat-timeout", "1", workers=2, writers=1) as scp:
        acks: dict[str, int] = {}
        threads = [threading.Thread(target=send_files, args=(scp.port, sources[i::4], acks)) for i in range(4)]
        for t in threads:
            t.start()
        while len(acks) < 20:
            time.sleep(0.01)
        stuck = scp.children()["hsscp-writer-0"]
        os.kill(stuck, signal.SIGSTOP)
        after = scp.wait_for_children(2, 1, timeout=15, exclude={stuck})
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        assert len(acks) == len(sources)  # every instance was answered
        assert PROCESSING_FAILURE in acks.values()  # the stuck writer's jobs, never Success
        assert not running(stuck)
        more = write_instances(tmp_path / "more", 3, pixel_bytes=16384)
        send_files(scp.port, more, acks)  # the replacement stores
        assert all(acks[p.stem] == 0 for p in more)
        assert scp.stop() == 0
    assert after["hsscp-writer-0"] != stuck
    assert_acknowledged_are_stored(acks, {p.stem: p for p in [*sources, *more]}, out)
    assert stack_dump_between(
        scp.output, f"writer 0 (pid {stuck}) stopped beating", f"writer 0 (pid {stuck}) ended", "writer_main.py"
    ), scp.output


def test_a_replaced_worker_leaves_no_leak_and_no_false_alarm(tmp_path):
    with hsscp_storescp(tmp_path / "out", workers=2, writers=1) as scp:
        before = scp.children()
        os.kill(before["hsscp-worker-0"], signal.SIGKILL)
        after = scp.wait_for_children(2, 1, exclude={before["hsscp-worker-0"]})
        assoc = scu().associate("127.0.0.1", scp.port, ae_title="HSSCP")
        assert assoc.is_established and assoc.send_c_echo().Status == 0
        assoc.release()
        assert scp.stop() == 0
    assert "resource_tracker" not in scp.output, scp.output
    assert "ended with signal 9" in scp.output
    assert not arenas_of([*before.values(), *after.values()])
