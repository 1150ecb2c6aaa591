"""Checks of the values the pynetdicom-shaped API takes, with pynetdicom's error messages.

Each raises (TypeError or ValueError) before anything touches the network,
so a bad argument never leaves a half-made association behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hsscp.presentation import PresentationContext

__all__ = [
    "DEFAULT_MAX_PDU",
    "check_address",
    "check_contexts",
    "check_max_pdu",
    "check_message_id",
    "check_version_name",
    "is_number",
    "remote_address",
]

# pynetdicom's default maximum PDU receive size, for the AE and for one association.
DEFAULT_MAX_PDU = 16382
VERSION_NAME_LENGTH = 16


def is_number(value: Any) -> bool:
    """An int or float, but not a bool (which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_address(addr: Any, port: Any) -> None:
    """``addr`` a host str or (host, flowinfo, scope_id) for IPv6; ``port`` an int."""
    valid_tuple = (
        isinstance(addr, tuple)
        and len(addr) == 3
        and isinstance(addr[0], str)
        and all(isinstance(part, int) for part in addr[1:])
    )
    if not isinstance(addr, str) and not valid_tuple:
        raise TypeError("'addr' must be str or tuple[str, int, int]")
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError("'port' must be int")


def remote_address(addr: str | tuple, port: int) -> tuple:
    """The socket address to connect to: (host, port) or (host, port, flowinfo, scope_id)."""
    check_address(addr, port)
    if isinstance(addr, tuple):
        return (addr[0], port, addr[1], addr[2])
    return (addr, port)


def check_contexts(contexts: Any) -> list[PresentationContext]:
    """``contexts`` as a list, if it is an iterable of PresentationContext items."""
    if isinstance(contexts, PresentationContext) or not isinstance(contexts, Iterable):
        raise ValueError("'contexts' must be a list of PresentationContext items")
    contexts = list(contexts)
    if not all(isinstance(context, PresentationContext) for context in contexts):
        raise ValueError("'contexts' must be a list of PresentationContext items")
    return contexts


def check_version_name(value: Any) -> str:
    """Validate an Implementation Version Name (PS3.7 D.3.3.2.3: 1-16 chars of SH)."""
    if isinstance(value, bytes | bytearray):
        try:
            text = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(
                f"Invalid 'implementation_version_name' value {value!r}: not ASCII"
            ) from None
    elif isinstance(value, str):
        text = value
    else:
        raise TypeError("'implementation_version_name' must be str, bytes or None")
    if not 0 < len(text) <= VERSION_NAME_LENGTH or not text.strip(" "):
        raise ValueError(
            f"Invalid 'implementation_version_name' value {value!r}: "
            f"must be 1 to {VERSION_NAME_LENGTH} characters"
        )
    if "\\" in text or any(not 0x20 <= ord(ch) <= 0x7E for ch in text):
        raise ValueError(
            f"Invalid 'implementation_version_name' value {value!r}: "
            "contains a backslash or control characters"
        )
    return text


def check_max_pdu(value: int) -> int:
    """A Maximum Length sub-item value: 32 bits, 0 meaning unlimited (PS3.8 D.1)."""
    if not isinstance(value, int) or value < 0 or value > 0xFFFFFFFF:
        raise ValueError("'max_pdu' must be an int from 0 (unlimited) to 4294967295")
    return value


def check_message_id(msg_id: int) -> None:
    """A DIMSE Message ID is an unsigned 16-bit value."""
    if not isinstance(msg_id, int) or not 0 <= msg_id <= 0xFFFF:
        raise ValueError("'msg_id' must be an int between 0 and 65535, inclusive")
