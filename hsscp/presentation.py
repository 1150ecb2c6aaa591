"""Presentation contexts and their negotiation (PS3.8 9.3.2.2, 9.3.3.2, PS3.7 D.3.3.4).

The negotiation functions work on plain data, so the association code can feed
them whatever its PDU decoder produced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import IntEnum
from typing import Any, NamedTuple

from pydicom import config
from pydicom.uid import UID

from hsscp import items
from hsscp.sop_class import COMMON_STORAGE_CLASSES, STORAGE_SOP_CLASSES, uid_to_sop_class
from hsscp.uid import DEFAULT_TRANSFER_SYNTAXES, VERIFICATION_SOP_CLASS

__all__ = [
    "AllStoragePresentationContexts",
    "ContextResult",
    "PresentationContext",
    "PresentationContextTuple",
    "StoragePresentationContexts",
    "VerificationPresentationContexts",
    "build_context",
    "build_role",
    "negotiate_as_acceptor",
    "negotiate_as_requestor",
]

_MAX_UID_LENGTH = 64


class ContextResult(IntEnum):
    """Presentation context result/reason (PS3.8 9.3.3.2)."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    PROVIDER_REJECTION = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


_STATUS = {
    None: "Pending",
    ContextResult.ACCEPTANCE: "Accepted",
    ContextResult.USER_REJECTION: "User Rejected",
    ContextResult.PROVIDER_REJECTION: "Provider Rejected",
    ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED: "Abstract Syntax Not Supported",
    ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED: "Transfer Syntax(es) Not Supported",
}


class PresentationContextTuple(NamedTuple):
    """An accepted context as the event handlers see it."""

    context_id: int
    abstract_syntax: UID
    transfer_syntax: UID


def _unpadded(value: str | bytes, what: str) -> str:
    """Return `value` as str without the NUL/space padding PDUs may carry."""
    if isinstance(value, bytes):
        value = value.decode("ascii")
    if not isinstance(value, str):
        raise TypeError(f"'{what}' must be str or bytes, not {type(value).__name__}")
    stripped = value.rstrip("\0 ")
    # Keep the caller's object (a SOPClass stays a SOPClass) when nothing was stripped.
    return value if len(stripped) == len(value) else stripped


def _to_uid(value: str | bytes, what: str) -> UID:
    """Return `value` as a UID, checking only its length.

    Lenient like pynetdicom's default: peers in the wild propose
    non-conformant UIDs and negotiation should still work with them.
    """
    text = _unpadded(value, what)
    if not 0 < len(text) <= _MAX_UID_LENGTH:
        raise ValueError(f"'{what}' must be 1 to 64 characters long, got {value!r}")
    return text if isinstance(text, UID) else UID(text, validation_mode=config.IGNORE)


class PresentationContext:
    """A presentation context as proposed, supported or negotiated.

    On a supported context ``scu_role``/``scp_role`` say whether the acceptor
    agrees to a requestor proposing that role for itself (None: ignore role
    proposals); on a requested context they are the roles being proposed.
    ``as_scu``/``as_scp`` are set by negotiation.
    """

    __slots__ = (
        "_abstract_syntax",
        "_as_scp",
        "_as_scu",
        "_context_id",
        "_scp_role",
        "_scu_role",
        "_transfer_syntax",
        "result",
    )

    def __init__(self) -> None:
        self._context_id: int | None = None
        self._abstract_syntax: UID | None = None
        self._transfer_syntax: list[UID] = []
        self.result: int | None = None
        self._scu_role: bool | None = None
        self._scp_role: bool | None = None
        self._as_scu: bool | None = None
        self._as_scp: bool | None = None

    @property
    def context_id(self) -> int | None:
        """The presentation context ID: an odd integer from 1 to 255."""
        return self._context_id

    @context_id.setter
    def context_id(self, value: int | None) -> None:
        if value is not None and (not 1 <= value <= 255 or value % 2 == 0):
            raise ValueError("'context_id' must be an odd integer between 1 and 255, inclusive")
        self._context_id = value

    @property
    def abstract_syntax(self) -> UID | None:
        """The abstract syntax; may be set from str or bytes."""
        return self._abstract_syntax

    @abstract_syntax.setter
    def abstract_syntax(self, value: str | bytes | None) -> None:
        self._abstract_syntax = None if value is None else _to_uid(value, "abstract_syntax")

    @property
    def transfer_syntax(self) -> list[UID]:
        """The transfer syntaxes, in order of preference."""
        return self._transfer_syntax

    @transfer_syntax.setter
    def transfer_syntax(self, syntaxes: Iterable[str | bytes]) -> None:
        if isinstance(syntaxes, (str, bytes)):
            raise TypeError("'transfer_syntax' must be a list")
        self._transfer_syntax = []
        for syntax in syntaxes:
            self.add_transfer_syntax(syntax)

    def add_transfer_syntax(self, syntax: str | bytes | None) -> None:
        """Append `syntax` unless it is already listed, None or empty."""
        # A rejected context in an A-ASSOCIATE-AC may carry an empty one.
        if syntax is None or not _unpadded(syntax, "transfer_syntax"):
            return
        uid = _to_uid(syntax, "transfer_syntax")
        if uid not in self._transfer_syntax:
            self._transfer_syntax.append(uid)

    @property
    def scu_role(self) -> bool | None:
        """Whether a proposed SCU role is accepted (supported) or proposed (requested)."""
        return self._scu_role

    @scu_role.setter
    def scu_role(self, value: bool | None) -> None:
        self._scu_role = _role(value, "scu_role")

    @property
    def scp_role(self) -> bool | None:
        """Whether a proposed SCP role is accepted (supported) or proposed (requested)."""
        return self._scp_role

    @scp_role.setter
    def scp_role(self, value: bool | None) -> None:
        self._scp_role = _role(value, "scp_role")

    @property
    def as_scu(self) -> bool | None:
        """After negotiation: whether the local AE may act as SCU on this context."""
        return self._as_scu

    @property
    def as_scp(self) -> bool | None:
        """After negotiation: whether the local AE may act as SCP on this context."""
        return self._as_scp

    @property
    def as_tuple(self) -> PresentationContextTuple:
        """The accepted context as (context_id, abstract_syntax, transfer_syntax)."""
        if self._context_id is None or self._abstract_syntax is None or not self._transfer_syntax:
            raise ValueError("Only a negotiated context can be made a tuple")
        return PresentationContextTuple(
            self._context_id, self._abstract_syntax, self._transfer_syntax[0]
        )

    @property
    def status(self) -> str:
        """The result in words, e.g. "Accepted"."""
        return _STATUS.get(self.result, "Unknown")

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, PresentationContext):
            return NotImplemented
        return (
            self._context_id == other._context_id
            and self._abstract_syntax == other._abstract_syntax
            and self._transfer_syntax == other._transfer_syntax
        )

    def __hash__(self) -> int:
        return hash((self._context_id, self._abstract_syntax, tuple(self._transfer_syntax)))

    def __repr__(self) -> str:
        return self._abstract_syntax.name if self._abstract_syntax is not None else "(none)"

    def __str__(self) -> str:
        # Same layout as pynetdicom, which user code and logs already expect.
        lines = []
        if self._context_id is not None:
            lines.append(f"ID: {self._context_id}")
        if self._abstract_syntax is not None:
            lines.append(f"Abstract Syntax: {self._abstract_syntax.name}")
        lines.append("Transfer Syntax(es):")
        if self._transfer_syntax:
            lines.extend(f"    ={syntax.name}" for syntax in self._transfer_syntax)
        else:
            lines.append("    (none)")
        if self.result is not None:
            lines.append(f"Result: {self.status}")
        if self._as_scu is not None and self._as_scp is not None:
            lines.append(f"Role: {_ROLE_NAMES[self._as_scu, self._as_scp]}")
        return "\n".join(lines)


_ROLE_NAMES = {
    (True, False): "SCU only",
    (True, True): "SCU and SCP",
    (False, True): "SCP only",
    (False, False): "(none)",
}


def _role(value: Any, what: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"'{what}' must be a bool or None")
    return value


def build_context(
    abstract_syntax: str | bytes,
    transfer_syntax: str | bytes | Iterable[str | bytes] | None = None,
) -> PresentationContext:
    """Return a context for `abstract_syntax` with one or more transfer syntaxes.

    The default transfer syntaxes are Implicit VR Little Endian, Explicit VR
    Little Endian and Explicit VR Big Endian.
    """
    if transfer_syntax is None:
        transfer_syntax = DEFAULT_TRANSFER_SYNTAXES
    elif isinstance(transfer_syntax, (str, bytes)):
        transfer_syntax = [transfer_syntax]
    context = PresentationContext()
    context.abstract_syntax = abstract_syntax
    context.transfer_syntax = transfer_syntax
    return context


def _negotiated(
    context_id: int | None,
    abstract_syntax: UID | None,
    transfer_syntax: list[UID],
    result: int,
    as_scu: bool,
    as_scp: bool,
) -> PresentationContext:
    """A result context from values that are already valid UIDs."""
    context = PresentationContext()
    context._context_id = context_id
    context._abstract_syntax = abstract_syntax
    context._transfer_syntax = transfer_syntax
    context.result = result
    context._as_scu = as_scu
    context._as_scp = as_scp
    return context


def _choose_transfer_syntax(
    proposed: list[UID], supported: list[UID], prefer_proposed: bool
) -> UID | None:
    if prefer_proposed:
        acceptable = set(supported)
        return next((syntax for syntax in proposed if syntax in acceptable), None)
    offered = set(proposed)
    return next((syntax for syntax in supported if syntax in offered), None)


def _acceptor_roles(
    proposal: tuple[bool, bool] | None, allowed: tuple[bool | None, bool | None]
) -> tuple[tuple[bool, bool], tuple[bool, bool] | None]:
    """Return the acceptor's (as_scu, as_scp) and the (scu, scp) reply, if any.

    pynetdicom's rule (its SCP_SCU_ROLES table reduces to this): with no
    proposal, or an acceptor that leaves either role as None, default roles
    apply and no reply is sent; otherwise a role is granted only if it was both
    proposed and allowed, as PS3.7 D.3.3.4 forbids granting an unproposed role.
    """
    allowed_scu, allowed_scp = allowed
    if proposal is None or allowed_scu is None or allowed_scp is None:
        return (False, True), None
    reply = (bool(proposal[0]) and allowed_scu, bool(proposal[1]) and allowed_scp)
    # The requestor acting as SCU makes us the SCP, and the other way round.
    return (reply[1], reply[0]), reply


def negotiate_as_acceptor(
    proposed: Sequence[PresentationContext],
    supported: Sequence[PresentationContext],
    roles: Mapping[str, tuple[bool, bool]] | None = None,
    *,
    prefer_proposed: bool = False,
    unknown_syntaxes: Sequence[str] = (),
) -> tuple[list[PresentationContext], list[tuple[str, bool, bool]]]:
    """Answer the requestor's presentation contexts as the association acceptor.

    `roles` maps an abstract syntax to the requestor's proposed (scu, scp) roles
    from its SCP/SCU Role Selection items. Returns one result context per
    proposed context, by context ID, each carrying one transfer syntax, and the
    (abstract_syntax, scu_role, scp_role) Role Selection replies for the
    A-ASSOCIATE-AC, by abstract syntax. ``as_scu``/``as_scp`` on accepted
    contexts are from the acceptor's point of view.

    Like pynetdicom, the first of the supported context's transfer syntaxes
    that was proposed wins; with `prefer_proposed` the first proposed one that
    is supported wins instead. With `unknown_syntaxes`, an abstract syntax no
    supported context names is accepted as SCP in those transfer syntaxes
    (DCMTK storescp's promiscuous mode).
    """
    roles = roles or {}
    # Supported abstract syntaxes are unique; if repeated, the last one counts.
    by_abstract_syntax = {context.abstract_syntax: context for context in supported}
    results: list[PresentationContext] = []
    replies: dict[str, tuple[bool, bool]] = {}

    for request in proposed:
        abstract_syntax = request.abstract_syntax
        offer = by_abstract_syntax.get(abstract_syntax)
        if offer is None and unknown_syntaxes and abstract_syntax:
            offer = build_context(abstract_syntax, list(unknown_syntaxes))
        context, reply = _answer(request, offer, roles.get(abstract_syntax), prefer_proposed)
        results.append(context)
        if reply is not None:
            replies[abstract_syntax] = reply

    results.sort(key=lambda context: context.context_id or 0)
    role_replies = [(uid, scu, scp) for uid, (scu, scp) in sorted(replies.items())]
    return results, role_replies


def _answer(
    request: PresentationContext,
    offer: PresentationContext | None,
    proposal: tuple[bool, bool] | None,
    prefer_proposed: bool,
) -> tuple[PresentationContext, tuple[bool, bool] | None]:
    """Negotiate one proposed context: the result context and any role reply."""
    context_id, abstract_syntax = request.context_id, request.abstract_syntax
    # A rejected context echoes the first proposed transfer syntax.
    first_proposed = request.transfer_syntax[:1]
    if offer is None:
        result = ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
        return _negotiated(context_id, abstract_syntax, first_proposed, result, False, False), None

    syntax = _choose_transfer_syntax(
        request.transfer_syntax, offer.transfer_syntax, prefer_proposed
    )
    if syntax is None:
        result = ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED
        return _negotiated(context_id, abstract_syntax, first_proposed, result, False, False), None

    (as_scu, as_scp), reply = _acceptor_roles(proposal, (offer.scu_role, offer.scp_role))
    if as_scu or as_scp:
        result = ContextResult.ACCEPTANCE
    else:
        # As pynetdicom does: a context neither side may use is rejected by the user.
        result, reply = ContextResult.USER_REJECTION, None
    return _negotiated(context_id, abstract_syntax, [syntax], result, as_scu, as_scp), reply


def _requestor_roles(
    proposal: tuple[bool | None, bool | None], reply: tuple[bool, bool] | None
) -> tuple[bool, bool]:
    """Return the requestor's (as_scu, as_scp), by the same rule as the acceptor's."""
    if reply is None or None in reply or proposal == (None, None):
        return True, False
    return bool(proposal[0]) and reply[0], bool(proposal[1]) and reply[1]


def _answered_by_peer(
    request: PresentationContext,
    result: int,
    syntax: str | bytes | None,
    role_replies: Mapping[str, tuple[bool, bool]],
) -> PresentationContext:
    """The requested context with the acceptor's answer and our resulting roles."""
    chosen = [_to_uid(syntax, "transfer_syntax")] if syntax else []
    if result == ContextResult.ACCEPTANCE:
        as_scu, as_scp = _requestor_roles(
            (request.scu_role, request.scp_role), role_replies.get(request.abstract_syntax)
        )
    else:
        # pynetdicom reports a rejected context with the default requestor role.
        as_scu, as_scp = True, False
    return _negotiated(request.context_id, request.abstract_syntax, chosen, result, as_scu, as_scp)


def negotiate_as_requestor(
    requested: Sequence[PresentationContext],
    results: Iterable[tuple[int, int, str | bytes | None]],
    role_replies: Mapping[str, tuple[bool, bool]] | None = None,
) -> list[PresentationContext]:
    """Match the A-ASSOCIATE-AC results back to the contexts we requested.

    `results` holds (context_id, result, transfer_syntax) per result item and
    `role_replies` maps an abstract syntax to the acceptor's (scu, scp) Role
    Selection reply. Each returned context has the requested abstract syntax,
    the result, the transfer syntax the acceptor chose and our
    ``as_scu``/``as_scp``; a requested context the acceptor left out counts as
    rejected by the provider (0x02), as in pynetdicom.
    """
    if not requested:
        raise ValueError("Requestor contexts are required")
    role_replies = role_replies or {}
    answers = {context_id: (result, syntax) for context_id, result, syntax in results}
    negotiated: list[PresentationContext] = []

    for request in requested:
        answer = answers.get(request.context_id)
        if answer is None:
            context = _negotiated(
                request.context_id, request.abstract_syntax, request.transfer_syntax[:1],
                ContextResult.PROVIDER_REJECTION, False, False,
            )
        else:
            context = _answered_by_peer(request, *answer, role_replies)
        negotiated.append(context)

    negotiated.sort(key=lambda context: context.context_id or 0)
    return negotiated


def build_role(uid: str | bytes, scu_role: bool = False, scp_role: bool = False) -> items.RoleSelection:
    """An SCP/SCU Role Selection item for ``ext_neg``, as pynetdicom's ``build_role``.

    `scu_role`/`scp_role` say whether the requestor proposes to be SCU/SCP
    for the SOP class `uid`.
    """
    if not isinstance(scu_role, bool) or not isinstance(scp_role, bool):
        raise TypeError("'scu_role' and 'scp_role' must be bool")
    return items.RoleSelection(_to_uid(uid, "uid"), scu_role, scp_role)


VerificationPresentationContexts: list[PresentationContext] = [
    build_context(uid_to_sop_class(VERIFICATION_SOP_CLASS))
]
"""Verification with the default transfer syntaxes."""

StoragePresentationContexts: list[PresentationContext] = [
    build_context(uid_to_sop_class(uid)) for uid in COMMON_STORAGE_CLASSES
]
"""pynetdicom's 120 storage classes, in its order, with the default transfer syntaxes."""

AllStoragePresentationContexts: list[PresentationContext] = [
    build_context(uid) for uid in STORAGE_SOP_CLASSES
]
"""Every storage class with the default transfer syntaxes, by UID."""
