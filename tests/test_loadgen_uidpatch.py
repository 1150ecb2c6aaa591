"""New UIDs patched into data set bytes: the result decodes to the original with the new UIDs."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from hsscp.loadgen import uidpatch
from hsscp.loadgen.uidpatch import (
    SERIES_INSTANCE_UID,
    SOP_INSTANCE_UID,
    STUDY_INSTANCE_UID,
    NeedMoreData,
    PatchError,
)
from tests.scp_fixtures import dataset_bytes, sample_path

SYNTAX_OF_SAMPLE = {
    "CT_small.dcm": "1.2.840.10008.1.2.1",
    "MR_small_implicit.dcm": "1.2.840.10008.1.2",
    "MR_small_bigendian.dcm": "1.2.840.10008.1.2.2",
    "JPEG2000.dcm": "1.2.840.10008.1.2.4.91",
    "SC_rgb_rle.dcm": "1.2.840.10008.1.2.5",
    "rtplan.dcm": "1.2.840.10008.1.2",
}
KEYWORDS = {
    SOP_INSTANCE_UID: "SOPInstanceUID",
    STUDY_INSTANCE_UID: "StudyInstanceUID",
    SERIES_INSTANCE_UID: "SeriesInstanceUID",
}


def decode(data: bytes, transfer_syntax: str) -> Dataset:
    encoding = uidpatch.encoding_of(transfer_syntax)
    return read_dataset(io.BytesIO(data), encoding.implicit, encoding.little)


def patched(data: bytes, transfer_syntax: str, new_uids: dict[int, str]) -> bytes:
    plan = uidpatch.plan(memoryview(data), transfer_syntax)
    chunks = uidpatch.render(plan, memoryview(data), new_uids)
    return b"".join(bytes(chunk) for chunk in chunks) + data[plan.end :]


def assert_same_but_uids(result: Dataset, original: Dataset, new_uids: dict[int, str]) -> None:
    for tag, uid in new_uids.items():
        assert getattr(result, KEYWORDS[tag]) == uid
    for element in original:
        if element.tag not in new_uids:
            assert result[element.tag] == element, element.tag


@pytest.mark.parametrize("name", sorted(SYNTAX_OF_SAMPLE))
@pytest.mark.parametrize("length", [10, 44, 63, 64])
def test_sample_files_decode_with_the_new_uids(name, length):
    _, data = dataset_bytes(sample_path(name))
    syntax = SYNTAX_OF_SAMPLE[name]
    new = {tag: ("1." + "2" * 70)[:length - 1] + str(i) for i, tag in enumerate(uidpatch.TARGETS)}
    result = patched(data, syntax, new)
    assert_same_but_uids(decode(result, syntax), decode(data, syntax), new)


def test_same_length_uid_changes_only_its_value_bytes():
    _, data = dataset_bytes(sample_path("CT_small.dcm"))
    plan = uidpatch.plan(memoryview(data), "1.2.840.10008.1.2.1")
    old = plan.original(SOP_INSTANCE_UID)
    new = old[:-1] + ("1" if old[-1] != "1" else "2")
    result = patched(data, "1.2.840.10008.1.2.1", {SOP_INSTANCE_UID: new})
    assert len(result) == len(data)
    assert sum(a != b for a, b in zip(result, data, strict=True)) == 1


def test_chunks_are_views_of_the_original_not_copies():
    _, data = dataset_bytes(sample_path("CT_small.dcm"))
    view = memoryview(data)
    plan = uidpatch.plan(view, "1.2.840.10008.1.2.1")
    chunks = uidpatch.render(plan, view, {SOP_INSTANCE_UID: "1.2.3"})
    big = [chunk for chunk in chunks if len(chunk) > 100]
    assert big and all(isinstance(chunk, memoryview) and chunk.obj is data for chunk in big)


def encode(ds: Dataset, implicit: bool, little: bool) -> bytes:
    """Data set bytes as pydicom writes them: sequences of undefined length."""
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    write_dataset(fp, ds)
    return fp.getvalue()


def _tricky_dataset() -> Dataset:
    """Undefined-length sequences before and between the UIDs, nested items."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    inner = Dataset()
    inner.CodeValue = "X"
    inner.PurposeOfReferenceCodeSequence = Sequence([Dataset()])
    ds.LanguageCodeSequence = Sequence([inner, Dataset()])  # (0008,0006), before every UID
    ds.OtherPatientIDsSequence = Sequence([inner])  # (0010,1002), between them
    ds.SOPInstanceUID = "1.2.3.4"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4.5"
    ds.InstanceNumber = 7
    for keyword in ("LanguageCodeSequence", "OtherPatientIDsSequence"):
        ds[keyword].is_undefined_length = True
        for item in ds[keyword].value:
            item.is_undefined_length_sequence_item = True
    return ds


@pytest.mark.parametrize("implicit,little,syntax", [
    (True, True, "1.2.840.10008.1.2"),
    (False, True, "1.2.840.10008.1.2.1"),
    (False, False, "1.2.840.10008.1.2.2"),
])
def test_undefined_length_sequences_are_skipped(implicit, little, syntax):
    ds = _tricky_dataset()
    data = encode(ds, implicit, little)
    assert b"\xdd\xe0" in data or b"\xe0\xdd" in data  # really undefined lengths
    new = {SOP_INSTANCE_UID: "2.25.1", STUDY_INSTANCE_UID: "2.25.22", SERIES_INSTANCE_UID: "2.25.333"}
    assert_same_but_uids(decode(patched(data, syntax, new), syntax), ds, new)


def test_group_length_is_rewritten():
    data = encode(_tricky_dataset(), False, True)
    group_start = data.index(b"\x20\x00\x0d\x00")  # (0020,000D), the first element of group 0020
    group_bytes = len(data) - group_start  # group 0020 runs to the end of this data set
    data = data[:group_start] + b"\x20\x00\x00\x00UL\x04\x00" + group_bytes.to_bytes(4, "little") + data[group_start:]
    result = patched(data, "1.2.840.10008.1.2.1", {SERIES_INSTANCE_UID: "1.2.3.4.5.6.7.8.9.10"})
    offset = uidpatch.plan(memoryview(result), "1.2.840.10008.1.2.1").group_length_offsets[0x0020]
    assert int.from_bytes(result[offset : offset + 4], "little") == len(result) - (offset + 4)
    assert decode(result, "1.2.840.10008.1.2.1").SeriesInstanceUID == "1.2.3.4.5.6.7.8.9.10"


def test_partial_buffer_asks_for_more():
    _, data = dataset_bytes(sample_path("CT_small.dcm"))
    with pytest.raises(NeedMoreData):
        uidpatch.plan(memoryview(data)[:200], "1.2.840.10008.1.2.1", complete=False)
    with pytest.raises(PatchError):
        uidpatch.plan(memoryview(data)[:200], "1.2.840.10008.1.2.1", complete=True)
    whole = uidpatch.plan(memoryview(data), "1.2.840.10008.1.2.1")
    prefix = uidpatch.plan(memoryview(data)[: whole.end + 16], "1.2.840.10008.1.2.1", complete=False)
    assert prefix == whole


def test_deflated_is_refused_with_a_clear_message():
    with pytest.raises(PatchError, match="deflated"):
        uidpatch.plan(memoryview(b""), "1.2.840.10008.1.2.1.99")


def test_missing_sop_instance_uid_is_refused():
    ds = Dataset()
    ds.PatientName = "X"
    with pytest.raises(PatchError, match="SOP Instance UID"):
        uidpatch.plan(memoryview(encode(ds, True, True)), "1.2.840.10008.1.2")


def test_uid_maker_is_consistent_within_a_copy_and_fresh_across_copies():
    maker = uidpatch.UidMaker("series", salt=b"s" * 16)
    _, data = dataset_bytes(sample_path("CT_small.dcm"))
    plan = uidpatch.plan(memoryview(data), "1.2.840.10008.1.2.1")
    first, again, second = maker.new_uids(plan, 0), maker.new_uids(plan, 0), maker.new_uids(plan, 1)
    assert first == again
    assert set(first) == {SOP_INSTANCE_UID, SERIES_INSTANCE_UID}
    assert first[SERIES_INSTANCE_UID] != second[SERIES_INSTANCE_UID]
    assert all(len(uid) <= 64 and uid.startswith("2.25.") for uid in first.values())
    assert set(uidpatch.UidMaker("study").new_uids(plan, 0)) == set(uidpatch.TARGETS)
    assert set(uidpatch.UidMaker("instance").new_uids(plan, 0)) == {SOP_INSTANCE_UID}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=3, max_size=3), st.sampled_from(sorted(SYNTAX_OF_SAMPLE)))
def test_any_uid_length_round_trips(lengths, name):
    _, data = dataset_bytes(sample_path(name))
    syntax = SYNTAX_OF_SAMPLE[name]
    new = {tag: "9" * n for tag, n in zip(uidpatch.TARGETS, lengths, strict=True)}
    result = decode(patched(data, syntax, new), syntax)
    for tag, uid in new.items():
        assert getattr(result, KEYWORDS[tag]) == uid


def test_deep_nesting_does_not_exhaust_the_stack():
    depth = 50_000
    opening = struct.pack("<HHI", 0x0008, 0x0006, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    uid = struct.pack("<HHI", 0x0008, 0x0018, 4) + b"1.2\0"
    data = opening * depth + closing * depth + uid
    assert uidpatch.plan(memoryview(data), "1.2.840.10008.1.2").original(SOP_INSTANCE_UID) == "1.2"
    with pytest.raises(NeedMoreData):
        uidpatch.plan(memoryview(data)[: len(opening) * depth], "1.2.840.10008.1.2", complete=False)


def test_unknown_vr_is_refused_not_misread():
    data = struct.pack("<HH2sH", 0x0008, 0x0005, b"ZZ", 2) + b"x " + struct.pack("<HH2sH", 0x0008, 0x0018, b"UI", 4) + b"1.2\0"
    with pytest.raises(PatchError, match="unknown VR"):
        uidpatch.plan(memoryview(data), "1.2.840.10008.1.2.1")
