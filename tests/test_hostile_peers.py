"""Hostile and broken peers against the running multiprocess SCP.

Each attack is made over raw sockets (PDUs built with hsscp.pdu/hsscp.items,
or by a requestor engine for the legitimate parts) and is followed by a
normal DCMTK storescu, which must be served at once and stored byte for
byte: no attack may cost the server its service.
"""

from __future__ import annotations

import random
import select
import socket
import subprocess
import time

import pytest

from hsscp import dimse, items, pdu
from hsscp.errors import AbortReason, AbortSource

from .datagen import (
    CT_IMAGE_STORAGE,
    instance,
    stored_files,
    temp_files,
    write_instance,
)
from .peers import dcmtk_env, require_binary
from .raw_peers import (
    EXPLICIT_LE,
    HOST,
    IMPLICIT_LE,
    MAX_PDU,
    VERIFICATION,
    Requestor,
    connect,
    serving,
    split,
    storescu_is_served,
    studies,
)

ACSE_TIMEOUT = 1.0
NETWORK_TIMEOUT = 2.0
# The server closes a connection it gave up on one ACSE (ARTIM) timeout later;
# this is how long a test waits for that, with room for a loaded CI machine.
CLOSE_BOUND = ACSE_TIMEOUT + 3.0
SERVER_ARGS = (
    "-ta", str(ACSE_TIMEOUT), "-tn", str(NETWORK_TIMEOUT), "--max-pdu", str(MAX_PDU),
    "--layout", "flat", "--spool-threshold", "64K",
)


# -- the running server and the check after every attack -------------------------


@pytest.fixture(scope="module")
def scp(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("hostile") / "out", *SERVER_ARGS, workers=2, writers=1) as running:
        yield running


# -- raw peers ---------------------------------------------------------------------


def first_answer(sock: socket.socket) -> pdu.PDU:
    """The first PDU the server sends back."""
    data = b""
    while not split(data)[0]:
        chunk = sock.recv(65536)
        assert chunk, "closed without an answer"
        data += chunk
    return split(data)[0][0]


def answer_and_end(sock: socket.socket) -> list:
    """The server's answer to an A-ASSOCIATE-RQ, and to the A-RELEASE-RQ sent if it accepted.

    Reads up to the last PDU the server sends (RJ, RP or A-ABORT), not until it
    closes: after those it waits an ARTIM period for the peer to close first.
    """
    final = (pdu.AAssociateRJ, pdu.AReleaseRP, pdu.AAbort)
    data, released = b"", False
    while True:
        answers = split(data)[0]
        if any(isinstance(p, final) for p in answers):
            return answers
        if answers and isinstance(answers[0], pdu.AAssociateAC) and not released:
            sock.sendall(pdu.encode_pdu(pdu.AReleaseRQ()))
            released = True
        chunk = sock.recv(65536)
        assert chunk, f"closed after {answers}"
        data += chunk


def read_until_closed(sock: socket.socket, bound: float = CLOSE_BOUND) -> tuple[list, bool, float]:
    """Everything the server sends until it closes the connection or ``bound`` seconds pass.

    Returns the decoded PDUs, whether the server closed, and when (seconds).
    """
    started = time.monotonic()
    data = b""
    while True:
        left = bound - (time.monotonic() - started)
        if left <= 0:
            return split(data)[0], False, time.monotonic() - started
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            pdus, rest = split(data)
            assert not rest, f"connection closed inside a PDU: {rest[:32]!r}"
            return pdus, True, time.monotonic() - started
        data += chunk


def provider_abort(answer: list, reason: int) -> bool:
    return any(
        isinstance(p, pdu.AAbort) and (p.source, p.reason) == (AbortSource.SERVICE_PROVIDER, reason) for p in answer
    )


def raw_rq(calling: str = "HOSTILE", contexts=None, user_information=None) -> pdu.AAssociateRQ:
    return pdu.AAssociateRQ(
        called_ae_title="HSSCP",
        calling_ae_title=calling,
        presentation_contexts=contexts or [items.PresentationContextRQ(1, VERIFICATION, [IMPLICIT_LE])],
        user_information=user_information or items.UserInformation([items.MaximumLength(MAX_PDU)]),
    )


def command_pdata(command, context_id: int = 1) -> bytes:
    return pdu.encode_pdu(pdu.PDataTF([pdu.PDV(context_id, 0x03, dimse.encode_command(command))]))


# -- garbage and lying lengths -----------------------------------------------------


GARBAGE = {
    "random": b"\xff" + random.Random(7).randbytes(4095),
    "http": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "tls-client-hello": bytes.fromhex("160301002a0100002603035a5a") + bytes(32),
    "zeros": bytes(1024),
}


def test_garbage_is_aborted_and_closed(scp, tmp_path):
    sockets = {name: connect(scp.port) for name in GARBAGE}
    for name, data in GARBAGE.items():
        sockets[name].sendall(data)
    for name, sock in sockets.items():
        answer, closed, _ = read_until_closed(sock)
        sock.close()
        assert closed, f"{name}: the server kept the connection"
        assert provider_abort(answer, AbortReason.UNRECOGNIZED_PDU), f"{name}: {answer}"
    storescu_is_served(scp, tmp_path)


@pytest.mark.parametrize(
    ("pdu_type", "reason"),
    [
        (0x01, AbortReason.INVALID_PDU_PARAMETER_VALUE),  # an A-ASSOCIATE-RQ is refused from its header
        (0x04, AbortReason.UNEXPECTED_PDU),  # a P-DATA-TF before any association
        (0x07, AbortReason.INVALID_PDU_PARAMETER_VALUE),  # A-ABORT is 4 bytes long, always
    ],
)
def test_pdu_header_claiming_4_gib_is_aborted(scp, tmp_path, pdu_type, reason):
    sock = connect(scp.port)
    sock.sendall(bytes([pdu_type, 0]) + (0xFFFFFFFF).to_bytes(4, "big") + bytes(64 * 1024))
    answer, closed, _ = read_until_closed(sock)
    sock.close()
    assert closed and provider_abort(answer, reason), answer
    storescu_is_served(scp, tmp_path)


def test_pdata_claiming_4_gib_after_association_is_aborted(scp, tmp_path):
    peer = Requestor(scp.port).associate()
    peer.sock.sendall(bytes([0x04, 0]) + (0xFFFFFFFF).to_bytes(4, "big") + bytes(64 * 1024))
    answer, closed, _ = read_until_closed(peer.sock)
    peer.close()
    assert closed and provider_abort(answer, AbortReason.INVALID_PDU_PARAMETER_VALUE), answer
    storescu_is_served(scp, tmp_path)


def test_pdata_over_the_negotiated_maximum_is_aborted_with_reason_6(scp, tmp_path):
    peer = Requestor(scp.port).associate()
    # The C-STORE command, then one data set PDV one byte longer than the maximum allows.
    peer.send(*peer.engine.send_message(1, dimse.CStoreRQ(1, CT_IMAGE_STORAGE, "1.2.3.4"), None))
    value = bytes(MAX_PDU - 6 + 1)
    oversized = pdu.encode_pdu(pdu.PDataTF([pdu.PDV(1, 0x02, value)]))
    assert int.from_bytes(oversized[2:6], "big") == MAX_PDU + 1
    peer.sock.sendall(oversized)
    answer, closed, _ = read_until_closed(peer.sock)
    peer.close()
    assert closed
    assert answer == [pdu.AAbort(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE)]
    storescu_is_served(scp, tmp_path)


# -- transfers that stop half-way ---------------------------------------------------


@pytest.mark.parametrize("size", [32 * 1024, 1024 * 1024], ids=["in-memory", "spooled"])
@pytest.mark.parametrize("how", ["dropped", "aborted"])
def test_cstore_cut_mid_dataset_leaves_no_file(scp, tmp_path, how, size):
    path = write_instance(tmp_path, instance(1, pixel_bytes=size, study=next(studies)))
    peer = Requestor(scp.port).associate()
    wire = peer.store_wire(path)
    peer.sock.sendall(wire[: len(wire) // 2])
    if size > 64 * 1024:  # past the spool threshold: the worker is writing a temporary file
        deadline = time.monotonic() + 10
        while not temp_files(scp.out):
            assert time.monotonic() < deadline, "the data set never spilled to a temporary file"
            time.sleep(0.02)
    else:
        time.sleep(0.2)
    if how == "aborted":
        peer.send(*peer.engine.abort())
    peer.close()
    deadline = time.monotonic() + 10
    while temp_files(scp.out):
        assert time.monotonic() < deadline, f"temporary files left: {temp_files(scp.out)}"
        time.sleep(0.02)
    assert path.stem not in stored_files(scp.out)
    storescu_is_served(scp, tmp_path)


# -- peers that say nothing, or very little -------------------------------------------


def test_silent_peer_is_closed_after_the_acse_timeout(scp, tmp_path):
    sock = connect(scp.port)
    answer, closed, elapsed = read_until_closed(sock)
    sock.close()
    assert closed and answer == [], answer
    assert ACSE_TIMEOUT * 0.8 <= elapsed < CLOSE_BOUND
    storescu_is_served(scp, tmp_path)


def test_peer_sending_one_byte_at_a_time_is_closed_after_the_acse_timeout(scp, tmp_path):
    """Slow drip of an A-ASSOCIATE-RQ: activity must not keep the ARTIM timer from firing.

    Four bytes a second rather than one, so that bytes are seen arriving before the
    one-second timer fires, and go on arriving after it should have.
    """
    data = pdu.encode_pdu(raw_rq())
    sock = connect(scp.port)
    started = time.monotonic()
    closed_after = None
    for byte in data[: int(CLOSE_BOUND / 0.25) + 4]:
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed_after = time.monotonic() - started
            break
        readable, _, _ = select.select([sock], [], [], 0.25)
        try:
            closed = readable and not sock.recv(65536)
        except ConnectionResetError:  # closed with unread bytes: the kernel resets instead
            closed = True
        if closed:
            closed_after = time.monotonic() - started
            break
    sock.close()
    assert closed_after is not None, "the server let the peer drip bytes forever"
    assert closed_after < CLOSE_BOUND
    storescu_is_served(scp, tmp_path)


def test_idle_association_is_aborted_after_the_network_timeout(scp, tmp_path):
    peer = Requestor(scp.port).associate()
    answer, closed, elapsed = read_until_closed(peer.sock, bound=NETWORK_TIMEOUT + CLOSE_BOUND)
    peer.close()
    assert closed and any(isinstance(p, pdu.AAbort) for p in answer), answer
    assert elapsed >= NETWORK_TIMEOUT * 0.8
    storescu_is_served(scp, tmp_path)


# -- floods and oversized requests --------------------------------------------------------


def test_connection_flood_far_over_the_limit(tmp_path):
    limit, idle, requesting = 4, 60, 40
    with serving(tmp_path / "out", "-ta", "2", "-tn", "30", "--layout", "flat",
                        "--max-associations", str(limit), workers=2, writers=1) as scp:
        quiet = [connect(scp.port) for _ in range(idle)]  # connected, never asking: no slot taken
        asking = [connect(scp.port) for _ in range(requesting)]
        for sock in asking:
            sock.sendall(pdu.encode_pdu(raw_rq()))
        answers = [first_answer(sock) for sock in asking]
        accepted = [a for a in answers if isinstance(a, pdu.AAssociateAC)]
        rejected = [a for a in answers if isinstance(a, pdu.AAssociateRJ)]
        assert len(accepted) == limit and len(rejected) == requesting - limit
        assert {(r.result, r.source, r.reason) for r in rejected} == {(2, 3, 2)}
        # The limit holds for everyone while the flood is held open.
        echo = subprocess.run([require_binary("echoscu"), HOST, str(scp.port)],
                              env=dcmtk_env(), capture_output=True, text=True, timeout=30)
        assert echo.returncode != 0 and "Local Limit Exceeded" in echo.stdout + echo.stderr
        for sock in quiet + asking:
            sock.close()
        # Service resumes as soon as the flood is gone (slots come back on close).
        deadline = time.monotonic() + 10
        while True:
            again = subprocess.run([require_binary("echoscu"), HOST, str(scp.port)],
                                   env=dcmtk_env(), capture_output=True, timeout=30)
            if again.returncode == 0:
                break
            assert time.monotonic() < deadline, "association slots were not given back"
            time.sleep(0.1)
        storescu_is_served(scp, tmp_path)
        assert scp.stop() == 0


def huge_user_information() -> items.UserInformation:
    """One user information item filled to its 64 KiB limit with sub-items of tens of KiB."""
    subs = [
        items.MaximumLength(MAX_PDU),
        items.ImplementationClassUID("1.2.3.4"),
        items.ImplementationVersionName("V" * 16000),
        items.UserIdentityRQ(2, True, b"u" * 16000, b"p" * 16000),
    ]
    used = sum(len(sub.encode()) for sub in subs)
    subs.append(items.UnknownSubItem(0x5F, b"x" * (0xFFFF - used - 4)))
    info = items.UserInformation(subs)
    assert len(info.encode()) == 4 + 0xFFFF
    return info


def test_associate_rq_with_200_contexts_and_huge_user_information(scp, tmp_path):
    # Odd context IDs wrap after 128 contexts: the last 72 repeat IDs already proposed.
    contexts = [
        items.PresentationContextRQ((2 * i + 1) % 256, CT_IMAGE_STORAGE, [EXPLICIT_LE, IMPLICIT_LE])
        for i in range(200)
    ]
    request = raw_rq(contexts=contexts, user_information=huge_user_information())
    sock = connect(scp.port)
    started = time.monotonic()
    sock.sendall(pdu.encode_pdu(request))
    answer, *_ = answer_and_end(sock)
    assert time.monotonic() - started < 5
    assert isinstance(answer, pdu.AAssociateAC | pdu.AAssociateRJ | pdu.AAbort), answer
    sock.close()
    storescu_is_served(scp, tmp_path)


def test_associate_rq_of_nearly_2_mib_is_answered(scp, tmp_path):
    """128 contexts of 200 transfer syntaxes each: a big, legal request, answered quickly."""
    syntaxes = [EXPLICIT_LE] + [f"1.2.826.0.1.3680043.10.543.99.{n:030d}" for n in range(199)]
    contexts = [items.PresentationContextRQ(2 * i + 1, CT_IMAGE_STORAGE, syntaxes) for i in range(128)]
    encoded = pdu.encode_pdu(raw_rq(contexts=contexts))
    assert len(encoded) > 1_500_000
    sock = connect(scp.port)
    started = time.monotonic()
    sock.sendall(encoded)
    answer, *_ = answer_and_end(sock)
    assert time.monotonic() - started < 5
    assert isinstance(answer, pdu.AAssociateAC), answer
    assert {pc.result for pc in answer.presentation_contexts} == {0}
    sock.close()
    storescu_is_served(scp, tmp_path)


# -- PDUs out of order -----------------------------------------------------------------------


def test_pdata_before_association_is_aborted(scp, tmp_path):
    sock = connect(scp.port)
    sock.sendall(command_pdata(dimse.CEchoRQ(1)))
    answer, closed, _ = read_until_closed(sock)
    sock.close()
    assert closed and provider_abort(answer, AbortReason.UNEXPECTED_PDU), answer
    storescu_is_served(scp, tmp_path)


def test_pdata_sent_behind_the_associate_rq_gets_an_answer(scp, tmp_path):
    """P-DATA in the same segment as the A-ASSOCIATE-RQ arrives before the server has answered.

    PS3.8 says A-ABORT (Evt10 in Sta3 is AA-8); a server that reads no further
    until it has answered may instead accept and then serve the C-ECHO. Either
    way the peer hears back: the connection is not just dropped.
    """
    sock = connect(scp.port)
    sock.sendall(pdu.encode_pdu(raw_rq()) + command_pdata(dimse.CEchoRQ(1)))
    answer, closed, _ = read_until_closed(sock)
    sock.close()
    aborted = any(isinstance(p, pdu.AAbort) for p in answer)
    echoed = (
        len(answer) >= 2 and isinstance(answer[0], pdu.AAssociateAC) and isinstance(answer[1], pdu.PDataTF)
    )
    assert aborted or echoed, f"no answer, connection {'closed' if closed else 'open'}: {answer}"
    storescu_is_served(scp, tmp_path)


# -- release collisions -------------------------------------------------------------------------


def test_release_rq_then_more_pdata(scp, tmp_path):
    peer = Requestor(scp.port, contexts=((VERIFICATION, (IMPLICIT_LE,)),)).associate()
    peer.sock.sendall(pdu.encode_pdu(pdu.AReleaseRQ()))
    time.sleep(0.1)
    try:  # the server may already have closed: it owes nothing to a peer that keeps talking
        for message_id in (1, 2, 3):
            peer.sock.sendall(command_pdata(dimse.CEchoRQ(message_id)))
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer, closed, _ = read_until_closed(peer.sock)
    peer.close()
    assert closed
    assert isinstance(answer[0], pdu.AReleaseRP | pdu.AAbort), answer
    assert not any(isinstance(p, pdu.PDataTF) for p in answer), "a request after A-RELEASE-RQ was served"
    storescu_is_served(scp, tmp_path)


def test_release_rq_twice(scp, tmp_path):
    peer = Requestor(scp.port, contexts=((VERIFICATION, (IMPLICIT_LE,)),)).associate()
    peer.sock.sendall(pdu.encode_pdu(pdu.AReleaseRQ()) * 2)
    answer, closed, _ = read_until_closed(peer.sock)
    peer.close()
    assert closed
    # Whether the second request is read before or after the answer to the first: an
    # A-RELEASE-RP, or the A-ABORT PS3.8 gives an A-RELEASE-RQ in Sta8.
    assert answer in ([pdu.AReleaseRP()], [pdu.AAbort(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU)]), answer
    storescu_is_served(scp, tmp_path)


def test_release_rq_right_after_a_c_store_still_gets_the_c_store_rsp(scp, tmp_path):
    """A requestor that asks for release without waiting for its C-STORE-RSP.

    PS3.8 lets the acceptor keep sending P-DATA in Sta8 (AR-7) before it
    answers the release: the pending response must go out first, or the
    peer never learns that an instance the server did store was stored.
    """
    path = write_instance(tmp_path, instance(1, pixel_bytes=4096, study=next(studies)))
    peer = Requestor(scp.port).associate()
    peer.sock.sendall(peer.store_wire(path) + pdu.encode_pdu(pdu.AReleaseRQ()))
    answer, closed, _ = read_until_closed(peer.sock)
    peer.close()
    assert closed
    kinds = [type(p).__name__ for p in answer]
    assert kinds == ["PDataTF", "AReleaseRP"], f"answered {kinds}"
    (pdv,) = answer[0].pdvs
    response = dimse.decode_command(bytes(pdv.data))
    assert isinstance(response, dimse.CStoreRSP) and response.status == 0
    assert path.stem in stored_files(scp.out)
    storescu_is_served(scp, tmp_path)


# -- malformed association requests must not cost a slot -------------------------------------------


@pytest.mark.parametrize(
    "context",
    [
        items.PresentationContextRQ(2, VERIFICATION, [IMPLICIT_LE]),  # context IDs are odd
        items.PresentationContextRQ(1, "1." * 40, [IMPLICIT_LE]),  # an abstract syntax over 64 characters
    ],
    ids=["even-context-id", "overlong-abstract-syntax"],
)
def test_malformed_presentation_context_is_answered_and_costs_no_association_slot(tmp_path, context):
    with serving(tmp_path / "out", "-ta", "1", "--layout", "flat", "--max-associations", "1",
                        workers=1, writers=1) as scp:
        sock = connect(scp.port)
        sock.sendall(pdu.encode_pdu(raw_rq(contexts=[context])))
        try:
            answer = answer_and_end(sock)
        except AssertionError:  # closed without a word
            answer = []
        sock.close()
        # The one association slot must be free again: the next peer is served.
        probe = connect(scp.port)
        probe.sendall(pdu.encode_pdu(raw_rq()))
        next_answer, *_ = answer_and_end(probe)
        probe.close()
        assert isinstance(next_answer, pdu.AAssociateAC), (
            f"the next association is refused with {next_answer}: the malformed request kept the only slot"
        )
        storescu_is_served(scp, tmp_path)
        assert scp.stop() == 0
    assert answer, "the A-ASSOCIATE-RQ got no answer at all"
    if isinstance(answer[0], pdu.AAssociateAC):
        assert {pc.result for pc in answer[0].presentation_contexts} != {0}
    assert "Traceback" not in scp.output, scp.output
