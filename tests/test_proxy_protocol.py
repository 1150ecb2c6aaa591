"""The PROXY protocol header reader: the specification's examples, HAProxy-shaped and real
HAProxy headers, any chunking, and refusal of everything else with bounded memory."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsscp import items, pdu
from hsscp.errors import HsscpError, LocalProtocolError
from hsscp.proxy_protocol import (
    V1_MAX_LINE,
    V2_MAX_HEADER,
    Command,
    Family,
    ProxyHeader,
    ProxyHeaderReader,
    ProxyProtocolError,
    TlvType,
    Transport,
    crc32c,
)

from . import peers

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
LOCAL, PROXY = 0x0, 0x1
UNSPEC, INET, INET6, UNIX = 0x0, 0x1, 0x2, 0x3
STREAM, DGRAM = 0x1, 0x2

# The first PDU a DICOM requestor sends: what must come out after the header, unchanged.
ASSOCIATE_RQ = pdu.encode_pdu(
    pdu.AAssociateRQ(
        called_ae_title="HSSCP",
        calling_ae_title="MODALITY",
        presentation_contexts=[
            items.PresentationContextRQ(1, "1.2.840.10008.1.1", ["1.2.840.10008.1.2"])
        ],
        user_information=items.UserInformation([items.MaximumLength(16384)]),
    )
)


def v2(
    block: bytes = b"",
    *,
    command: int = PROXY,
    family: int = INET,
    transport: int = STREAM,
    version: int = 2,
    length: int | None = None,
) -> bytes:
    """A v2 header as HAProxy lays it out: signature, ver/cmd, fam/proto, length, block."""
    announced = len(block) if length is None else length
    return (
        SIG
        + struct.pack(">BBH", version << 4 | command, family << 4 | transport, announced)
        + block
    )


def inet(source: str, destination: str, source_port: int, destination_port: int) -> bytes:
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    return (
        socket.inet_pton(family, source)
        + socket.inet_pton(family, destination)
        + struct.pack(">HH", source_port, destination_port)
    )


def unix(source: bytes, destination: bytes) -> bytes:
    return source.ljust(108, b"\0") + destination.ljust(108, b"\0")


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack(">BH", kind, len(value)) + value


def with_crc32c(header_without_crc: bytes) -> bytes:
    """Append a CRC32C TLV (and fix the length) the way a sender must compute it."""
    fixed, rest = header_without_crc[:14], header_without_crc[16:]
    block = rest + tlv(TlvType.CRC32C, bytes(4))
    zeroed = fixed + struct.pack(">H", len(block)) + block
    return zeroed[:-4] + struct.pack(">I", crc32c(zeroed))


def proxied(
    family: Family,
    source: str,
    source_port: int,
    destination: str,
    destination_port: int,
    *,
    version: int = 2,
    transport: Transport = Transport.STREAM,
    tlvs: tuple = (),
) -> ProxyHeader:
    """The header expected for a relayed IP connection."""
    return ProxyHeader(
        version,
        Command.PROXY,
        family,
        transport,
        source,
        source_port,
        destination,
        destination_port,
        tlvs,
    )


V1_UNKNOWN = ProxyHeader(1, Command.PROXY, Family.UNSPEC, Transport.UNSPEC)
V2_LOCAL = ProxyHeader(2, Command.LOCAL, Family.UNSPEC, Transport.UNSPEC)
FFFF6 = ":".join(["ffff"] * 8)
WIDE_TLVS = (
    (TlvType.ALPN, b"dicom"),
    (TlvType.AUTHORITY, b"pacs.example.org"),
    (TlvType.UNIQUE_ID, b"7f000001:c3a4_0a000009:0068_64b2e5a1_0001:2f3c"),
    (0xE0, b"custom"),
)

CRC_HEADER = with_crc32c(
    v2(inet("10.1.2.3", "10.0.0.9", 51000, 104) + tlv(TlvType.UNIQUE_ID, b"id-1"))
)

# (what, bytes, parsed header)
# fmt: off
FIXTURES = [
    # -- version 1, the specification's own lines
    ("v1 spec example", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
     proxied(Family.INET, "192.168.0.1", 56324, "192.168.0.11", 443, version=1)),
    ("v1 longest TCP4", b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
     proxied(Family.INET, "255.255.255.255", 65535, "255.255.255.255", 65535, version=1)),
    ("v1 longest TCP6", f"PROXY TCP6 {FFFF6} {FFFF6} 65535 65535\r\n".encode(),
     proxied(Family.INET6, FFFF6, 65535, FFFF6, 65535, version=1)),
    ("v1 UNKNOWN short form", b"PROXY UNKNOWN\r\n", V1_UNKNOWN),
    ("v1 UNKNOWN worst case", f"PROXY UNKNOWN {FFFF6} {FFFF6} 65535 65535\r\n".encode(), V1_UNKNOWN),
    ("v1 UNKNOWN with junk", b"PROXY UNKNOWN \xff\x00 whatever\r stays ignored\r\n", V1_UNKNOWN),
    # -- version 1 as HAProxy's send-proxy writes it
    ("v1 TCP4", b"PROXY TCP4 10.1.2.3 10.0.0.9 51000 104\r\n",
     proxied(Family.INET, "10.1.2.3", 51000, "10.0.0.9", 104, version=1)),
    ("v1 TCP6", b"PROXY TCP6 2001:DB8::1 2001:db8:0:0:0:0:0:2 40000 11112\r\n",
     proxied(Family.INET6, "2001:db8::1", 40000, "2001:db8::2", 11112, version=1)),
    ("v1 TCP6 mapped IPv4", b"PROXY TCP6 ::ffff:10.0.0.1 ::ffff:10.0.0.2 0 104\r\n",
     proxied(Family.INET6, "::ffff:10.0.0.1", 0, "::ffff:10.0.0.2", 104, version=1)),
    # -- version 2 as HAProxy's send-proxy-v2 writes it
    ("v2 TCP4", v2(inet("10.1.2.3", "10.0.0.9", 51000, 104)),
     proxied(Family.INET, "10.1.2.3", 51000, "10.0.0.9", 104)),
    ("v2 TCP6 with TLVs", v2(inet("2001:db8::1", "2001:db8::2", 40000, 11112) + b"".join(tlv(k, v) for k, v in WIDE_TLVS), family=INET6),
     proxied(Family.INET6, "2001:db8::1", 40000, "2001:db8::2", 11112, tlvs=WIDE_TLVS)),
    ("v2 TCP6 mapped IPv4", v2(inet("::ffff:127.0.0.1", "::1", 1, 2), family=INET6),
     proxied(Family.INET6, "::ffff:127.0.0.1", 1, "::1", 2)),
    ("v2 UDP4", v2(inet("192.0.2.1", "192.0.2.2", 5000, 5001), transport=DGRAM),
     proxied(Family.INET, "192.0.2.1", 5000, "192.0.2.2", 5001, transport=Transport.DGRAM)),
    ("v2 CRC32C", CRC_HEADER,
     proxied(Family.INET, "10.1.2.3", 51000, "10.0.0.9", 104,
             tlvs=((TlvType.UNIQUE_ID, b"id-1"), (TlvType.CRC32C, CRC_HEADER[-4:])))),
    ("v2 UNIX stream", v2(unix(b"/run/haproxy/front.sock", b"/run/hsscp.sock"), family=UNIX),
     ProxyHeader(2, Command.PROXY, Family.UNIX, Transport.STREAM, "/run/haproxy/front.sock", None, "/run/hsscp.sock", None)),
    ("v2 UNIX abstract", v2(unix(b"\0front", b"\0hsscp"), family=UNIX, transport=DGRAM),
     ProxyHeader(2, Command.PROXY, Family.UNIX, Transport.DGRAM, "\0front", None, "\0hsscp", None)),
    ("v2 LOCAL health check", v2(command=LOCAL, family=UNSPEC, transport=0), V2_LOCAL),
    # LOCAL: the block is skipped by its length, whatever the family byte says.
    ("v2 LOCAL with a block", v2(b"\xff" * 7, command=LOCAL, family=0xF, transport=0xF), V2_LOCAL),
    ("v2 UNSPEC", v2(family=UNSPEC, transport=0), ProxyHeader(2, Command.PROXY, Family.UNSPEC, Transport.UNSPEC)),
    ("v2 UNSPEC ignores its block", v2(b"\x01\x02\x03\x04", family=INET, transport=0),
     ProxyHeader(2, Command.PROXY, Family.INET, Transport.UNSPEC)),
]
# fmt: on
HEADERS = {what: expected for what, _, expected in FIXTURES}
FIXTURE_IDS = [what for what, _, _ in FIXTURES]


def feed_all(chunks, reader: ProxyHeaderReader | None = None) -> tuple[ProxyHeader, bytes]:
    """Feed chunks until the header is read; return it and every byte after it, in order."""
    reader = reader or ProxyHeaderReader()
    header, after = None, []
    for chunk in chunks:
        if header is None:
            result = reader.feed(chunk)
            if result is not None:
                header, rest = result
                after.append(bytes(rest))
        else:
            after.append(bytes(chunk))
    assert header is not None, "the header never completed"
    return header, b"".join(after)


def fails_at(data: bytes) -> int:
    """Feed data one byte at a time; return the index of the byte that was refused."""
    reader = ProxyHeaderReader()
    for index in range(len(data)):
        try:
            assert reader.feed(data[index : index + 1]) is None
        except ProxyProtocolError:
            return index
    raise AssertionError(f"{data!r} was not refused")


# -- valid headers, however they are cut ----------------------------------------------------


@pytest.mark.parametrize(("data", "expected"), [(d, e) for _, d, e in FIXTURES], ids=FIXTURE_IDS)
def test_whole_header_is_parsed(data: bytes, expected: ProxyHeader) -> None:
    header, rest = ProxyHeaderReader().feed(data)
    assert header == expected
    assert isinstance(rest, memoryview) and len(rest) == 0


@pytest.mark.parametrize(("data", "expected"), [(d, e) for _, d, e in FIXTURES], ids=FIXTURE_IDS)
def test_dicom_bytes_after_the_header_come_back_as_a_view_of_the_callers_buffer(
    data: bytes, expected: ProxyHeader
) -> None:
    buffer = bytearray(data + ASSOCIATE_RQ)
    header, rest = ProxyHeaderReader().feed(buffer)
    assert header == expected
    assert rest.obj is buffer and rest == ASSOCIATE_RQ
    assert pdu.decode_pdu(rest).calling_ae_title == "MODALITY"


@pytest.mark.parametrize(("data", "expected"), [(d, e) for _, d, e in FIXTURES], ids=FIXTURE_IDS)
def test_one_byte_at_a_time_every_prefix_waits_and_holds_only_what_came(
    data: bytes, expected: ProxyHeader
) -> None:
    reader = ProxyHeaderReader()
    for index in range(len(data) - 1):
        assert reader.feed(data[index : index + 1]) is None
        assert reader.buffered == index + 1
    header, rest = reader.feed(data[-1:])
    assert header == expected and len(rest) == 0
    assert reader.buffered == 0


@settings(max_examples=150)
@given(st.sampled_from(FIXTURES), st.lists(st.integers(1, 120), min_size=1, max_size=12))
def test_any_chunking_gives_the_same_header_and_hands_on_every_later_byte(fixture, sizes) -> None:
    _, data, expected = fixture
    stream = data + ASSOCIATE_RQ
    chunks, pos = [], 0
    for size in sizes:
        chunks.append(memoryview(stream)[pos : pos + size])
        pos += size
    chunks.append(memoryview(stream)[pos:])
    assert feed_all(chunks) == (expected, ASSOCIATE_RQ)


def test_a_v1_line_split_late_hands_on_the_bytes_staged_past_its_end() -> None:
    # The second chunk holds the rest of the line and DICOM bytes: the reader looks past
    # the LF while staging, and must give back exactly the bytes after it, from that chunk.
    line = b"PROXY TCP4 10.1.2.3 10.0.0.9 51000 104\r\n"
    second = bytearray(line[4:] + ASSOCIATE_RQ)
    reader = ProxyHeaderReader()
    assert reader.feed(line[:4]) is None
    header, rest = reader.feed(second)
    assert header.peer == ("10.1.2.3", 51000)
    assert rest.obj is second and rest == ASSOCIATE_RQ


def test_peer_is_the_clients_address_or_none_when_the_header_gives_no_ip() -> None:
    assert HEADERS["v1 spec example"].peer == ("192.168.0.1", 56324)
    assert HEADERS["v2 TCP6 with TLVs"].peer == ("2001:db8::1", 40000)
    for what in ("v1 UNKNOWN short form", "v2 LOCAL health check", "v2 UNIX stream", "v2 UNSPEC"):
        header = HEADERS[what]
        assert header.peer is None, what


def test_tlvs_are_kept_in_order_and_found_by_type() -> None:
    header = HEADERS["v2 TCP6 with TLVs"]
    assert header.tlvs == WIDE_TLVS
    assert header.tlv(TlvType.AUTHORITY) == b"pacs.example.org"
    assert header.tlv(0xE0) == b"custom"
    assert header.tlv(TlvType.NETNS) is None


def test_the_largest_v2_header_is_read_whole_and_in_pieces() -> None:
    block = inet("10.1.2.3", "10.0.0.9", 51000, 104)
    padding = tlv(TlvType.NOOP, bytes(0xFFFF - len(block) - 3))
    data = v2(block + padding)
    assert len(data) == V2_MAX_HEADER
    expected = proxied(
        Family.INET, "10.1.2.3", 51000, "10.0.0.9", 104, tlvs=((TlvType.NOOP, padding[3:]),)
    )
    assert ProxyHeaderReader().feed(data)[0] == expected
    reader = ProxyHeaderReader()
    pieces = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    for piece in pieces[:-1]:
        assert reader.feed(piece) is None
        assert reader.buffered <= V2_MAX_HEADER
    assert reader.feed(pieces[-1] + ASSOCIATE_RQ)[1] == ASSOCIATE_RQ


# -- what is refused, and when ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "index"),
    [
        (ASSOCIATE_RQ, 0),  # a DICOM peer talking straight to a --proxy-protocol port
        (b"GET / HTTP/1.1\r\n", 0),
        (b"\x16\x03\x01\x02\x00", 0),  # a TLS ClientHello
        (b"proxy TCP4 1.2.3.4 1.2.3.5 1 2\r\n", 0),
        (b"PROXX TCP4", 4),
        (b"PROXYTCP4", 5),
        (b"PROXY\tTCP4", 5),
        (b"\r\n\r\n\x00\r\nQUIX\n", 10),
        (b"\r\n\r\n\r\n", 4),
        (SIG + b"\x11\x11\x00\x0c", 12),  # version 1 in a v2 header
        (SIG + b"\x31\x11\x00\x0c", 12),  # version 3
        (SIG + b"\x22\x11\x00\x0c", 12),  # command 2
        (SIG + b"\x2f\x11\x00\x0c", 12),
        (SIG + b"\x21\x41\x00\x0c", 13),  # family 4
        (SIG + b"\x21\x13\x00\x0c", 13),  # transport 3
        (SIG + b"\x21\xff\x00\x0c", 13),
        (b"PROXY UNKNOWN " + b"x" * 100, V1_MAX_LINE - 1),  # no CRLF within 107 bytes
        (b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n", V1_MAX_LINE - 1),  # a 108-byte line
    ],
    ids=repr,
)
def test_input_fails_at_the_first_byte_no_header_can_continue_with(data: bytes, index: int) -> None:
    assert fails_at(data) == index
    with pytest.raises(ProxyProtocolError):
        ProxyHeaderReader().feed(data)


@pytest.mark.parametrize("position", range(len(SIG)))
def test_any_wrong_v2_signature_byte_fails_where_it_is(position: int) -> None:
    data = bytearray(v2(inet("10.1.2.3", "10.0.0.9", 51000, 104)))
    data[position] ^= 0x80
    assert fails_at(bytes(data)) == position


@pytest.mark.parametrize(
    ("family", "needed"), [(INET, 12), (INET6, 36), (UNIX, 216)], ids=["INET", "INET6", "UNIX"]
)
@pytest.mark.parametrize("transport", [STREAM, DGRAM])
def test_lengths_too_short_for_the_family_fail_once_the_length_is_in(
    family: int, needed: int, transport: int
) -> None:
    for length in (0, needed - 1):
        data = v2(bytes(needed), family=family, transport=transport, length=length)
        assert fails_at(data) == 15
    # Long enough is fine (the rest are TLVs), and LOCAL ignores the family altogether.
    assert ProxyHeaderReader().feed(v2(bytes(needed), family=family, transport=transport))
    assert ProxyHeaderReader().feed(v2(command=LOCAL, family=family, transport=transport)) == (
        V2_LOCAL,
        b"",
    )


def test_a_huge_announced_length_allocates_nothing_before_its_bytes_arrive() -> None:
    reader = ProxyHeaderReader()
    fixed = v2(family=UNSPEC, transport=0, length=0xFFFF)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert reader.feed(fixed) is None
        assert reader.feed(b"\x04\x00") is None
        grown = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert reader.buffered == len(fixed) + 2
    assert grown < 4096, f"{grown} bytes allocated for 18 received"


V1_MALFORMED = [
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",  # bare LF
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 4\r43\r\n",
    b"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 80\r\n",
    b"PROXY TCP4 192.168.000.1 192.168.0.11 56324 443\r\n",  # heading zeroes
    b"PROXY TCP4 256.168.0.1 192.168.0.11 56324 443\r\n",
    b"PROXY TCP4 192.168.0 192.168.0.11 56324 443\r\n",
    b"PROXY TCP4 1.2.3.\xb4 192.168.0.11 56324 443\r\n",
    b"PROXY TCP4 ::1 ::1 56324 443\r\n",  # the family says IPv4
    b"PROXY TCP6 192.168.0.1 192.168.0.11 56324 443\r\n",
    b"PROXY TCP6 fe80::1%eth0 ::1 56324 443\r\n",  # scope IDs are no part of the line
    b"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 56324 443\r\n",
    b"PROXY TCP6 12345::1 ::1 56324 443\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 099999 443\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 0443 443\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 +443 443\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 \xd9\xa1 443\r\n",
    b"PROXY UDP4 192.168.0.1 192.168.0.11 56324 443\r\n",
    b"PROXY tcp4 192.168.0.1 192.168.0.11 56324 443\r\n",
    b"PROXY UNKNOWNX\r\n",
    b"PROXY \r\n",
    b"PROXY  UNKNOWN\r\n",
]


@pytest.mark.parametrize("line", V1_MALFORMED, ids=repr)
def test_malformed_v1_lines_are_refused_whole_and_byte_by_byte(line: bytes) -> None:
    with pytest.raises(ProxyProtocolError, match="PROXY v1"):
        ProxyHeaderReader().feed(line + ASSOCIATE_RQ)
    assert fails_at(line) == len(line) - 1  # judged only once the line is complete


GOOD_INET = inet("10.1.2.3", "10.0.0.9", 51000, 104)
V2_MALFORMED = [
    ("TLV header cut short", v2(GOOD_INET + b"\x01\x00")),
    ("TLV longer than the block", v2(GOOD_INET + struct.pack(">BH", 0x02, 10) + b"short")),
    ("second TLV too long", v2(GOOD_INET + tlv(0x01, b"h2") + struct.pack(">BH", 0x05, 1))),
    ("CRC32C of 3 bytes", v2(GOOD_INET + tlv(TlvType.CRC32C, b"abc"))),
    ("CRC32C twice", v2(GOOD_INET + tlv(TlvType.CRC32C, bytes(4)) + tlv(TlvType.CRC32C, bytes(4)))),
    ("CRC32C mismatch", CRC_HEADER[:20] + b"\x04" + CRC_HEADER[21:]),  # a source byte changed
]


@pytest.mark.parametrize("data", [d for _, d in V2_MALFORMED], ids=[w for w, _ in V2_MALFORMED])
def test_malformed_v2_headers_are_refused_once_whole(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError, match="PROXY v2"):
        ProxyHeaderReader().feed(data + ASSOCIATE_RQ)
    assert fails_at(data) == len(data) - 1


def test_crc32c_matches_the_standard_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # RFC 3720 B.4 / the CRC catalogue's check
    assert crc32c(b"") == 0


def test_a_refused_reader_stays_refused_and_a_finished_one_takes_nothing_more() -> None:
    assert issubclass(ProxyProtocolError, HsscpError) and issubclass(ProxyProtocolError, ValueError)
    refused = ProxyHeaderReader()
    with pytest.raises(ProxyProtocolError):
        refused.feed(b"\x01")
    with pytest.raises(ProxyProtocolError, match="already refused"):
        refused.feed(b"PROXY UNKNOWN\r\n")
    assert refused.buffered == 0
    finished = ProxyHeaderReader()
    assert finished.feed(b"PROXY UNKNOWN\r\n")
    with pytest.raises(LocalProtocolError):
        finished.feed(ASSOCIATE_RQ)


def test_the_reader_is_sans_io_and_loads_only_the_standard_library() -> None:
    code = (
        "import sys; import hsscp.proxy_protocol; "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydicom', 'asyncio', 'uvloop', 'socket', 'selectors', 'workers', 'msgspec'))))"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert done.stdout.split() == []


# -- any input: parsed or refused, never more held than one header ---------------------------

PREFIXES = [
    b"",
    b"PROXY ",
    b"PROXY TCP4 ",
    b"PROXY TCP6 ",
    b"PROXY UNKNOWN",
    SIG,
    SIG + b"\x20",
    SIG + b"\x21",
]
PREFIXES += [SIG + bytes([0x21, fam]) for fam in (0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32)]
mutated_fixtures = st.builds(
    lambda data, index, value: (
        data[: index % len(data)] + bytes([value]) + data[index % len(data) + 1 :]
    ),
    st.sampled_from([d for _, d, _ in FIXTURES]),
    st.integers(0, 10_000),
    st.integers(0, 255),
)
inputs = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda prefix, tail: prefix + tail, st.sampled_from(PREFIXES), st.binary(max_size=300)
    ),
    mutated_fixtures,
)


def _outcome(chunks: list[bytes]) -> tuple:
    """("parsed", header, every byte after it) | ("refused",) | ("waiting", bytes held)."""
    reader = ProxyHeaderReader()
    fed = 0
    for index, chunk in enumerate(chunks):
        fed += len(chunk)
        try:
            result = reader.feed(chunk)
        except ProxyProtocolError:
            return ("refused",)
        if result is not None:
            header, rest = result
            assert isinstance(header, ProxyHeader) and isinstance(rest, memoryview)
            assert fed - len(rest) <= V2_MAX_HEADER
            return ("parsed", header, bytes(rest) + b"".join(chunks[index + 1 :]))
        # Never more than what came, and never a whole v1 line or v2 header.
        limit = V1_MAX_LINE if chunks[0][:1] == b"P" else V2_MAX_HEADER
        assert reader.buffered <= fed and reader.buffered < limit
    return ("waiting", reader.buffered)


@settings(max_examples=400)
@given(inputs, st.lists(st.integers(1, 64), max_size=8))
def test_any_input_parses_or_is_refused_the_same_however_it_is_cut(data: bytes, sizes) -> None:
    cuts, pos = [], 0
    for size in sizes:
        cuts.append(data[pos : pos + size])
        pos += size
    cuts = [c for c in [*cuts, data[pos:]] if c] or [b""]
    whole = _outcome([data])
    assert _outcome(cuts) == whole
    if whole[0] == "waiting":  # a valid prefix of a header, held whole
        assert whole[1] == len(data)


# -- real HAProxy in front of a tiny server -------------------------------------------------


@dataclass
class Received:
    header: ProxyHeader | None
    stream: bytes  # what followed the header, up to the proxy's FIN
    error: str = ""


class HeaderCapture:
    """A TCP server on 127.0.0.1 that reads each connection's PROXY header and the bytes after."""

    def __init__(self) -> None:
        self.listener = socket.create_server((peers.HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[Received] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> HeaderCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                self._record(self._read(connection))

    @staticmethod
    def _read(connection: socket.socket) -> Received:
        connection.settimeout(5)
        reader, header, after = ProxyHeaderReader(), None, []
        try:
            while chunk := connection.recv(65536):
                if header is None:
                    if (result := reader.feed(chunk)) is not None:
                        header, rest = result
                        after.append(bytes(rest))
                else:
                    after.append(chunk)
        except (OSError, ProxyProtocolError) as exc:  # health checks reset once connected
            return Received(header, b"".join(after), repr(exc))
        return Received(header, b"".join(after))

    def _record(self, received: Received) -> None:
        with self._changed:
            self.received.append(received)
            self._changed.notify_all()

    def take(self, predicate, timeout: float = 5.0) -> Received:
        """Remove and return the first connection ``predicate`` accepts, waiting for it."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: next((r for r in self.received if predicate(r)), None), timeout
            )
            assert found, f"nothing matching came within {timeout}s: {self.received}"
            self.received.remove(found)
        return found


def _haproxy_binary() -> str:
    found = shutil.which("haproxy") or "/usr/sbin/haproxy"
    return found if os.access(found, os.X_OK) else peers.require_binary("haproxy")


@dataclass
class HaproxyFront:
    capture: HeaderCapture
    ports: dict[str, int]


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory) -> Iterator[HaproxyFront]:
    names = ("v1", "v2", "v1_ipv6", "v2_ipv6", "ready")
    ports = {name: peers.free_port() for name in names}
    with HeaderCapture() as capture:
        server = f"127.0.0.1:{capture.port}"
        config = f"""
global
    maxconn 64
defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend ready
    bind 127.0.0.1:{ports["ready"]}
    tcp-request connection reject
listen v1
    bind 127.0.0.1:{ports["v1"]}
    server hsscp {server} send-proxy
listen v2
    bind 127.0.0.1:{ports["v2"]}
    unique-id-format %ci:%cp_%fi:%fp_%rt
    server hsscp {server} send-proxy-v2 proxy-v2-options crc32c,unique-id check check-send-proxy inter 100ms
listen v1_ipv6
    bind 127.0.0.1:{ports["v1_ipv6"]}
    tcp-request connection set-src ipv6(2001:db8::7)
    server hsscp {server} send-proxy
listen v2_ipv6
    bind 127.0.0.1:{ports["v2_ipv6"]}
    tcp-request connection set-src ipv6(2001:db8::7)
    server hsscp {server} send-proxy-v2
"""
        path = tmp_path_factory.mktemp("haproxy") / "haproxy.cfg"
        path.write_text(config)
        with peers.running([_haproxy_binary(), "-db", "-f", str(path)], ready_port=ports["ready"]):
            yield HaproxyFront(capture, ports)


def _relay(front: HaproxyFront, name: str) -> tuple[tuple[str, int], Received]:
    """Connect through HAProxy, send an A-ASSOCIATE-RQ, and return what the server got."""
    with socket.create_connection((peers.HOST, front.ports[name]), timeout=5) as client:
        client_address = client.getsockname()
        client.sendall(ASSOCIATE_RQ)
        client.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            client.recv(1)  # the server closing after the FIN: its read is complete
    # The (client port, front port) pair names this connection among all the server saw.
    wanted = (client_address[1], front.ports[name])
    received = front.capture.take(
        lambda r: (
            r.header is not None and (r.header.source_port, r.header.destination_port) == wanted
        )
    )
    return client_address, received


@pytest.mark.interop
@pytest.mark.parametrize(
    ("name", "version", "family", "source", "destination"),
    [
        ("v1", 1, Family.INET, None, "127.0.0.1"),
        ("v2", 2, Family.INET, None, "127.0.0.1"),
        # HAProxy rewrites the source to an IPv6 address; the IPv4 destination then
        # travels IPv4-mapped, as HAProxy writes mixed families.
        ("v1_ipv6", 1, Family.INET6, "2001:db8::7", "::ffff:127.0.0.1"),
        ("v2_ipv6", 2, Family.INET6, "2001:db8::7", "::ffff:127.0.0.1"),
    ],
)
def test_haproxy_headers_carry_the_clients_address_and_the_dicom_stream_follows(
    haproxy: HaproxyFront, name: str, version: int, family: Family, source, destination: str
) -> None:
    client, received = _relay(haproxy, name)
    header = received.header
    assert received.error == ""
    assert (header.version, header.command, header.family, header.transport) == (
        version,
        Command.PROXY,
        family,
        Transport.STREAM,
    )
    assert header.peer == (source or client[0], client[1])
    assert header.destination_address == destination
    assert received.stream == ASSOCIATE_RQ
    if name == "v2":  # the reader has checked HAProxy's CRC32C
        assert [kind for kind, _ in header.tlvs] == [TlvType.CRC32C, TlvType.UNIQUE_ID]
        unique_id = header.tlv(TlvType.UNIQUE_ID).decode()
        assert unique_id.startswith(f"127.0.0.1:{client[1]}_127.0.0.1:{haproxy.ports[name]}_")


@pytest.mark.interop
def test_haproxy_health_checks_arrive_as_v2_local(haproxy: HaproxyFront) -> None:
    received = haproxy.capture.take(
        lambda r: r.header is not None and r.header.command is Command.LOCAL
    )
    assert received.header == V2_LOCAL and received.header.peer is None
    assert received.stream == b""
