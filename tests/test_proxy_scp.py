"""--proxy-protocol on the running SCP: the header's client is the peer; no valid header, no association."""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import time

import pytest

from hsscp import pdu
from hsscp.items import MaximumLength, PresentationContextRQ, UserInformation

from . import peers
from .hsscp_process import hsscp_storescp

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def associate_rq(called: str = "HSSCP", calling: str = "PROXIED") -> bytes:
    return pdu.encode_pdu(pdu.AAssociateRQ(
        called, calling,
        presentation_contexts=[PresentationContextRQ(1, VERIFICATION, [IMPLICIT_LE])],
        user_information=UserInformation([MaximumLength(16384)]),
    ))


def v2_local() -> bytes:
    return V2_SIGNATURE + struct.pack(">BBH", 0x20, 0x00, 0)


def exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data``, read until the server closes or answers one PDU; what came back."""
    with socket.create_connection((peers.HOST, port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
                if len(received) >= 6 and len(received) >= 6 + struct.unpack(">I", received[2:6])[0]:
                    break
        return received


def pdu_type(data: bytes) -> int | None:
    return data[0] if data else None


def test_the_header_is_read_first_and_its_client_is_the_peer(tmp_path):
    with hsscp_storescp(tmp_path / "out", "--proxy-protocol", "--require-called-aet", "-ta", "1",
                        workers=1, writers=1) as scp:
        v1 = b"PROXY TCP4 10.9.8.7 127.0.0.1 40123 11112\r\n"
        # The header and the request in one write, as HAProxy often sends them.
        assert pdu_type(exchange(scp.port, v1 + associate_rq())) == pdu.PduType.A_ASSOCIATE_AC
        assert pdu_type(exchange(scp.port, v1 + associate_rq(called="HSSCPX"))) == pdu.PduType.A_ASSOCIATE_RJ
        # A LOCAL header (a proxy's own check) keeps the socket's peer, and the stream goes on.
        assert pdu_type(exchange(scp.port, v2_local() + associate_rq())) == pdu.PduType.A_ASSOCIATE_AC
        # No header, a broken one, or none within the ACSE timeout: closed, nothing answered.
        assert exchange(scp.port, associate_rq()) == b""
        assert exchange(scp.port, b"PROXY TCP4 not-an-address\r\n" + associate_rq()) == b""
        started = time.monotonic()
        assert exchange(scp.port, b"PROXY TCP4 10.9.8.7 ") == b""
        assert 0.8 < time.monotonic() - started < 5
        assert scp.stop() == 0
    log = scp.output
    assert "PROXIED -> HSSCPX from 10.9.8.7:40123: called AE title HSSCPX is not ours" in log, log
    assert "association PROXIED -> HSSCP from 10.9.8.7:40123: 0 stored, 0 failed" in log
    assert "association PROXIED -> HSSCP from 127.0.0.1:" in log  # the LOCAL header's connection
    assert log.count("closing the connection from 127.0.0.1") == 3
    assert "no PROXY header within the ACSE timeout" in log


def _haproxy_binary() -> str:
    from .test_proxy_protocol import _haproxy_binary

    return _haproxy_binary()


@pytest.mark.interop
def test_behind_haproxy_send_proxy_v2_the_client_is_the_peer(tmp_path):
    front, ready = peers.free_port(), peers.free_port()
    with hsscp_storescp(tmp_path / "out", "--proxy-protocol", "--require-called-aet",
                        workers=1, writers=1) as scp:
        config = tmp_path / "haproxy.cfg"
        config.write_text(f"""
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend ready
    bind 127.0.0.1:{ready}
    tcp-request connection reject
listen dicom
    bind 127.0.0.1:{front}
    server hsscp 127.0.0.1:{scp.port} send-proxy-v2
""")
        with peers.running([_haproxy_binary(), "-db", "-f", str(config)], ready_port=ready):
            echo = subprocess.run([peers.require_binary("echoscu"), "-aec", "HSSCP", peers.HOST, str(front)],
                                  env=peers.dcmtk_env(), capture_output=True, timeout=30)
            assert echo.returncode == 0, echo.stdout + echo.stderr
            # A client on another loopback address, so its address cannot be HAProxy's.
            with socket.socket() as client:
                client.bind(("127.0.0.5", 0))
                client.settimeout(10)
                client.connect((peers.HOST, front))
                client.sendall(associate_rq(called="HSSCPX"))
                assert pdu_type(client.recv(65536)) == pdu.PduType.A_ASSOCIATE_RJ
                client_port = client.getsockname()[1]
        assert scp.stop() == 0
    assert f"from 127.0.0.5:{client_port}: called AE title HSSCPX is not ours" in scp.output, scp.output
    assert "association ECHOSCU -> HSSCP from 127.0.0.1:" in scp.output
