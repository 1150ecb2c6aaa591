"""Run ``hsscp storescp`` (the multiprocess SCP) as a real process for tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .peers import free_port, wait_for_port


@dataclass
class RunningSCP:
    proc: subprocess.Popen
    port: int
    out: Path
    output: str = ""

    def children(self) -> dict[str, int]:
        """Process name (hsscp-worker-0, hsscp-writer-1, ...) -> pid of the server's children."""
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                name = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and name.startswith("hsscp-"):
                found[name] = int(entry)
        return found

    def wait_for_children(self, workers: int, writers: int, timeout: float = 10.0, exclude=()) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while True:
            children = self.children()
            fresh = {k: v for k, v in children.items() if v not in exclude}
            if (sum(k.startswith("hsscp-worker") for k in fresh) >= workers
                    and sum(k.startswith("hsscp-writer") for k in fresh) >= writers):
                return children
            if time.monotonic() > deadline:
                raise TimeoutError(f"server children: {children}")
            time.sleep(0.05)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, _ = self.proc.communicate()
        self.output = out
        return self.proc.returncode


@contextlib.contextmanager
def hsscp_storescp(out: Path, *args: str, workers: int = 2, writers: int = 2) -> Iterator[RunningSCP]:
    port = free_port()
    argv = [sys.executable, "-m", "hsscp", "storescp", "--bind", "127.0.0.1", "-od", str(out),
            "--workers", str(workers), "--writers", str(writers), *args, str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    scp = RunningSCP(proc, port, out)
    try:
        wait_for_port(port, proc=proc, timeout=20)
        scp.wait_for_children(workers, writers)
        yield scp
    finally:
        if proc.poll() is None:
            scp.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # nothing of it may outlive the test
