"""pynetdicom handler code on an hsscp server: pynetdicom's request names, its idioms, its SCU as the peer."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import UID
from pynetdicom import AE as PynetdicomAE
from pynetdicom.dimse_primitives import C_ECHO, C_STORE

from hsscp import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    VerificationPresentationContexts,
    evt,
)
from hsscp.dimse import CEchoRQ, CEchoRSP, CStoreRQ, CStoreRSP

from .datagen import dataset_of

# Ten real files of different classes and transfer syntaxes (implicit, explicit little and big
# endian, JPEG 2000, JPEG baseline, RLE), each with its own SOP Instance UID.
FILES = [
    "CT_small.dcm", "MR_small_bigendian.dcm", "rtplan.dcm", "rtdose.dcm", "JPEG2000.dcm",
    "reportsi.dcm", "SC_rgb_rle.dcm", "examples_ybr_color.dcm", "liver_1frame.dcm", "waveform_ecg.dcm",
]

CT = "1.2.840.10008.5.1.4.1.1.2"


def _pynetdicom_store(**values) -> C_STORE:
    primitive = C_STORE()
    for name, value in values.items():
        setattr(primitive, name, value)
    return primitive


def _same(ours, theirs, names) -> None:
    for name in names:
        mine, expected = getattr(ours, name), getattr(theirs, name)
        assert mine == expected, name
        assert type(mine) is type(expected), name


def test_store_request_has_pynetdicoms_names_and_types() -> None:
    ours = CStoreRQ(7, CT, "1.2.3.4", 1, "MOVESCU", 12)
    theirs = _pynetdicom_store(
        MessageID=7, AffectedSOPClassUID=CT, AffectedSOPInstanceUID="1.2.3.4", Priority=1,
        MoveOriginatorApplicationEntityTitle="MOVESCU", MoveOriginatorMessageID=12,
    )
    _same(ours, theirs, ["MessageID", "AffectedSOPClassUID", "AffectedSOPInstanceUID", "Priority",
                         "MoveOriginatorApplicationEntityTitle", "MoveOriginatorMessageID"])
    bare = CStoreRQ(1, CT, "1.2.3.4")
    assert bare.MoveOriginatorApplicationEntityTitle is None and bare.MoveOriginatorMessageID is None
    assert bare.AffectedSOPClassUID.name == "CT Image Storage"
    with pytest.raises(AttributeError):
        bare.MessageID = 2  # read-only, like the command itself


def test_store_response_has_pynetdicoms_names_and_types() -> None:
    ours = CStoreRSP(7, 0xA700, CT, "1.2.3.4", "disk full", [0x00100010])
    theirs = _pynetdicom_store(MessageIDBeingRespondedTo=7, Status=0xA700, AffectedSOPClassUID=CT,
                               AffectedSOPInstanceUID="1.2.3.4", ErrorComment="disk full")
    _same(ours, theirs, ["MessageIDBeingRespondedTo", "Status", "AffectedSOPClassUID",
                         "AffectedSOPInstanceUID", "ErrorComment"])
    assert ours.OffendingElement == [0x00100010] and ours.OffendingElement[0].group == 0x0010
    empty = CStoreRSP(7)
    assert (empty.AffectedSOPClassUID, empty.AffectedSOPInstanceUID, empty.ErrorComment) == (None, None, None)


def test_echo_commands_have_pynetdicoms_names_and_types() -> None:
    theirs = C_ECHO()
    theirs.MessageID, theirs.AffectedSOPClassUID = 3, "1.2.840.10008.1.1"
    _same(CEchoRQ(3), theirs, ["MessageID", "AffectedSOPClassUID"])
    theirs = C_ECHO()
    theirs.MessageIDBeingRespondedTo, theirs.Status, theirs.AffectedSOPClassUID = 3, 0, "1.2.840.10008.1.1"
    _same(CEchoRSP(3), theirs, ["MessageIDBeingRespondedTo", "Status", "AffectedSOPClassUID"])


# -- a pynetdicom SCU, an hsscp server, handlers in pynetdicom's documented idioms -------


def handle_store_with_pydicom(event, folder: Path) -> int:
    """pynetdicom's "Storage SCP" example, with its request attributes."""
    request = event.request
    if not isinstance(request.AffectedSOPInstanceUID, UID) or type(request.MessageID) is not int:
        return 0xC001
    ds = event.dataset
    ds.file_meta = event.file_meta
    ds.save_as(folder / f"{request.AffectedSOPInstanceUID}.dcm", enforce_file_format=True)
    _note(event, folder)
    return 0x0000


def handle_store_encoded(event, folder: Path) -> int:
    """pynetdicom's faster idiom: the encoded data set behind its file meta, as received."""
    with open(folder / f"{event.request.AffectedSOPInstanceUID}.dcm", "wb") as f:
        f.write(event.encoded_dataset())
    _note(event, folder)
    return 0x0000


def _note(event, folder: Path) -> None:
    request = event.request
    note = {"MessageID": request.MessageID, "Priority": request.Priority,
            "AffectedSOPClassUID": str(request.AffectedSOPClassUID),
            "MoveOriginatorApplicationEntityTitle": request.MoveOriginatorApplicationEntityTitle}
    (folder / f"{request.AffectedSOPInstanceUID}.json").write_text(json.dumps(note))


def _scp_ae() -> AE:
    ae = AE("HSSCP")
    ae.supported_contexts = VerificationPresentationContexts
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    return ae


def _send_with_pynetdicom(port: int, paths: list[str]) -> list[int]:
    """The status of each file, sent by pynetdicom as the file's own bytes."""
    scu = PynetdicomAE(ae_title="PYNETDICOM")
    for path in paths:
        meta = dcmread(path, stop_before_pixels=True)
        scu.add_requested_context(meta.SOPClassUID, meta.file_meta.TransferSyntaxUID)
    assoc = scu.associate("127.0.0.1", port, ae_title="HSSCP")
    assert assoc.is_established
    try:
        return [assoc.send_c_store(path, msg_id=100 + i).Status for i, path in enumerate(paths)]
    finally:
        assoc.release()


@pytest.fixture(autouse=True)
def quiet_pynetdicom():
    logger = logging.getLogger("pynetdicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "workers=2"])
@pytest.mark.parametrize("handler", [handle_store_with_pydicom, handle_store_encoded],
                         ids=["save_as", "encoded_dataset"])
def test_pynetdicom_scu_stores_ten_files_through_a_pynetdicom_style_handler(tmp_path, workers, handler) -> None:
    paths = [get_testdata_file(name, download=False) for name in FILES]
    assert all(paths), "pydicom's bundled test files are missing"
    folder = tmp_path / "stored"
    folder.mkdir()
    ae = _scp_ae()
    server = ae.start_server(("127.0.0.1", 0), block=False, workers=workers,
                             evt_handlers=[(evt.EVT_C_STORE, handler, [folder])])
    try:
        statuses = _send_with_pynetdicom(server.server_address[1], paths)
    finally:
        ae.shutdown()
    assert statuses == [0x0000] * len(FILES)

    message_ids = []
    for path in paths:
        sent = dcmread(path)
        stored_path = folder / f"{sent.SOPInstanceUID}.dcm"
        stored = dcmread(stored_path)
        assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert stored == sent  # every element of the data set, as sent
        if handler is handle_store_encoded:
            assert dataset_of(stored_path) == dataset_of(path)  # byte for byte
        note = json.loads((folder / f"{sent.SOPInstanceUID}.json").read_text())
        assert note["AffectedSOPClassUID"] == sent.SOPClassUID
        assert note["Priority"] == 2  # pynetdicom's default, low
        assert note["MoveOriginatorApplicationEntityTitle"] is None
        message_ids.append(note["MessageID"])
    assert message_ids == list(range(100, 100 + len(FILES)))


def test_build_role_negotiates_roles_with_a_pynetdicom_acceptor() -> None:
    from hsscp import build_role

    scp = PynetdicomAE(ae_title="PYNETDICOM")
    scp.add_supported_context(CT, scu_role=True, scp_role=True)
    server = scp.start_server(("127.0.0.1", 0), block=False)
    try:
        scu = AE("HSSCP")
        scu.add_requested_context(CT)
        assoc = scu.associate("127.0.0.1", server.server_address[1], ae_title="PYNETDICOM",
                              ext_neg=[build_role(CT, scu_role=True, scp_role=True)])
        assert assoc.is_established
        (context,) = assoc.accepted_contexts
        assoc.release()
    finally:
        scp.shutdown()
    assert (context.as_scu, context.as_scp) == (True, True)
