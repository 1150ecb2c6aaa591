"""Who is who in an association: pynetdicom's ``ServiceUser`` and the two modes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hsscp import items
from hsscp.presentation import PresentationContext

__all__ = ["MODE_ACCEPTOR", "MODE_REQUESTOR", "HasMode", "ServiceUser"]

MODE_REQUESTOR = "requestor"
MODE_ACCEPTOR = "acceptor"


class HasMode:
    """``is_requestor`` and ``is_acceptor``, read from a ``mode`` attribute."""

    mode: str

    @property
    def is_requestor(self) -> bool:
        return self.mode == MODE_REQUESTOR

    @property
    def is_acceptor(self) -> bool:
        return self.mode == MODE_ACCEPTOR


@dataclass
class ServiceUser(HasMode):
    """One side of an association, with the attributes pynetdicom's ServiceUser has."""

    mode: str
    ae_title: str = ""
    address: str | None = None
    port: int | None = None
    maximum_length: int | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    requested_contexts: list[PresentationContext] = field(default_factory=list)
    user_information: items.UserInformation | None = None
    accepted_common_extended: dict[str, Any] = field(default_factory=dict)

    def _sub_items(self, kind: type) -> list:
        return self.user_information.all(kind) if self.user_information is not None else []

    @property
    def role_selection(self) -> dict[str, items.RoleSelection]:
        """The SCP/SCU Role Selection items, by SOP class UID."""
        return {item.sop_class_uid: item for item in self._sub_items(items.RoleSelection)}

    @property
    def sop_class_extended(self) -> dict[str, bytes]:
        """The SOP Class Extended Negotiation items: {SOP class UID: application information}."""
        return {
            item.sop_class_uid: item.service_class_application_information
            for item in self._sub_items(items.SOPClassExtendedNegotiation)
        }

    @property
    def sop_class_common_extended(self) -> dict[str, Any]:
        """SOP Class Common Extended Negotiation: the requestor's items, or what the acceptor accepted.

        (PS3.7 D.3.3.6: an acceptor sends no reply to them, so its side is what
        its ``EVT_SOP_COMMON`` handler returned.)
        """
        if self.is_acceptor:
            return dict(self.accepted_common_extended)
        return {item.sop_class_uid: item for item in self._sub_items(items.SOPClassCommonExtendedNegotiation)}

    @property
    def user_identity(self) -> items.UserIdentityRQ | items.UserIdentityAC | None:
        """The User Identity item (request or response), if any."""
        return self.user_information.user_identity if self.user_information is not None else None

    @property
    def asynchronous_operations(self) -> tuple[int, int]:
        """(invoked, performed) from the Asynchronous Operations Window, (1, 1) without one."""
        window = self.user_information and self.user_information.async_operations_window
        return (window.max_invoked, window.max_performed) if window else (1, 1)

    @property
    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "ae_title": self.ae_title,
            "address": self.address,
            "port": self.port,
            "mode": self.mode,
        }
        if self.maximum_length is not None:
            info["pdv_size"] = self.maximum_length
        return info
