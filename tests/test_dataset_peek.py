"""peek_elements: the same answers as pydicom on real files, and only PeekError on bad input."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
)

from hsscp.dataset_peek import PeekError, peek_elements
from hsscp.part10 import read_file_meta

SOP_CLASS = 0x00080016
SOP_INSTANCE = 0x00080018
STUDY = 0x0020000D
SERIES = 0x0020000E
UIDS = frozenset({SOP_CLASS, SOP_INSTANCE, STUDY, SERIES})

TEST_FILES = [
    "CT_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",
    "JPEG2000.dcm",
    "rtplan.dcm",
]
ENCODINGS = {  # transfer syntax -> (implicit VR, little endian)
    ImplicitVRLittleEndian: (True, True),
    ExplicitVRLittleEndian: (False, True),
    ExplicitVRBigEndian: (False, False),
}
ALL_SYNTAXES = [*ENCODINGS, DeflatedExplicitVRLittleEndian, JPEG2000Lossless]


def raw_dataset(name: str) -> tuple[str, bytes]:
    """Transfer syntax and the dataset bytes of a pydicom test file, as stored."""
    with open(get_testdata_file(name), "rb") as fp:
        meta = read_file_meta(fp)
        return meta.transfer_syntax, fp.read()


def pydicom_values(name: str) -> dict[int, str]:
    ds = dcmread(get_testdata_file(name))
    return {tag: str(ds[tag].value) for tag in UIDS if tag in ds}


def encode(ds: Dataset, transfer_syntax: str) -> bytes:
    """The dataset encoded in ``transfer_syntax`` (deflated as PS3.5 A.5 says)."""
    implicit, little = ENCODINGS.get(transfer_syntax, (False, True))
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    write_dataset(fp, ds)
    data = fp.getvalue()
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = deflater.compress(data) + deflater.flush()
    return data


def undefined_length(sequence: list[Dataset]) -> list[Dataset]:
    for item in sequence:
        item.is_undefined_length_sequence_item = True
    return sequence


def nested_dataset() -> Dataset:
    """UIDs behind undefined-length sequences whose items hold look-alike UIDs."""
    inner = Dataset()
    inner.SeriesInstanceUID = "9.9.9"
    inner.SOPInstanceUID = "9.9.8"
    code = Dataset()
    code.CodeValue = "eng"
    code.CodeMeaning = "English"
    code.ConceptCodeSequence = undefined_length([inner])
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.LanguageCodeSequence = undefined_length([code, Dataset()])
    ds["LanguageCodeSequence"].is_undefined_length = True
    code["ConceptCodeSequence"].is_undefined_length = True
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5"
    referenced = Dataset()
    referenced.SeriesInstanceUID = "7.7.7"
    ds.ReferencedSeriesSequence = undefined_length([referenced])
    ds["ReferencedSeriesSequence"].is_undefined_length = True
    ds.PatientName = "Doe^John"
    ds.StudyInstanceUID = "1.2.3.6"
    ds.SeriesInstanceUID = "1.2.3.7"
    ds.Rows = 2
    return ds


NESTED_EXPECTED = {
    SOP_CLASS: "1.2.840.10008.5.1.4.1.1.2",
    SOP_INSTANCE: "1.2.3.4.5",
    STUDY: "1.2.3.6",
    SERIES: "1.2.3.7",
}


@pytest.mark.parametrize("name", TEST_FILES)
def test_real_files_agree_with_pydicom(name: str) -> None:
    transfer_syntax, data = raw_dataset(name)
    expected = pydicom_values(name)
    assert peek_elements(data, transfer_syntax, UIDS, complete=True) == expected
    assert peek_elements(memoryview(data), transfer_syntax, UIDS) == expected


@pytest.mark.parametrize("name", TEST_FILES)
def test_single_tags(name: str) -> None:
    transfer_syntax, data = raw_dataset(name)
    expected = pydicom_values(name)
    for tag in UIDS:
        assert peek_elements(data, transfer_syntax, frozenset({tag})) == (
            {tag: expected[tag]} if tag in expected else {}
        )


@pytest.mark.parametrize("transfer_syntax", ALL_SYNTAXES)
def test_undefined_length_sequences_are_skipped(transfer_syntax: str) -> None:
    data = encode(nested_dataset(), transfer_syntax)
    assert peek_elements(data, transfer_syntax, UIDS) == NESTED_EXPECTED


@pytest.mark.parametrize("transfer_syntax", list(ENCODINGS))
def test_defined_length_sequences_are_skipped(transfer_syntax: str) -> None:
    ds = nested_dataset()
    for sequence in ("LanguageCodeSequence", "ReferencedSeriesSequence"):
        ds[sequence].is_undefined_length = False
    data = encode(ds, transfer_syntax)
    assert peek_elements(data, transfer_syntax, UIDS) == NESTED_EXPECTED


def test_un_of_undefined_length_holds_an_implicit_sequence() -> None:
    item = struct.pack("<HHI", 0x0008, 0x0018, 6) + b"9.9.9\0"  # implicit VR inside
    un = (
        struct.pack("<HH2sHI", 0x0008, 0x0006, b"UN", 0, 0xFFFFFFFF)
        + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + item
        + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    )
    uid = struct.pack("<HH2sH", 0x0008, 0x0018, b"UI", 4) + b"1.2\0"
    assert peek_elements(un + uid, ExplicitVRLittleEndian, frozenset({SOP_INSTANCE})) == {
        SOP_INSTANCE: "1.2"
    }


def test_values_lose_their_padding_only() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.3"  # odd: padded with NUL
    ds.Modality = "CT"
    ds.Manufacturer = " ACME"  # odd: padded with a space, the leading one stays
    tags = frozenset({SOP_CLASS, 0x00080060, 0x00080070})
    assert peek_elements(encode(ds, ExplicitVRLittleEndian), ExplicitVRLittleEndian, tags) == {
        SOP_CLASS: "1.2.3",
        0x00080060: "CT",
        0x00080070: " ACME",
    }


def test_absent_tags_after_a_later_tag_are_simply_absent() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.3"
    ds.SOPInstanceUID = "1.2.4"
    ds.Rows = 2
    data = encode(ds, ExplicitVRLittleEndian)
    assert peek_elements(data, ExplicitVRLittleEndian, UIDS) == {
        SOP_CLASS: "1.2.3",
        SOP_INSTANCE: "1.2.4",
    }


def test_running_out_of_bytes_is_not_absence_unless_complete() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.3"
    ds.SOPInstanceUID = "1.2.4"
    data = encode(ds, ExplicitVRLittleEndian)
    with pytest.raises(
        PeekError, match=rf"not found in the first {len(data)} bytes: \(0020,000D\) \(0020,000E\)$"
    ):
        peek_elements(data, ExplicitVRLittleEndian, UIDS)
    assert peek_elements(data, ExplicitVRLittleEndian, UIDS, complete=True) == {
        SOP_CLASS: "1.2.3",
        SOP_INSTANCE: "1.2.4",
    }


def test_prefix_of_a_big_dataset() -> None:
    transfer_syntax, data = raw_dataset("CT_small.dcm")
    with pytest.raises(PeekError, match="not found in the first 200 bytes"):
        peek_elements(data[:200], transfer_syntax, UIDS)
    with pytest.raises(PeekError, match="truncated"):
        peek_elements(data[:200], transfer_syntax, UIDS, complete=True)
    assert peek_elements(data[:4096], transfer_syntax, UIDS) == pydicom_values("CT_small.dcm")


def check_prefix(data: bytes, transfer_syntax: str, expected: dict[int, str], size: int) -> None:
    """A prefix gives PeekError or the right answer; claimed complete, a consistent one."""
    try:
        assert peek_elements(data[:size], transfer_syntax, UIDS) == expected
    except PeekError as error:
        assert "not found in the first" in str(error)
    try:
        found = peek_elements(data[:size], transfer_syntax, UIDS, complete=True)
    except PeekError:
        return
    assert found.items() <= expected.items()


@pytest.mark.parametrize("transfer_syntax", ALL_SYNTAXES)
def test_truncated_at_every_offset(transfer_syntax: str) -> None:
    data = encode(nested_dataset(), transfer_syntax)
    for size in range(len(data) + 1):
        check_prefix(data, transfer_syntax, NESTED_EXPECTED, size)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm"])
def test_real_file_truncated_at_every_header_offset(name: str) -> None:
    transfer_syntax, data = raw_dataset(name)
    expected = pydicom_values(name)
    for size in range(min(len(data), 4096) + 1):
        check_prefix(data, transfer_syntax, expected, size)


@settings(max_examples=300)
@given(st.sampled_from(ALL_SYNTAXES), st.binary(max_size=400), st.booleans())
def test_arbitrary_bytes_raise_only_peek_error(
    transfer_syntax: str, data: bytes, complete: bool
) -> None:
    try:
        found = peek_elements(data, transfer_syntax, UIDS, complete=complete)
    except PeekError:
        return
    assert found.keys() <= UIDS and all(isinstance(value, str) for value in found.values())


@settings(max_examples=300)
@given(
    st.sampled_from(list(ENCODINGS)),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_corrupted_datasets_raise_only_peek_error(transfer_syntax: str, edits: list) -> None:
    data = bytearray(encode(nested_dataset(), transfer_syntax))
    for offset, value in edits:
        data[offset % len(data)] = value
    try:
        peek_elements(data, transfer_syntax, UIDS, complete=True)
    except PeekError:
        pass


def element(group: int, element_: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", group, element_, vr, len(value)) + value


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (element(0x0008, 0x0005, b"ZZ", b"x "), "unknown VR"),
        (struct.pack("<HH2sHI", 0x0008, 0x0016, b"OB", 0, 2) + b"\0\0", "not a text VR"),
        (struct.pack("<HH2sH", 0x0008, 0x0005, b"CS", 0xFFFF), "not found in the first 8 bytes"),
        (
            struct.pack("<HH2sHI", 0x0008, 0x0006, b"UT", 0, 0xFFFFFFFF),
            "cannot have undefined length",
        ),
        (
            struct.pack("<HH2sHI", 0x0008, 0x0006, b"SQ", 0, 0xFFFFFFFF)
            + element(0x0008, 0x0005, b"CS", b"x "),
            r"unexpected \(0008,0005\)",
        ),
    ],
)
def test_malformed_explicit_data(data: bytes, message: str) -> None:
    with pytest.raises(PeekError, match=message):
        peek_elements(data, ExplicitVRLittleEndian, UIDS)


def test_hostile_lengths_are_never_allocated() -> None:
    huge = struct.pack("<HH2sHI", 0x0008, 0x0006, b"OB", 0, 0xFFFFFFF0)
    with pytest.raises(PeekError, match="not found in the first 12 bytes"):
        peek_elements(huge, ExplicitVRLittleEndian, UIDS)
    wanted = struct.pack("<HHI", 0x0008, 0x0018, 0xFFFFFFF0) + b"1.2"
    with pytest.raises(PeekError, match="truncated"):
        peek_elements(wanted, ImplicitVRLittleEndian, UIDS, complete=True)


@pytest.mark.parametrize("transfer_syntax", list(ENCODINGS))
def test_data_ending_inside_a_sequence_is_truncated(transfer_syntax: str) -> None:
    data = encode(nested_dataset(), transfer_syntax)
    _implicit, little = ENCODINGS[transfer_syntax]
    item_end = struct.pack("<HHI" if little else ">HHI", 0xFFFE, 0xE00D, 0)
    cut = data.index(item_end) + len(item_end)  # an element boundary inside the sequence
    with pytest.raises(PeekError, match="truncated"):
        peek_elements(data[:cut], transfer_syntax, UIDS, complete=True)


def test_deep_nesting_does_not_exhaust_the_stack() -> None:
    depth = 50_000
    opening = struct.pack("<HHI", 0x0008, 0x0006, 0xFFFFFFFF) + struct.pack(
        "<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    data = opening * depth
    with pytest.raises(PeekError, match="not found"):
        peek_elements(data, ImplicitVRLittleEndian, UIDS)
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    uid = struct.pack("<HHI", 0x0008, 0x0018, 4) + b"1.2\0"
    whole = data + closing * depth + uid + struct.pack("<HHI", 0x0028, 0x0010, 2) + b"\0\0"
    assert peek_elements(whole, ImplicitVRLittleEndian, UIDS) == {SOP_INSTANCE: "1.2"}


def test_deflate_garbage_and_bombs() -> None:
    with pytest.raises(PeekError, match="cannot inflate"):
        peek_elements(b"\xff" * 64, DeflatedExplicitVRLittleEndian, UIDS)
    # A value claiming 4 GB of zeros: inflation stops at a bounded prefix.
    deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    bomb = deflater.compress(struct.pack("<HH2sHI", 0x0008, 0x0006, b"OB", 0, 0xFFFFFFF0))
    bomb += deflater.compress(bytes(64 * 1024 * 1024)) + deflater.flush()
    with pytest.raises(PeekError, match="not found in the first 4194304 inflated bytes"):
        peek_elements(bomb, DeflatedExplicitVRLittleEndian, UIDS, complete=True)


def test_deflated_stream_cut_short() -> None:
    data = encode(nested_dataset(), DeflatedExplicitVRLittleEndian)
    with pytest.raises(PeekError, match="deflate stream cut short"):
        peek_elements(data[:20], DeflatedExplicitVRLittleEndian, UIDS, complete=True)
    with pytest.raises(PeekError, match="not found in the first"):
        peek_elements(data[:20], DeflatedExplicitVRLittleEndian, UIDS)


def test_no_tags_and_item_tags() -> None:
    assert peek_elements(b"garbage", ExplicitVRLittleEndian, frozenset()) == {}
    with pytest.raises(ValueError, match="FFFE"):
        peek_elements(b"", ExplicitVRLittleEndian, frozenset({0xFFFEE000}))
