"""Extended negotiation: what a requestor asks for, and what an acceptor's handlers answer.

Requestor side: ``AE.associate(ext_neg=...)`` accepts hsscp's own items or
objects shaped like pynetdicom's negotiation primitives (matched by their
attributes, so pynetdicom need not be imported), turned into
:mod:`hsscp.items` sub-items. SCP/SCU Role Selection items become role
proposals on copies of the requested presentation contexts.

Acceptor side: :func:`ask_handlers` puts the requestor's User Identity, SOP
Class (Common) Extended and Asynchronous Operations Window items to the
``EVT_USER_ID``, ``EVT_SOP_EXTENDED``, ``EVT_SOP_COMMON`` and
``EVT_ASYNC_OPS`` handlers, and reads their returns as pynetdicom does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from hsscp import items
from hsscp.acse import NO_EXTENDED_ANSWERS, ExtendedAnswers
from hsscp.context_lists import copy_context
from hsscp.event_types import EVT_ASYNC_OPS, EVT_SOP_COMMON, EVT_SOP_EXTENDED, EVT_USER_ID
from hsscp.pdu import AAssociateRQ
from hsscp.presentation import PresentationContext

__all__ = ["as_sub_item", "ask_handlers", "user_items", "with_roles"]

LOGGER = logging.getLogger("hsscp.server")

# Sub-items that already are what the A-ASSOCIATE-RQ carries.
_NATIVE_ITEMS = (
    items.AsyncOperationsWindow,
    items.SOPClassExtendedNegotiation,
    items.SOPClassCommonExtendedNegotiation,
    items.UserIdentityRQ,
)


def user_items(ext_neg: Iterable | None) -> tuple[list, dict[str, tuple]]:
    """Extended negotiation items as :mod:`hsscp.items`, plus role proposals by SOP class."""
    extra: list = []
    roles: dict[str, tuple] = {}
    for item in ext_neg or ():
        if isinstance(item, items.RoleSelection) or hasattr(item, "scu_role"):
            roles[str(item.sop_class_uid)] = (item.scu_role, item.scp_role)
        else:
            extra.append(as_sub_item(item))
    return extra, roles


def as_sub_item(item: Any) -> Any:
    """One User Information sub-item from an hsscp item or a pynetdicom-style primitive."""
    if isinstance(item, _NATIVE_ITEMS):
        return item
    if hasattr(item, "maximum_number_operations_invoked"):
        return items.AsyncOperationsWindow(
            item.maximum_number_operations_invoked, item.maximum_number_operations_performed
        )
    if hasattr(item, "user_identity_type"):
        return items.UserIdentityRQ(
            item.user_identity_type,
            bool(item.positive_response_requested),
            bytes(item.primary_field),
            bytes(item.secondary_field or b""),
        )
    if hasattr(item, "service_class_application_information"):
        return items.SOPClassExtendedNegotiation(
            str(item.sop_class_uid), bytes(item.service_class_application_information)
        )
    if hasattr(item, "related_general_sop_class_identification"):
        return items.SOPClassCommonExtendedNegotiation(
            str(item.sop_class_uid),
            str(item.service_class_uid),
            [str(uid) for uid in item.related_general_sop_class_identification],
        )
    raise TypeError(f"Unsupported extended negotiation item: {type(item).__name__}")


def with_roles(
    contexts: Sequence[PresentationContext], roles: dict[str, tuple]
) -> list[PresentationContext]:
    """Copies of the contexts (never the caller's) carrying SCP/SCU role proposals."""
    copies = []
    for context in contexts:
        if not isinstance(context, PresentationContext):
            raise TypeError("'contexts' must be a list of PresentationContext items")
        copy = copy_context(context)
        role = roles.get(str(context.abstract_syntax))
        if role is not None:
            # As pynetdicom: a role left out of a proposal is not proposed.
            copy.scu_role, copy.scp_role = bool(role[0]), bool(role[1])
        copies.append(copy)
    return copies


# -- the acceptor's side ------------------------------------------------------------


def ask_handlers(handlers: Any, assoc: Any, request: AAssociateRQ) -> ExtendedAnswers:
    """The handlers' answers to the extended negotiation ``request`` carries (``handlers``: a HandlerSet).

    Only the items present are asked about; an unbound event gets
    pynetdicom's default answer (accept the user, no replies, the server's
    own window).
    """
    info = request.user_information
    identity = info.first(items.UserIdentityRQ)
    extended = {item.sop_class_uid: item.service_class_application_information
                for item in info.all(items.SOPClassExtendedNegotiation)}  # fmt: skip
    common = {item.sop_class_uid: item for item in info.all(items.SOPClassCommonExtendedNegotiation)}
    window = info.async_operations_window
    asks_window = window is not None and (window.max_invoked, window.max_performed) != (1, 1)
    if identity is None and not extended and not common and not asks_window:
        return NO_EXTENDED_ANSWERS
    verified, response = _user_identity(handlers, assoc, identity) if identity else (True, None)
    if common:
        assoc.acceptor.accepted_common_extended = _sop_common(handlers, assoc, common)
    return ExtendedAnswers(
        identity_verified=verified,
        identity_response=response,
        sop_extended=_sop_extended(handlers, assoc, extended) if extended else {},
        async_window=_async_window(handlers, assoc, window) if asks_window else None,
    )


def _failed(event: Any) -> None:
    LOGGER.exception("Exception raised in handler bound to 'evt.%s'", event.name)


def _user_identity(handlers: Any, assoc: Any, identity: items.UserIdentityRQ) -> tuple[bool, bytes | None]:
    """(verified, response): a handler that raises refuses the user; an unbound event accepts it."""
    try:
        verified, response = handlers.answer(
            assoc,
            EVT_USER_ID,
            user_id_type=identity.identity_type,
            primary_field=identity.primary_field,
            secondary_field=identity.secondary_field if identity.identity_type == 2 else None,
        )
    except NotImplementedError:
        return True, None
    except Exception:
        _failed(EVT_USER_ID)
        return False, None
    if not verified:
        LOGGER.info("User identity failed verification")
        return False, None
    # Only Kerberos, SAML and JWT identities have a server response (PS3.7 D.3.3.7.2).
    wanted = identity.identity_type in (3, 4, 5) and identity.positive_response_requested
    if wanted and isinstance(response, bytes | bytearray):
        return True, bytes(response)
    return True, None


def _sop_extended(handlers: Any, assoc: Any, app_info: dict[str, bytes]) -> dict[str, bytes]:
    try:
        answer = handlers.answer(assoc, EVT_SOP_EXTENDED, app_info=app_info)
    except Exception:
        _failed(EVT_SOP_EXTENDED)
        return {}
    if not isinstance(answer, dict | None):
        LOGGER.error("Invalid type returned by handler bound to 'evt.EVT_SOP_EXTENDED'")
        return {}
    replies = {}
    for uid, info in (answer or {}).items():
        if isinstance(uid, str) and isinstance(info, bytes | bytearray):
            replies[str(uid)] = bytes(info)
        else:
            LOGGER.error(
                "Unable to set the SOP Class Extended Negotiation response values for the "
                "SOP Class UID %s", uid,
            )
    return replies


def _sop_common(handlers: Any, assoc: Any, offered: dict[str, Any]) -> dict[str, Any]:
    try:
        answer = handlers.answer(assoc, EVT_SOP_COMMON, items=offered)
        # What the requestor offered, or an item shaped like it (pynetdicom's primitive).
        return {uid: item for uid, item in answer.items() if hasattr(item, "service_class_uid")}
    except Exception:
        _failed(EVT_SOP_COMMON)
        return {}


def _async_window(handlers: Any, assoc: Any, window: items.AsyncOperationsWindow) -> tuple[int, int] | None:
    try:
        invoked, performed = handlers.answer(
            assoc,
            EVT_ASYNC_OPS,
            nr_invoked=window.max_invoked,
            nr_performed=window.max_performed,
            # pynetdicom's documentation names them so; its code as above.
            invoked=window.max_invoked,
            performed=window.max_performed,
        )
    except NotImplementedError:
        return None
    except Exception:
        _failed(EVT_ASYNC_OPS)
        return None
    valid = all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 0xFFFF for n in (invoked, performed))
    if not valid:
        LOGGER.error("Invalid values returned by handler bound to 'evt.EVT_ASYNC_OPS'")
        return None
    return invoked, performed
