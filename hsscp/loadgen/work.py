"""The shared work queue of a run: which (file, copy) to send next.

Every association of a process pulls from one queue; with several
processes each takes every P-th item of the same sequence, so together
they send each (file, copy) once.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class WorkQueue:
    """Items ``(file index, copy number)``: ``repeat`` passes over the files, or until ``deadline``."""

    def __init__(
        self,
        files: int,
        repeat: int | None = 1,
        deadline: float | None = None,
        share: tuple[int, int] = (0, 1),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.files = files
        self.repeat = repeat
        self.deadline = deadline
        self._index, self._processes = share
        self._next = self._index  # ordinal in the sequence shared by all processes
        self._returned: list[tuple[int, int]] = []
        self._clock = clock
        self.taken = 0

    @property
    def total(self) -> int | None:
        """How many items this share holds (None when bounded by time)."""
        if self.repeat is None or self.files == 0:
            return None if self.repeat is None else 0
        all_items = self.files * self.repeat
        return len(range(self._index, all_items, self._processes))

    def next(self) -> tuple[int, int] | None:
        if self.deadline is not None and self._clock() >= self.deadline:
            return None
        if self._returned:
            self.taken += 1
            return self._returned.pop()
        if self.files == 0:
            return None
        ordinal = self._next
        copy, index = divmod(ordinal, self.files)
        if self.repeat is not None and copy >= self.repeat:
            return None
        self._next += self._processes
        self.taken += 1
        return index, copy

    def put_back(self, item: tuple[int, int]) -> None:
        """An item taken but never sent (its association failed first)."""
        self.taken -= 1
        self._returned.append(item)

    def remaining(self) -> int:
        """Items never sent (0 when bounded by time: nothing was promised)."""
        total = self.total
        return 0 if total is None else total - self.taken


def share_of(total: int, index: int, parts: int) -> int:
    """How many of ``total`` (associations) part ``index`` of ``parts`` runs: as even as can be."""
    return total // parts + (1 if index < total % parts else 0)
