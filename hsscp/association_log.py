"""The lines a storage SCP logs for the person on call: one per association, one per C-STORE.

At INFO (``hsscp storescp``'s default level) one line when an association ends
(:func:`log_association_end`): calling and called AE, peer ``ip:port``,
instances stored and failed, bytes, duration, rate, and how it ended in
words. On :data:`STORE_LOG` one line per C-STORE (:func:`log_store`): INFO
for a success (from ``-v`` on) and a WARNING naming the peer and AE for every
other status. The INFO lines are printed once :func:`show_info_lines` asks
(``hsscp storescp`` does; a server started through the API prints
pynetdicom's lines alone). Each line also carries its values as ``record.fields`` for the JSON
log format (``--log-format json``). Nothing is formatted when the level is
off: every function checks it first.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache

from hsscp.dimse_status import Status, StatusCategory, status_category

__all__ = [
    "ASSOCIATION_LOG",
    "STORE_LOG",
    "AssociationTally",
    "abort_words",
    "log_association_end",
    "log_rejection",
    "log_store",
    "peer_text",
    "plain",
    "rejection_reason",
    "show_info_lines",
]

ASSOCIATION_LOG = logging.getLogger("hsscp.association")
STORE_LOG = logging.getLogger("hsscp.store")
# Which INFO lines are printed: the storage SCP's command line turns them on (show_info_lines);
# under the API a server prints pynetdicom's lines alone. The warnings are always there.
_shown = {"association": False, "store": False}


def show_info_lines(association: bool = True, store: bool = False) -> tuple[bool, bool]:
    """Print the INFO line per association and/or per C-STORE (levels permitting); the previous choice."""
    previous = _shown["association"], _shown["store"]
    _shown["association"], _shown["store"] = association, store
    return previous

_ABORT_SOURCES = {0: "the peer (service user)", 1: "reserved source", 2: "the peer's provider"}
_ABORT_REASONS = {
    0: "no reason given", 1: "unrecognised PDU", 2: "unexpected PDU", 4: "unrecognised PDU parameter",
    5: "unexpected PDU parameter", 6: "invalid PDU parameter value",
}  # fmt: skip
_STATUS_WORDS = {
    Status.SUCCESS: "Success", Status.PROCESSING_FAILURE: "Processing Failure",
    Status.SOP_CLASS_NOT_SUPPORTED: "SOP Class Not Supported", Status.NO_HANDLER: "Cannot Understand",
    Status.COERCION_OF_DATA_ELEMENTS: "Coercion of Data Elements", Status.ELEMENTS_DISCARDED: "Elements Discarded",
    Status.DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING: "Data Set Does Not Match SOP Class (warning)",
}  # fmt: skip
_STATUS_RANGES = (
    (0xA700, 0xA7FF, "Out of Resources"),
    (0xA900, 0xA9FF, "Data Set Does Not Match SOP Class"),
    (0xC000, 0xCFFF, "Cannot Understand"),
)


def plain(title: str) -> str:
    """An AE title or UID from the wire, fit for a log line: stripped, escaped (no newline gets through)."""
    text = repr(title.strip(" \0"))[1:-1]
    return text or "(empty)"


def peer_text(peer: tuple) -> str:
    """``ip:port`` (``[ip]:port`` for IPv6)."""
    host, port = (peer[0], peer[1]) if len(peer) >= 2 else ("", 0)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def size_text(nbytes: float) -> str:
    """``512 B``, ``48.8 kB``, ``63.1 MB``, ``2.0 GB`` (decimal units, as the rates)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes:.0f} B"


def status_words(status: int) -> str:
    """``0xA700 Out of Resources``: a status with its name."""
    name = _STATUS_WORDS.get(status) or next(
        (text for low, high, text in _STATUS_RANGES if low <= status <= high), status_category(status).value
    )
    return f"0x{status:04X} {name}"


@lru_cache(maxsize=512)
def sop_class_name(uid: str) -> str:
    from pydicom.uid import UID

    return UID(uid).name if uid else "(no SOP class)"


@dataclass
class AssociationTally:
    """What one association did, for its closing line."""

    peer: str
    calling_ae: str = ""
    called_ae: str = ""
    started: float = field(default_factory=time.monotonic)
    stored: int = 0
    failed: int = 0
    bytes: int = 0
    outcome: str = "closed"  # released, aborted, closed (the connection went without either)
    ended: str = "the connection closed without release or abort"  # how, in words

    def count(self, status: int, nbytes: int) -> None:
        if status_category(status) in (StatusCategory.SUCCESS, StatusCategory.WARNING):
            self.stored += 1
            self.bytes += nbytes
        else:
            self.failed += 1


def abort_words(source: int, reason: int, by_peer: bool, detail: str = "") -> str:
    """How an abort came about, in words."""
    if by_peer:
        who = _ABORT_SOURCES.get(source, f"source {source}")
        why = _ABORT_REASONS.get(reason, f"reason {reason}")
        return f"aborted by {who}: {why}"
    return f"aborted by hsscp: {detail or _ABORT_REASONS.get(reason, f'reason {reason}')}"


def log_association_end(tally: AssociationTally) -> None:
    if not (_shown["association"] and ASSOCIATION_LOG.isEnabledFor(logging.INFO)):
        return
    seconds = max(time.monotonic() - tally.started, 1e-6)
    rate = tally.stored / seconds
    fields = {
        "event": "association", "calling_ae": tally.calling_ae, "called_ae": tally.called_ae,
        "peer": tally.peer, "instances": tally.stored, "failed": tally.failed, "bytes": tally.bytes,
        "seconds": round(seconds, 3), "rate": round(rate, 1), "outcome": tally.outcome, "ended": tally.ended,
    }  # fmt: skip
    ASSOCIATION_LOG.info(
        "association %s -> %s from %s: %d stored, %d failed, %s in %.2f s (%.1f instances/s, %s/s); %s",
        plain(tally.calling_ae), plain(tally.called_ae), tally.peer, tally.stored, tally.failed,
        size_text(tally.bytes), seconds, rate, size_text(tally.bytes / seconds), tally.ended, extra={"fields": fields},
    )


def log_store(tally: AssociationTally, sop_class_uid: str, sop_instance_uid: str, status: int, path: str,
              nbytes: int, started: float, comment: str = "") -> None:
    """One answered C-STORE: INFO on success, a WARNING for every other status."""
    success = status == Status.SUCCESS
    if success and not _shown["store"]:
        return
    if not STORE_LOG.isEnabledFor(logging.INFO if success else logging.WARNING):
        return
    ms = (time.monotonic() - started) * 1e3
    fields = {
        "event": "store", "sop_class": sop_class_name(sop_class_uid), "sop_class_uid": sop_class_uid,
        "sop_instance_uid": sop_instance_uid, "status": f"0x{status:04X}", "path": path, "bytes": nbytes,
        "ms": round(ms, 2), "calling_ae": tally.calling_ae, "called_ae": tally.called_ae, "peer": tally.peer,
    }  # fmt: skip
    # UIDs come from the wire: escaped like AE titles, so no line can be forged with them.
    sop_class, uid = plain(fields["sop_class"]), plain(sop_instance_uid)
    if success:
        STORE_LOG.info("stored %s %s (%s) from %s at %s: %s, %d bytes in %.1f ms",
                       sop_class, uid, status_words(status), plain(tally.calling_ae),
                       tally.peer, path, nbytes, ms, extra={"fields": fields})
        return
    if comment:
        fields["error_comment"] = comment
    STORE_LOG.warning("C-STORE of %s %s from %s at %s answered %s%s", sop_class, uid,
                      plain(tally.calling_ae), tally.peer, status_words(status),
                      f" ({comment})" if comment else "", extra={"fields": fields})


def rejection_reason(source: int, reason: int, calling_ae: str, called_ae: str) -> str:
    """Why an association was rejected, in words."""
    if source == 1 and reason == 7:
        return f"called AE title {plain(called_ae)} is not ours"
    if source == 1 and reason == 3:
        return f"calling AE title {plain(calling_ae)} is not one we accept"
    if source == 1 and reason == 2:
        return "the application context is not DICOM's"
    if source == 2 and reason == 2:
        return "the protocol version is not supported"
    if source == 3 and reason == 2:
        return "too many associations at once (the --max-associations limit)"
    if source == 3 and reason == 1:
        return "temporary congestion"
    return f"no reason given (source {source}, reason {reason})"


def log_rejection(peer: str, calling_ae: str, called_ae: str, result: int, source: int, reason: int) -> None:
    """A WARNING naming the peer and both AE titles, and why, in words."""
    if not ASSOCIATION_LOG.isEnabledFor(logging.WARNING):
        return
    why = rejection_reason(source, reason, calling_ae, called_ae)
    fields = {
        "event": "rejected", "calling_ae": calling_ae, "called_ae": called_ae, "peer": peer, "instances": 0,
        "bytes": 0, "outcome": "rejected", "ended": why, "result": result, "source": source, "reason": reason,
    }  # fmt: skip
    ASSOCIATION_LOG.warning("rejecting association %s -> %s from %s: %s", plain(calling_ae), plain(called_ae),
                            peer, why, extra={"fields": fields})
