"""The on-call lines: their words, their JSON fields, and no formatting when the level is off."""

from __future__ import annotations

import json
import logging
import time

import pytest

from hsscp import association_log
from hsscp.association_log import (
    AssociationTally,
    abort_words,
    log_association_end,
    log_store,
    peer_text,
)
from hsscp.log_format import JsonFormatter

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(autouse=True)
def lines_shown():
    previous = association_log.show_info_lines(association=True, store=True)
    yield
    association_log.show_info_lines(*previous)


def tally() -> AssociationTally:
    return AssociationTally(peer_text(("127.0.0.1", 40312)), "CT_ROOM_1", "HSSCP", started=time.monotonic() - 2)


def test_the_association_line_says_who_what_and_how_it_ended(caplog) -> None:
    t = tally()
    t.count(0x0000, 1000)
    t.count(0xB000, 500)
    t.count(0xA700, 0)
    t.outcome, t.ended = "released", "released by the peer"
    with caplog.at_level(logging.INFO, "hsscp.association"):
        log_association_end(t)
    (record,) = caplog.records
    text = record.getMessage()
    assert "CT_ROOM_1 -> HSSCP from 127.0.0.1:40312: 2 stored, 1 failed" in text
    assert "released by the peer" in text and "instances/s" in text
    entry = json.loads(JsonFormatter().format(record))
    assert {k: entry[k] for k in ("calling_ae", "called_ae", "peer", "instances", "bytes", "outcome")} == {
        "calling_ae": "CT_ROOM_1", "called_ae": "HSSCP", "peer": "127.0.0.1:40312",
        "instances": 2, "bytes": 1500, "outcome": "released",
    }  # fmt: skip
    assert entry["failed"] == 1 and 1.9 < entry["seconds"] < 10 and entry["level"] == "INFO"


def test_a_store_is_info_a_failure_a_warning_naming_peer_and_ae(caplog) -> None:
    with caplog.at_level(logging.INFO, "hsscp.store"):
        log_store(tally(), CT, "1.2.3.4", 0x0000, "/out/1.2.3.4.dcm", 2048, time.monotonic())
        log_store(tally(), CT, "1.2.3.5", 0xA700, "", 0, time.monotonic(), "out of resources: ENOSPC")
    stored, failed = caplog.records
    assert stored.levelno == logging.INFO and failed.levelno == logging.WARNING
    assert "stored CT Image Storage 1.2.3.4 (0x0000 Success)" in stored.getMessage()
    assert "/out/1.2.3.4.dcm, 2048 bytes" in stored.getMessage()
    assert failed.getMessage() == (
        "C-STORE of CT Image Storage 1.2.3.5 from CT_ROOM_1 at 127.0.0.1:40312 answered "
        "0xA700 Out of Resources (out of resources: ENOSPC)"
    )
    entry = json.loads(JsonFormatter().format(stored))
    assert (entry["sop_class"], entry["status"], entry["bytes"], entry["peer"]) == (
        "CT Image Storage", "0x0000", 2048, "127.0.0.1:40312")


def test_nothing_is_formatted_when_the_level_is_off(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("formatted although the level is off")

    monkeypatch.setattr(association_log, "sop_class_name", fail)
    logger = logging.getLogger("hsscp.store")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        log_store(tally(), CT, "1.2.3.4", 0x0000, "/out/x.dcm", 1, time.monotonic())
    finally:
        logger.setLevel(level)
    association_log.show_info_lines(association=True, store=False)  # not asked for: no line either
    log_store(tally(), CT, "1.2.3.4", 0x0000, "/out/x.dcm", 1, time.monotonic())


def test_aborts_in_words_and_ipv6_peers_in_brackets() -> None:
    assert abort_words(0, 0, by_peer=True) == "aborted by the peer (service user): no reason given"
    assert abort_words(2, 0, by_peer=False, detail="network timeout") == "aborted by hsscp: network timeout"
    assert peer_text(("::1", 104, 0, 0)) == "[::1]:104"


def test_rejections_say_why_in_words(caplog) -> None:
    with caplog.at_level(logging.INFO, "hsscp.association"):
        association_log.log_rejection("127.0.0.1:5000", "CT1", "HSSCPX", 1, 1, 7)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "rejecting association CT1 -> HSSCPX from 127.0.0.1:5000: called AE title HSSCPX is not ours"
    assert association_log.rejection_reason(3, 2, "A", "B").startswith("too many associations")
    assert association_log.plain("EVIL\nLINE ") == "EVIL\\nLINE"
