"""The acceptor side's Association object: what handlers see as ``event.assoc``.

It has the parts of pynetdicom's ``Association`` an SCP handler uses:
who is who, the contexts, the ``is_*`` flags, ``bind``/``unbind``/
``get_handlers`` (this association's own bindings, which start as the
server's and follow the server's later ones) and ``abort``/``release``.
Handlers run on other threads than the event loop that owns the
connection, so ``abort`` and ``release`` hand the work to that loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, Protocol

from hsscp.events import EventType, HandlerSet
from hsscp.pdu import AAssociateAC, AAssociateRJ, AAssociateRQ
from hsscp.presentation import ContextResult, PresentationContext
from hsscp.service_user import MODE_ACCEPTOR, MODE_REQUESTOR, HasMode, ServiceUser

__all__ = ["AcceptedAssociation", "AssociationControl"]


class AssociationControl(Protocol):
    """What the connection's driver does for the association (on its event loop)."""

    def abort(self) -> None: ...

    def release(self) -> None: ...

    def watch(self) -> None: ...


class AcceptedAssociation(HasMode):
    """An association a server accepted (or was asked for), from the acceptor's side."""

    mode = MODE_ACCEPTOR

    def __init__(
        self,
        ae: Any,
        peer: tuple,
        local: tuple,
        loop: asyncio.AbstractEventLoop,
        control: AssociationControl,
        handlers: HandlerSet,
    ) -> None:
        self.ae = ae
        self.requestor = ServiceUser(MODE_REQUESTOR, address=peer[0], port=peer[1])
        self.acceptor = ServiceUser(MODE_ACCEPTOR, address=local[0], port=local[1])
        self.accepted_contexts: list[PresentationContext] = []
        self.rejected_contexts: list[PresentationContext] = []
        self.is_established = False
        self.is_rejected = False
        self.is_aborted = False
        self.is_released = False
        self.handlers = handlers
        self._loop = loop
        self._loop_thread = threading.get_ident()  # made on the loop's thread, by the service
        self._control = control
        self._ended = threading.Event()
        handlers.on_change = self._bindings_changed

    # -- pynetdicom's views -------------------------------------------------------

    @property
    def local(self) -> dict[str, Any]:
        return self.acceptor.info

    @property
    def remote(self) -> dict[str, Any]:
        return self.requestor.info

    # -- handlers -------------------------------------------------------------------

    def bind(self, event: EventType, handler: Callable, args: list | None = None) -> None:
        """Bind ``handler`` to ``event`` for this association only, as pynetdicom's ``Association.bind``."""
        self.handlers.bind(event, handler, args)

    def unbind(self, event: EventType, handler: Callable) -> None:
        self.handlers.unbind(event, handler)

    def get_handlers(self, event: EventType) -> Any:
        """pynetdicom's shapes: ``[(handler, args), ...]``, or ``(handler, args)`` for an intervention event."""
        return self.handlers.bound(event)

    def _bindings_changed(self) -> None:
        # What the bindings cost per PDU is worked out once, on the loop that reads.
        self._on_loop(self._control.watch)

    # -- life -------------------------------------------------------------------------

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
        self._ended.set()

    def ended(self, how: str) -> None:
        if how == "released":
            self.is_released = True
        elif how == "aborted":
            self.is_aborted = True
        self.is_established = False
        self._ended.set()

    # -- what a handler may do ----------------------------------------------------------

    def abort(self) -> None:
        """Send an A-ABORT and close the connection; returns at once (from any thread)."""
        self._on_loop(self._control.abort)

    def release(self) -> None:
        """Ask the requestor to release the association (A-RELEASE-RQ), as an acceptor may.

        From a handler thread this waits until the association has ended (the
        driver aborts it if no A-RELEASE-RP comes within the ACSE timeout); from
        the event loop's own thread (a notification handler) it returns at once.
        """
        if not self.is_established:
            return
        self._on_loop(self._control.release)
        if threading.get_ident() != self._loop_thread:
            timeout = getattr(self.ae, "acse_timeout", None)
            self._ended.wait(None if timeout is None else timeout + 1)

    def _on_loop(self, action: Callable[[], None]) -> None:
        # Always through the loop's queue, even from its own thread: a handler
        # may run in the middle of a step of the driver, which must finish first.
        if not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(action)
            except RuntimeError:
                pass  # the loop closed meanwhile: the connection is gone with it

    def __repr__(self) -> str:
        return f"<AcceptedAssociation from {self.requestor.ae_title!r} at {self.requestor.address}:{self.requestor.port}>"
