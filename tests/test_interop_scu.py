"""The hsscp SCU against DCMTK's storescp: what DCMTK stores is what the files held.

storescp runs bit-preserving (``+B``), so each file it writes holds the
data set bytes exactly as they arrived. DCMTK missing is a failure, not a skip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import UID, ImplicitVRLittleEndian

from hsscp import AE
from hsscp.part10 import read_file_meta
from hsscp.presentation import build_context
from hsscp.scu_datasets import encode_dataset
from hsscp.uid import VERIFICATION_SOP_CLASS

from .peers import HOST, dcmtk_env, free_port, require_binary, running

pytestmark = pytest.mark.interop

# Several SOP classes and transfer syntaxes, native and compressed, one of them deflated.
FILES = [
    "CT_small.dcm",  # CT, Explicit VR Little Endian
    "MR_small_implicit.dcm",  # MR, Implicit VR Little Endian
    "MR_small_bigendian.dcm",  # MR, Explicit VR Big Endian
    "rtplan.dcm",  # RT Plan, Implicit VR Little Endian
    "waveform_ecg.dcm",  # 12-lead ECG, Explicit VR Little Endian, 290 KB
    "image_dfl.dcm",  # Secondary Capture, Deflated Explicit VR Little Endian
    "SC_rgb_rle.dcm",  # Secondary Capture, RLE Lossless
    "SC_rgb_jpeg_dcmtk.dcm",  # Secondary Capture, JPEG Baseline
    "JPEG2000.dcm",  # Secondary Capture, JPEG 2000
]
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"


def local_ae() -> AE:
    ae = AE(ae_title="HSSCP-SCU")
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 10, 10, 20
    return ae


def split(path: Path) -> tuple:
    """(meta, data set bytes) of a Part 10 file."""
    with open(path, "rb") as stream:
        meta = read_file_meta(stream)
        return meta, stream.read()


def as_sent(path) -> bytes:
    """A file's data set bytes, plus the NUL a deflated stream of odd length is padded with."""
    meta, data = split(path)
    if UID(meta.transfer_syntax).is_deflated and len(data) % 2:
        return data + b"\0"  # PS3.5 A.5 (image_dfl.dcm lacks it)
    return data


def stored_files(directory: Path) -> dict:
    """Files storescp wrote, by (SOP instance UID, transfer syntax): test files share UIDs."""
    stored = {}
    for path in directory.iterdir():
        meta = split(path)[0]
        stored[meta.sop_instance_uid, meta.transfer_syntax] = path
    return stored


def assert_dcmdump_clean(path: Path) -> None:
    done = subprocess.run(
        [require_binary("dcmdump"), str(path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr


@pytest.fixture(params=[4096, 131072], ids=["pdu4096", "pdu131072"])
def storescp(request, tmp_path):
    """storescp on a free port, accepting every transfer syntax it knows; yields (port, directory)."""
    port, directory = free_port(), tmp_path / "stored"
    directory.mkdir()
    argv = [
        "storescp",
        "+xa",
        "+B",
        "+uf",
        "-aet",
        "STORESCP",
        "-pdu",
        str(request.param),
        "-od",
        str(directory),
        str(port),
    ]
    with running(argv, env=dcmtk_env(), ready_port=port) as proc:
        yield port, directory
        assert proc.poll() is None, "storescp exited while the test ran"


def test_echo_and_store_files(storescp):
    port, directory = storescp
    paths = [get_testdata_file(name) for name in FILES]
    metas = [split(path)[0] for path in paths]
    contexts = [build_context(VERIFICATION_SOP_CLASS)]
    contexts += [build_context(meta.sop_class_uid, meta.transfer_syntax) for meta in metas]

    assoc = local_ae().associate(HOST, port, contexts=contexts, ae_title="STORESCP")
    try:
        assert assoc.is_established, "storescp did not accept the association"
        assert len(assoc.accepted_contexts) == len(contexts)
        assert assoc.send_c_echo().Status == 0x0000
        for msg_id, path in enumerate(paths, start=1):
            status = assoc.send_c_store(path, msg_id=msg_id)
            assert status.Status == 0x0000, f"{path}: {status}"
        assoc.release()
        assert assoc.is_released
    finally:
        assoc.abort()

    stored = stored_files(directory)
    assert len(stored) == len(paths)
    for path, meta in zip(paths, metas, strict=True):
        copy = stored[meta.sop_instance_uid, meta.transfer_syntax]
        stored_meta, stored_bytes = split(copy)
        assert stored_meta.sop_class_uid == meta.sop_class_uid
        assert stored_bytes == as_sent(path), f"{Path(path).name} differs once stored"
        assert_dcmdump_clean(copy)


def test_store_a_dataset_encoded_for_the_accepted_syntax(storescp):
    port, directory = storescp
    dataset = dcmread(get_testdata_file("MR_small.dcm"))  # Explicit VR Little Endian
    contexts = [build_context(MR_IMAGE, ImplicitVRLittleEndian)]
    assoc = local_ae().associate(HOST, port, contexts=contexts, ae_title="STORESCP")
    try:
        assert assoc.is_established
        assert assoc.send_c_store(dataset).Status == 0x0000
        assoc.release()
    finally:
        assoc.abort()
    copy = stored_files(directory)[dataset.SOPInstanceUID, ImplicitVRLittleEndian]
    stored_bytes = split(copy)[1]
    assert stored_bytes == encode_dataset(dataset, ImplicitVRLittleEndian)
    assert_dcmdump_clean(copy)
