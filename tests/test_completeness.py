"""The completeness walk: whole data sets pass; every cut, and every broken structure, is named.

Fed whole, in many small segments and as windows at the offsets the walk asks
for (as a file is read), it gives the same answer; real files pass; a prefix
of a data set passes only when it ends between two top-level elements.
"""

from __future__ import annotations

import os
import struct
import tracemalloc
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from hsscp.dataset_peek import peek_prefix
from hsscp.dataset_walk import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    Defect,
    Encoding,
    StructureWalk,
    encoding_of,
    find_defect,
)
from hsscp.part10 import Part10Error, read_file_meta
from hsscp.storage import content as content_module
from hsscp.storage.content import Spooled

from .test_dataset_peek import ENCODINGS, UIDS, encode, nested_dataset, undefined_length

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"
# pydicom's sample files that are not whole on purpose, or not what their meta says.
NOT_WHOLE = {
    "MR_truncated.dcm": "(7FE0,0010) at offset 1154 runs past the end of the data",
    "rtplan_truncated.dcm": "(300A,00B0) at offset 1110 runs past the end of the data",
    # implicit VR data under an explicit VR transfer syntax
    "SC_rgb_jpeg.dcm": "(0008,0008) at offset 0 has an unknown VR b'\\x18\\x00'",
}


def part10_samples() -> list[str]:
    """Every Part 10 sample file pydicom ships, but the deflated ones (not walked)."""
    names = []
    for path in sorted(SAMPLES.rglob("*")):
        if not path.is_file():
            continue
        try:
            with open(path, "rb") as fp:
                meta = read_file_meta(fp)
        except (Part10Error, OSError, ValueError, struct.error):
            continue
        if meta.transfer_syntax != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            names.append(str(path.relative_to(SAMPLES)))
    return names


def sample(name: str) -> tuple[Encoding, bytes]:
    with open(SAMPLES / name, "rb") as fp:
        meta = read_file_meta(fp)
        return encoding_of(meta.transfer_syntax), fp.read()


def pieces(data: bytes, size: int) -> list[memoryview]:
    view = memoryview(data)
    return [view[start : start + size] for start in range(0, len(view), size)]


def walk_by_windows(data: bytes, encoding: Encoding, size: int) -> tuple[Defect | None, int]:
    """Feed the walk ``size`` bytes from each offset it asks for, as a file is read; and the count."""
    walk = StructureWalk(encoding, len(data))
    need, reads = 0, 0
    while need is not None:
        reads += 1
        need = walk.walk(memoryview(data)[need : need + size], need)
    return walk.defect, reads


def test_the_sample_list_is_real() -> None:
    names = part10_samples()
    assert len(names) > 100 and set(NOT_WHOLE) <= {Path(name).name for name in names}


@pytest.mark.parametrize("name", part10_samples())
def test_real_files_are_whole_fed_whole_in_pieces_and_by_windows(name: str) -> None:
    encoding, data = sample(name)
    defect = find_defect([memoryview(data)], encoding)
    expected = NOT_WHOLE.get(Path(name).name)
    assert (defect and defect.message) == expected
    small = 7 if len(data) < 256 * 1024 else 4093
    assert find_defect(pieces(data, small), encoding) == defect
    assert walk_by_windows(data, encoding, 64)[0] == defect


# -- every cut of a data set is found ---------------------------------------------------------


def rich_dataset(encapsulated: bool) -> Dataset:
    """Nested undefined-length sequences, a defined-length one, and pixel data last."""
    ds = nested_dataset()
    referenced = Dataset()
    referenced.ReferencedSOPInstanceUID = "1.2.3.9"
    ds.ReferencedImageSequence = [referenced]  # defined length
    ds.PixelData = encapsulate([b"\x01" * 30, b"\x02" * 20]) if encapsulated else bytes(range(64))
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = encapsulated
    return ds


def element_boundaries(ds: Dataset, transfer_syntax: str) -> tuple[bytes, set[int]]:
    """The data set encoded, and the offsets between its top-level elements."""
    data, boundaries = b"", {0}
    for element in ds:
        single = Dataset()
        single.add(element)
        data += encode(single, transfer_syntax)
        boundaries.add(len(data))
    assert data == encode(ds, transfer_syntax)
    return data, boundaries


@pytest.mark.parametrize(
    ("transfer_syntax", "encapsulated"),
    [(ImplicitVRLittleEndian, False), (ExplicitVRLittleEndian, False), (ExplicitVRBigEndian, False),
     (ExplicitVRLittleEndian, True)],
)
def test_a_prefix_is_whole_only_when_it_ends_between_top_level_elements(
    transfer_syntax: str, encapsulated: bool
) -> None:
    data, boundaries = element_boundaries(rich_dataset(encapsulated), transfer_syntax)
    encoding = encoding_of(transfer_syntax)
    for cut in range(len(data) + 1):
        defect = find_defect([memoryview(data)[:cut]], encoding)
        if cut in boundaries:
            assert defect is None, f"cut at {cut}: {defect}"
        else:
            assert defect is not None and defect.cut, f"cut at {cut}: {defect}"
            assert len(defect.message) <= 64
    assert find_defect(pieces(data, 3), encoding) is None


@pytest.mark.parametrize("transfer_syntax", list(ENCODINGS))
def test_the_walk_may_start_where_the_uid_peek_stopped(transfer_syntax: str) -> None:
    """The store path walks on from the peek's offset: a top-level boundary, every cut past it found."""
    data, boundaries = element_boundaries(rich_dataset(encapsulated=False), transfer_syntax)
    found, walked = peek_prefix(data, transfer_syntax, UIDS, complete=True)
    assert found and walked in boundaries and 0 < walked < len(data)
    encoding = encoding_of(transfer_syntax)
    for cut in range(walked, len(data) + 1):
        view = memoryview(data)[:cut]
        assert find_defect([view], encoding, walked) == find_defect([view], encoding)
        assert find_defect(pieces(data[:cut], 5), encoding, walked) == find_defect([view], encoding)


# -- the defects, named ------------------------------------------------------------------------


def element(tag: int, vr: bytes, value: bytes = b"", length: int | None = None, order: str = "<") -> bytes:
    """An explicit VR element (``length`` may lie about the value)."""
    length = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack(order + "HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, length) + value
    return struct.pack(order + "HH2sH", tag >> 16, tag & 0xFFFF, vr, length) + value


def marker(tag: int, length: int = 0, order: str = "<") -> bytes:
    """An item or delimiter: (FFFE,xxxx) and a 32-bit length, no VR."""
    return struct.pack(order + "HHI", 0xFFFE, tag & 0xFFFF, length)


UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UID = element(0x00080018, b"UI", b"1.2.3\0")  # 14 bytes
CODE = element(0x00080100, b"SH", b"eng ")
SEQUENCE = element(0x00081115, b"SQ", length=UNDEFINED)
PIXELS = element(0x7FE00010, b"OB", length=UNDEFINED)
CASES = {
    "cut in the pixel data": (
        UID + element(0x7FE00010, b"OW", bytes(100))[:-10],
        "(7FE0,0010) at offset 14 runs past the end of the data",
    ),
    "cut in a sequence": (
        UID + SEQUENCE + marker(ITEM, UNDEFINED) + CODE + marker(ITEM_END),
        "(0008,1115) at offset 14: no sequence delimiter",
    ),
    "item never closed": (
        UID + SEQUENCE + marker(ITEM, UNDEFINED) + CODE,
        "item at offset 26: no item delimiter",
    ),
    "encapsulated pixel data without its delimiter": (
        UID + PIXELS + marker(ITEM) + marker(ITEM, 8) + bytes(8),
        "(7FE0,0010) at offset 14: no sequence delimiter",
    ),
    "cut in a fragment": (
        UID + PIXELS + marker(ITEM) + marker(ITEM, 100) + bytes(8),
        "item at offset 34 runs past the end of the data",
    ),
    "an element longer than the data, first": (
        element(0x00080018, b"UI", b"1.2\0", length=0xFFF0) + CODE,
        "(0008,0018) at offset 0 runs past the end of the data",
    ),
    "a header cut": (UID + CODE[:5], "element header at offset 14 cut short"),
    "a long header cut after its VR": (
        UID + element(0x7FE00010, b"OW", bytes(4))[:9],
        "element header at offset 14 cut short",
    ),
}
MALFORMED = {
    "unknown VR": (UID + element(0x00080005, b"ZZ", b"x "), "(0008,0005) at offset 14 has an unknown VR b'ZZ'"),
    "an element in a sequence": (
        UID + SEQUENCE + CODE,
        "unexpected (0008,0100) at offset 26 in a sequence",
    ),
    "an item delimiter at the top level": (UID + marker(ITEM_END), "unexpected (FFFE,E00D) at offset 14"),
    "a sequence delimiter in an item": (
        SEQUENCE + marker(ITEM, UNDEFINED) + marker(SEQUENCE_END) + marker(SEQUENCE_END),
        "unexpected (FFFE,E0DD) at offset 20 in a sequence",
    ),
    "undefined length where it cannot be": (
        UID + element(0x00080005, b"UT", length=UNDEFINED),
        "(0008,0005) at offset 14: VR UT cannot have undefined length",
    ),
}


@pytest.mark.parametrize("feed", ["whole", "bytes", "windows"])
@pytest.mark.parametrize("case", [*CASES, *MALFORMED])
def test_defects_are_named_with_tag_and_offset(case: str, feed: str) -> None:
    data, message = CASES.get(case) or MALFORMED[case]
    if feed == "windows":
        defect, _reads = walk_by_windows(data, EXPLICIT_LE, 16)
    else:
        defect = find_defect(pieces(data, 1) if feed == "bytes" else [memoryview(data)], EXPLICIT_LE)
    assert defect is not None and defect.message == message == str(defect)
    assert defect.cut == (case in CASES)
    assert len(message) <= 64


def test_the_same_structures_closed_are_whole() -> None:
    closed = [
        UID + SEQUENCE + marker(ITEM, UNDEFINED) + CODE + marker(ITEM_END) + marker(SEQUENCE_END),
        UID + SEQUENCE + marker(ITEM, len(CODE)) + CODE + marker(SEQUENCE_END) + CODE,
        UID + PIXELS + marker(ITEM) + marker(ITEM, 8) + bytes(8) + marker(SEQUENCE_END),
        UID + SEQUENCE + marker(SEQUENCE_END),  # an empty sequence
        b"",  # an empty data set is structurally whole (the UID checks refuse it)
    ]
    for data in closed:
        assert find_defect([memoryview(data)], EXPLICIT_LE) is None
        assert find_defect(pieces(data, 1), EXPLICIT_LE) is None
    assert find_defect([], EXPLICIT_LE) is None


def test_hostile_nesting_is_walked_without_recursion_or_memory() -> None:
    depth = 20_000
    opening = SEQUENCE + marker(ITEM, UNDEFINED)
    closing = marker(ITEM_END) + marker(SEQUENCE_END)
    hostile = memoryview(opening * depth)
    tracemalloc.start()
    try:
        defect = find_defect([hostile], EXPLICIT_LE)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert defect is not None and defect.cut and defect.message.endswith("no item delimiter")
    assert peak < 256 * 1024  # a depth counter, not a stack of levels
    whole = opening * depth + closing * depth + UID
    assert find_defect([memoryview(whole)], EXPLICIT_LE) is None
    assert find_defect(pieces(whole, 5000), EXPLICIT_LE) is None


def test_un_of_undefined_length_holds_implicit_little_endian_even_in_big_endian() -> None:
    inside = struct.pack("<HHI", 0x0008, 0x0100, 4) + b"eng "  # implicit VR LE
    un = element(0x00091010, b"UN", length=UNDEFINED, order=">")
    data = (
        element(0x00080018, b"UI", b"1.2.3\0", order=">")
        + un + marker(ITEM, UNDEFINED) + inside + marker(ITEM_END) + marker(SEQUENCE_END)
        + element(0x7FE00010, b"OW", bytes(6), order=">")  # big endian again after it
    )
    assert find_defect([memoryview(data)], EXPLICIT_BE) is None
    assert find_defect(pieces(data, 1), EXPLICIT_BE) is None
    assert find_defect([memoryview(data[:-3])], EXPLICIT_BE).message == (
        "(7FE0,0010) at offset 62 runs past the end of the data"
    )


def test_implicit_vr_sequences_and_cuts() -> None:
    code = Dataset()
    code.CodeValue = "eng"
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3"
    ds.ReferencedStudySequence = undefined_length([code])
    ds["ReferencedStudySequence"].is_undefined_length = True
    data = encode(ds, ImplicitVRLittleEndian)
    assert find_defect([memoryview(data)], IMPLICIT_LE) is None
    cut = find_defect([memoryview(data[:-8])], IMPLICIT_LE)  # without its sequence delimiter
    assert cut == Defect(14, "(0008,1110) at offset 14: no sequence delimiter", cut=True)
    cut = find_defect([memoryview(data[:-16])], IMPLICIT_LE)  # nor its item delimiter
    assert cut == Defect(22, "item at offset 22: no item delimiter", cut=True)


def test_values_are_skipped_not_read() -> None:
    """A 2 GiB value costs the walk nothing: it asks for the header past it."""
    header = UID + element(0x00091010, b"OB", length=2**31)
    walk = StructureWalk(EXPLICIT_LE, len(header) + 2**31 + len(CODE))
    need = walk.walk(memoryview(header))
    assert need == len(header) + 2**31
    assert walk.walk(memoryview(CODE), need) is None and walk.defect is None and walk.end == walk.length
    ending = StructureWalk(EXPLICIT_LE, len(header) + 2**31)  # the value ends the data set
    assert ending.walk(memoryview(header)) is None and ending.defect is None
    short = StructureWalk(EXPLICIT_LE, len(header) + 2**31 - 1)
    assert short.walk(memoryview(header)) is None and short.defect.cut


def test_a_window_must_hold_the_next_header() -> None:
    walk = StructureWalk(EXPLICIT_LE, 100)
    with pytest.raises(ValueError, match="past the next header"):
        walk.walk(memoryview(bytes(10)), 5)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=6),
       syntax=st.sampled_from(list(ENCODINGS)))
def test_any_bytes_get_an_answer_the_same_however_they_are_fed(data: bytes, cuts: list[int], syntax: str) -> None:
    encoding = encoding_of(syntax)
    whole = find_defect([memoryview(data)], encoding)
    points = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    segments = [memoryview(data)[a:b] for a, b in zip(points, points[1:], strict=False)]
    assert find_defect(segments, encoding) == whole
    assert walk_by_windows(data, encoding, 13)[0] == whole


# -- a spooled data set is walked by reads at its headers ---------------------------------------


def spool_file(path: Path, dataset_head: bytes, value_length: int, cut: int = 0) -> int:
    """A sparse file: 100 bytes of stand-in meta, ``dataset_head``, then ``value_length`` zeros."""
    with open(path, "wb") as fp:
        fp.write(bytes(100) + dataset_head)
        fp.truncate(100 + len(dataset_head) + value_length - cut)
    return len(dataset_head) + value_length - cut


@pytest.mark.parametrize("cut", [0, 1])
def test_a_2_gib_spooled_data_set_is_checked_in_a_few_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut: int
) -> None:
    head = UID + element(0x7FE00010, b"OB", length=2**31)
    length = spool_file(tmp_path / "spool", head, 2**31, cut)
    reads: list[int] = []
    real_preadv = os.preadv

    def counting_preadv(fd: int, buffers: list, offset: int) -> int:
        reads.append(offset)
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(content_module.os, "preadv", counting_preadv)
    fd = os.open(tmp_path / "spool", os.O_RDONLY)
    try:
        # The head held in memory stops before the pixel data header: one read fetches it.
        defect = Spooled(fd, 100, length, memoryview(UID)).structure_defect(ExplicitVRLittleEndian)
    finally:
        os.close(fd)
    assert reads == [100 + len(UID)]
    if cut:
        assert defect is not None and defect.message == "(7FE0,0010) at offset 14 runs past the end of the data"
    else:
        assert defect is None


def test_a_spooled_data_set_of_many_elements_is_walked_through_bounded_windows(tmp_path: Path) -> None:
    data, _ = element_boundaries(rich_dataset(encapsulated=True), ExplicitVRLittleEndian)
    many = UID + CODE * 20_000 + data  # 240 KB of small elements, then sequences and fragments
    path = tmp_path / "spool"
    path.write_bytes(bytes(100) + many)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert Spooled(fd, 100, len(many), memoryview(many[:100])).structure_defect(ExplicitVRLittleEndian) is None
        cut = Spooled(fd, 100, len(many) - 1, memoryview(many[:100])).structure_defect(ExplicitVRLittleEndian)
    finally:
        os.close(fd)
    assert cut is not None and cut.cut
