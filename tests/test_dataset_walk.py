"""One raw walker under the peek and the UID patcher: they find the same elements, refuse the same bytes."""

from __future__ import annotations

import struct

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from hsscp import dataset_walk
from hsscp.dataset_peek import PeekError, peek_elements
from hsscp.dataset_walk import MalformedDataset, OutOfData
from hsscp.loadgen import uidpatch
from hsscp.loadgen.uidpatch import PatchError

from .test_dataset_peek import UIDS, encode, nested_dataset, raw_dataset

SAMPLES = ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm", "rtplan.dcm"]


@pytest.mark.parametrize("name", SAMPLES)
def test_peek_and_patcher_find_the_same_uids(name: str) -> None:
    transfer_syntax, data = raw_dataset(name)
    plan = uidpatch.locate(memoryview(data), transfer_syntax)
    located = {tag: element.value for tag, element in plan.uids.items()}
    assert located and located == peek_elements(data, transfer_syntax, UIDS, complete=True)


@pytest.mark.parametrize("transfer_syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_behind_nested_undefined_length_sequences_too(transfer_syntax: str) -> None:
    data = encode(nested_dataset(), transfer_syntax)
    located = {tag: e.value for tag, e in uidpatch.locate(memoryview(data), transfer_syntax).uids.items()}
    assert located == peek_elements(data, transfer_syntax, UIDS) == {
        0x00080016: "1.2.840.10008.5.1.4.1.1.2",
        0x00080018: "1.2.3.4.5",
        0x0020000D: "1.2.3.6",
        0x0020000E: "1.2.3.7",
    }


def explicit(tag: int, vr: bytes, length: int, value: bytes = b"") -> bytes:
    if vr in dataset_walk.LONG_VRS:
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, length) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, length) + value


SOP_INSTANCE = explicit(0x00080018, b"UI", 4, b"1.2\0")
MALFORMED = {
    "unknown VR": explicit(0x00080005, b"ZZ", 2, b"x ") + SOP_INSTANCE,
    "cannot have undefined length": explicit(0x00080006, b"UT", 0xFFFFFFFF) + SOP_INSTANCE,
    r"unexpected \(0008,0005\)": explicit(0x00080006, b"SQ", 0xFFFFFFFF)
    + explicit(0x00080005, b"CS", 2, b"x ")
    + SOP_INSTANCE,
}


@pytest.mark.parametrize("message", MALFORMED)
def test_malformed_bytes_are_refused_by_both_with_the_same_words(message: str) -> None:
    data = MALFORMED[message]
    with pytest.raises(PeekError, match=message) as peeked:
        peek_elements(data, ExplicitVRLittleEndian, UIDS, complete=True)
    with pytest.raises(PatchError, match=message) as patched:
        uidpatch.locate(memoryview(data), ExplicitVRLittleEndian)
    assert str(peeked.value) == str(patched.value)


def test_bytes_ending_inside_a_sequence_are_out_of_data_at_the_sequence() -> None:
    sequence = explicit(0x00080006, b"SQ", 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    data = memoryview(explicit(0x00080005, b"CS", 2, b"x ") + sequence)
    tag, vr, length, start = dataset_walk.element_header(data, 10, dataset_walk.EXPLICIT_LE)
    assert (tag, vr, length, start) == (0x00080006, b"SQ", 0xFFFFFFFF, 22)
    with pytest.raises(OutOfData) as short:
        dataset_walk.element_end(data, 10, tag, vr, length, start, dataset_walk.EXPLICIT_LE)
    assert short.value.offset == 10


def test_errors_of_the_walker_are_input_errors() -> None:
    assert issubclass(MalformedDataset, ValueError)
    assert issubclass(PeekError, ValueError) and issubclass(PatchError, ValueError)
    assert dataset_walk.encoding_of("1.2.840.10008.1.2.4.50") == dataset_walk.EXPLICIT_LE
    assert uidpatch.encoding_of(ImplicitVRLittleEndian) == dataset_walk.IMPLICIT_LE
