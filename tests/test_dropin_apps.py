"""pynetdicom's bundled apps (``python -m pynetdicom echoscu|storescu``) against hsscp's SCP.

The apps are pynetdicom's own requestors, run as their users run them; the
hsscp server is started through the pynetdicom-shaped API, in-process and
with worker processes.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from hsscp import AE, AllStoragePresentationContexts, VerificationPresentationContexts, evt

from .datagen import stored_files
from .peers import HOST, free_port

FILES = ["CT_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm"]


def _app(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pynetdicom", *args], capture_output=True, text=True, timeout=60)


def _scp_ae() -> AE:
    ae = AE(ae_title="ANY-SCP")
    ae.supported_contexts = [*VerificationPresentationContexts, *AllStoragePresentationContexts]
    return ae


def test_echoscu_is_answered_by_an_in_process_server() -> None:
    echoes = []
    ae = _scp_ae()
    server = ae.start_server((HOST, 0), block=False, evt_handlers=[(evt.EVT_C_ECHO, lambda e: echoes.append(1) or 0)])
    try:
        done = _app("echoscu", HOST, str(server.server_address[1]), "-v")
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert echoes == [1]
    assert "Received Echo Response (Status: 0x0000 - Success)" in done.stderr


def test_storescu_stores_through_a_pynetdicom_style_handler() -> None:
    received = {}

    def handle_store(event):
        received[event.request.affected_sop_instance_uid, str(event.context.transfer_syntax)] = (
            event.encoded_dataset(include_meta=False)
        )
        return 0x0000

    server = _scp_ae().start_server((HOST, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    try:
        paths = [get_testdata_file(name) for name in FILES]
        done = _app("storescu", HOST, str(server.server_address[1]), *paths, "-v")
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("Received Store Response (Status: 0x0000 - Success)") == len(FILES)
    assert len(received) == len(FILES)


@pytest.mark.parametrize("app", ["echoscu", "storescu"])
def test_the_apps_against_a_server_with_workers(app, tmp_path) -> None:
    port = free_port()
    server = _scp_ae().start_server((HOST, port), block=False, workers=2, output_directory=str(tmp_path))
    try:
        paths = [get_testdata_file(name) for name in FILES]
        done = _app("echoscu", HOST, str(port)) if app == "echoscu" else _app("storescu", HOST, str(port), *paths)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    if app == "storescu":
        stored = stored_files(tmp_path)
        assert len(stored) == len(FILES)
        for path in paths:
            # pynetdicom's storescu decodes each file and encodes it again: the same data set arrives.
            source = dcmread(path)
            assert dcmread(stored[source.SOPInstanceUID]) == source
