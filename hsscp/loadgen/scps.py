"""The storage SCPs ``hsscp bench`` compares, run as separate processes on 127.0.0.1.

Each runs in its own process group (so a forking server's children go with
it) and is always stopped and reaped. Its CPU time is read from /proc for
the whole process tree: every live (or not yet reaped) process under it,
plus what the ones already reaped left in their parents' cutime/cstime.

To compare one more configuration, add an entry to :data:`SCPS`; for
hsscp with other storescp flags that is one :func:`hsscp_variant` line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
_TICKS = os.sysconf("SC_CLK_TCK")
PYNETDICOM_PEER = Path(__file__).resolve().parents[2] / "bench" / "peers" / "pynetdicom_scp.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def python_env() -> dict[str, str]:
    """The environment for a Python child that must import this hsscp, installed or not."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def dcmtk_env() -> dict[str, str]:
    # Without TCP_NODELAY DCMTK waits ~40 ms for the delayed ACK on every small PDU.
    return {**os.environ, "TCP_NODELAY": "1"}


@dataclass(frozen=True, slots=True)
class ScpSpec:
    name: str
    description: str
    argv: Callable[[int, str, int], list[str]]  # (port, output folder, max PDU) -> command
    env: Callable[[], dict[str, str]]
    requires: str  # the program that must be there


def _storescp(*flags: str) -> Callable[[int, str, int], list[str]]:
    return lambda port, out, pdu: ["storescp", *flags, "+xa", "-pdu", str(pdu), "-od", out, str(port)]


def _hsscp(*flags: str) -> Callable[[int, str, int], list[str]]:
    """hsscp storescp with ``flags`` added; ``{out}`` in a flag is the SCP's output folder."""
    workers = str(os.cpu_count() or 1)
    return lambda port, out, pdu: [
        sys.executable, "-m", "hsscp", "storescp", "--bind", HOST, "-od", out, "--workers", workers,
        "--max-pdu", str(pdu), "-q", *(flag.replace("{out}", out) for flag in flags), str(port),
    ]


def hsscp_variant(name: str, description: str, *flags: str) -> ScpSpec:
    """An hsscp SCP with extra storescp ``flags`` (``{out}``: its output folder), for :data:`SCPS`."""
    return ScpSpec(name, description, _hsscp(*flags), python_env, sys.executable)


SCPS: dict[str, ScpSpec] = {
    spec.name: spec
    for spec in (
        hsscp_variant("hsscp", "hsscp storescp, one worker per CPU, files written"),
        hsscp_variant("hsscp-flat", "hsscp storescp as DCMTK stores: one folder, no fsync",
                      "--layout", "flat", "--fsync", "none"),
        hsscp_variant("hsscp-ignore", "hsscp storescp --ignore (nothing written)", "--ignore"),
        hsscp_variant("hsscp-journal", "hsscp storescp at its defaults with a journal",
                      "--journal", "{out}/.hsscp-journal.jsonl"),
        hsscp_variant("hsscp-1writer", "hsscp storescp with one writer: every job in one group commit",
                      "--writers", "1"),
        hsscp_variant("hsscp-metrics", "hsscp storescp at its defaults serving /metrics (on a free port)",
                      "--metrics", "127.0.0.1:0"),
        hsscp_variant("hsscp-hook", "hsscp storescp at its defaults running a reception hook (true #f)",
                      "--exec-on-reception", "true #f"),
        ScpSpec("dcmtk", "DCMTK storescp, single process, files written", _storescp(), dcmtk_env, "storescp"),
        ScpSpec("dcmtk-fork", "DCMTK storescp --fork, files written", _storescp("--fork"), dcmtk_env, "storescp"),
        ScpSpec("dcmtk-ignore", "DCMTK storescp --fork --ignore (protocol only)", _storescp("--fork", "--ignore"),
                dcmtk_env, "storescp"),
        ScpSpec("pynetdicom", "pynetdicom SCP writing event.encoded_dataset()",
                lambda port, out, pdu: [sys.executable, str(PYNETDICOM_PEER), str(port), "-od", out,
                                        "--max-pdu", str(pdu)],
                python_env, sys.executable),
    )
}


def require(spec: ScpSpec) -> None:
    """Raise RuntimeError naming what to install when the SCP cannot run here."""
    if shutil.which(spec.requires) is None:
        raise RuntimeError(f"{spec.name}: '{spec.requires}' is not on PATH (DCMTK: apt-get install dcmtk)")
    if spec.name == "pynetdicom" and not PYNETDICOM_PEER.exists():
        raise RuntimeError(f"pynetdicom: the peer script {PYNETDICOM_PEER} is part of a source checkout")


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listened on {HOST}:{port} within {timeout} s")
        time.sleep(0.05)


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL what lingers, reap the leader."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # also children that outlived the leader
    proc.wait()


@contextlib.contextmanager
def running(spec: ScpSpec, port: int, out: str, max_pdu: int, log_path: str) -> Iterator[subprocess.Popen]:
    require(spec)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            spec.argv(port, out, max_pdu), env=spec.env(), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        stop_group(proc)


def _stat(pid: str) -> tuple[int, float] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state ppid ... utime(11) stime(12) cutime(13) cstime(14).
    return int(fields[1]), sum(int(v) for v in fields[11:15]) / _TICKS


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of ``root`` and all its descendants, reaped ones included."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(name)) is not None:
            parents[int(name)], cpu[int(name)] = stat
    total, frontier, seen = 0.0, [root], set()
    while frontier:
        pid = frontier.pop()
        if pid in seen or pid not in cpu:
            continue
        seen.add(pid)
        total += cpu[pid]
        frontier += [child for child, parent in parents.items() if parent == pid]
    return total
