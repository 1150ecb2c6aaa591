"""DICOM Part 10 files: the preamble and File Meta Information group (PS3.10 7.1).

Read the meta group of a file without decoding its dataset (so an SCU can
stream the dataset bytes as they are), and build a correct meta group in
front of received dataset bytes (so a stored file is the bytes as sent).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from hsscp.dataset_walk import LONG_VRS
from hsscp.errors import InvalidInput

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
META_START = PREAMBLE_LENGTH + len(MAGIC)

_TAG_VR = struct.Struct("<HH2s")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
# The meta group is small; a file claiming more is not one we should trust.
MAX_META_LENGTH = 64 * 1024

MEDIA_STORAGE_SOP_CLASS_UID = 0x0002
MEDIA_STORAGE_SOP_INSTANCE_UID = 0x0003
TRANSFER_SYNTAX_UID = 0x0010
IMPLEMENTATION_CLASS_UID = 0x0012
IMPLEMENTATION_VERSION_NAME = 0x0013
SOURCE_AE_TITLE = 0x0016


class Part10Error(InvalidInput):
    """The file is not a DICOM Part 10 file we can read the meta group of."""


@dataclass(frozen=True, slots=True)
class FileMeta:
    """What the meta group says, and where the dataset starts."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    dataset_offset: int
    implementation_class_uid: str = ""
    source_ae_title: str = ""


def _text(raw: bytes) -> str:
    return raw.decode("latin-1").rstrip("\0 ")


def parse_file_meta(head: bytes) -> FileMeta:
    """Parse the meta group from the first bytes of a Part 10 file."""
    if len(head) < META_START + 8 or head[PREAMBLE_LENGTH:META_START] != MAGIC:
        raise Part10Error("no DICM prefix: not a DICOM Part 10 file")
    values: dict[int, bytes] = {}
    offset = META_START
    while offset + 8 <= len(head):
        group, element, vr = _TAG_VR.unpack_from(head, offset)
        if group != 0x0002:
            break
        if vr in LONG_VRS:
            start = offset + 12
            # In a cut file, the 32-bit length itself may be missing.
            length = _U32.unpack_from(head, offset + 8)[0] if start <= len(head) else 0
        else:
            (length,) = _U16.unpack_from(head, offset + 6)
            start = offset + 8
        if start + length > len(head):
            raise Part10Error("file meta element overruns the file meta group")
        values[element] = head[start : start + length]
        offset = start + length
    try:
        return FileMeta(
            sop_class_uid=_text(values[MEDIA_STORAGE_SOP_CLASS_UID]),
            sop_instance_uid=_text(values[MEDIA_STORAGE_SOP_INSTANCE_UID]),
            transfer_syntax=_text(values[TRANSFER_SYNTAX_UID]),
            dataset_offset=offset,
            implementation_class_uid=_text(values.get(IMPLEMENTATION_CLASS_UID, b"")),
            source_ae_title=_text(values.get(SOURCE_AE_TITLE, b"")),
        )
    except KeyError as missing:
        raise Part10Error(f"file meta lacks (0002,{missing.args[0]:04X})") from None


def read_file_meta(stream: BinaryIO) -> FileMeta:
    """Read the meta group from an open file; leaves the position at the dataset."""
    head = stream.read(META_START + 12)
    if len(head) >= META_START + 12 and head[META_START : META_START + 6] == b"\x02\x00\x00\x00UL":
        (group_length,) = _U32.unpack_from(head, META_START + 8)
        if group_length > MAX_META_LENGTH:
            raise Part10Error(f"file meta group length {group_length} is implausible")
        head += stream.read(group_length)
    else:  # no group length: read generously, the parser stops at the first non-0002 tag
        head += stream.read(MAX_META_LENGTH)
    meta = parse_file_meta(head)
    stream.seek(meta.dataset_offset)
    return meta


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in (b"UI", b"OB") else b" "
    if vr in LONG_VRS:
        return _TAG_VR.pack(0x0002, element, vr) + b"\0\0" + _U32.pack(len(value)) + value
    return _TAG_VR.pack(0x0002, element, vr) + _U16.pack(len(value)) + value


def build_file_meta(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    implementation_class_uid: str,
    implementation_version_name: str = "",
    source_ae_title: str = "",
) -> bytes:
    """Preamble, ``DICM`` and a File Meta Information group with a correct group length."""
    body = [
        _element(0x0001, b"OB", b"\x00\x01"),  # File Meta Information Version
        _element(MEDIA_STORAGE_SOP_CLASS_UID, b"UI", sop_class_uid.encode("ascii")),
        _element(MEDIA_STORAGE_SOP_INSTANCE_UID, b"UI", sop_instance_uid.encode("ascii")),
        _element(TRANSFER_SYNTAX_UID, b"UI", transfer_syntax.encode("ascii")),
        _element(IMPLEMENTATION_CLASS_UID, b"UI", implementation_class_uid.encode("ascii")),
    ]
    if implementation_version_name:
        body.append(_element(IMPLEMENTATION_VERSION_NAME, b"SH", implementation_version_name.encode("ascii")))
    if source_ae_title:
        body.append(_element(SOURCE_AE_TITLE, b"AE", source_ae_title.encode("ascii")))
    group = b"".join(body)
    return bytes(PREAMBLE_LENGTH) + MAGIC + _element(0x0000, b"UL", _U32.pack(len(group))) + group
