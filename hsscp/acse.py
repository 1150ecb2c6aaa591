"""Association establishment policy: building A-ASSOCIATE-RQs and answering them.

Between the API's presentation contexts and the engine's PDUs. Pure: the
drivers (blocking SCU, event-loop SCP, load generator) all call these.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hsscp import items
from hsscp.pdu import DICOM_APPLICATION_CONTEXT, AAssociateAC, AAssociateRJ, AAssociateRQ
from hsscp.presentation import (
    ContextResult,
    PresentationContext,
    build_context,
    negotiate_as_acceptor,
    negotiate_as_requestor,
)

MAX_REQUESTED_CONTEXTS = 128

# A-ASSOCIATE-RJ (result, source, reason) triples, as pynetdicom sends them.
REJECT_NO_REASON = (1, 1, 1)
REJECT_APPLICATION_CONTEXT = (1, 1, 2)
REJECT_CALLING_AE_TITLE = (1, 1, 3)
REJECT_CALLED_AE_TITLE = (1, 1, 7)
REJECT_LOCAL_LIMIT = (2, 3, 2)
# pynetdicom's answer to a user identity its EVT_USER_ID handler did not verify:
# rejected-transient, service-provider (ACSE), no reason given.
REJECT_USER_IDENTITY = (2, 2, 1)


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    """What a local AE says about itself in every A-ASSOCIATE PDU."""

    ae_title: str
    maximum_pdu_size: int
    implementation_class_uid: str
    implementation_version_name: str


def _identity_items(identity: LocalIdentity) -> list:
    subs: list = [
        items.MaximumLength(identity.maximum_pdu_size),
        items.ImplementationClassUID(identity.implementation_class_uid),
    ]
    if identity.implementation_version_name:
        subs.append(items.ImplementationVersionName(identity.implementation_version_name))
    return subs


def build_request(
    identity: LocalIdentity,
    called_ae_title: str,
    contexts: Sequence[PresentationContext],
    ext_neg: Iterable = (),
) -> tuple[AAssociateRQ, list[PresentationContext]]:
    """An A-ASSOCIATE-RQ proposing ``contexts`` (given odd IDs 1, 3, 5 ... in order).

    Returns the PDU and copies of the contexts carrying their IDs. ``ext_neg``
    holds extra user information sub-items (:mod:`hsscp.items` instances).
    """
    if not contexts:
        raise RuntimeError("At least one requested presentation context is required")
    if len(contexts) > MAX_REQUESTED_CONTEXTS:
        raise ValueError(f"At most {MAX_REQUESTED_CONTEXTS} presentation contexts can be requested")
    requested: list[PresentationContext] = []
    for index, context in enumerate(contexts):
        copy = build_context(context.abstract_syntax, context.transfer_syntax)
        copy.context_id = 2 * index + 1
        copy.scu_role, copy.scp_role = context.scu_role, context.scp_role
        requested.append(copy)
    roles = _role_items(requested)
    request = AAssociateRQ(
        called_ae_title=called_ae_title,
        calling_ae_title=identity.ae_title,
        application_context=DICOM_APPLICATION_CONTEXT,
        presentation_contexts=[
            items.PresentationContextRQ(pc.context_id, str(pc.abstract_syntax), [str(ts) for ts in pc.transfer_syntax])
            for pc in requested
        ],
        user_information=items.UserInformation([*_identity_items(identity), *roles, *ext_neg]),
    )
    return request, requested


def _role_items(contexts: Sequence[PresentationContext]) -> list[items.RoleSelection]:
    """One SCP/SCU Role Selection item per SOP class proposing roles (PS3.7 D.3.3.4).

    The item names one of three role values (SCU, SCP or both): a proposal
    of neither, or contexts of one SOP class proposing different roles, is
    refused (ValueError) rather than sent.
    """
    proposals: dict[str, tuple[int, int]] = {}
    for context in contexts:
        if context.scu_role is None and context.scp_role is None:
            continue
        uid = str(context.abstract_syntax)
        proposal = (int(bool(context.scu_role)), int(bool(context.scp_role)))
        if proposal == (0, 0):
            raise ValueError(f"SCU and SCP Roles cannot both be unsupported for '{uid}'")
        if proposals.setdefault(uid, proposal) != proposal:
            raise ValueError(f"The requested contexts for '{uid}' propose different SCP/SCU roles")
    return [items.RoleSelection(uid, scu, scp) for uid, (scu, scp) in proposals.items()]


def requestor_contexts(requested: Sequence[PresentationContext], response: AAssociateAC) -> list[PresentationContext]:
    """The contexts as the acceptor answered them, with our resulting roles."""
    results = [(pc.context_id, pc.result, pc.transfer_syntax) for pc in response.presentation_contexts]
    replies = {
        role.sop_class_uid: (bool(role.scu_role), bool(role.scp_role))
        for role in response.user_information.role_selections
    }
    return negotiate_as_requestor(requested, results, replies)


@dataclass(frozen=True, slots=True)
class AcceptorPolicy:
    """How an acceptor decides: the AE's settings at the time of the request."""

    identity: LocalIdentity
    supported_contexts: Sequence[PresentationContext]
    require_called_aet: bool = False
    require_calling_aet: Sequence[str] = ()
    # How many operations we let the requestor have outstanding, if it asks.
    max_operations_performed: int = 1
    # Whose transfer syntax order wins: the requestor's (hsscp's default: it knows its data)
    # or the order of the supported context (pynetdicom's rule; DCMTK's +x= +xe +xi ...).
    prefer_proposed: bool = True
    # Accept storage abstract syntaxes no supported context names (DCMTK's -pm), in these syntaxes.
    promiscuous_syntaxes: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class ExtendedAnswers:
    """The acceptor's answers to the requestor's extended negotiation (its handlers' returns).

    ``async_window`` None: the policy's own Asynchronous Operations answer.
    """

    identity_verified: bool = True
    identity_response: bytes | None = None
    sop_extended: dict[str, bytes] = field(default_factory=dict)
    async_window: tuple[int, int] | None = None


NO_EXTENDED_ANSWERS = ExtendedAnswers()


@dataclass(slots=True)
class Answer:
    """Either ``response`` (with the negotiated ``contexts``) or ``rejection``."""

    response: AAssociateAC | None = None
    rejection: AAssociateRJ | None = None
    contexts: list[PresentationContext] = field(default_factory=list)


def answer_request(
    request: AAssociateRQ,
    policy: AcceptorPolicy,
    at_capacity: bool = False,
    extended: ExtendedAnswers = NO_EXTENDED_ANSWERS,
) -> Answer:
    """Accept or reject an A-ASSOCIATE-RQ the way pynetdicom's acceptor does."""
    rejection = REJECT_USER_IDENTITY if not extended.identity_verified and not at_capacity else None
    rejection = rejection or _rejection(request, policy, at_capacity)
    if rejection is not None:
        return Answer(rejection=AAssociateRJ(*rejection))
    proposed, malformed = [], []
    for pc in request.presentation_contexts:
        try:
            context = build_context(pc.abstract_syntax, pc.transfer_syntaxes)
            context.context_id = pc.context_id
        except (TypeError, ValueError):  # an even ID, an over-long UID: refuse that context only
            malformed.append(items.PresentationContextAC(pc.context_id, ContextResult.PROVIDER_REJECTION, None))
            continue
        proposed.append(context)
    user_info = request.user_information
    roles = {r.sop_class_uid: (bool(r.scu_role), bool(r.scp_role)) for r in user_info.role_selections}
    contexts, role_replies = negotiate_as_acceptor(
        proposed, policy.supported_contexts, roles, prefer_proposed=policy.prefer_proposed,
        unknown_syntaxes=policy.promiscuous_syntaxes,
    )
    subs = _identity_items(policy.identity)
    window = user_info.async_operations_window
    if window is not None and extended.async_window is not None:
        invoked, performed = extended.async_window
        subs.append(items.AsyncOperationsWindow(_window(window.max_performed, invoked), _window(window.max_invoked, performed)))
    elif window is not None:
        # We invoke nothing on the requestor; we perform up to our configured number.
        subs.append(items.AsyncOperationsWindow(1, _window(window.max_invoked, policy.max_operations_performed)))
    subs += [items.RoleSelection(uid, int(scu), int(scp)) for uid, scu, scp in role_replies]
    subs += [items.SOPClassExtendedNegotiation(uid, info) for uid, info in extended.sop_extended.items()]
    if extended.identity_response is not None:
        subs.append(items.UserIdentityAC(extended.identity_response))
    response = AAssociateAC(
        called_ae_title=request.called_ae_title,
        calling_ae_title=request.calling_ae_title,
        application_context=DICOM_APPLICATION_CONTEXT,
        presentation_contexts=sorted(
            [
                items.PresentationContextAC(pc.context_id, pc.result, str(pc.transfer_syntax[0]) if pc.transfer_syntax else None)
                for pc in contexts
            ]
            + malformed,
            key=lambda pc: pc.context_id,
        ),
        user_information=items.UserInformation(subs),
    )
    return Answer(response=response, contexts=contexts)


def _window(proposed: int, ours: int) -> int:
    """0 means unlimited on either side; otherwise the smaller number holds."""
    if proposed == 0:
        return ours
    if ours == 0:
        return proposed
    return min(proposed, ours)


def _rejection(request: AAssociateRQ, policy: AcceptorPolicy, at_capacity: bool) -> tuple[int, int, int] | None:
    if at_capacity:
        return REJECT_LOCAL_LIMIT
    if policy.require_calling_aet and request.calling_ae_title.strip() not in policy.require_calling_aet:
        return REJECT_CALLING_AE_TITLE
    if policy.require_called_aet and request.called_ae_title.strip() != policy.identity.ae_title:
        return REJECT_CALLED_AE_TITLE
    if request.application_context != DICOM_APPLICATION_CONTEXT:
        return REJECT_APPLICATION_CONTEXT
    return None


def accepted(contexts: Iterable[PresentationContext]) -> list[PresentationContext]:
    return [pc for pc in contexts if pc.result == ContextResult.ACCEPTANCE]
