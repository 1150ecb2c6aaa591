"""Access control and transport security of the running multiprocess SCP.

AE title allow-lists, TLS with a server certificate and with client
certificates (mutual TLS) against DCMTK's ``+tls`` tools and hsscp's own
SCU, handshakes that never finish, and what a peer can make of the log and
of the output folder through AE titles and UIDs.
"""

from __future__ import annotations

import ssl
import subprocess
import time
import warnings
from pathlib import Path

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from hsscp import AE, items, pdu
from hsscp.indications import Aborted, AssociationAccepted, AssociationRejected, MessageReceived

from .datagen import (
    CT_IMAGE_STORAGE,
    dataset_of,
    instance,
    stored_files,
    temp_files,
    write_instance,
)
from .engine_pair import associate_rq
from .peers import dcmtk_env, require_binary
from .test_hostile_peers import (
    HOST,
    IMPLICIT_LE,
    VERIFICATION,
    Requestor,
    answer_and_end,
    connect,
    first_answer,
    read_until_closed,
    serving,
)
from .tls_certs import make_pki

ACSE_TIMEOUT = 2.0
# How DCMTK prints an A-ASSOCIATE-RJ's (result, source, reason).
DCMTK_REJECTION = {
    (1, 1, 3): ("Rejected Permanent", "Service User", "Calling AE Title Not Recognized"),
    (1, 1, 7): ("Rejected Permanent", "Service User", "Called AE Title Not Recognized"),
}


def dcmtk(tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([require_binary(tool), "-to", "10", "-ta", "10", *args], env=dcmtk_env(),
                          capture_output=True, text=True, timeout=timeout)


def sources(folder: Path, count: int, study: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_instance(folder, instance(i, pixel_bytes=2048, study=study)) for i in range(1, count + 1)]


def assert_stored(out: Path, paths: list[Path]) -> None:
    stored = stored_files(out)
    for path in paths:
        assert path.stem in stored, f"{path.stem} was not stored"
        assert dataset_of(stored[path.stem]) == dataset_of(path)


def rejection_of(port: int, calling: str, called: str) -> tuple[int, int, int]:
    sock = connect(port)
    request = pdu.AAssociateRQ(
        called, calling,
        presentation_contexts=[items.PresentationContextRQ(1, VERIFICATION, [IMPLICIT_LE])],
        user_information=items.UserInformation([items.MaximumLength(16384)]),
    )
    sock.sendall(pdu.encode_pdu(request))
    answer = first_answer(sock)
    sock.close()
    assert isinstance(answer, pdu.AAssociateRJ), answer
    return answer.result, answer.source, answer.reason


# -- AE title allow-lists --------------------------------------------------------


def test_ae_title_allow_lists(tmp_path):
    out = tmp_path / "out"
    with serving(out, "-aet", "HSSCP", "--require-called-aet", "--require-calling-aet", "GOODSCU",
                 "--require-calling-aet", "OTHERSCU", "-ta", str(ACSE_TIMEOUT), "--layout", "flat") as scp:
        for calling, called, code in (("BADSCU", "HSSCP", (1, 1, 3)), ("GOODSCU", "WRONG", (1, 1, 7))):
            refused = dcmtk("echoscu", "-aet", calling, "-aec", called, HOST, str(scp.port))
            assert refused.returncode != 0
            for text in DCMTK_REJECTION[code]:
                assert text in refused.stdout + refused.stderr, refused.stdout + refused.stderr
            assert rejection_of(scp.port, calling, called) == code
        refused = dcmtk("storescu", "-aet", "BADSCU", "-aec", "HSSCP", HOST, str(scp.port),
                        *map(str, sources(tmp_path / "refused", 2, study=1)))
        assert refused.returncode != 0
        assert not stored_files(out)

        allowed = {}
        for calling in ("GOODSCU", "OTHERSCU"):
            allowed[calling] = sources(tmp_path / calling, 3, study=len(allowed) + 2)
            done = dcmtk("storescu", "-aet", calling, "-aec", "HSSCP", HOST, str(scp.port), *map(str, allowed[calling]))
            assert done.returncode == 0, done.stdout + done.stderr
            assert dcmtk("echoscu", "-aet", calling, "-aec", "HSSCP", HOST, str(scp.port)).returncode == 0
        assert scp.stop() == 0
    assert_stored(out, [path for paths in allowed.values() for path in paths])
    assert len(stored_files(out)) == 6


# -- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_args(pki, mutual: bool = False) -> tuple[str, ...]:
    args = ("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key))
    return (*args, "--tls-ca", str(pki.ca_cert)) if mutual else args


def hsscp_store(port: int, paths: list[Path], context: ssl.SSLContext) -> list[int]:
    ae = AE("HSSCPSCU")
    ae.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    assoc = ae.associate(HOST, port, ae_title="HSSCP", tls_args=(context, "localhost"))
    if not assoc.is_established:
        return []
    statuses = [assoc.send_c_store(str(path)).Status for path in paths]
    assoc.release()
    return statuses


def test_tls_with_a_server_certificate(tmp_path, pki):
    out = tmp_path / "out"
    with serving(out, *tls_args(pki), "--layout", "flat") as scp:
        dcmtk_files = sources(tmp_path / "dcmtk", 3, study=1)
        done = dcmtk("storescu", "+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca_cert),
                     HOST, str(scp.port), *map(str, dcmtk_files))
        assert done.returncode == 0, done.stdout + done.stderr
        anonymous = dcmtk("echoscu", "+tla", "+cf", str(pki.ca_cert), HOST, str(scp.port))
        assert anonymous.returncode == 0, anonymous.stdout + anonymous.stderr  # no client certificate asked for
        plain = dcmtk("echoscu", HOST, str(scp.port), timeout=30)
        assert plain.returncode != 0  # no TLS, no association
        own_files = sources(tmp_path / "hsscp", 3, study=2)
        assert hsscp_store(scp.port, own_files, pki.client_context()) == [0, 0, 0]
        assert scp.stop() == 0
    assert_stored(out, [*dcmtk_files, *own_files])


def test_mutual_tls_refuses_clients_without_a_certificate(tmp_path, pki):
    out = tmp_path / "out"
    with serving(out, *tls_args(pki, mutual=True), "--layout", "flat") as scp:
        anonymous = dcmtk("echoscu", "+tla", "+cf", str(pki.ca_cert), HOST, str(scp.port))
        assert anonymous.returncode != 0
        refused = dcmtk("storescu", "+tla", "+cf", str(pki.ca_cert), HOST, str(scp.port),
                        *map(str, sources(tmp_path / "refused", 1, study=9)))
        assert refused.returncode != 0
        assert hsscp_store(scp.port, sources(tmp_path / "refused-own", 1, study=8), pki.client_context()) == []
        assert not stored_files(out)

        dcmtk_files = sources(tmp_path / "dcmtk", 3, study=1)
        done = dcmtk("storescu", "+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca_cert),
                     HOST, str(scp.port), *map(str, dcmtk_files))
        assert done.returncode == 0, done.stdout + done.stderr
        own_files = sources(tmp_path / "hsscp", 3, study=2)
        assert hsscp_store(scp.port, own_files, pki.client_context(with_cert=True)) == [0, 0, 0]
        assert scp.stop() == 0
    assert_stored(out, [*dcmtk_files, *own_files])
    assert len(stored_files(out)) == 6


def partial_client_hello() -> bytes:
    """The first half of a real TLS ClientHello."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    client = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    return hello[: len(hello) // 2]


def test_stalled_tls_handshakes_do_not_stall_other_associations(tmp_path, pki):
    out = tmp_path / "out"
    # One worker: the stalled handshakes and the real association share one event loop.
    with serving(out, *tls_args(pki), "-ta", str(ACSE_TIMEOUT), "--layout", "flat", workers=1, writers=1) as scp:
        opened = time.monotonic()
        silent = [connect(scp.port) for _ in range(20)]
        halfway = [connect(scp.port) for _ in range(10)]
        hello = partial_client_hello()
        for sock in halfway:
            sock.sendall(hello)
        files = sources(tmp_path / "src", 3, study=1)
        started = time.monotonic()
        done = dcmtk("storescu", "+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca_cert),
                     HOST, str(scp.port), *map(str, files))
        took = time.monotonic() - started
        assert done.returncode == 0, done.stdout + done.stderr
        assert took < ACSE_TIMEOUT, f"a TLS storescu took {took:.1f} s beside stalled handshakes"
        # The stalled ones are dropped once the handshake timeout (the ACSE timeout) passes.
        deadline = opened + ACSE_TIMEOUT + 4
        for sock in silent + halfway:
            _, closed, _ = read_until_closed(sock, bound=max(deadline - time.monotonic(), 0.1))
            sock.close()
            assert closed, "a stalled TLS handshake was kept past the handshake timeout"
        assert scp.stop() == 0
    assert_stored(out, files)


# -- what a peer can put in the log and the output folder ------------------------------------


def test_ae_titles_with_control_characters_do_not_reach_the_log_raw(tmp_path):
    hostile = ["X\nINJECTED LINE", "Y\r\nINJECTED LINE", "\x1b[2J\x1b[31mRED"]
    with serving(tmp_path / "out", "--require-calling-aet", "GOODSCU", "--log-level", "debug",
                 workers=1, writers=1) as scp:
        for calling in hostile:
            assert rejection_of(scp.port, calling, "HSSCP") == (1, 1, 3)
        assert scp.stop() == 0
    lines = scp.output.splitlines()
    assert not [line for line in lines if line.startswith("INJECTED")], scp.output
    assert "\x1b" not in scp.output and "\r" not in scp.output
    assert "rejecting association" in scp.output  # the rejections were logged, escaped


def test_calling_ae_title_with_control_characters_never_lands_in_a_file(tmp_path):
    out = tmp_path / "out"
    path = write_instance(tmp_path, instance(1, pixel_bytes=1024))
    with serving(out, "--layout", "flat", "-ta", str(ACSE_TIMEOUT), "--log-level", "debug",
                 workers=1, writers=1) as scp:
        peer = Requestor(scp.port, calling="EVIL\nINJECTED")
        peer.send()
        (answer,) = peer.receive((AssociationAccepted, AssociationRejected, Aborted))
        if isinstance(answer, AssociationAccepted):
            peer.send(peer.store_wire(path))
            (*_, message) = peer.receive(MessageReceived)
            status = message.command.status
            # Refused (the title cannot go into a File Meta group), or stored without it.
            assert status != 0 or path.stem in stored_files(out)
        peer.close()
        assert scp.stop() == 0
    for file in stored_files(out).values():
        assert b"EVIL\nINJECTED" not in file.read_bytes()[:1024]
    assert not [line for line in scp.output.splitlines() if line.startswith("INJECTED")], scp.output
    assert not temp_files(out)


def test_ae_title_that_is_not_ascii_gets_an_answer(tmp_path):
    """A calling AE title byte outside ASCII: the request is answered (accepted, rejected or aborted).

    It must not end in an unhandled error that drops the connection silently.
    """
    request = pdu.encode_pdu(associate_rq([(VERIFICATION, (IMPLICIT_LE,))]))
    at = request.index(b"TEST-SCU")
    request = request[:at] + b"TEST-SC\xe9" + request[at + 8 :]
    with serving(tmp_path / "out", "-ta", str(ACSE_TIMEOUT), workers=1, writers=1) as scp:
        sock = connect(scp.port)
        sock.sendall(request)
        try:
            answer = answer_and_end(sock)
        except AssertionError:  # closed without a word
            answer = []
        sock.close()
        assert scp.stop() == 0
    assert answer and isinstance(answer[0], pdu.AAssociateAC | pdu.AAssociateRJ | pdu.AAbort), (
        f"no answer to the A-ASSOCIATE-RQ; server output:\n{scp.output}"
    )
    assert "Traceback" not in scp.output, scp.output


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("StudyInstanceUID", "../../escape"),
        ("SeriesInstanceUID", "1.2/../../escape"),
        ("SOPInstanceUID", "1.2.3\nINJECTED LINE"),
    ],
)
def test_uids_never_become_paths_or_log_lines_unchecked(tmp_path, field, value):
    ds = instance(1, pixel_bytes=1024)
    out = tmp_path / "out"
    with warnings.catch_warnings():  # pydicom warns that the value is not a valid UI
        warnings.simplefilter("ignore")
        setattr(ds, field, value)
        # A file carries its UIDs into the command set unchecked; a Dataset is sent as it is.
        path = write_instance(tmp_path, ds) if field != "SOPInstanceUID" else None
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with serving(out, "--layout", "study", "--log-level", "debug", workers=1, writers=1) as scp:
        ae = AE("HSSCPSCU")
        ae.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
        assoc = ae.associate(HOST, scp.port, ae_title="HSSCP")
        assert assoc.is_established
        with warnings.catch_warnings():  # pydicom warns again as it encodes the value
            warnings.simplefilter("ignore")
            status = assoc.send_c_store(str(path) if path else ds).Status
        assoc.release()
        assert scp.stop() == 0
    assert 0xC000 <= status <= 0xCFFF, hex(status)
    assert not stored_files(out) and not temp_files(out)
    assert not list(tmp_path.rglob("escape*"))
    assert not [line for line in scp.output.splitlines() if line.startswith("INJECTED")], scp.output
