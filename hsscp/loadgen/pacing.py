"""Spacing sends evenly at a requested rate.

Each send is given the next slot of a schedule (start, start + 1/rate, ...)
and waits until it. A sender that falls behind may catch up by at most
BURST seconds' worth of slots, so a stall is not followed by a burst; event
loop timers have about a millisecond of resolution, which this slack also
absorbs at rates above 1000/s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

BURST = 0.005
_MIN_SLEEP = 0.0005


class Pacer:
    """A shared schedule of send slots at ``rate`` per second."""

    def __init__(
        self, rate: float, start: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self._clock = clock
        self._next = clock() if start is None else start
        self._slack = max(self.interval, BURST)

    def reserve(self) -> float:
        """Take the next slot; return how long to wait for it (0 if it is due)."""
        now = self._clock()
        slot = max(self._next, now - self._slack)
        self._next = slot + self.interval
        return slot - now if slot > now else 0.0

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > _MIN_SLEEP:
            await asyncio.sleep(delay)
