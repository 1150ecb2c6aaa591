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
    "NEWER_UIDS",
    "DeflatedExplicitVRLittleEndian",
    "ExplicitVRBigEndian",
    "ExplicitVRLittleEndian",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "ImplicitVRLittleEndian",
    "KnownUID",
    "VERIFICATION_SOP_CLASS",
    "is_valid_uid",
]

# UIDs newer than some pydicom releases (PS3.6 table A-1) that pynetdicom knows:
# uid -> (name, type, keyword). Importing pynetdicom adds the transfer syntaxes to pydicom's
# dictionary; listing them here keeps what hsscp offers the same whether or not it was.
NEWER_UIDS: dict[str, tuple[str, str, str]] = {
    "1.2.840.10008.1.2.4.110": ("JPEG XL Lossless", "Transfer Syntax", "JPEGXLLossless"),
    "1.2.840.10008.1.2.4.111": ("JPEG XL JPEG Recompression", "Transfer Syntax", "JPEGXLJPEGRecompression"),
    "1.2.840.10008.1.2.4.112": ("JPEG XL", "Transfer Syntax", "JPEGXL"),
    "1.2.840.10008.1.2.8.1": ("Deflated Image Frame Compression", "Transfer Syntax", "DeflatedImageFrameCompression"),
    "1.2.840.10008.5.1.4.1.1.9.100.1": (
        "Waveform Presentation State Storage", "SOP Class", "WaveformPresentationStateStorage"
    ),
    "1.2.840.10008.5.1.4.1.1.9.100.2": (
        "Waveform Acquisition Presentation State Storage", "SOP Class", "WaveformAcquisitionPresentationStateStorage"
    ),
    "1.2.840.10008.5.1.4.1.1.66.7": ("Label Map Segmentation Storage", "SOP Class", "LabelMapSegmentationStorage"),
    "1.2.840.10008.5.1.4.1.1.66.8": ("Height Map Segmentation Storage", "SOP Class", "HeightMapSegmentationStorage"),
}


def newer_uids(uid_type: str) -> list[str]:
    """The NEWER_UIDS of one type that the installed pydicom does not know."""
    return [uid for uid, (_, kind, _) in NEWER_UIDS.items() if kind == uid_type and uid not in UID_dictionary]


class KnownUID(UID):
    """A pydicom UID that also names the NEWER_UIDS the installed pydicom lacks."""

    def _newer(self) -> tuple[str, str, str] | None:
        text = str(self)
        return None if text in UID_dictionary else NEWER_UIDS.get(text)

    @property
    def name(self) -> str:
        newer = self._newer()
        return newer[0] if newer else super().name

    @property
    def type(self) -> str:
        newer = self._newer()
        return newer[1] if newer else super().type

    @property
    def keyword(self) -> str:
        newer = self._newer()
        return newer[2] if newer else super().keyword

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
    """Every transfer syntax pydicom (or NEWER_UIDS) knows: current ones first, then retired."""
    syntaxes = [
        (bool(retired), UID(uid))
        for uid, (_name, uid_type, _info, retired, _keyword) in UID_dictionary.items()
        if uid_type == "Transfer Syntax"
    ]
    syntaxes += [(False, KnownUID(uid)) for uid in newer_uids("Transfer Syntax")]
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
