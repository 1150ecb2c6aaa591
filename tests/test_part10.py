"""The File Meta Information group: built meta reads back; a cut one parses or is a Part10Error, nothing else."""

from __future__ import annotations

import pytest

from hsscp.part10 import META_START, Part10Error, build_file_meta, parse_file_meta

META = build_file_meta("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "1.2.840.10008.1.2.1", "1.2.826.0.1", "HSSCP", "CT1")


def test_built_meta_reads_back() -> None:
    meta = parse_file_meta(META + b"\x08\x00\x05\x00CS\x02\x00x ")
    assert (meta.sop_class_uid, meta.sop_instance_uid, meta.transfer_syntax) == (
        "1.2.840.10008.5.1.4.1.1.2",
        "1.2.3.4",
        "1.2.840.10008.1.2.1",
    )
    assert (meta.source_ae_title, meta.dataset_offset) == ("CT1", len(META))


def test_a_cut_meta_group_parses_or_is_a_part10_error() -> None:
    refused = 0
    for cut in range(len(META)):
        try:
            meta = parse_file_meta(META[:cut])
        except Part10Error:
            refused += 1
        else:  # cut after an element: the optional ones that follow are simply missing
            assert meta.dataset_offset <= cut and meta.sop_instance_uid == "1.2.3.4"
    assert refused > len(META) - 40


def test_a_long_vr_header_cut_before_its_length() -> None:
    # The group length element (12 bytes), then 10 of the 12 header bytes of (0002,0001) OB.
    with pytest.raises(Part10Error, match="overruns"):
        parse_file_meta(META[: META_START + 12 + 10])
