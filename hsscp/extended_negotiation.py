"""Extended negotiation as the API takes it, turned into :mod:`hsscp.items` sub-items.

``AE.associate(ext_neg=...)`` accepts hsscp's own items or objects shaped
like pynetdicom's negotiation primitives (matched by their attributes, so
pynetdicom need not be imported). SCP/SCU Role Selection items become role
proposals on copies of the requested presentation contexts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from hsscp import items
from hsscp.context_lists import copy_context
from hsscp.presentation import PresentationContext

__all__ = ["as_sub_item", "user_items", "with_roles"]

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
