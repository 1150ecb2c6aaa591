"""The bytes a sender gave arrive as they were: the SCU's contexts, and files written with VR UN.

- The SCU proposes one context per (SOP class, transfer syntax) of its files
  (:mod:`hsscp.context_plan`), so an acceptor with a preference of its own
  (DCMTK's ``storescp`` prefers Explicit VR Little Endian) cannot make it
  convert: against ``storescp +B`` every file is stored byte for byte. It
  converts only when the peer accepted no context with the file's syntax,
  and says so.
- A file whose SOP Class/Instance, Study and Series UIDs are written with
  VR UN (PS3.5 6.2.2 lets a receiver read them with their dictionary VR)
  is stored, and stored as it came.
"""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import UID

from hsscp import AE
from hsscp.context_plan import contexts_for_files, plan_contexts
from hsscp.dataset_peek import peek_elements
from hsscp.part10 import build_file_meta, read_file_meta
from hsscp.presentation import build_context
from hsscp.uid import IMPLEMENTATION_CLASS_UID

from .datagen import dataset_of, stored_files
from .hsscp_process import hsscp_storescp
from .peers import HOST, dcmtk_env, free_port, running

pytestmark = pytest.mark.interop

IMPLICIT, EXPLICIT, BIG = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
DEFLATED, JPEG_BASELINE, RLE = "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5"
CT, MR, SC = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.7"

# One SOP class in three syntaxes, another in three more, and an Implicit VR RT Plan.
FILES = [
    "MR_small.dcm",  # Explicit VR Little Endian
    "MR_small_implicit.dcm",  # Implicit VR Little Endian
    "MR_small_bigendian.dcm",  # Explicit VR Big Endian
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline
    "SC_rgb_rle.dcm",  # RLE Lossless
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
    "rtplan.dcm",  # Implicit VR Little Endian
]


# -- planning ----------------------------------------------------------------------------


def _plan(pairs) -> list[tuple[str, list[str]]]:
    return [(str(cx.abstract_syntax), [str(ts) for ts in cx.transfer_syntax]) for cx in plan_contexts(pairs)]


def test_each_pair_gets_its_own_syntax_alone_and_fallbacks_only_for_what_could_be_converted() -> None:
    assert _plan([(MR, IMPLICIT), (MR, EXPLICIT), (MR, BIG), (SC, JPEG_BASELINE), (SC, DEFLATED), (CT, IMPLICIT)]) == [
        (MR, [IMPLICIT]), (MR, [EXPLICIT]), (MR, [BIG]),
        (SC, [JPEG_BASELINE]), (SC, [DEFLATED]),
        (CT, [IMPLICIT]),
        # MR offers both little endian syntaxes alone already: no fallback for it.
        (SC, [EXPLICIT, IMPLICIT]),  # what a deflated file may become
        (CT, [EXPLICIT]),
    ]  # fmt: skip


def test_compressed_and_big_endian_files_get_no_fallback() -> None:
    # (By SOP class, in the order each class and syntax first came.)
    assert _plan([(SC, JPEG_BASELINE), (MR, BIG), (SC, RLE)]) == [(SC, [JPEG_BASELINE]), (SC, [RLE]), (MR, [BIG])]


def test_past_the_limit_fallbacks_go_first_then_classes_share_a_context() -> None:
    pairs = [(f"1.2.3.{n}", IMPLICIT) for n in range(3)]
    assert len(plan_contexts(pairs, limit=6)) == 6
    assert _plan(pairs[:2] + [("1.2.3.0", EXPLICIT)]) == [
        ("1.2.3.0", [IMPLICIT]), ("1.2.3.0", [EXPLICIT]), ("1.2.3.1", [IMPLICIT]), ("1.2.3.1", [EXPLICIT]),
    ]  # fmt: skip
    assert _plan_limited(pairs, 4) == [(f"1.2.3.{n}", [IMPLICIT]) for n in range(3)]
    assert _plan_limited([*pairs, ("1.2.3.0", EXPLICIT)], 3) == [
        ("1.2.3.0", [IMPLICIT, EXPLICIT]), ("1.2.3.1", [IMPLICIT, EXPLICIT]), ("1.2.3.2", [IMPLICIT, EXPLICIT]),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="4 SOP classes"):
        plan_contexts([(f"1.2.3.{n}", IMPLICIT) for n in range(4)], limit=3)


def _plan_limited(pairs, limit: int) -> list[tuple[str, list[str]]]:
    return [(str(cx.abstract_syntax), [str(ts) for ts in cx.transfer_syntax]) for cx in plan_contexts(pairs, limit)]


# -- against DCMTK storescp +B -------------------------------------------------------------------


def _stored(directory: Path) -> dict:
    """What storescp wrote, by (SOP instance UID, transfer syntax): the MR files share their UIDs."""
    stored = {}
    for path in directory.iterdir():
        with open(path, "rb") as stream:
            meta = read_file_meta(stream)
        stored[meta.sop_instance_uid, meta.transfer_syntax] = path
    return stored


def _as_sent(path: str) -> bytes:
    data = dataset_of(path)
    with open(path, "rb") as stream:
        deflated = UID(read_file_meta(stream).transfer_syntax).is_deflated
    return data + b"\0" if deflated and len(data) % 2 else data  # PS3.5 A.5's pad


def _send(port: int, paths: list[str]) -> None:
    ae = AE(ae_title="HSSCP-SCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate(HOST, port, contexts=contexts_for_files(paths), ae_title="STORESCP")
    try:
        assert assoc.is_established
        for msg_id, path in enumerate(paths, start=1):
            assert assoc.send_c_store(path, msg_id=msg_id).Status == 0x0000, path
        assoc.release()
    finally:
        assoc.abort()


@pytest.mark.parametrize("flags", [["+xa"], []], ids=["accept-all", "storescp-defaults"])
def test_every_file_reaches_storescp_byte_for_byte_in_its_own_syntax(tmp_path, flags, caplog) -> None:
    paths = [get_testdata_file(name) for name in FILES]
    if not flags:  # storescp's defaults accept the uncompressed syntaxes, preferring Explicit VR LE
        paths = [p for p in paths if Path(p).name in ("MR_small.dcm", "MR_small_implicit.dcm",
                                                      "MR_small_bigendian.dcm", "rtplan.dcm")]  # fmt: skip
    port, directory = free_port(), tmp_path / "stored"
    directory.mkdir()
    argv = ["storescp", *flags, "+B", "+uf", "-aet", "STORESCP", "-od", str(directory), str(port)]
    with caplog.at_level(logging.INFO, logger="hsscp"), running(argv, env=dcmtk_env(), ready_port=port):
        _send(port, paths)
    assert "Converting" not in caplog.text
    stored = _stored(directory)
    assert len(stored) == len(paths)
    for path in paths:
        with open(path, "rb") as stream:
            meta = read_file_meta(stream)
        copy = stored[meta.sop_instance_uid, meta.transfer_syntax]  # stored in the file's own syntax
        assert dataset_of(copy) == _as_sent(path), f"{Path(path).name} arrived with other bytes"


@pytest.mark.parametrize("flags", [["+xa"], []], ids=["accept-all", "storescp-defaults"])
def test_hsscp_storescu_keeps_every_files_bytes_at_storescp(tmp_path, flags) -> None:
    """The load generator plans its contexts the same way: no file is converted when its syntax is accepted."""
    paths = [get_testdata_file(name) for name in FILES]
    if not flags:
        paths = [p for p in paths if Path(p).name in ("MR_small.dcm", "MR_small_implicit.dcm",
                                                      "MR_small_bigendian.dcm", "rtplan.dcm")]  # fmt: skip
    port, directory = free_port(), tmp_path / "stored"
    directory.mkdir()
    argv = ["storescp", *flags, "+B", "+uf", "-aet", "STORESCP", "-od", str(directory), str(port)]
    with running(argv, env=dcmtk_env(), ready_port=port):
        sent = subprocess.run(
            [sys.executable, "-m", "hsscp", "storescu", "-v", "-aec", "STORESCP", HOST, str(port), *paths],
            capture_output=True, text=True, timeout=60,
        )
    assert sent.returncode == 0, sent.stderr
    assert "converted" not in sent.stderr
    # (Matched by content: the load generator names an instance by its data set's own UID,
    # which for rtplan.dcm is not the one in its file meta.)
    assert sorted(dataset_of(copy) for copy in directory.iterdir()) == sorted(_as_sent(p) for p in paths)


def test_a_file_is_converted_only_when_its_syntax_was_refused_and_it_says_so(tmp_path, caplog) -> None:
    path = get_testdata_file("MR_small.dcm")  # Explicit VR LE; storescp +xi accepts Implicit VR LE only
    port, directory = free_port(), tmp_path / "stored"
    directory.mkdir()
    argv = ["storescp", "+xi", "+B", "-aet", "STORESCP", "-od", str(directory), str(port)]
    with caplog.at_level(logging.INFO, logger="hsscp"), running(argv, env=dcmtk_env(), ready_port=port):
        _send(port, [path])
    assert "Converting" in caplog.text and "MR_small.dcm" in caplog.text
    (copy,) = _stored(directory).values()
    assert dcmread(copy).file_meta.TransferSyntaxUID == IMPLICIT
    assert dcmread(copy).PixelData == dcmread(path).PixelData


# -- UIDs written with VR UN --------------------------------------------------------------------

UN_SOP_INSTANCE = "1.2.826.0.1.3680043.10.543.77.1"
UN_STUDY = "1.2.826.0.1.3680043.10.543.77.2"
UN_SERIES = "1.2.826.0.1.3680043.10.543.77.3"


def _explicit(tag: int, vr: bytes, value: bytes) -> bytes:
    value += b"\0" if len(value) % 2 else b""
    if vr in (b"UN", b"OB", b"OW", b"SQ", b"UT"):
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def un_encoded_dataset() -> bytes:
    """An Explicit VR LE Secondary Capture data set whose four UIDs are written with VR UN."""
    return b"".join([
        _explicit(0x00080016, b"UN", SC.encode()),
        _explicit(0x00080018, b"UN", UN_SOP_INSTANCE.encode()),
        _explicit(0x00080060, b"CS", b"OT"),
        _explicit(0x00100010, b"PN", b"UN^ENCODED"),
        _explicit(0x00100020, b"LO", b"UN-1"),
        _explicit(0x0020000D, b"UN", UN_STUDY.encode()),
        _explicit(0x0020000E, b"UN", UN_SERIES.encode()),
        _explicit(0x00200013, b"IS", b"1"),
    ])  # fmt: skip


def write_un_file(path: Path) -> Path:
    path.write_bytes(build_file_meta(SC, UN_SOP_INSTANCE, EXPLICIT, str(IMPLEMENTATION_CLASS_UID)) + un_encoded_dataset())
    return path


def test_uids_written_as_un_are_read_with_their_dictionary_vr() -> None:
    tags = frozenset({0x00080016, 0x00080018, 0x0020000D, 0x0020000E})
    found = peek_elements(un_encoded_dataset(), EXPLICIT, tags, complete=True)
    assert found == {0x00080016: SC, 0x00080018: UN_SOP_INSTANCE, 0x0020000D: UN_STUDY, 0x0020000E: UN_SERIES}


def test_a_file_with_un_encoded_uids_is_stored_as_it_came(tmp_path) -> None:
    path = write_un_file(tmp_path / "un.dcm")
    out = tmp_path / "out"
    with hsscp_storescp(out, workers=1, writers=1) as scp:
        ae = AE(ae_title="HSSCP-SCU")
        assoc = ae.associate(HOST, scp.port, contexts=[build_context(SC, EXPLICIT)])
        assert assoc.is_established
        status = assoc.send_c_store(path)
        assoc.release()
        assert scp.stop() == 0
    assert status.Status == 0x0000, status
    (stored,) = stored_files(out).values()
    assert dataset_of(stored) == un_encoded_dataset()
    assert dcmread(stored).file_meta.MediaStorageSOPInstanceUID == UN_SOP_INSTANCE
