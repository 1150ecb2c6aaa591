"""DIMSE status codes and their classes (PS3.7 C): the one place a status is classified.

Re-exported by :mod:`hsscp.dimse`; pure, like the rest of the DIMSE layer. The names
pynetdicom users import live in :mod:`hsscp.status`, built on this.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Status(IntEnum):
    """Status codes a Storage SCP answers with (PS3.4 B.2.3, PS3.7 C)."""

    SUCCESS = 0x0000
    PROCESSING_FAILURE = 0x0110
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    OUT_OF_RESOURCES = 0xA700
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    NO_HANDLER = 0xC211  # pynetdicom: the storage handler raised or is missing
    COERCION_OF_DATA_ELEMENTS = 0xB000
    ELEMENTS_DISCARDED = 0xB006
    DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007


class StatusCategory(StrEnum):
    """The Status Class of a status (PS3.7 C); compares equal to its lower-case name."""

    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    CANCEL = "cancel"
    PENDING = "pending"


# PS3.7 C: the warnings outside Bxxx. 0107 (attribute list error) and 0116
# (attribute value out of range) are warnings although other 01xx are failures.
_WARNINGS = frozenset({0x0001, 0x0107, 0x0116})
_PENDING = frozenset({0xFF00, 0xFF01})
_CANCEL = 0xFE00


def status_category(status: int) -> StatusCategory:
    """The Status Class of ``status`` (PS3.7 C): every code it does not list is a failure."""
    if status == Status.SUCCESS:
        return StatusCategory.SUCCESS
    if status in _WARNINGS or 0xB000 <= status <= 0xBFFF:
        return StatusCategory.WARNING
    if status == _CANCEL:
        return StatusCategory.CANCEL
    if status in _PENDING:
        return StatusCategory.PENDING
    return StatusCategory.FAILURE
