"""What every process the supervisor forks does first, and what its exit codes mean.

A child dies with its supervisor: the kernel sends it :data:`PARENT_DIED`
when the supervisor goes (even by SIGKILL or the OOM killer), so no worker
is left holding the listening port and no writer storing for nobody. A
child dumps the Python stacks of all its threads on :data:`DUMP_STACKS`
(faulthandler writes them from its C signal handler, so even a loop stuck
in C code leaves its trace), which the supervisor asks for before it kills
a process that stopped beating.
"""

from __future__ import annotations

import ctypes
import faulthandler
import logging
import os
import signal

log = logging.getLogger("hsscp.supervisor")

BOOT_FAILED = 3  # exit code: this process cannot start; do not respawn it in a loop
DECLARED_STUCK = 4  # exit code: the supervisor declared it stuck; it stopped at its next beat

PARENT_DIED = signal.SIGUSR2  # sent by the kernel when the supervisor is gone: stop soon
DUMP_STACKS = signal.SIGUSR1  # write every thread's Python stack to stderr (the log)

STDERR_FD = 2
_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1


def become_child(supervisor_pid: int, name: str, inherited_signals: tuple[int, ...]) -> None:
    """Set up a process just forked by the supervisor (pid ``supervisor_pid``).

    Exits at once if the supervisor died before the parent-death signal was
    armed: the kernel would never send it then.
    """
    for signum in inherited_signals:
        signal.signal(signum, signal.SIG_DFL)
    _prctl(_PR_SET_PDEATHSIG, PARENT_DIED)
    if os.getppid() != supervisor_pid:
        os._exit(0)
    dump_stacks_on_signal()
    set_process_name(name)


def dump_stacks_on_signal() -> None:
    """On DUMP_STACKS, write every thread's Python stack to stderr, where the log goes."""
    # The descriptor, not sys.stderr: a replaced sys.stderr (a notebook's) may have none.
    faulthandler.register(DUMP_STACKS, file=STDERR_FD, all_threads=True)


def set_process_name(name: str) -> None:
    """Name the process as ps and /proc/PID/comm show it (Linux; 15 characters)."""
    _prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]))


def _prctl(option: int, value: int | ctypes.c_char_p) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(option, value, 0, 0, 0) != 0:
            log.warning("prctl(%d) failed: %s", option, os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError):  # not Linux: no parent-death signal, no process names
        pass
