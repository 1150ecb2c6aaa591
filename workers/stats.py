"""What the workers received, counted in shared memory so the supervisor can report it.

One row of counters per worker slot; a replacement worker keeps counting
in the row of the one it replaces, so nothing counted is lost with it.
"""

from __future__ import annotations

import multiprocessing

from hsscp.dimse_status import Status, StatusCategory, status_category

FIELDS = (
    "associations",
    "stored",
    "bytes",
    "warnings",
    "out_of_resources",  # 0xA7xx
    "does_not_match",  # 0xA9xx
    "cannot_understand",  # 0xCxxx
    "processing_failure",  # 0x0110
    # everything else, and the pending and cancel statuses that never end a store
    "other_failures",
)
_INDEX = {name: i for i, name in enumerate(FIELDS)}


def new_table(rows: int):
    return multiprocessing.RawArray("q", rows * len(FIELDS))


def category(status: int) -> str:
    """The counter a final C-STORE status goes to: the PS3.7 class, failures by kind."""
    kind = status_category(status)
    if kind is StatusCategory.SUCCESS:
        return "stored"
    if kind is StatusCategory.WARNING:
        return "warnings"
    if kind is not StatusCategory.FAILURE:
        return "other_failures"
    if 0xA700 <= status <= 0xA7FF:
        return "out_of_resources"
    if 0xA900 <= status <= 0xA9FF:
        return "does_not_match"
    if 0xC000 <= status <= 0xCFFF:
        return "cannot_understand"
    if status == Status.PROCESSING_FAILURE:
        return "processing_failure"
    return "other_failures"


class Stats:
    """The counters of one worker row."""

    def __init__(self, table, row: int) -> None:
        self._table = table
        self._base = row * len(FIELDS)

    def add(self, field: str, amount: int = 1) -> None:
        self._table[self._base + _INDEX[field]] += amount

    def count(self, status: int, nbytes: int) -> None:
        kind = category(status)
        self.add(kind)
        if kind in ("stored", "warnings"):
            self.add("bytes", nbytes)


def totals(table) -> dict[str, int]:
    width = len(FIELDS)
    sums = dict.fromkeys(FIELDS, 0)
    for offset in range(0, len(table), width):
        for i, name in enumerate(FIELDS):
            sums[name] += table[offset + i]
    return sums


def per_row(table, field: str) -> list[int]:
    width, index = len(FIELDS), _INDEX[field]
    return [table[offset + index] for offset in range(0, len(table), width)]
