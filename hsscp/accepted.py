"""The acceptor side's Association object: what handlers see as ``event.assoc``."""

from __future__ import annotations

import asyncio
from typing import Any

from hsscp.pdu import AAssociateAC, AAssociateRJ, AAssociateRQ
from hsscp.presentation import ContextResult, PresentationContext
from hsscp.service_user import MODE_ACCEPTOR, MODE_REQUESTOR, ServiceUser


class AcceptedAssociation:
    """An association a server accepted (or was asked for), from the acceptor's side."""

    mode = MODE_ACCEPTOR
    is_acceptor = True
    is_requestor = False

    def __init__(self, ae: Any, peer: tuple, local: tuple, loop: asyncio.AbstractEventLoop, abort) -> None:
        self.ae = ae
        self.requestor = ServiceUser(MODE_REQUESTOR, address=peer[0], port=peer[1])
        self.acceptor = ServiceUser(MODE_ACCEPTOR, address=local[0], port=local[1])
        self.accepted_contexts: list[PresentationContext] = []
        self.rejected_contexts: list[PresentationContext] = []
        self.is_established = False
        self.is_rejected = False
        self.is_aborted = False
        self.is_released = False
        self._loop = loop
        self._abort = abort

    def requested(self, request: AAssociateRQ) -> None:
        info = request.user_information
        self.requestor.ae_title = request.calling_ae_title
        self.requestor.user_information = info
        self.requestor.maximum_length = info.maximum_length
        self.requestor.implementation_class_uid = info.implementation_class_uid
        self.requestor.implementation_version_name = info.implementation_version_name
        self.acceptor.ae_title = request.called_ae_title

    def accepted(self, response: AAssociateAC, contexts: list[PresentationContext]) -> None:
        info = response.user_information
        self.acceptor.user_information = info
        self.acceptor.maximum_length = info.maximum_length
        self.acceptor.implementation_class_uid = info.implementation_class_uid
        self.acceptor.implementation_version_name = info.implementation_version_name
        self.accepted_contexts = [pc for pc in contexts if pc.result == ContextResult.ACCEPTANCE]
        self.rejected_contexts = [pc for pc in contexts if pc.result != ContextResult.ACCEPTANCE]
        self.is_established = True

    def rejected(self, rejection: AAssociateRJ) -> None:
        self.is_rejected = True

    def ended(self, how: str) -> None:
        if how == "released":
            self.is_released = True
        elif how == "aborted":
            self.is_aborted = True
        self.is_established = False

    def abort(self) -> None:
        """Abort from any thread (a handler runs on a worker thread)."""
        self._loop.call_soon_threadsafe(self._abort)

    def __repr__(self) -> str:
        return f"<AcceptedAssociation from {self.requestor.ae_title!r} at {self.requestor.address}:{self.requestor.port}>"
