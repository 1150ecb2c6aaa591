"""Real SCUs (DCMTK, pynetdicom) against an hsscp SCP over loopback, checked byte for byte."""

from __future__ import annotations

import subprocess
import threading

import pytest
from pydicom import dcmread
from pynetdicom import AE as PynetdicomAE
from pynetdicom import build_context as pynetdicom_context

from hsscp import pdu

from .peers import dcmtk_env, require_binary
from .recorder import RecordingProxy
from .scp_fixtures import (
    SAMPLE_FILES,
    dataset_bytes,
    datasets_sent,
    running_scp,
    sample_path,
    storage_ae,
)
from .tls_certs import make_pki

pytestmark = pytest.mark.interop
VERIFICATION = "1.2.840.10008.1.1"


def dcmtk(tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_binary(tool), *args], env=dcmtk_env(), capture_output=True, text=True, timeout=timeout
    )


def test_dcmtk_echoscu():
    with running_scp() as (_, port, received):
        result = dcmtk("echoscu", "-aec", "HSSCP", "127.0.0.1", str(port))
        assert result.returncode == 0, result.stderr
        assert received.echoes == 1


# storescu proposes uncompressed transfer syntaxes unless told which other one to offer.
STORESCU_RUNS = {
    "uncompressed-R": (["-R"], ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "rtplan.dcm"]),
    "uncompressed-128-contexts": ([], ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm"]),
    "deflated": (["-R", "-xd"], ["image_dfl.dcm"]),
    "jpeg2000": (["-R", "-xw"], ["JPEG2000.dcm"]),
    "rle": (["-R", "-xr"], ["SC_rgb_rle.dcm"]),
}


@pytest.mark.parametrize("flags, names", STORESCU_RUNS.values(), ids=STORESCU_RUNS.keys())
def test_dcmtk_storescu_files_arrive_as_sent(flags, names):
    paths = [sample_path(name) for name in names]
    with running_scp() as (_, port, received), RecordingProxy(port) as proxy:
        result = dcmtk("storescu", *flags, "-aec", "HSSCP", "127.0.0.1", str(proxy.port), *paths)
        assert result.returncode == 0, result.stderr
        proxy.wait_closed()
    sent = datasets_sent(proxy.pdus)
    assert len(sent) == len(paths)
    assert [data for _, data in received.stores] == sent
    assert [uid for uid, _ in received.stores] == [dcmread(path).SOPInstanceUID for path in paths]


def test_dcmtk_storescu_many_instances_at_16k_pdu():
    path = sample_path("MR_small.dcm")
    with running_scp() as (ae, port, received), RecordingProxy(port) as proxy:
        ae.maximum_pdu_size = 16384
        result = dcmtk("storescu", "-R", "--max-pdu", "16384", "127.0.0.1", str(proxy.port), *[path] * 20)
        assert result.returncode == 0, result.stderr
        proxy.wait_closed()
    sent = datasets_sent(proxy.pdus)
    assert len(sent) == 20 and [data for _, data in received.stores] == sent
    assert all(len(data) <= 16384 + 6 for direction, data in proxy.pdus if direction == "rq")


def test_dcmtk_sees_a_failure_status():
    with running_scp() as (_, port, received):
        received.status = 0xA700
        result = dcmtk("storescu", "-v", "-R", "127.0.0.1", str(port), sample_path("CT_small.dcm"))
    assert "Refused: OutOfResources" in result.stdout + result.stderr


def test_pynetdicom_scu_echo_and_store():
    paths = [sample_path(name) for name in SAMPLE_FILES]
    datasets = [dcmread(path) for path in paths]
    with running_scp() as (_, port, received), RecordingProxy(port) as proxy:
        scu = PynetdicomAE(ae_title="PYNETDICOM")
        scu.add_requested_context(VERIFICATION)
        for ds in datasets:
            scu.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = scu.associate("127.0.0.1", proxy.port, ae_title="HSSCP")
        assert assoc.is_established
        try:
            assert assoc.send_c_echo().Status == 0
            for ds in datasets:
                assert assoc.send_c_store(ds).Status == 0
        finally:
            assoc.release()
        proxy.wait_closed()
    assert received.echoes == 1
    # pynetdicom re-encodes what it sends: compare with what went over the wire.
    assert [data for _, data in received.stores] == datasets_sent(proxy.pdus)
    assert [uid for uid, _ in received.stores] == [ds.SOPInstanceUID for ds in datasets]


def reject_codes(port: int, run_peer) -> tuple[int, int, int]:
    """Run a peer through a recording proxy; return the A-ASSOCIATE-RJ it got."""
    with RecordingProxy(port) as proxy:
        run_peer(proxy.port)
        proxy.wait_closed()
        rejections = [pdu.decode_pdu(data) for direction, data in proxy.pdus if data[0] == 3]
    (rj,) = rejections
    return rj.result, rj.source, rj.reason


def test_called_ae_title_not_recognised():
    ae = storage_ae("HSSCP")
    ae.require_called_aet = True
    with running_scp(ae) as (_, port, _received):
        result = dcmtk("echoscu", "-aec", "WRONG", "127.0.0.1", str(port))
        assert result.returncode != 0
        assert "Called AE Title Not Recognized" in result.stderr + result.stdout
        codes = reject_codes(port, lambda p: dcmtk("echoscu", "-aec", "WRONG", "127.0.0.1", str(p)))
        assert codes == (1, 1, 7)


def test_calling_ae_title_not_recognised():
    ae = storage_ae()
    ae.require_calling_aet = [b"ALLOWED"]
    with running_scp(ae) as (_, port, received):
        result = dcmtk("echoscu", "-aet", "INTRUDER", "127.0.0.1", str(port))
        assert "Calling AE Title Not Recognized" in result.stderr + result.stdout
        assert dcmtk("echoscu", "-aet", "ALLOWED", "127.0.0.1", str(port)).returncode == 0
        codes = reject_codes(port, lambda p: dcmtk("echoscu", "-aet", "INTRUDER", "127.0.0.1", str(p)))
        assert codes == (1, 1, 3)
        assert received.echoes == 1


def test_maximum_associations_rejects_transiently_with_local_limit_exceeded():
    ae = storage_ae()
    ae.maximum_associations = 1
    with running_scp(ae) as (_, port, _received):
        holder = PynetdicomAE()
        holder.add_requested_context(VERIFICATION)
        held = holder.associate("127.0.0.1", port)
        assert held.is_established
        try:
            second = holder.associate("127.0.0.1", port)
            assert second.is_rejected
            result = dcmtk("echoscu", "127.0.0.1", str(port))
            assert "Local Limit Exceeded" in result.stderr + result.stdout
            codes = reject_codes(port, lambda p: dcmtk("echoscu", "127.0.0.1", str(p)))
            assert codes == (2, 3, 2)
        finally:
            held.release()
        # The slot comes back once the holder has gone.
        for _ in range(50):
            if dcmtk("echoscu", "127.0.0.1", str(port)).returncode == 0:
                break
            threading.Event().wait(0.05)
        else:
            pytest.fail("the association slot was not given back")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_tls_with_dcmtk(pki):
    with running_scp(ssl_context=pki.server_context()) as (_, port, received):
        result = dcmtk("storescu", "+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca_cert),
                       "-R", "127.0.0.1", str(port), sample_path("CT_small.dcm"))
        assert result.returncode == 0, result.stderr
        plain = dcmtk("echoscu", "127.0.0.1", str(port), timeout=30)
        assert plain.returncode != 0  # no TLS, no association
    assert [uid for uid, _ in received.stores] == [dataset_bytes(sample_path("CT_small.dcm"))[0]]


def test_mutual_tls_refuses_a_client_without_a_certificate(pki):
    with running_scp(ssl_context=pki.server_context(verify_client=True)) as (_, port, received):
        anonymous = dcmtk("echoscu", "+tla", "+cf", str(pki.ca_cert), "127.0.0.1", str(port), timeout=30)
        assert anonymous.returncode != 0
        with_cert = dcmtk("echoscu", "+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca_cert),
                          "127.0.0.1", str(port))
        assert with_cert.returncode == 0, with_cert.stderr
    assert received.echoes == 1


def test_pynetdicom_scu_over_tls(pki):
    with running_scp(ssl_context=pki.server_context()) as (_, port, received):
        scu = PynetdicomAE()
        scu.add_requested_context(VERIFICATION)
        assoc = scu.associate("127.0.0.1", port, tls_args=(pki.client_context(), "localhost"))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
    assert received.echoes == 1


def test_requested_role_and_async_window_are_answered():
    ae = storage_ae()
    ae.add_supported_context("1.2.840.10008.5.1.4.1.1.2", scu_role=False, scp_role=True)
    with running_scp(ae) as (_, port, _received):
        from pynetdicom.pdu_primitives import (
            AsynchronousOperationsWindowNegotiation,
            SCP_SCU_RoleSelectionNegotiation,
        )

        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2"
        role.scu_role, role.scp_role = True, True
        window = AsynchronousOperationsWindowNegotiation()
        window.maximum_number_operations_invoked = 5
        window.maximum_number_operations_performed = 5
        scu = PynetdicomAE()
        scu.add_requested_context("1.2.840.10008.5.1.4.1.1.2", pynetdicom_context("1.2.840.10008.1.2").transfer_syntax)
        with RecordingProxy(port) as proxy:
            assoc = scu.associate("127.0.0.1", proxy.port, ext_neg=[role, window])
            assert assoc.is_established
            assoc.release()
            proxy.wait_closed()
            (ac,) = [pdu.decode_pdu(data) for _, data in proxy.pdus if data[0] == 2]
    (reply,) = ac.user_information.role_selections
    assert (reply.scu_role, reply.scp_role) == (0, 1)  # the SCU role was not allowed
    assert ac.user_information.async_operations_window is not None


def test_without_a_store_handler_the_answer_is_c211():
    ae = storage_ae()
    server = ae.start_server(("127.0.0.1", 0), block=False)  # no EVT_C_STORE handler bound
    try:
        scu = PynetdicomAE()
        ds = dcmread(sample_path("CT_small.dcm"))
        scu.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        scu.add_requested_context(VERIFICATION)
        assoc = scu.associate("127.0.0.1", server.server_address[1])
        assert assoc.send_c_echo().Status == 0x0000  # C-ECHO answers Success by default
        assert assoc.send_c_store(ds).Status == 0xC211
        assoc.release()
    finally:
        ae.shutdown()


def test_a_stalled_tls_handshake_does_not_hold_up_others(pki):
    import socket
    import time

    with running_scp(ssl_context=pki.server_context()) as (_, port, received):
        stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]  # never say hello
        try:
            started = time.monotonic()
            scu = PynetdicomAE()
            scu.add_requested_context(VERIFICATION)
            assoc = scu.associate("127.0.0.1", port, tls_args=(pki.client_context(), "localhost"))
            assert assoc.is_established and assoc.send_c_echo().Status == 0
            assoc.release()
            assert time.monotonic() - started < 5
        finally:
            for sock in stalled:
                sock.close()
    assert received.echoes == 1
