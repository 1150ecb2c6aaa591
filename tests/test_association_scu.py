"""The blocking SCU (``hsscp.association``) against a pynetdicom SCP running in this process."""

from __future__ import annotations

import contextlib
import io
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pynetdicom import AE as PynetdicomAE
from pynetdicom import ALL_TRANSFER_SYNTAXES
from pynetdicom import evt as pynetdicom_evt

from hsscp import AE, dimse, events, items, pdu, scu_datasets, scu_services
from hsscp.association import Association, open_association
from hsscp.engine import Engine, Role
from hsscp.indications import AssociationRequested, MessageReceived, ReleaseConfirmed
from hsscp.part10 import read_file_meta
from hsscp.presentation import build_context
from hsscp.transport import BlockingTransport
from hsscp.uid import VERIFICATION_SOP_CLASS

from .engine_pair import accept_all
from .peers import HOST, free_port
from .tls_certs import make_pki

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
TEST_FILES = ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm"]


def local_ae(**settings) -> AE:
    """hsscp's AE with short timeouts, so a test that goes wrong fails quickly."""
    ae = AE(ae_title=b"HSSCP-SCU")
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 5, 5, 10
    for name, value in settings.items():
        setattr(ae, name, value)
    return ae


@dataclass
class Peer:
    """A pynetdicom Storage SCP; ``reply`` is what its C-STORE handler returns."""

    port: int
    reply: Any = 0x0000
    delay: float = 0.0
    abort_in_handler: bool = False
    stored: list = field(default_factory=list)
    aborted: threading.Event = field(default_factory=threading.Event)
    requestors: list = field(default_factory=list)

    def on_store(self, event) -> Any:
        self.stored.append(
            (event.context.transfer_syntax, event.encoded_dataset(include_meta=False))
        )
        self.requestors.append((event.assoc.requestor.address, event.assoc.requestor.port))
        if self.delay:
            time.sleep(self.delay)
        if self.abort_in_handler:
            event.assoc.abort()
        return self.reply

    def on_abort(self, event) -> None:
        self.aborted.set()


@contextlib.contextmanager
def pynetdicom_scp(**options):
    """A pynetdicom SCP for verification, CT, MR and SC in every transfer syntax it knows."""
    ae = PynetdicomAE(ae_title="STORE-SCP")
    ae.require_called_aet = options.pop("require_called_aet", False)
    ae.maximum_pdu_size = options.pop("maximum_pdu_size", 16382)
    ssl_context = options.pop("ssl_context", None)
    ae.add_supported_context(VERIFICATION_SOP_CLASS)
    for sop_class in (CT_IMAGE, MR_IMAGE, SECONDARY_CAPTURE):
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    peer = Peer(free_port(), **options)
    handlers = [
        (pynetdicom_evt.EVT_C_STORE, peer.on_store),
        (pynetdicom_evt.EVT_ABORTED, peer.on_abort),
    ]
    server = ae.start_server(
        (HOST, peer.port), block=False, evt_handlers=handlers, ssl_context=ssl_context
    )
    try:
        yield peer
    finally:
        server.shutdown()


def file_contexts(names=TEST_FILES) -> list:
    """One context per file: its own SOP class and transfer syntax."""
    contexts = [build_context(VERIFICATION_SOP_CLASS)]
    for name in names:
        meta = file_meta(name)
        contexts.append(build_context(meta.sop_class_uid, meta.transfer_syntax))
    return contexts


def file_meta(name: str):
    with open(get_testdata_file(name), "rb") as stream:
        return read_file_meta(stream)


def dataset_bytes(path) -> bytes:
    with open(path, "rb") as stream:
        read_file_meta(stream)
        return stream.read()


def associate(peer: Peer, contexts, ae: AE | None = None, **kwargs) -> Association:
    return (ae or local_ae()).associate(HOST, peer.port, contexts=contexts, **kwargs)


@contextlib.contextmanager
def established(peer: Peer, contexts, ae: AE | None = None, **kwargs):
    assoc = associate(peer, contexts, ae, **kwargs)
    try:
        assert assoc.is_established
        yield assoc
    finally:
        assoc.abort()


def test_echo_store_files_and_datasets_then_release():
    ae = local_ae()
    with pynetdicom_scp() as peer:
        assoc = associate(peer, file_contexts(), ae, ae_title="STORE-SCP")
        assert assoc.is_established and not (
            assoc.is_rejected or assoc.is_aborted or assoc.is_released
        )
        assert ae.active_associations == [assoc]
        assert [cx.context_id for cx in assoc.accepted_contexts] == [1, 3, 5, 7, 9]
        assert assoc.rejected_contexts == []
        assert assoc.requestor.ae_title == "HSSCP-SCU" and assoc.acceptor.ae_title == "STORE-SCP"
        assert assoc.acceptor.maximum_length == 16382 and assoc.acceptor.port == peer.port
        assert assoc.acceptor.implementation_class_uid  # pynetdicom's
        assert (assoc.acse_timeout, assoc.dimse_timeout, assoc.network_timeout) == (5, 5, 10)

        status = assoc.send_c_echo(msg_id=7)
        assert status.Status == 0x0000 and "ErrorComment" not in status

        for index, name in enumerate(TEST_FILES):
            path = get_testdata_file(name)
            status = assoc.send_c_store(path, msg_id=index + 1)
            assert status.Status == 0x0000
            assert status.AffectedSOPInstanceUID == file_meta(name).sop_instance_uid
            syntax, received = peer.stored[-1]
            assert syntax == file_meta(name).transfer_syntax
            assert received == dataset_bytes(path)  # streamed exactly as in the file

        dataset = dcmread(get_testdata_file("CT_small.dcm"))
        assert assoc.send_c_store(dataset, msg_id=9).Status == 0x0000
        assert peer.stored[-1][1] == dataset_bytes(get_testdata_file("CT_small.dcm"))

        assoc.release()
        assert assoc.is_released and not assoc.is_established and not assoc.is_aborted
        assert ae.active_associations == []
        with pytest.raises(RuntimeError, match="must be established"):
            assoc.send_c_echo()


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian])
def test_a_dataset_is_encoded_in_the_accepted_transfer_syntax(syntax):
    # MR_small.dcm is Explicit VR Little Endian; only another syntax is proposed.
    dataset = dcmread(get_testdata_file("MR_small.dcm"))
    with pynetdicom_scp() as peer, established(peer, [build_context(MR_IMAGE, syntax)]) as assoc:
        assert assoc.send_c_store(dataset).Status == 0x0000
        received_syntax, received = peer.stored[-1]
        assert received_syntax == syntax
        decoded = events.decode_dataset(received, received_syntax)
        assert decoded.SOPInstanceUID == dataset.SOPInstanceUID
        assert decoded.PixelData == dataset.PixelData
        assert decoded.PatientName == dataset.PatientName


def test_a_file_without_a_context_of_its_own_syntax_is_re_encoded_where_pynetdicom_would():
    contexts = [
        build_context(CT_IMAGE, ImplicitVRLittleEndian),
        build_context(MR_IMAGE, ExplicitVRLittleEndian),
        build_context(SECONDARY_CAPTURE, ExplicitVRLittleEndian),
        build_context(VERIFICATION_SOP_CLASS),
    ]
    with pynetdicom_scp() as peer, established(peer, contexts) as assoc:
        ct = get_testdata_file("CT_small.dcm")  # Explicit VR LE, only Implicit VR LE accepted
        assert assoc.send_c_store(ct).Status == 0x0000
        syntax, received = peer.stored[-1]
        assert syntax == ImplicitVRLittleEndian
        assert events.decode_dataset(received, syntax) == dcmread(ct)  # the same data set, re-encoded
        # Big endian converts to no little endian syntax, as in pynetdicom: nothing is sent.
        with pytest.raises(ValueError, match="No presentation context for 'MR Image Storage'"):
            assoc.send_c_store(get_testdata_file("MR_small_bigendian.dcm"))
        with pytest.raises(ValueError, match="'Secondary Capture Image Storage'.*'JPEG Baseline"):
            assoc.send_c_store(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))  # compressed: never converted
        with pytest.raises(ValueError, match="No presentation context"):
            assoc.send_c_store(dcmread(get_testdata_file("MR_small_bigendian.dcm")))
        # Nothing was sent: the association goes on.
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        assert assoc.is_released


def test_called_ae_title_not_recognised_is_a_rejection():
    ae = local_ae()
    with pynetdicom_scp(require_called_aet=True) as peer:
        assoc = associate(peer, file_contexts(), ae, ae_title="SOMEONE-ELSE")
        assert assoc.is_rejected and not assoc.is_established and not assoc.is_aborted
        assert assoc.rejection == (1, 1, 7)
        assert ae.active_associations == [] and assoc.transport is None


def test_a_contexts_the_peer_refuses_are_reported_as_rejected():
    contexts = [
        build_context(VERIFICATION_SOP_CLASS),
        build_context("1.2.840.10008.5.1.4.1.1.481.1"),
    ]
    with pynetdicom_scp() as peer, established(peer, contexts) as assoc:
        assert [cx.abstract_syntax for cx in assoc.accepted_contexts] == [VERIFICATION_SOP_CLASS]
        (refused,) = assoc.rejected_contexts
        assert refused.context_id == 3 and refused.result == 3  # abstract syntax not supported


def test_nothing_listening_leaves_an_aborted_association():
    ae = local_ae()
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    assoc = open_association(ae, HOST, free_port())
    assert assoc.is_aborted and not assoc.is_established and not assoc.is_rejected
    assert assoc.accepted_contexts == [] and ae.active_associations == []
    with pytest.raises(RuntimeError):
        assoc.send_c_echo()
    assoc.release()
    assoc.abort()  # both harmless now


def test_abort_tells_the_peer():
    ae = local_ae()
    with pynetdicom_scp() as peer:
        assoc = associate(peer, file_contexts(), ae)
        assoc.abort()
        assert assoc.is_aborted and not assoc.is_established and not assoc.is_released
        assert ae.active_associations == [] and assoc.transport is None
        assert peer.aborted.wait(5)


def test_the_peers_failure_status_is_returned():
    with pynetdicom_scp(reply=0xA700) as peer, established(peer, file_contexts()) as assoc:
        status = assoc.send_c_store(get_testdata_file("CT_small.dcm"))
        assert status.Status == 0xA700 and assoc.is_established

        reply = Dataset()
        reply.Status = 0xC000
        reply.ErrorComment = "cannot understand"
        reply.OffendingElement = [0x00100010]
        peer.reply = reply
        status = assoc.send_c_store(get_testdata_file("MR_small.dcm"), msg_id=2)
        assert status.Status == 0xC000
        assert status.ErrorComment == "cannot understand"
        assert status.OffendingElement == 0x00100010


def test_no_response_within_the_dimse_timeout_aborts():
    ae = local_ae(dimse_timeout=0.3)
    with pynetdicom_scp(delay=1.5) as peer:
        assoc = associate(peer, file_contexts(), ae)
        started = time.monotonic()
        status = assoc.send_c_store(get_testdata_file("CT_small.dcm"))
        assert status == Dataset() and len(status) == 0
        assert time.monotonic() - started < 1.4
        assert assoc.is_aborted and not assoc.is_established and ae.active_associations == []


def test_the_peer_aborting_ends_the_wait_for_a_response():
    with pynetdicom_scp(abort_in_handler=True) as peer:
        assoc = associate(peer, file_contexts())
        status = assoc.send_c_store(get_testdata_file("CT_small.dcm"))
        assert len(status) == 0
        assert assoc.is_aborted and not assoc.is_established
        assert assoc.abort_indication.by_peer


def test_a_large_file_is_read_and_sent_in_chunks(tmp_path, monkeypatch):
    path = tmp_path / "large.dcm"
    dataset = dcmread(get_testdata_file("CT_small.dcm"))
    dataset.SOPClassUID = SECONDARY_CAPTURE
    dataset.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.PixelData = bytes(range(256)) * (3 * 1024 * 4)  # 3 MiB
    dataset.Rows, dataset.Columns = 1536, 1024
    dataset.save_as(path, enforce_file_format=True)

    reads = []
    real_open = open

    def spying_open(*args, **kwargs):
        stream = real_open(*args, **kwargs)
        return _ReadSpy(stream, stream.read, reads)

    monkeypatch.setattr(scu_services, "open", spying_open, raising=False)
    contexts = [build_context(SECONDARY_CAPTURE, ExplicitVRLittleEndian)]
    with pynetdicom_scp(maximum_pdu_size=8192) as peer, established(peer, contexts) as assoc:
        assert assoc.send_c_store(path).Status == 0x0000
        assert peer.stored[-1][1] == dataset_bytes(path)
    chunk_reads = [size for size in reads if size is not None and size > 64 * 1024]
    assert len(chunk_reads) >= 3 and max(chunk_reads) <= scu_datasets.STREAM_CHUNK_SIZE
    # Whole PDVs per chunk: 8192-byte PDUs carry 8186 value bytes.
    assert all(size % 8186 == 0 for size in chunk_reads)


def test_an_odd_deflated_stream_is_padded_to_even_length():
    # image_dfl.dcm's deflated data set is odd-length; PS3.5 A.5 wants one NUL of padding.
    path = get_testdata_file("image_dfl.dcm")
    original = dataset_bytes(path)
    assert len(original) % 2 == 1
    contexts = [build_context(SECONDARY_CAPTURE, DeflatedExplicitVRLittleEndian)]
    with pynetdicom_scp() as peer, established(peer, contexts) as assoc:
        assert assoc.send_c_store(path).Status == 0x0000
        syntax, received = peer.stored[-1]
        assert received == original + b"\0"
        assert (
            events.decode_dataset(received, syntax).SOPInstanceUID
            == file_meta("image_dfl.dcm").sop_instance_uid
        )


def test_read_chunks_refuses_a_file_shorter_than_its_data_set():
    stream = io.BytesIO(b"x" * 10)
    assert list(scu_datasets.read_chunks(stream, 10, 4)) == [b"xxxx", b"xxxx", b"xx"]
    stream.seek(0)
    assert list(scu_datasets.read_chunks(stream, 9, 4, pad=True))[-1] == b"x\0"
    stream.seek(0)
    with pytest.raises(ValueError, match="2 bytes short"):
        list(scu_datasets.read_chunks(stream, 12, 4))


def test_a_file_that_cannot_be_read_aborts_and_raises(tmp_path, monkeypatch):
    def failing_chunks(stream, length, size, pad=False):
        yield stream.read(size)
        raise OSError("disk gone")

    monkeypatch.setattr(scu_datasets, "read_chunks", failing_chunks)
    with pynetdicom_scp() as peer:
        assoc = associate(peer, file_contexts())
        with pytest.raises(OSError, match="disk gone"):
            assoc.send_c_store(get_testdata_file("CT_small.dcm"))
        assert assoc.is_aborted and not assoc.is_established
        assert peer.aborted.wait(5)


class _ReadSpy:
    def __init__(self, stream, read, reads) -> None:
        self._stream, self._read, self._reads = stream, read, reads

    def read(self, size=-1):
        self._reads.append(size)
        return self._read(size)

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stream.close()


def test_unlimited_maximum_pdu_both_ways():
    path = get_testdata_file("MR_small.dcm")
    with (
        pynetdicom_scp(maximum_pdu_size=0) as peer,
        established(peer, file_contexts(), max_pdu=0) as assoc,
    ):
        assert assoc.requestor.maximum_length == 0 and assoc.acceptor.maximum_length == 0
        assert assoc.send_c_store(path).Status == 0x0000
        assert peer.stored[-1][1] == dataset_bytes(path)


def test_bind_address_sets_the_local_port():
    local_port = free_port()
    with (
        pynetdicom_scp() as peer,
        established(peer, file_contexts(), bind_address=(HOST, local_port)) as assoc,
    ):
        assert (assoc.requestor.address, assoc.requestor.port) == (HOST, local_port)
        assert assoc.send_c_store(get_testdata_file("CT_small.dcm")).Status == 0
        assert peer.requestors[-1] == (HOST, local_port)


def test_requestor_events_in_order():
    seen = []

    def record(event):
        seen.append(event.event.name)
        if event.event.name in ("EVT_DIMSE_SENT", "EVT_DIMSE_RECV"):
            seen.append(type(event.message).__name__)
        if event.event.name in ("EVT_PDU_SENT", "EVT_PDU_RECV"):
            seen.append(type(event.pdu).__name__)

    names = [
        "EVT_CONN_OPEN",
        "EVT_REQUESTED",
        "EVT_ACCEPTED",
        "EVT_ESTABLISHED",
        "EVT_DIMSE_SENT",
        "EVT_DIMSE_RECV",
        "EVT_PDU_SENT",
        "EVT_PDU_RECV",
        "EVT_RELEASED",
        "EVT_CONN_CLOSE",
    ]
    handlers = [(getattr(events, name), record) for name in names]
    with pynetdicom_scp() as peer:
        assoc = associate(peer, file_contexts(), evt_handlers=handlers)
        assoc.send_c_echo()
        assoc.release()
    assert seen == [
        "EVT_CONN_OPEN",
        "EVT_PDU_SENT",
        "AAssociateRQ",
        "EVT_REQUESTED",
        "EVT_PDU_RECV",
        "AAssociateAC",
        "EVT_ACCEPTED",
        "EVT_ESTABLISHED",
        "EVT_PDU_SENT",
        "PDataTF",
        "EVT_DIMSE_SENT",
        "CEchoRQ",
        "EVT_PDU_RECV",
        "PDataTF",
        "EVT_DIMSE_RECV",
        "CEchoRSP",
        "EVT_PDU_SENT",
        "AReleaseRQ",
        "EVT_PDU_RECV",
        "AReleaseRP",
        "EVT_RELEASED",
        "EVT_CONN_CLOSE",
    ]


def test_pdu_events_follow_handlers_bound_and_unbound_on_a_live_association():
    seen = []

    def record(event):
        seen.append((event.event.name, type(event.pdu).__name__))

    with pynetdicom_scp() as peer:
        assoc = associate(peer, file_contexts())
        assoc.bind(events.EVT_PDU_SENT, record)
        assoc.bind(events.EVT_PDU_RECV, record)
        assert assoc.send_c_echo(msg_id=1).Status == 0x0000
        assoc.unbind(events.EVT_PDU_RECV, record)
        assert assoc.send_c_echo(msg_id=2).Status == 0x0000
        assoc.release()
    assert seen == [
        ("EVT_PDU_SENT", "PDataTF"),
        ("EVT_PDU_RECV", "PDataTF"),
        ("EVT_PDU_SENT", "PDataTF"),
        ("EVT_PDU_SENT", "AReleaseRQ"),
    ]


def test_pdu_sent_events_show_a_streamed_file_pdu_by_pdu():
    sent = []
    handlers = [(events.EVT_PDU_SENT, lambda event: sent.append(event.pdu))]
    path = get_testdata_file("CT_small.dcm")
    with pynetdicom_scp(maximum_pdu_size=4096) as peer:
        assoc = associate(peer, file_contexts(), evt_handlers=handlers)
        assert assoc.send_c_store(path).Status == 0x0000
        assoc.release()
    pdatas = [item for item in sent if isinstance(item, pdu.PDataTF)]
    values = [pdv for item in pdatas for pdv in item.pdvs if not pdv.is_command]
    assert len(values) > 1 and all(len(pdv.data) <= 4096 - 6 for pdv in values)
    assert b"".join(pdv.data for pdv in values) == dataset_bytes(path)
    assert [pdv.is_last for pdv in values] == [False] * (len(values) - 1) + [True]


def test_rejection_and_abort_events():
    seen = []
    handlers = [
        (events.EVT_REJECTED, lambda e: seen.append("rejected")),
        (events.EVT_ABORTED, lambda e: seen.append("aborted")),
    ]
    with pynetdicom_scp(require_called_aet=True) as peer:
        associate(peer, file_contexts(), ae_title="NOT-IT", evt_handlers=handlers)
        assert seen == ["rejected"]
        assoc = associate(peer, file_contexts(), ae_title="STORE-SCP", evt_handlers=handlers)
        assoc.abort()
        assoc.abort()
        assert seen == ["rejected", "aborted"]


def test_pynetdicom_style_arguments_are_checked_before_connecting():
    ae = local_ae()
    with pytest.raises(RuntimeError, match="At least one requested presentation context"):
        open_association(ae, HOST, 104)
    with pytest.raises(TypeError, match="'addr'"):
        open_association(ae, 104, 104, contexts=file_contexts())
    with pytest.raises(TypeError, match="'port'"):
        open_association(ae, HOST, "104", contexts=file_contexts())
    with pytest.raises(ValueError, match="AE title"):
        open_association(ae, HOST, 104, contexts=file_contexts(), ae_title="A" * 17)
    with pytest.raises(ValueError):
        Association(ae, "neither")
    acceptor = Association(ae, "acceptor")
    assert acceptor.is_acceptor and not acceptor.is_established and acceptor.transport is None


def test_message_id_and_priority_are_checked():
    with pynetdicom_scp() as peer, established(peer, file_contexts()) as assoc:
        with pytest.raises(ValueError, match="msg_id"):
            assoc.send_c_echo(msg_id=70000)
        with pytest.raises(ValueError, match="priority"):
            assoc.send_c_store(get_testdata_file("CT_small.dcm"), priority=3)
        status = assoc.send_c_store(
            get_testdata_file("CT_small.dcm"),
            msg_id=65535,
            priority=1,
            originator_aet="MOVER",
            originator_id=3,
        )
        assert status.Status == 0


def test_a_dataset_without_a_transfer_syntax_is_refused_like_pynetdicom():
    dataset = Dataset()
    dataset.SOPClassUID = CT_IMAGE
    dataset.SOPInstanceUID = generate_uid()
    with pynetdicom_scp() as peer, established(peer, file_contexts()) as assoc:
        with pytest.raises(AttributeError, match="Transfer Syntax UID"):
            assoc.send_c_store(dataset)
        with pytest.raises(AttributeError, match="SOPInstanceUID"):
            assoc.send_c_store(Dataset())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.mark.parametrize("mutual", [False, True], ids=["server-auth", "mutual"])
def test_tls(pki, mutual):
    server, client = pki.server_context(verify_client=mutual), pki.client_context(with_cert=mutual)
    with (
        pynetdicom_scp(ssl_context=server) as peer,
        established(peer, file_contexts(), tls_args=(client, "localhost")) as assoc,
    ):
        assert assoc.transport.is_tls
        assert assoc.send_c_echo().Status == 0
        for name in TEST_FILES:
            path = get_testdata_file(name)
            assert assoc.send_c_store(path).Status == 0
            assert peer.stored[-1][1] == dataset_bytes(path)
        assoc.release()
        assert assoc.is_released


def test_a_tls_handshake_failure_is_an_aborted_association(pki):
    untrusting = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # system CAs only
    with pynetdicom_scp(ssl_context=pki.server_context()) as peer:
        assoc = associate(peer, file_contexts(), tls_args=(untrusting, "localhost"))
        assert assoc.is_aborted and not assoc.is_established


# -- the transport's partial writes ---------------------------------------------------


class _TrickleSocket:
    """Accepts at most ``limit`` bytes per sendmsg, as a full socket buffer would."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.received = bytearray()
        self.calls = 0

    def gettimeout(self):
        return None

    def sendmsg(self, buffers):
        self.calls += 1
        room = self.limit
        for buffer in buffers:
            chunk = bytes(buffer[:room])
            self.received += chunk
            room -= len(chunk)
            if not room:
                break
        return self.limit - room


@pytest.mark.parametrize("limit", [1, 3, 7, 1000, 1 << 20])
def test_partial_sends_resume_mid_buffer(limit):
    buffers = [b"head", memoryview(b"payload-one"), b"", bytearray(b"x" * 2000), b"tail"]
    sock = _TrickleSocket(limit)
    BlockingTransport(sock).send(buffers)  # type: ignore[arg-type]
    assert bytes(sock.received) == b"".join(bytes(b) for b in buffers)
    assert buffers[1] == memoryview(b"payload-one")  # the caller's list is left alone


def test_many_buffers_are_sent_in_iov_max_batches(monkeypatch):
    monkeypatch.setattr("hsscp.transport.IOV_MAX", 4)
    sock = _TrickleSocket(1 << 20)
    buffers = [bytes([i]) * 3 for i in range(10)]
    BlockingTransport(sock).send(buffers)  # type: ignore[arg-type]
    assert bytes(sock.received) == b"".join(buffers) and sock.calls == 3


def test_the_socket_has_nodelay():
    with socket.create_server((HOST, 0)) as listener:
        transport = BlockingTransport.connect(listener.getsockname())
        try:
            assert transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            transport.close()


# -- edge cases against a scripted acceptor ---------------------------------------------


class ScriptedPeer:
    """An acceptor engine on a real socket in a thread; ``script`` decides what it does.

    ``script(peer, indication)`` is called for every indication and may send
    with ``peer.send(buffers)``; the loop ends when the connection does.
    """

    def __init__(self, script, answer_association: bool = True, before_feed=None) -> None:
        self.script = script
        self.before_feed = before_feed
        self.answer_association = answer_association
        self.engine = Engine(Role.ACCEPTOR)
        self.received = bytearray()
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.conn: socket.socket | None = None

    def __enter__(self) -> ScriptedPeer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.listener.close()
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        assert not self.thread.is_alive()

    def send(self, buffers) -> None:
        data = b"".join(bytes(b) for b in buffers)
        if data:
            with contextlib.suppress(ConnectionError):  # the SCU may have closed already
                self.conn.sendall(data)

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            self.conn, _ = self.listener.accept()
        if self.conn is None:
            return
        with self.conn:
            self.engine.connection_made()
            while not self.engine.close_requested:
                try:
                    data = self.conn.recv(65536)
                except ConnectionError:
                    break
                if not data:
                    break
                self.received += data
                if self.before_feed is not None:
                    self.before_feed(self, data)
                for indication in self.engine.receive_data(data):
                    self._on(indication)
                self.send(self.engine.pop_output())

    def _on(self, indication) -> None:
        if isinstance(indication, AssociationRequested) and self.answer_association:
            self.send(self.engine.accept(accept_all(indication.request)))
        self.script(self, indication)


def echo_contexts() -> list:
    return [build_context(VERIFICATION_SOP_CLASS, ImplicitVRLittleEndian)]


def test_release_collision():
    def ask_too(peer, data):
        # Our A-RELEASE-RQ is here: the peer sends its own before reading ours.
        if data[0] == 0x05 and peer.engine.state == "Sta6":
            peer.send(peer.engine.release())

    def script(peer, indication):
        if isinstance(indication, ReleaseConfirmed) and peer.engine.state == "Sta12":
            peer.send(peer.engine.release_response())

    with ScriptedPeer(script, before_feed=ask_too) as peer:
        assoc = local_ae().associate(HOST, peer.port, contexts=echo_contexts())
        assert assoc.is_established
        assoc.release()
        assert assoc.is_released and not assoc.is_aborted and assoc.engine.is_closed
    assert peer.engine.state in ("Sta13", "Sta1")


def test_the_peer_releasing_as_soon_as_it_accepts():
    def script(peer, indication):
        if isinstance(indication, AssociationRequested):
            peer.send(peer.engine.release())

    ae = local_ae()
    with ScriptedPeer(script) as peer:
        assoc = ae.associate(HOST, peer.port, contexts=echo_contexts())
        # Whether the A-RELEASE-RQ came with the A-ASSOCIATE-AC or after it:
        if assoc.is_established:
            assert len(assoc.send_c_echo()) == 0
        assert assoc.is_released and not assoc.is_established and not assoc.is_aborted
        assert ae.active_associations == [] and assoc.transport is None


def test_the_peer_releasing_ends_the_wait_for_a_response():
    def script(peer, indication):
        if isinstance(indication, MessageReceived):
            peer.send(peer.engine.release())

    with ScriptedPeer(script) as peer:
        assoc = local_ae().associate(HOST, peer.port, contexts=echo_contexts())
        assert len(assoc.send_c_echo()) == 0
        assert assoc.is_released and not assoc.is_aborted and not assoc.is_established


def test_a_response_to_another_message_aborts():
    def script(peer, indication):
        if isinstance(indication, MessageReceived):
            rsp = dimse.CEchoRSP(indication.command.message_id + 1)
            peer.send(peer.engine.send_message(indication.context_id, rsp))

    with ScriptedPeer(script) as peer:
        assoc = local_ae().associate(HOST, peer.port, contexts=echo_contexts())
        assert len(assoc.send_c_echo(msg_id=5)) == 0
        assert assoc.is_aborted
    assert peer.engine.state in ("Sta1", "Sta13")  # it received our A-ABORT


def test_garbage_from_the_peer_is_answered_with_a_provider_abort():
    def script(peer, indication):
        if isinstance(indication, MessageReceived):
            peer.conn.sendall(b"\x55\x00\x00\x00\x00\x04abcd")

    with ScriptedPeer(script) as peer:
        assoc = local_ae().associate(HOST, peer.port, contexts=echo_contexts())
        assert len(assoc.send_c_echo()) == 0
        assert assoc.is_aborted and not assoc.abort_indication.by_peer
    assert pdu.AAbort(2, 1) in list(_pdus(peer.received))[-1:]


def test_no_answer_to_the_request_within_the_acse_timeout_aborts():
    with ScriptedPeer(lambda peer, indication: None, answer_association=False) as peer:
        started = time.monotonic()
        assoc = local_ae(acse_timeout=0.3).associate(HOST, peer.port, contexts=echo_contexts())
        assert time.monotonic() - started < 3
        assert assoc.is_aborted and not assoc.is_established
        assert assoc.transport is None


def test_no_accepted_context_aborts():
    def script(peer, indication):
        if isinstance(indication, AssociationRequested):
            request = indication.request
            refusal = pdu.AAssociateAC(
                called_ae_title=request.called_ae_title,
                calling_ae_title=request.calling_ae_title,
                presentation_contexts=[
                    items.PresentationContextAC(pc.context_id, 3, None)
                    for pc in request.presentation_contexts
                ],
                user_information=items.UserInformation([items.MaximumLength(16384)]),
            )
            peer.send(peer.engine.accept(refusal))

    with ScriptedPeer(script, answer_association=False) as peer:
        assoc = local_ae().associate(HOST, peer.port, contexts=echo_contexts())
        assert assoc.is_aborted and not assoc.is_established
        assert assoc.accepted_contexts == [] and len(assoc.rejected_contexts) == 1


def _pdus(data: bytes):
    offset = 0
    while offset < len(data):
        _, length = pdu.PDU_HEADER.unpack_from(data, offset)
        yield pdu.decode_pdu(data[offset : offset + 6 + length])
        offset += 6 + length
