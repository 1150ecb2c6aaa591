"""Read the PROXY protocol header (v1 text, v2 binary) a load balancer puts first on a connection.

HAProxy's ``send-proxy`` / ``send-proxy-v2`` prepend one header to each
connection it relays, carrying the client's address (HAProxy's
``doc/proxy-protocol.txt`` is the specification followed here). A
:class:`ProxyHeaderReader` is fed the connection's first bytes, in chunks of
any size; once the header is complete it returns the parsed
:class:`ProxyHeader` and a view of the bytes that followed it in the same
chunk: the start of the DICOM stream, handed on uncopied.

Sans-IO and bounded: no sockets, no clocks (the driver reads the header under
its ACSE timeout). At most one v1 line (107 bytes) or one v2 header (16 bytes
plus its announced length, at most 65535) is ever buffered, and only bytes
that have arrived are stored: a length field never sizes an allocation. Input
that cannot be the start of either header fails at once. A listener configured
for the protocol requires the header: guessing whether one is there would let
any client claim any address.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from dataclasses import dataclass
from enum import IntEnum

from hsscp.errors import HsscpError, LocalProtocolError

V1_PREFIX = b"PROXY "
V1_MAX_LINE = 107  # "PROXY UNKNOWN" with two full IPv6 addresses and ports, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_LENGTH = 16  # signature, version/command, family/transport, length
V2_MAX_HEADER = V2_FIXED_LENGTH + 0xFFFF

_V2_FIXED = struct.Struct(">BBH")  # after the signature
_V2_LENGTH = struct.Struct(">H")
_TLV_HEADER = struct.Struct(">BH")
_INET_ADDRESSES = struct.Struct(">4s4sHH")
_INET6_ADDRESSES = struct.Struct(">16s16sHH")
_UNIX_ADDRESSES = struct.Struct(">108s108s")
_V2_VERSION = 2
_CR, _P = 0x0D, 0x50  # the first byte of a v2 and of a v1 header


class ProxyProtocolError(HsscpError, ValueError):
    """The connection does not start with a valid PROXY protocol header: close it."""


class Command(IntEnum):
    """What the v2 header says of the connection (v1 headers are always PROXY)."""

    LOCAL = 0  # made by the proxy itself (a health check): keep the socket's own addresses
    PROXY = 1  # relayed for a client: the header carries the client's addresses


class Family(IntEnum):
    UNSPEC = 0  # v1 "UNKNOWN": no address given
    INET = 1
    INET6 = 2
    UNIX = 3


class Transport(IntEnum):
    UNSPEC = 0
    STREAM = 1
    DGRAM = 2


class TlvType(IntEnum):
    """The registered v2 TLV types (others are reported too, by number)."""

    ALPN = 0x01
    AUTHORITY = 0x02
    CRC32C = 0x03
    NOOP = 0x04
    UNIQUE_ID = 0x05
    SSL = 0x20
    NETNS = 0x30


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """One parsed header. Addresses are text (IP addresses in their canonical form, AF_UNIX
    paths decoded as file names); ports are None where the family has none."""

    version: int
    command: Command
    family: Family
    transport: Transport
    source_address: str | None = None
    source_port: int | None = None
    destination_address: str | None = None
    destination_port: int | None = None
    tlvs: tuple[tuple[int, bytes], ...] = ()

    @property
    def peer(self) -> tuple[str, int] | None:
        """The client's (address, port), or None when the header gives no IP peer (LOCAL,
        UNKNOWN / UNSPEC, AF_UNIX): the caller then keeps the socket's own peer."""
        if self.source_address is None or self.source_port is None:
            return None
        return self.source_address, self.source_port

    def tlv(self, tlv_type: int) -> bytes | None:
        """The value of the first TLV of ``tlv_type``, or None if there is none."""
        return next((value for kind, value in self.tlvs if kind == tlv_type), None)


class ProxyHeaderReader:
    """Incremental reader of the one PROXY header at the start of a connection.

    ``feed`` returns None while the header is incomplete, then
    ``(header, rest)`` where ``rest`` is a memoryview of the fed chunk's bytes
    after the header. Malformed input raises :class:`ProxyProtocolError`, and
    so does every later feed.
    """

    def __init__(self) -> None:
        self._staged = bytearray()  # a header split across chunks, never more than one header
        self._failed: ProxyProtocolError | None = None
        self._done = False

    @property
    def buffered(self) -> int:
        """How many bytes of an incomplete header are held."""
        return len(self._staged)

    def feed(self, data: bytes | bytearray | memoryview) -> tuple[ProxyHeader, memoryview] | None:
        """Take the next bytes of the connection: None (need more), or (header, rest)."""
        if self._done:
            raise LocalProtocolError("the PROXY header was already read; hand later bytes on")
        if self._failed is not None:
            raise ProxyProtocolError(f"the PROXY header was already refused: {self._failed}")
        view = memoryview(data).cast("B")
        try:
            result = self._read(view)
        except ProxyProtocolError as exc:
            self._failed = exc
            self._staged = bytearray()
            raise
        if result is not None:
            self._done = True
        return result

    def _read(self, view: memoryview) -> tuple[ProxyHeader, memoryview] | None:
        staged = self._staged
        if not staged:  # the usual case: the whole header in one chunk, parsed in place
            total = _header_length(view)
            if total is not None and total <= len(view):
                return _parse_header(view[:total]), view[total:]
            staged += view  # shorter than one header: header_length has checked the bound
            return None
        pos = 0
        while True:
            total = _header_length(staged)
            if total is not None and total <= len(staged):
                break
            if pos == len(view):
                return None
            # Take only what can still belong to the header: the v2 length once it is
            # known, else the 16 fixed v2 bytes or the longest v1 line.
            wanted = total if total is not None else _probe_length(staged)
            chunk = view[pos : pos + wanted - len(staged)]
            staged += chunk
            pos += len(chunk)
        self._staged = bytearray()
        with memoryview(staged) as whole:
            header = _parse_header(whole[:total])
        # A v1 line may have been staged with a few bytes past its LF: they stay in ``view``.
        return header, view[pos - (len(staged) - total) :]


def _header_length(prefix: bytes | bytearray | memoryview) -> int | None:
    """The total length of the header ``prefix`` begins, or None if more bytes must come first.

    Raises :class:`ProxyProtocolError` as soon as ``prefix`` cannot begin a
    valid header. A None answer means ``prefix`` is shorter than one header.
    """
    if not prefix:
        return None
    first = prefix[0]
    if first == _P:
        return _v1_length(prefix)
    if first == _CR:
        return _v2_length(prefix)
    raise ProxyProtocolError(
        f"the connection does not start with a PROXY protocol header (first byte 0x{first:02X})"
    )


def _parse_header(header: bytes | bytearray | memoryview) -> ProxyHeader:
    """Parse exactly one whole header, as delimited by :func:`_header_length`."""
    if header[0] == _P:
        return _parse_v1(bytes(header))
    return _parse_v2(memoryview(header).cast("B"))


def _probe_length(prefix: bytearray) -> int:
    """How far to read before :func:`_header_length` can tell the header's length."""
    return V1_MAX_LINE if prefix[0] == _P else V2_FIXED_LENGTH


def _check_prefix(prefix: bytes | bytearray | memoryview, signature: bytes, version: str) -> None:
    known = min(len(prefix), len(signature))
    if prefix[:known] != signature[:known]:
        raise ProxyProtocolError(f"not a PROXY protocol {version} header: bad signature")


# -- version 1: one text line ---------------------------------------------------------------


def _v1_length(prefix: bytes | bytearray | memoryview) -> int | None:
    _check_prefix(prefix, V1_PREFIX, "v1")
    end = bytes(prefix[:V1_MAX_LINE]).find(b"\n")  # a copy of at most 107 bytes
    if end >= 0:
        return end + 1
    if len(prefix) >= V1_MAX_LINE:
        raise ProxyProtocolError(f"PROXY v1 line has no CRLF within {V1_MAX_LINE} bytes")
    return None


def _parse_v1(line: bytes) -> ProxyHeader:
    # A stray CR elsewhere fails the field it is in, or is ignored after UNKNOWN.
    if line[-2:] != b"\r\n":
        raise ProxyProtocolError("PROXY v1 line must end with CRLF, not a bare LF")
    fields = line[:-2].split(b" ")
    protocol = fields[1]
    if protocol == b"UNKNOWN":  # whatever follows up to the CRLF is to be ignored
        return ProxyHeader(1, Command.PROXY, Family.UNSPEC, Transport.UNSPEC)
    families = {b"TCP4": Family.INET, b"TCP6": Family.INET6}
    if protocol not in families:
        raise ProxyProtocolError(
            f"PROXY v1 protocol must be TCP4, TCP6 or UNKNOWN, not {protocol!r}"
        )
    if len(fields) != 6:
        raise ProxyProtocolError(
            "PROXY v1 line must hold protocol, two addresses and two ports, one space apart"
        )
    family = families[protocol]
    source, destination, source_port, destination_port = fields[2:]
    return ProxyHeader(
        1,
        Command.PROXY,
        family,
        Transport.STREAM,
        _v1_address(source, family),
        _v1_port(source_port),
        _v1_address(destination, family),
        _v1_port(destination_port),
    )


_IPV6_CHARACTERS = frozenset(b"0123456789abcdefABCDEF:.")  # "." for a trailing dotted IPv4


def _v1_address(field: bytes, family: Family) -> str:
    # ipaddress alone would also take IPv6 scope IDs ("%eth0"); the line allows none.
    if family is Family.INET6 and not set(field) <= _IPV6_CHARACTERS:
        raise ProxyProtocolError(f"PROXY v1 address {field!r} is not an IPv6 address")
    try:
        return _ip_text(family, field.decode("ascii"))
    except ValueError:  # UnicodeDecodeError and AddressValueError (leading zeros too) included
        raise ProxyProtocolError(
            f"PROXY v1 address {field!r} is not a canonical {family.name} address"
        ) from None


def _ip_text(family: Family, address: str | bytes) -> str:
    """An IP address, from its text or its 4 or 16 bytes, in canonical text."""
    parsed = (
        ipaddress.IPv4Address(address) if family is Family.INET else ipaddress.IPv6Address(address)
    )
    mapped = getattr(parsed, "ipv4_mapped", None)
    # str() of an IPv4-mapped IPv6 address changed in Python 3.13: write it one way.
    return f"::ffff:{mapped}" if mapped is not None else str(parsed)


def _v1_port(field: bytes) -> int:
    # Decimal, no sign, no heading zero (it could read as octal), at most 65535.
    if not (field.isdigit() and len(field) <= 5) or (field[:1] == b"0" and field != b"0"):
        raise ProxyProtocolError(f"PROXY v1 port {field!r} is not a decimal in 0..65535")
    port = int(field)
    if port > 0xFFFF:
        raise ProxyProtocolError(f"PROXY v1 port {port} is above 65535")
    return port


# -- version 2: binary ----------------------------------------------------------------------


# Size of the address block each (family, transport) announces; UNSPEC in either means none.
_ADDRESS_LENGTHS = {
    Family.INET: _INET_ADDRESSES.size,
    Family.INET6: _INET6_ADDRESSES.size,
    Family.UNIX: _UNIX_ADDRESSES.size,
}


def _v2_length(prefix: bytes | bytearray | memoryview) -> int | None:
    # Each fixed byte is checked as soon as it arrives.
    _check_prefix(prefix, V2_SIGNATURE, "v2")
    if len(prefix) <= len(V2_SIGNATURE):
        return None
    proxied = _v2_command(prefix[12]) is Command.PROXY
    if proxied and len(prefix) > 13:
        family, transport = _v2_family(prefix[13])
    if len(prefix) < V2_FIXED_LENGTH:
        return None
    (length,) = _V2_LENGTH.unpack_from(prefix, 14)
    if proxied and length < (needed := _address_length(family, transport)):
        raise ProxyProtocolError(
            f"PROXY v2 length {length} is too short for the {family.name} addresses ({needed})"
        )
    return V2_FIXED_LENGTH + length


def _v2_command(ver_cmd: int) -> Command:
    if ver_cmd >> 4 != _V2_VERSION:
        raise ProxyProtocolError(f"PROXY v2 header of version {ver_cmd >> 4}, not 2")
    try:
        return Command(ver_cmd & 0x0F)
    except ValueError:
        raise ProxyProtocolError(
            f"PROXY v2 command {ver_cmd & 0x0F} is not LOCAL or PROXY"
        ) from None


def _v2_family(family_transport: int) -> tuple[Family, Transport]:
    try:
        return Family(family_transport >> 4), Transport(family_transport & 0x0F)
    except ValueError:
        raise ProxyProtocolError(
            f"PROXY v2 family/transport byte 0x{family_transport:02X} is not one the protocol defines"
        ) from None


def _address_length(family: Family, transport: Transport) -> int:
    if transport is Transport.UNSPEC:
        return 0
    return _ADDRESS_LENGTHS.get(family, 0)


def _parse_v2(header: memoryview) -> ProxyHeader:
    ver_cmd, family_transport, _ = _V2_FIXED.unpack_from(header, 12)
    if _v2_command(ver_cmd) is Command.LOCAL:
        # A health check: the address block, family included, is to be skipped.
        return ProxyHeader(2, Command.LOCAL, Family.UNSPEC, Transport.UNSPEC)
    family, transport = _v2_family(family_transport)
    address_end = V2_FIXED_LENGTH + _address_length(family, transport)
    if address_end == V2_FIXED_LENGTH:
        # UNSPEC: nothing says where an address in the block would end, nor TLVs begin.
        return ProxyHeader(2, Command.PROXY, family, transport)
    addresses = _v2_addresses(family, header[V2_FIXED_LENGTH:address_end])
    tlvs = _parse_tlvs(header, address_end)
    return ProxyHeader(2, Command.PROXY, family, transport, *addresses, tlvs=tlvs)


def _v2_addresses(family: Family, block: memoryview) -> tuple:
    """(source, source port, destination, destination port) of an address block."""
    if family is Family.UNIX:
        source, destination = _UNIX_ADDRESSES.unpack(block)
        return _unix_name(source), None, _unix_name(destination), None
    layout = _INET_ADDRESSES if family is Family.INET else _INET6_ADDRESSES
    source, destination, source_port, destination_port = layout.unpack(block)
    return _ip_text(family, source), source_port, _ip_text(family, destination), destination_port


def _unix_name(raw: bytes) -> str:
    # A path ends at its first NUL; an abstract name starts with one and runs to the padding.
    name = raw.rstrip(b"\0") if raw[:1] == b"\0" else raw.split(b"\0", 1)[0]
    return os.fsdecode(name)


def _parse_tlvs(header: memoryview, pos: int) -> tuple[tuple[int, bytes], ...]:
    tlvs = []
    crc_at = None
    end = len(header)
    while pos < end:
        if end - pos < _TLV_HEADER.size:
            raise ProxyProtocolError(
                f"PROXY v2 TLV cut short: {end - pos} byte(s) after the last one"
            )
        kind, length = _TLV_HEADER.unpack_from(header, pos)
        start = pos + _TLV_HEADER.size
        pos = start + length
        if pos > end:
            raise ProxyProtocolError(
                f"PROXY v2 TLV 0x{kind:02X} announces {length} bytes, the header holds {end - start}"
            )
        if kind == TlvType.CRC32C:
            if length != 4 or crc_at is not None:
                raise ProxyProtocolError("PROXY v2 header must hold at most one 4-byte CRC32C TLV")
            crc_at = start
        tlvs.append((kind, bytes(header[start:pos])))
    if crc_at is not None:
        _check_crc32c(header, crc_at)
    return tuple(tlvs)


def _check_crc32c(header: memoryview, at: int) -> None:
    # The checksum covers the whole header with its own 4 bytes zeroed.
    sent = int.from_bytes(header[at : at + 4], "big")
    zeroed = bytearray(header)
    zeroed[at : at + 4] = bytes(4)
    if crc32c(zeroed) != sent:
        raise ProxyProtocolError("PROXY v2 header fails its CRC32C check")


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for index in range(256):
        crc = index
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli, reflected
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli, RFC 4960 appendix B), the checksum of the PP2_TYPE_CRC32C TLV."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
