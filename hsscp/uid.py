"""hsscp's implementation identity and the UIDs association negotiation uses."""

from __future__ import annotations

import re

from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    UID_dictionary,
)

__all__ = [
    "ALL_TRANSFER_SYNTAXES",
    "APPLICATION_CONTEXT_NAME",
    "DEFAULT_TRANSFER_SYNTAXES",
    "DeflatedExplicitVRLittleEndian",
    "ExplicitVRBigEndian",
    "ExplicitVRLittleEndian",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "ImplicitVRLittleEndian",
    "VERIFICATION_SOP_CLASS",
    "is_valid_uid",
]

# A UUID-derived UID (PS3.5 B.2) is globally unique without registering a
# root. It is fixed: peers use it to recognise hsscp across releases.
IMPLEMENTATION_CLASS_UID = UID("2.25.305599942521172229756880586705454129843")

# Release digits of the version in pyproject.toml; PS3.7 D.3.3.2 caps it at 16 chars.
IMPLEMENTATION_VERSION_NAME = "HSSCP_010"

APPLICATION_CONTEXT_NAME = UID("1.2.840.10008.3.1.1.1")
VERIFICATION_SOP_CLASS = UID("1.2.840.10008.1.1")

# pynetdicom 1.x order, which the API reference shows; pynetdicom 3 also adds
# Deflated Explicit VR Little Endian.
DEFAULT_TRANSFER_SYNTAXES: list[UID] = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]


def _all_transfer_syntaxes() -> list[UID]:
    """Every transfer syntax pydicom knows: current ones first, then retired."""
    syntaxes = [
        (bool(retired), UID(uid))
        for uid, (_name, uid_type, _info, retired, _keyword) in UID_dictionary.items()
        if uid_type == "Transfer Syntax"
    ]
    # sorted() is stable, so each group keeps the dictionary's (PS3.6) order.
    return [uid for _retired, uid in sorted(syntaxes, key=lambda item: item[0])]


ALL_TRANSFER_SYNTAXES: list[UID] = _all_transfer_syntaxes()

# PS3.5 9.1: digit components split by single dots, no leading zero unless the
# component is "0". [0-9] rather than \d, which would accept non-ASCII digits.
_UID_PATTERN = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
_UID_MAX_LENGTH = 64


def is_valid_uid(value: str) -> bool:
    """Return True if `value` is a conformant UID (PS3.5 9.1).

    Strict on purpose: received UIDs become file and directory names, so
    anything but digits and single dots must be refused.
    """
    return (
        isinstance(value, str)
        and len(value) <= _UID_MAX_LENGTH
        and _UID_PATTERN.fullmatch(value) is not None
    )
