"""What the workers received, counted in shared memory so the supervisor can report it.

One row of counters per worker slot; a replacement worker keeps counting
in the row of the one it replaces, so nothing counted is lost with it.
"""

from __future__ import annotations

import multiprocessing

FIELDS = (
    "associations",
    "stored",
    "bytes",
    "warnings",
    "out_of_resources",  # 0xA7xx
    "does_not_match",  # 0xA9xx
    "cannot_understand",  # 0xCxxx
    "processing_failure",  # 0x0110
    "other_failures",
)
_INDEX = {name: i for i, name in enumerate(FIELDS)}


def new_table(rows: int):
    return multiprocessing.RawArray("q", rows * len(FIELDS))


def category(status: int) -> str:
    if status == 0x0000:
        return "stored"
    if 0xB000 <= status <= 0xBFFF or status == 0x0107 or status == 0x0116:
        return "warnings"
    if 0xA700 <= status <= 0xA7FF:
        return "out_of_resources"
    if 0xA900 <= status <= 0xA9FF:
        return "does_not_match"
    if 0xC000 <= status <= 0xCFFF:
        return "cannot_understand"
    if status == 0x0110:
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
