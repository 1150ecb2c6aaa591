"""The workers' counters: a status counts as stored or warning exactly when PS3.7 says so."""

from __future__ import annotations

import pytest

from hsscp.dimse_status import Status, status_category
from workers.stats import FIELDS, Stats, category, new_table, per_row, totals


def test_every_status_lands_where_its_ps3_7_class_says() -> None:
    for status in range(0x10000):
        kind, counter = status_category(status), category(status)
        assert (kind == "success") == (counter == "stored"), hex(status)
        assert (kind == "warning") == (counter == "warnings"), hex(status)
        assert counter in FIELDS


@pytest.mark.parametrize(
    ("status", "counter"),
    [
        (0x0107, "warnings"),
        (0x0116, "warnings"),
        (0x0001, "warnings"),
        (Status.OUT_OF_RESOURCES, "out_of_resources"),
        (0xA7FF, "out_of_resources"),
        (Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, "does_not_match"),
        (Status.CANNOT_UNDERSTAND, "cannot_understand"),
        (Status.NO_HANDLER, "cannot_understand"),
        (Status.PROCESSING_FAILURE, "processing_failure"),
        (Status.SOP_CLASS_NOT_SUPPORTED, "other_failures"),
        (0xFF00, "other_failures"),  # pending never ends a store
    ],
)
def test_failures_keep_their_buckets(status: int, counter: str) -> None:
    assert category(status) == counter


def test_warnings_count_their_bytes_failures_do_not() -> None:
    table = new_table(2)
    stats = Stats(table, 1)
    stats.count(0x0000, 100)
    stats.count(0x0107, 10)
    stats.count(Status.OUT_OF_RESOURCES, 1000)
    sums = totals(table)
    assert (sums["stored"], sums["warnings"], sums["out_of_resources"], sums["bytes"]) == (1, 1, 1, 110)
    assert per_row(table, "stored") == [0, 1]


def test_calling_ae_titles_past_the_table_count_as_other() -> None:
    from workers.stats import MAX_CALLING_AES, calling_ae_totals

    table = new_table(2)
    first, second = Stats(table, 0), Stats(table, 1)
    for i in range(MAX_CALLING_AES + 5):
        first.association(True, f"AE{i}")
    second.association(True, "AE3")  # another worker finds the title already named
    second.association(True, "INTRUDER")
    second.count(0x0000, 10, calling_ae="INTRUDER")
    second.count(0x0000, 10, calling_ae="AE3")
    counts = calling_ae_totals(table)
    assert len(counts) == MAX_CALLING_AES + 1
    assert counts["AE3"] == {"associations": 2, "instances": 1}
    assert counts["other"] == {"associations": 6, "instances": 1}
    assert totals(table)["associations"] == MAX_CALLING_AES + 7


def test_store_times_fall_in_their_buckets() -> None:
    import time

    from workers.stats import STORE_BUCKETS, status_totals, store_histogram

    table = new_table(1)
    stats = Stats(table, 0)
    now = time.monotonic()
    stats.count(0x0000, 1, started=now - 0.2)  # in the 0.25 s bucket
    stats.count(0xA700, 1, started=now - 100)  # past the last bound
    counts, seconds = store_histogram(table)
    assert counts[STORE_BUCKETS.index(0.25)] == 1 and counts[-1] == 1 and sum(counts) == 2
    assert 100.2 <= seconds < 101
    assert status_totals(table)["0xA700"] == 1 and status_totals(table)["other"] == 0
