"""Heartbeats of supervised processes, in shared memory.

Each slot holds the time (``time.monotonic``, the same clock in every
process) by which its process promised to beat next. A process beats from
inside its own loop, so a loop that stops turning stops beating; a beat
promises the next within the heartbeat timeout, plus an allowance the
process claims for one long step it knows it is about to take (a writer
storing a 2 GB instance). The supervisor only compares the promise with
its clock.

A process the supervisor declared stuck is *condemned* in its slot: if it
ever runs again (it was stopped, not dead), its next beat ends it, so it
does no more work between that verdict and the SIGKILL that follows.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable

from workers.child import DECLARED_STUCK

log = logging.getLogger("hsscp.supervisor")

_CONDEMNED = -1.0


class HeartbeatTable:
    """One slot per supervised process: when it promised to beat next."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._due = multiprocessing.RawArray("d", size)
        self.clock = clock

    def expect(self, slot: int, within: float) -> None:
        """The process in ``slot`` beats next within ``within`` seconds from now."""
        self._due[slot] = self.clock() + within

    def overdue(self, slot: int) -> bool:
        due = self._due[slot]
        return due != _CONDEMNED and self.clock() > due

    def condemn(self, slot: int) -> None:
        self._due[slot] = _CONDEMNED

    def condemned(self, slot: int) -> bool:
        return self._due[slot] == _CONDEMNED

    def heartbeat(self, slot: int, timeout: float) -> Heartbeat:
        return Heartbeat(self, slot, timeout)


class Heartbeat:
    """A supervised process's side of its slot."""

    def __init__(self, table: HeartbeatTable, slot: int, timeout: float) -> None:
        self.table = table
        self.slot = slot
        self.timeout = timeout

    def beat(self, allowance: float = 0.0) -> None:
        """Promise the next beat within the timeout plus ``allowance``; exit if condemned."""
        if self.table.condemned(self.slot):
            log.error("declared stuck by the supervisor: exiting")
            os._exit(DECLARED_STUCK)
        self.table.expect(self.slot, self.timeout + allowance)
