"""Errors that say whose fault they are; every one hsscp raises on purpose is an :class:`HsscpError`.

A :class:`RemoteProtocolError` means the peer broke PS3.8/PS3.7; it carries
the A-ABORT source and reason the engine answers with. A
:class:`LocalProtocolError` means our own caller asked for something the
state machine forbids in its current state. An :class:`InvalidInput` is bad
data or configuration handed to the library (a file, a data set, a setting);
it stays a ``ValueError`` too, so ``except ValueError`` keeps catching it.
"""

from __future__ import annotations

from enum import IntEnum


class AbortSource(IntEnum):
    """A-ABORT source field (PS3.8 9.3.8)."""

    SERVICE_USER = 0
    RESERVED = 1
    SERVICE_PROVIDER = 2


class AbortReason(IntEnum):
    """A-ABORT reason/diag when the source is the service provider (PS3.8 9.3.8)."""

    NOT_SPECIFIED = 0
    UNRECOGNIZED_PDU = 1
    UNEXPECTED_PDU = 2
    RESERVED = 3
    UNRECOGNIZED_PDU_PARAMETER = 4
    UNEXPECTED_PDU_PARAMETER = 5
    INVALID_PDU_PARAMETER_VALUE = 6


class HsscpError(Exception):
    """Base of every error hsscp raises on purpose."""


class RemoteProtocolError(HsscpError):
    """The peer sent something PS3.8/PS3.7 does not allow.

    ``source`` and ``reason`` are what the A-ABORT we answer with carries.
    """

    def __init__(
        self,
        message: str,
        reason: AbortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE,
        source: AbortSource = AbortSource.SERVICE_PROVIDER,
    ) -> None:
        super().__init__(message)
        self.reason = AbortReason(reason)
        self.source = AbortSource(source)


class LocalProtocolError(HsscpError):
    """Our caller asked the engine for something its state does not allow."""


class InvalidInput(HsscpError, ValueError):
    """Bad input or configuration: the base of the library's ``ValueError`` subclasses."""


def invalid(message: str) -> RemoteProtocolError:
    """The error for a value from the peer that PS3.8/PS3.7 does not allow (invalid-PDU-parameter-value)."""
    return RemoteProtocolError(message, AbortReason.INVALID_PDU_PARAMETER_VALUE)
