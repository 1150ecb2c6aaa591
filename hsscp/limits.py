"""Association admission within one process: how many associations may be open at once.

The in-process server counts here; the multiprocess server shares one
counter across its workers instead (:mod:`workers.limits`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class LocalLimiter:
    """At most ``maximum()`` holders at once; ``maximum`` is read at each admission."""

    def __init__(self, maximum: Callable[[], int]) -> None:
        self._maximum = maximum
        self._lock = threading.Lock()
        self.active = 0

    def try_acquire(self) -> bool:
        with self._lock:
            if self.active >= self._maximum():
                return False
            self.active += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.active = max(0, self.active - 1)
