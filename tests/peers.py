"""Start and stop real DICOM peers (DCMTK tools, other servers) for tests.

Every peer listens on 127.0.0.1 only, runs in its own process group and is
always stopped and reaped, even when the test using it fails. A missing peer
binary is an error, not a skip: interop coverage must not vanish silently.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence

HOST = "127.0.0.1"

# Debian package that provides each peer binary the tests use.
DEBIAN_PACKAGES = {
    name: "dcmtk"
    for name in (
        "dcmdump",
        "dcmqrscp",
        "echoscu",
        "findscu",
        "getscu",
        "movescu",
        "storescp",
        "storescu",
        "termscu",
        "wlmscpfs",
    )
}

_STOP_GRACE = 5.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_accepts(port: int, host: str = HOST) -> bool:
    """Tell whether something accepts TCP connections on host:port right now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(
    port: int,
    timeout: float = 10.0,
    *,
    host: str = HOST,
    proc: subprocess.Popen | None = None,
) -> None:
    """Block until host:port accepts connections.

    Raises TimeoutError after ``timeout`` seconds, or RuntimeError at once if
    ``proc`` (the process expected to listen) has exited meanwhile.
    """
    deadline = time.monotonic() + timeout
    while not port_accepts(port, host):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing accepted connections on {host}:{port} within {timeout}s")
        time.sleep(0.02)


def dcmtk_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for DCMTK tools.

    ``TCP_NODELAY=1`` makes DCMTK disable Nagle; without it every DIMSE
    message waits ~40 ms on the peer's delayed ACK.
    """
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    if extra:
        env.update(extra)
    return env


def _on_path(name: str) -> Iterator[str]:
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            yield path


@functools.cache
def is_dcmtk(path: str) -> bool:
    """Tell a DCMTK binary from pynetdicom's console scripts, which reuse DCMTK's names."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "$dcmtk:" in done.stdout


def require_binary(name: str) -> str:
    """Return the full path of peer binary ``name`` or raise RuntimeError saying how to get it.

    For DCMTK tool names only real DCMTK binaries count: a virtualenv's bin
    directory may hold pynetdicom scripts called storescp, echoscu, ...
    """
    candidates = iter([name]) if os.sep in name else _on_path(name)
    package = DEBIAN_PACKAGES.get(os.path.basename(name))
    if package == "dcmtk":
        candidates = (path for path in candidates if is_dcmtk(path))
    found = next(candidates, None)
    if found is not None:
        return found
    kind = "DCMTK binary" if package == "dcmtk" else "peer binary"
    hint = f"install the Debian package '{package}'" if package else "install it"
    raise RuntimeError(
        f"no {kind} '{name}' on PATH: {hint} (e.g. apt-get install {package or name})"
    )


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _exited(proc: subprocess.Popen) -> bool:
    # WNOWAIT leaves the leader a zombie, so its process group ID cannot be reused yet.
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def stop(proc: subprocess.Popen, grace: float = _STOP_GRACE) -> None:
    """Terminate proc's process group, kill it if it lingers, and reap proc."""
    if proc.returncode is None:  # not reaped yet: the group ID is still ours
        _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while not _exited(proc) and time.monotonic() < deadline:
            time.sleep(0.02)
        # Also ends children that outlived the leader (e.g. storescp --fork).
        _signal_group(proc, signal.SIGKILL)
    proc.wait()


def _read_log(log) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    ready_port: int | None = None,
    timeout: float = 10.0,
) -> Iterator[subprocess.Popen]:
    """Run ``argv`` in its own process group for the duration of the with block.

    With ``ready_port`` the block is entered only once 127.0.0.1:ready_port
    accepts connections. The process output goes to a temporary file and is
    quoted in the error if it dies before becoming ready.
    """
    command = [require_binary(argv[0]), *argv[1:]]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            command,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            if ready_port is not None:
                try:
                    wait_for_port(ready_port, timeout, proc=proc)
                except (RuntimeError, TimeoutError) as exc:
                    raise RuntimeError(f"{exc}; output:\n{_read_log(log)}") from exc
            yield proc
        finally:
            stop(proc)
