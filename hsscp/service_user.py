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
