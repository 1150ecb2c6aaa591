"""DIMSE status values for verification and storage, as :mod:`pynetdicom.status` offers them.

The tables map a status code to its (category, description), with the
categories spelled as pynetdicom spells them (``"Success"``, ``"Warning"``...).
Which range is which category is the DIMSE layer's rule
(:func:`hsscp.dimse.status_category`); this module adds pynetdicom's names
and its ``"Unknown"`` for codes the standard gives no meaning.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from hsscp.dimse import status_category

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "GENERAL_STATUS",
    "NON_PATIENT_SERVICE_CLASS_STATUS",
    "STATUS_CANCEL",
    "STATUS_FAILURE",
    "STATUS_PENDING",
    "STATUS_SUCCESS",
    "STATUS_UNKNOWN",
    "STATUS_WARNING",
    "STORAGE_SERVICE_CLASS_STATUS",
    "VERIFICATION_SERVICE_CLASS_STATUS",
    "Status",
    "StatusDictType",
    "code_to_category",
    "code_to_status",
]

STATUS_SUCCESS = "Success"
STATUS_FAILURE = "Failure"
STATUS_WARNING = "Warning"
STATUS_CANCEL = "Cancel"
STATUS_PENDING = "Pending"
STATUS_UNKNOWN = "Unknown"

StatusDictType = dict[int, tuple[str, str]]

# Non-service-specific statuses, PS3.7 Annex C.
GENERAL_STATUS: StatusDictType = {
    0x0000: (STATUS_SUCCESS, ""),
    0x0105: (STATUS_FAILURE, "No Such Attribute"),
    0x0106: (STATUS_FAILURE, "Invalid Attribute Value"),
    0x0107: (STATUS_WARNING, "Attribute List Error"),
    0x0110: (STATUS_FAILURE, "Processing Failure"),
    0x0111: (STATUS_FAILURE, "Duplication SOP Instance"),
    0x0112: (STATUS_FAILURE, "No Such SOP Instance"),
    0x0113: (STATUS_FAILURE, "No Such Event Type"),
    0x0114: (STATUS_FAILURE, "No Such Argument"),
    0x0115: (STATUS_FAILURE, "Invalid Argument Value"),
    0x0116: (STATUS_WARNING, "Attribute Value Out of Range"),
    0x0117: (STATUS_FAILURE, "Invalid Object Instance"),
    0x0118: (STATUS_FAILURE, "No Such SOP Class"),
    0x0119: (STATUS_FAILURE, "Class-Instance Conflict"),
    0x0120: (STATUS_FAILURE, "Missing Attribute"),
    0x0121: (STATUS_FAILURE, "Missing Attribute Value"),
    0x0122: (STATUS_FAILURE, "Refused: SOP Class Not Supported"),
    0x0123: (STATUS_FAILURE, "No Such Action"),
    0x0124: (STATUS_FAILURE, "Refused: Not Authorised"),
    0x0210: (STATUS_FAILURE, "Duplicate Invocation"),
    0x0211: (STATUS_FAILURE, "Unrecognised Operation"),
    0x0212: (STATUS_FAILURE, "Mistyped Argument"),
    0x0213: (STATUS_FAILURE, "Resource Limitation"),
    0xFE00: (STATUS_CANCEL, ""),
}

VERIFICATION_SERVICE_CLASS_STATUS: StatusDictType = GENERAL_STATUS


def _storage_statuses() -> StatusDictType:
    """PS3.4 B.2.3: the storage warnings and failure ranges, then the general statuses."""
    table: StatusDictType = {
        0xB000: (STATUS_WARNING, "Coercion of Data Elements"),
        0xB007: (STATUS_WARNING, "Data Set Does Not Match SOP Class"),
        0xB006: (STATUS_WARNING, "Element Discarded"),
    }
    for first, description in (
        (0xA700, "Refused: Out of Resources"),
        (0xA900, "Data Set Does Not Match SOP Class"),
    ):
        table.update(dict.fromkeys(range(first, first + 0x100), (STATUS_FAILURE, description)))
    table.update(dict.fromkeys(range(0xC000, 0xD000), (STATUS_FAILURE, "Cannot Understand")))
    table.update(GENERAL_STATUS)
    return table


STORAGE_SERVICE_CLASS_STATUS: StatusDictType = _storage_statuses()

# Non-Patient Object Storage (hanging protocols, colour palettes, implant templates...), PS3.4 GG.
NON_PATIENT_SERVICE_CLASS_STATUS: StatusDictType = {
    0xA700: (STATUS_FAILURE, "Out of resources"),
    0xA900: (STATUS_FAILURE, "Data set doesn't match SOP Class"),
    0xC000: (STATUS_FAILURE, "Cannot understand"),
    **GENERAL_STATUS,
}

_CATEGORY_NAMES = {
    "success": STATUS_SUCCESS,
    "warning": STATUS_WARNING,
    "cancel": STATUS_CANCEL,
    "pending": STATUS_PENDING,
}


def _check_code(code: object) -> int:
    if not isinstance(code, int) or code < 0:
        raise ValueError("'code' must be a positive integer.")
    return code


def code_to_category(code: int) -> str:
    """The category of a status code, or ``"Unknown"`` for a code no table or range defines."""
    code = _check_code(code)
    if code in GENERAL_STATUS:
        return GENERAL_STATUS[code][0]
    category = status_category(code)
    if category != "failure":
        return _CATEGORY_NAMES[category]
    # The service-specific failure ranges; anything else the standard does not assign.
    return STATUS_FAILURE if 0xA000 <= code < 0xB000 or 0xC000 <= code < 0xD000 else STATUS_UNKNOWN


def code_to_status(code: int) -> Dataset:
    """A pydicom Dataset holding only ``Status = code``, as handlers may return."""
    code = _check_code(code)
    from pydicom.dataset import Dataset  # pydicom only when a data set is asked for

    ds = Dataset()
    ds.Status = code
    return ds


class Status(IntEnum):
    """Names for common status codes; ``Status.add(name, code)`` adds one, as in pynetdicom."""

    SUCCESS = 0x0000
    CANCEL = 0xFE00
    PENDING = 0xFF00
    MOVE_DESTINATION_UNKNOWN = 0xA801

    @classmethod
    def add(cls, name: str, code: int) -> None:
        """Add the constant ``name`` for ``code`` (a plain int attribute, not an enum member)."""
        setattr(cls, name, code)
