"""What the workers received, counted in shared memory so the supervisor can report it.

One row of counters per worker slot; a replacement worker keeps counting
in the row of the one it replaces, so nothing counted is lost with it.
Every count is a plain increment of shared memory in the process that
answered the C-STORE (instances a writer stored are counted by the worker
that answers them, once): reading them (the summary, ``/metrics``) costs
the store path nothing.

A row holds, one after the other: the :data:`FIELDS`, a count per final
status of :data:`STATUSES` (plus one for every other status), and the store
time histogram (a count per bucket of :data:`STORE_BUCKETS`, one past the
last, and the sum in microseconds).

Counts per calling AE title are bounded: the first :data:`MAX_CALLING_AES`
distinct titles seen by any worker claim a name in a table every worker
shares (under a lock, once per title and process); every later title
counts under ``other``. A peer inventing titles cannot grow it.
"""

from __future__ import annotations

import bisect
import multiprocessing
import os
import tempfile
import time
from functools import lru_cache

from hsscp.dimse_status import Status, StatusCategory, status_category
from workers.file_lock import FileLock

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
    "rejected",  # associations refused with A-ASSOCIATE-RJ
    "received_bytes",  # data set bytes of every C-STORE request, whatever its outcome
)
_INDEX = {name: i for i, name in enumerate(FIELDS)}

# The statuses counted by name; any other final status counts as "other".
STATUSES = (
    Status.SUCCESS,
    0x0001,  # warning: requested optional attributes are not supported
    0x0107,  # warning: attribute list error
    0x0116,  # warning: attribute value out of range
    Status.COERCION_OF_DATA_ELEMENTS,
    Status.ELEMENTS_DISCARDED,
    Status.DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING,
    Status.PROCESSING_FAILURE,
    Status.SOP_CLASS_NOT_SUPPORTED,
    0x0124,  # not authorized
    Status.OUT_OF_RESOURCES,
    Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
    Status.CANNOT_UNDERSTAND,
    Status.NO_HANDLER,
)
STATUS_LABELS = (*(f"0x{int(s):04X}" for s in STATUSES), "other")
# Upper bounds (seconds) of the store time histogram: last PDV received to file in place.
STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MAX_CALLING_AES = 32
AE_TITLE_LENGTH = 16
OTHER_AE = MAX_CALLING_AES  # the per-title column everything past the table counts in
AE_FIELDS = ("associations", "instances")

_STATUS_BASE = len(FIELDS)
_BUCKET_BASE = _STATUS_BASE + len(STATUS_LABELS)
_SUM_INDEX = _BUCKET_BASE + len(STORE_BUCKETS) + 1
WIDTH = _SUM_INDEX + 1
_AE_WIDTH = (MAX_CALLING_AES + 1) * len(AE_FIELDS)


class SharedStats:
    """The shared memory every worker counts in, made before the fork."""

    def __init__(self, rows: int, lock_path: str | None = None) -> None:
        self.rows = rows
        self.counters = multiprocessing.RawArray("q", rows * WIDTH)
        self.ae_titles = multiprocessing.RawArray("c", MAX_CALLING_AES * AE_TITLE_LENGTH)
        self.ae_claimed = multiprocessing.RawValue("i", 0)
        self.ae_counts = multiprocessing.RawArray("q", rows * _AE_WIDTH)
        # Set by the supervisor's health check: free space is below --min-free-space.
        self.refuse_stores = multiprocessing.RawValue("b", 0)
        if lock_path is None:  # a table of its own (tests, one process): its own lock file too
            fd, lock_path = tempfile.mkstemp(prefix="hsscp-stats-", suffix=".lock")
            os.close(fd)
            self._own_lock_file = (lock_path, os.getpid())
        self.ae_lock = FileLock(lock_path)

    def __len__(self) -> int:
        return len(self.counters)

    def __del__(self) -> None:
        owned = getattr(self, "_own_lock_file", None)
        if owned is not None and owned[1] == os.getpid():
            os.unlink(owned[0])

    def title(self, index: int) -> str:
        if index == OTHER_AE:
            return "other"
        start = index * AE_TITLE_LENGTH
        return self.ae_titles[start : start + AE_TITLE_LENGTH].rstrip(b"\0").decode("ascii", "replace")

    def claim_title(self, title: bytes) -> int:
        """The column of ``title`` in the per-title counts, claiming one while any is free."""
        if self.ae_claimed.value >= MAX_CALLING_AES and title not in self._claimed_titles():
            return OTHER_AE  # full: no lock taken for the titles that did not make it
        with self.ae_lock.held():
            titles = self._claimed_titles()
            if title in titles:
                return titles.index(title)
            index = self.ae_claimed.value
            if index >= MAX_CALLING_AES:
                return OTHER_AE
            start = index * AE_TITLE_LENGTH
            self.ae_titles[start : start + AE_TITLE_LENGTH] = title.ljust(AE_TITLE_LENGTH, b"\0")
            self.ae_claimed.value = index + 1
            return index

    def _claimed_titles(self) -> list[bytes]:
        raw = self.ae_titles.raw
        return [
            raw[i * AE_TITLE_LENGTH : (i + 1) * AE_TITLE_LENGTH].rstrip(b"\0")
            for i in range(self.ae_claimed.value)
        ]


def new_table(rows: int, lock_path: str | None = None) -> SharedStats:
    return SharedStats(rows, lock_path)


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


_STATUS_COLUMN = {int(status): _STATUS_BASE + i for i, status in enumerate(STATUSES)}


@lru_cache(maxsize=1024)
def _columns(status: int) -> tuple[int, int, bool]:
    """Where a status counts: its category column, its status column, and whether it stored."""
    kind = category(status)
    other = _STATUS_BASE + len(STATUSES)
    return _INDEX[kind], _STATUS_COLUMN.get(status, other), kind in ("stored", "warnings")


_AE_MEMO_LIMIT = 4 * MAX_CALLING_AES  # titles this process remembers the column of


class Stats:
    """The counters of one worker row."""

    def __init__(self, table: SharedStats, row: int) -> None:
        self._shared = table
        self._table = table.counters
        self._base = row * WIDTH
        self._ae_base = row * _AE_WIDTH
        self._ae_columns: dict[str, int] = {}  # calling AE title -> its column, once claimed

    def add(self, field: str, amount: int = 1) -> None:
        self._table[self._base + _INDEX[field]] += amount

    def count(self, status: int, nbytes: int, *, started: float | None = None, calling_ae: str | None = None) -> None:
        """One answered C-STORE; ``started``: the ``time.monotonic()`` its last PDV arrived."""
        table, base = self._table, self._base
        kind, column, stored = _columns(status)
        table[base + kind] += 1
        table[base + column] += 1
        if stored:
            table[base + _INDEX["bytes"]] += nbytes
            if calling_ae is not None:
                self._count_ae(calling_ae, 1)
        if started is not None:
            seconds = time.monotonic() - started
            table[base + _BUCKET_BASE + bisect.bisect_left(STORE_BUCKETS, seconds)] += 1
            table[base + _SUM_INDEX] += int(seconds * 1e6)

    def association(self, accepted: bool, calling_ae: str) -> None:
        if not accepted:
            self.add("rejected")
            return
        self.add("associations")
        self._count_ae(calling_ae, 0)

    @property
    def refuse_stores(self) -> bool:
        """Free space is below the minimum: answer C-STOREs 0xA700 without writing."""
        return bool(self._shared.refuse_stores.value)

    def _count_ae(self, calling_ae: str, field: int) -> None:
        column = self._ae_columns.get(calling_ae)
        if column is None:
            title = calling_ae.encode("ascii", "replace")[:AE_TITLE_LENGTH]
            column = self._shared.claim_title(title)  # takes the table's lock: once per title
            # "other" is remembered too (the table only fills up), or every instance from an
            # unlisted title would take the lock; the memo stays bounded whatever peers send.
            if column != OTHER_AE or len(self._ae_columns) < _AE_MEMO_LIMIT:
                self._ae_columns[calling_ae] = column
        self._shared.ae_counts[self._ae_base + column * len(AE_FIELDS) + field] += 1


def totals(table: SharedStats) -> dict[str, int]:
    counters = table.counters
    sums = dict.fromkeys(FIELDS, 0)
    for offset in range(0, len(counters), WIDTH):
        for i, name in enumerate(FIELDS):
            sums[name] += counters[offset + i]
    return sums


def per_row(table: SharedStats, field: str) -> list[int]:
    counters, index = table.counters, _INDEX[field]
    return [counters[offset + index] for offset in range(0, len(counters), WIDTH)]


def _column_sums(table: SharedStats, start: int, count: int) -> list[int]:
    counters = table.counters
    return [sum(counters[offset + start + i] for offset in range(0, len(counters), WIDTH)) for i in range(count)]


def status_totals(table: SharedStats) -> dict[str, int]:
    """Answered C-STOREs by status label (``0x0000`` ... and ``other``), over every row."""
    return dict(zip(STATUS_LABELS, _column_sums(table, _STATUS_BASE, len(STATUS_LABELS)), strict=True))


def store_histogram(table: SharedStats) -> tuple[list[int], float]:
    """The store time histogram over every row: a count per bucket (the last is +Inf), the sum in seconds."""
    counts = _column_sums(table, _BUCKET_BASE, len(STORE_BUCKETS) + 1)
    return counts, _column_sums(table, _SUM_INDEX, 1)[0] / 1e6


def calling_ae_totals(table: SharedStats) -> dict[str, dict[str, int]]:
    """Per calling AE title (``other`` for those past the table): associations and instances."""
    counts = table.ae_counts
    result = {}
    for column in [*range(table.ae_claimed.value), OTHER_AE]:
        sums = [
            sum(counts[row * _AE_WIDTH + column * len(AE_FIELDS) + f] for row in range(table.rows))
            for f in range(len(AE_FIELDS))
        ]
        result[table.title(column)] = dict(zip(AE_FIELDS, sums, strict=True))
    return result
