"""A server forked from the user's program stops when that program goes, however it goes.

``AE.start_server(block=False, workers=N)`` forks the supervisor from the
user's process. If that process ends without ``shutdown()`` (a crash, a
SIGKILL, the OOM killer), the supervisor must not go on holding the port
and storing for nobody. The parent holds the write end of a pipe it never
writes to; the kernel closes it when the parent process ends, and a thread
of the child, reading the other end, then sees end of file and stops the
server as ``shutdown()`` would. A pipe rather than ``PR_SET_PDEATHSIG``:
that signal follows the *thread* that forked, and ``start_server`` may be
called from a thread that ends long before the program does. (A process the
user's program forks without exec inherits the write end, and keeps the
server up until it ends too.)
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["Lifeline"]


class Lifeline:
    """Made before the fork; then :meth:`hold` in the parent and :meth:`watch` in the child."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_CLOEXEC)  # programs the user's process execs do not hold it

    def hold(self) -> None:
        """In the parent: keep the end whose closing, at this process's end, tells the child."""
        os.close(self._read)

    def release(self) -> None:
        """In the parent, once the child is stopped and reaped: nothing is left to tell."""
        if self._write >= 0:
            os.close(self._write)
            self._write = -1

    def watch(self, signum: int = signal.SIGTERM) -> None:
        """In the child: send this process ``signum`` once the parent has ended."""
        os.close(self._write)
        threading.Thread(target=self._wait_for_end, args=(signum,), name="hsscp-lifeline", daemon=True).start()

    def _wait_for_end(self, signum: int) -> None:
        while os.read(self._read, 1):  # nothing is ever written: this returns at end of file
            pass
        os.kill(os.getpid(), signum)
