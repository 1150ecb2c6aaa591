"""What the SCU sends as a message's data set, and the status Dataset it hands back.

Which accepted context a data set goes on decides its transfer syntax: a
pydicom Dataset is encoded in it; a Part 10 file's data set is streamed
from disk as it is, in chunks, never decoded, when the context has the
file's own syntax, and decoded and re-encoded (:func:`converted_file`) only
when no accepted context has it.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID, ExplicitVRBigEndian, ImplicitVRLittleEndian

from hsscp.part10 import FileMeta
from hsscp.presentation import PresentationContext

__all__ = [
    "STREAM_CHUNK_SIZE",
    "choose_context",
    "converted_file",
    "dataset_transfer_syntax",
    "encode_dataset",
    "file_dataset_chunks",
    "read_chunks",
    "status_dataset",
]

LOGGER = logging.getLogger("hsscp.association")

# File reads per chunk: big enough to amortise Python and syscall costs,
# small enough that a huge file never sits in memory.
STREAM_CHUNK_SIZE = 1024 * 1024

# The status elements a response may carry: (field, tag, VR), as pynetdicom copies them.
_STATUS_FIELDS = (
    ("error_comment", 0x00000902, "LO"),
    ("offending_element", 0x00000901, "AT"),
    ("error_id", 0x00000903, "US"),
    ("affected_sop_instance_uid", 0x00001000, "UI"),
)


# -- a Dataset ------------------------------------------------------------------


def choose_context(
    accepted: list[PresentationContext],
    abstract_syntax: str,
    transfer_syntax: str,
    allow_conversion: bool,
) -> PresentationContext:
    """The accepted context a message goes on as SCU, by pynetdicom's ``_get_valid_context``.

    One with ``transfer_syntax`` if there is one; else, with ``allow_conversion``,
    one whose syntax the data set can be re-encoded in. ValueError if none.
    """
    wanted = UID(transfer_syntax) if transfer_syntax else None
    candidates = [cx for cx in accepted if cx.abstract_syntax == abstract_syntax and cx.as_scu]
    convertible = []
    for cx in candidates:
        syntax = cx.transfer_syntax[0]
        if wanted is not None:
            if syntax == wanted:
                return cx
            # Only uncompressed syntaxes of the same byte order convert into each other.
            if (
                wanted.is_compressed
                or syntax.is_compressed
                or wanted.is_little_endian != syntax.is_little_endian
            ):
                continue
        convertible.append(cx)
    if allow_conversion and convertible:
        return convertible[0]
    message = (
        f"No presentation context for '{UID(abstract_syntax).name}' has been accepted by the peer"
    )
    if wanted is not None:
        message += f" with '{wanted.name}' transfer syntax"
    raise ValueError(message + " for the SCU role")


def encode_dataset(dataset: Dataset, transfer_syntax: UID) -> bytes:
    """Encode ``dataset`` (no file meta) in ``transfer_syntax``; ValueError if pydicom cannot."""
    fp = DicomBytesIO()
    fp.is_implicit_VR = transfer_syntax.is_implicit_VR
    fp.is_little_endian = transfer_syntax.is_little_endian
    try:
        write_dataset(fp, dataset)
    except Exception as exc:
        raise ValueError("Failed to encode the supplied dataset") from exc
    encoded = fp.getvalue()
    if transfer_syntax.is_deflated:
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        encoded = compressor.compress(encoded) + compressor.flush()
        if len(encoded) % 2:
            encoded += b"\x00"
    return encoded


def dataset_transfer_syntax(dataset: Dataset) -> UID:
    """The transfer syntax a Dataset says it is in, squared with how it was read (as pynetdicom)."""
    try:
        syntax = UID(dataset.file_meta.TransferSyntaxUID)
    except AttributeError:
        raise AttributeError(
            "Unable to determine the presentation context to use with `dataset` as it "
            "contains no '(0002,0010) Transfer Syntax UID' file meta information element"
        ) from None
    original = dataset.original_encoding
    encoding = (
        dataset.is_implicit_VR if original[0] is None else original[0],
        dataset.is_little_endian if original[1] is None else original[1],
    )
    if None in encoding or encoding == (syntax.is_implicit_VR, syntax.is_little_endian):
        return syntax
    if encoding == (True, True):
        LOGGER.warning(
            "'dataset' is encoded as implicit VR little endian, using that instead of %s",
            syntax.name,
        )
        return ImplicitVRLittleEndian
    if encoding == (False, False):
        LOGGER.warning(
            "'dataset' is encoded as explicit VR big endian, using that instead of %s", syntax.name
        )
        return ExplicitVRBigEndian
    raise AttributeError(
        f"'dataset' encoding does not match its (0002,0010) Transfer Syntax UID of "
        f"'{syntax.name}' - please set an appropriate Transfer Syntax"
    )


# -- a Part 10 file ---------------------------------------------------------------


def converted_file(path: str | bytes, transfer_syntax: str, target: UID) -> bytes:
    """The data set of the file at ``path`` (in ``transfer_syntax``) re-encoded in ``target``.

    For when the peer accepted no context with the file's own syntax. Logged
    at INFO, as the bytes sent are no longer the file's; ValueError if the
    file cannot be decoded or encoded.
    """
    LOGGER.info(
        "Converting %s from '%s' to '%s': the peer accepted no context with the file's "
        "transfer syntax", os.fsdecode(path), UID(transfer_syntax).name, target.name,
    )
    try:
        dataset = dcmread(path)
    except Exception as exc:
        raise ValueError(f"Failed to decode {os.fsdecode(path)} for re-encoding") from exc
    return encode_dataset(dataset, target)


def file_dataset_chunks(stream: BinaryIO, meta: FileMeta, fragment: int) -> Iterator[bytes]:
    """The data set of an open Part 10 file (read past its meta), in chunks of whole PDVs.

    Whole PDVs per chunk (``fragment`` value bytes each), so chunk boundaries
    do not leave runt PDUs.
    """
    length = os.fstat(stream.fileno()).st_size - meta.dataset_offset
    size = fragment * max(1, STREAM_CHUNK_SIZE // fragment)
    # PS3.5 A.5: a deflated stream is padded to even length; files written
    # without the pad exist, and DCMTK refuses odd fragments.
    pad = length % 2 == 1 and UID(meta.transfer_syntax).is_deflated
    return read_chunks(stream, length, size, pad)


def read_chunks(stream: BinaryIO, length: int, size: int, pad: bool = False) -> Iterator[bytes]:
    """``length`` bytes from ``stream`` in reads of ``size``; ``pad`` adds a NUL to the last one.

    Each chunk is a new bytes object (the engine holds one back). A file
    shorter than ``length`` raises ValueError rather than send a short data set.
    """
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(size, remaining))
        if not chunk:
            raise ValueError(f"the file ended {remaining} bytes short of its data set")
        remaining -= len(chunk)
        yield chunk + b"\0" if pad and remaining == 0 else chunk


# -- the answer -----------------------------------------------------------------------


def status_dataset(response: Any) -> Dataset:
    """The status Dataset pynetdicom returns: Status plus the optional status elements present."""
    status = Dataset()
    status.add_new(0x00000900, "US", response.status)
    for attribute, tag, vr in _STATUS_FIELDS:
        value = getattr(response, attribute, None)
        if value is not None and value != "":
            status.add_new(tag, vr, value)
    return status
