"""What the association engine tells its driver (PS3.8's indications and confirmations).

Small frozen slotted classes: cheap to make, safe to pass around.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hsscp.pdu import AAssociateAC, AAssociateRQ


@dataclass(frozen=True, slots=True)
class AssociationRequested:
    """A-ASSOCIATE indication: a peer asks; answer with ``accept()`` or ``reject()``."""

    request: AAssociateRQ


@dataclass(frozen=True, slots=True)
class AssociationAccepted:
    """A-ASSOCIATE confirmation (accept), on the requestor side."""

    response: AAssociateAC


@dataclass(frozen=True, slots=True)
class AssociationRejected:
    """A-ASSOCIATE confirmation (reject) with the A-ASSOCIATE-RJ fields."""

    result: int
    source: int
    reason: int


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A whole DIMSE message: its command and whatever its dataset sink made of the bytes."""

    context_id: int
    command: Any
    dataset: Any = None


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    """A-RELEASE indication; ``collision`` when both sides asked at once."""

    collision: bool = False


@dataclass(frozen=True, slots=True)
class ReleaseConfirmed:
    """A-RELEASE confirmation: the association is over."""


@dataclass(frozen=True, slots=True)
class Aborted:
    """A-ABORT (the peer aborted, ``by_peer``) or A-P-ABORT (the provider did).

    ``source`` and ``reason`` are those of the A-ABORT PDU received or sent;
    a transport connection lost without one reads as source 2, reason 0.
    """

    source: int
    reason: int
    by_peer: bool
    detail: str = ""


Indication = (
    AssociationRequested
    | AssociationAccepted
    | AssociationRejected
    | MessageReceived
    | ReleaseRequested
    | ReleaseConfirmed
    | Aborted
)
