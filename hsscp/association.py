"""Associations as pynetdicom's API shows them: the ``Association`` a requestor gets.

``AE.associate`` (:func:`open_association`) connects, negotiates and hands
back an Association whose ``send_c_echo``/``send_c_store``
(:mod:`hsscp.scu_services`) block until the peer answers;
:mod:`hsscp.blocking_driver` does the socket work around the sans-IO
engine. ``Association(ae, "acceptor")`` makes a bare object of the same
shape; an acceptor's I/O lives in the server.

Timeouts follow pynetdicom: ``acse_timeout`` while waiting for the
A-ASSOCIATE and A-RELEASE answers, ``dimse_timeout`` for a DIMSE response,
``network_timeout`` for any one read or write and for how long an idle
association may go without hearing from the peer. Whichever expires, the
association is aborted.

There is no reader thread. What the peer does while nobody calls (aborts,
releases, closes) is read when the association's state is next looked at
(``is_established``, ``is_aborted``...) or used: a zero-timeout check of
the socket, fed to the engine. The network timeout of an idle association
is checked at the same moments, so an association left idle past it is
aborted when it is next looked at or used, as pynetdicom's reactor would
have aborted it meanwhile.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from hsscp import events, protocol_log
from hsscp.acse import LocalIdentity, build_request, requestor_contexts
from hsscp.aet import normalize_ae_title
from hsscp.blocking_driver import BlockingDriver
from hsscp.engine import Engine, Role
from hsscp.extended_negotiation import user_items, with_roles
from hsscp.indications import (
    Aborted,
    AssociationAccepted,
    AssociationRejected,
    Indication,
    MessageReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from hsscp.pdu import AAbort, AAssociateAC, AReleaseRP, AReleaseRQ
from hsscp.presentation import ContextResult, PresentationContext
from hsscp.scu_services import ScuServices
from hsscp.service_user import MODE_ACCEPTOR, MODE_REQUESTOR, HasMode, ServiceUser
from hsscp.transport import BlockingTransport, address_family
from hsscp.validation import DEFAULT_MAX_PDU, check_max_pdu, remote_address
from hsscp.wire_watch import transition_hook, wire_watch

__all__ = ["MODE_ACCEPTOR", "MODE_REQUESTOR", "Association", "ServiceUser", "open_association"]

LOGGER = logging.getLogger("hsscp.association")


class Association(ScuServices, HasMode):
    """An association with a peer AE, as pynetdicom's ``Association`` presents it.

    ``Association(ae, mode)`` only records who we are; :meth:`request` then
    connects and negotiates (requestor side), which :func:`open_association`
    does for ``AE.associate``.
    """

    def __init__(self, ae: Any, mode: str) -> None:
        mode = mode.lower()
        if mode not in (MODE_REQUESTOR, MODE_ACCEPTOR):
            raise ValueError(
                "Invalid association `mode` value, must be either 'requestor' or 'acceptor'"
            )
        self._ae = ae
        self.mode = mode
        self.requestor = ServiceUser(MODE_REQUESTOR)
        self.acceptor = ServiceUser(MODE_ACCEPTOR)

        # The state behind the is_* properties, which look at the socket first.
        self._established = False
        self._rejected = False
        self._aborted = False
        self._released = False
        # (result, source, reason) of an A-ASSOCIATE-RJ, and the Aborted indication, if any.
        self.rejection: tuple[int, int, int] | None = None
        self.abort_indication: Aborted | None = None

        self._accepted_contexts: dict[int, PresentationContext] = {}
        self._rejected_contexts: list[PresentationContext] = []
        self._context_cache: dict[tuple[str, str, bool], PresentationContext] = {}

        self.engine: Engine | None = None
        self._driver: BlockingDriver | None = None
        self.acse_timeout: float | None = getattr(ae, "acse_timeout", 30)
        self.dimse_timeout: float | None = getattr(ae, "dimse_timeout", 30)
        self.network_timeout = getattr(ae, "network_timeout", 60)
        self.connection_timeout: float | None = getattr(ae, "connection_timeout", None)

        self.bind_handlers(None)
        self._sent_abort = False
        self._registered = False

    # -- pynetdicom's read-only views ----------------------------------------

    @property
    def ae(self) -> Any:
        return self._ae

    @property
    def transport(self) -> BlockingTransport | None:
        """The connection while it is open, else None."""
        return None if self._driver is None else self._driver.transport

    @property
    def network_timeout(self) -> float | None:
        return self._network_timeout

    @network_timeout.setter
    def network_timeout(self, value: float | None) -> None:
        # The AE sets it on live associations too: the driver uses it from its next call.
        self._network_timeout = value
        if self._driver is not None:
            self._driver.network_timeout = value

    @property
    def is_established(self) -> bool:
        self._check()
        return self._established

    @property
    def is_aborted(self) -> bool:
        self._check()
        return self._aborted

    @property
    def is_released(self) -> bool:
        self._check()
        return self._released

    @property
    def is_rejected(self) -> bool:
        return self._rejected

    @property
    def accepted_contexts(self) -> list[PresentationContext]:
        return sorted(self._accepted_contexts.values(), key=lambda cx: cx.context_id or 0)

    @property
    def rejected_contexts(self) -> list[PresentationContext]:
        return self._rejected_contexts

    @property
    def local(self) -> dict[str, Any]:
        return (self.acceptor if self.is_acceptor else self.requestor).info

    @property
    def remote(self) -> dict[str, Any]:
        return (self.requestor if self.is_acceptor else self.acceptor).info

    def set_contexts(self, negotiated: Iterable[PresentationContext]) -> None:
        """Record the negotiation's outcome: accepted by context ID, the rest as rejected."""
        negotiated = list(negotiated)
        self._accepted_contexts = {
            cx.context_id: cx for cx in negotiated if cx.result == ContextResult.ACCEPTANCE
        }
        self._rejected_contexts = [cx for cx in negotiated if cx.result != ContextResult.ACCEPTANCE]
        self._context_cache.clear()

    # -- handlers -------------------------------------------------------------------

    def bind_handlers(self, evt_handlers: Iterable | None) -> None:
        """Use ``evt_handlers`` ((event, handler[, args]) tuples) for this association's events."""
        self.handlers = events.HandlerSet(evt_handlers)
        self.handlers.on_change = self._watch
        self._watch()

    def bind(self, event: events.EventType, handler: Callable, args: list | None = None) -> None:
        """Bind ``handler`` to ``event``, as pynetdicom's ``Association.bind``."""
        self.handlers.bind(event, handler, args)

    def unbind(self, event: events.EventType, handler: Callable) -> None:
        self.handlers.unbind(event, handler)

    def get_handlers(self, event: events.EventType) -> Any:
        """pynetdicom's shapes: ``[(handler, args), ...]``, or ``(handler, args)`` for an intervention event."""
        return self.handlers.bound(event)

    def _watch(self) -> None:
        # The per-PDU events cost a copy and a decode of every PDU: only with a handler bound.
        has, notify = self.handlers.has, self._notify
        if self._driver is not None:
            self._driver.watch = wire_watch(has, notify)
        if self.engine is not None:
            self.engine.on_transition = transition_hook(has, notify)

    def _notify(self, event: events.NotificationEvent, **attrs: Any) -> None:
        self.handlers.notify(self, event, **attrs)

    # -- establishment ---------------------------------------------------------

    def request(
        self,
        addr: str | tuple,
        port: int,
        contexts: Sequence[PresentationContext],
        *,
        ae_title: str | bytes = "ANY-SCP",
        max_pdu: int = DEFAULT_MAX_PDU,
        ext_neg: Iterable | None = None,
        bind_address: tuple | None = None,
        tls_args: tuple | None = None,
    ) -> None:
        """Connect to the peer and negotiate; the outcome is in the ``is_*`` flags.

        Bad arguments raise (ValueError, TypeError, RuntimeError) before any
        connection is made; network failures never raise.
        """
        if self.engine is not None:
            raise RuntimeError("An association can only be requested once")
        request = self._build_request(contexts, ae_title, max_pdu, ext_neg)
        remote = remote_address(addr, port)
        self.acceptor.address, self.acceptor.port = remote[0], remote[1]
        self.engine = Engine(Role.REQUESTOR)
        self._watch()
        LOGGER.info("Requesting Association")
        self.engine.request_association(request)
        if not self._connect(remote, bind_address, tls_args):
            return
        self._process(self.engine.connection_made())
        protocol_log.log_associate_rq(LOGGER, request, outgoing=True)
        if not self._write(self.engine.pop_output()):
            return
        self._notify(events.EVT_ACSE_SENT, primitive=request)
        self._notify(events.EVT_REQUESTED)
        answer = self._await((AssociationAccepted, AssociationRejected, Aborted), self.acse_timeout)
        if answer is None and self.transport is not None:
            LOGGER.error("ACSE timeout reached while waiting for response to association request")
            self.abort()

    def _build_request(self, contexts, ae_title, max_pdu, ext_neg):
        ae = self._ae
        identity = LocalIdentity(
            ae_title=normalize_ae_title(ae.ae_title),
            maximum_pdu_size=check_max_pdu(max_pdu),
            implementation_class_uid=str(ae.implementation_class_uid),
            implementation_version_name=_text(getattr(ae, "implementation_version_name", None)),
        )
        called = normalize_ae_title(ae_title)
        extra, roles = user_items(ext_neg)
        request, requested = build_request(identity, called, with_roles(contexts, roles), extra)
        self.requestor.ae_title = identity.ae_title
        self.requestor.maximum_length = identity.maximum_pdu_size
        self.requestor.implementation_class_uid = identity.implementation_class_uid
        self.requestor.implementation_version_name = identity.implementation_version_name or None
        self.requestor.requested_contexts = requested
        self.requestor.user_information = request.user_information
        self.acceptor.ae_title = called
        return request

    def _connect(self, remote: tuple, bind_address: tuple | None, tls_args: tuple | None) -> bool:
        if bind_address is None:
            bind_address = ("::0", 0) if address_family(remote[0]) == socket.AF_INET6 else ("", 0)
        self.requestor.address, self.requestor.port = bind_address[0] or "0.0.0.0", bind_address[1]
        try:
            transport = BlockingTransport.connect(
                remote,
                bind_address=bind_address,
                timeout=self.connection_timeout,
                tls_args=tls_args,
            )
        except OSError as exc:
            LOGGER.error("Association request failed: unable to connect to remote")
            LOGGER.error("TCP Initialisation Error: %s", exc)
            self.engine.connection_lost()
            self._mark_aborted()
            return False
        self._driver = BlockingDriver(
            self.engine,
            transport,
            network_timeout=self._network_timeout,
            on_indications=self._process,
            on_closed=self._connection_closed,
        )
        self._watch()
        local = transport.local_address
        self.requestor.address, self.requestor.port = local[0], local[1]
        self._notify(events.EVT_CONN_OPEN, address=remote[:2])
        return True

    def _accepted_by_peer(self, response: AAssociateAC) -> None:
        user_info = response.user_information
        self.acceptor.maximum_length = user_info.maximum_length
        self.acceptor.implementation_class_uid = user_info.implementation_class_uid
        self.acceptor.implementation_version_name = user_info.implementation_version_name
        self.acceptor.user_information = user_info
        requested = self.requestor.requested_contexts
        if LOGGER.isEnabledFor(logging.DEBUG):
            proposed = {cx.context_id: str(cx.abstract_syntax) for cx in requested}
            protocol_log.log_associate_ac(LOGGER, response, proposed, outgoing=False)
        self.set_contexts(requestor_contexts(requested, response))
        self._notify(events.EVT_ACCEPTED)
        if not self._accepted_contexts:
            LOGGER.error("No accepted presentation contexts")
            self.abort()
            return
        LOGGER.info("Association Accepted")
        self._established = True
        self._notify(events.EVT_ESTABLISHED)
        register = getattr(self._ae, "_register", None)
        if register is not None:
            register(self)
            self._registered = True

    # -- release and abort -------------------------------------------------------

    def release(self) -> None:
        """Release the association (A-RELEASE); aborts if the peer does not answer in time."""
        self._check()
        if not self._established or self.transport is None:
            return
        LOGGER.info("Releasing Association")
        if not self._write(self.engine.release()):
            return
        self._notify(events.EVT_ACSE_SENT, primitive=AReleaseRQ())
        answer = self._await((ReleaseConfirmed, Aborted), self.acse_timeout)
        if answer is None and self.transport is not None:
            LOGGER.error("ACSE timeout reached while waiting for the A-RELEASE response")
            self.abort()

    def abort(self) -> None:
        """Abort the association (A-ABORT) and close the connection."""
        if self._sent_abort or self._released or self.transport is None:
            return
        self._sent_abort = True
        LOGGER.info("Aborting Association")
        sent = self.engine.abort_if_open()
        if sent:
            abort = AAbort()  # what abort_if_open sends: service user, no reason
            protocol_log.log_abort(LOGGER, abort.source, abort.reason, outgoing=True)
            self._write(sent)
            self._notify(events.EVT_ACSE_SENT, primitive=abort)
        self._mark_aborted()
        self._close()

    # -- what the peer did while nobody was reading ---------------------------------

    def _check(self) -> None:
        """Read what came meanwhile; abort an association idle past the network timeout."""
        driver = self._driver
        if driver is None or driver.transport is None:
            return
        driver.poll()
        timeout = self._network_timeout
        if self._established and timeout is not None and driver.idle > timeout and driver.transport is not None:
            LOGGER.error("Network timeout reached")
            self.abort()

    # -- the driver's side of things -------------------------------------------------

    def _await(self, wanted: tuple[type, ...], timeout: float | None) -> Indication | None:
        """Read until an indication of a ``wanted`` type; None on timeout or a closed connection."""
        driver = self._driver
        return None if driver is None else driver.wait_for(wanted, timeout)

    def _write(self, buffers: list) -> bool:
        """Send buffers as they are; False if the connection is gone (the association has ended)."""
        driver = self._driver
        return driver.write(buffers) if driver is not None else not buffers

    def _close(self) -> None:
        if self._driver is not None:
            self._driver.close()

    def _connection_closed(self) -> None:
        self._established = False
        address = (self.acceptor.address, self.acceptor.port)
        self._notify(events.EVT_CONN_CLOSE, address=address)
        if self._registered:
            self._registered = False
            self._ae._unregister(self)

    def _process(self, indications: list[Indication]) -> None:
        for indication in indications:
            kind = type(indication)
            if kind is MessageReceived:
                protocol_log.log_message(indication.command, indication.context_id, outgoing=False)
                self._notify(events.EVT_DIMSE_RECV, message=indication.command)
                continue
            self._notify(events.EVT_ACSE_RECV, primitive=indication)
            if kind is AssociationAccepted:
                self._accepted_by_peer(indication.response)
            elif kind is Aborted:
                self._on_aborted(indication)
            elif kind is ReleaseConfirmed:
                self._mark_released()
            elif kind is ReleaseRequested:
                self._on_release_requested(indication)
            elif kind is AssociationRejected:
                self._on_rejected(indication)

    def _on_aborted(self, indication: Aborted) -> None:
        self.abort_indication = indication
        if indication.by_peer:
            protocol_log.log_abort(LOGGER, indication.source, indication.reason, outgoing=False)
            LOGGER.error("Association Aborted")
        else:
            LOGGER.error(
                "Association aborted by the provider: %s", indication.detail or indication.reason
            )
        self._mark_aborted()

    def _on_rejected(self, indication: AssociationRejected) -> None:
        result, source, reason = protocol_log.rejection_words(
            indication.result, indication.source, indication.reason
        )
        LOGGER.error("Association Rejected")
        LOGGER.error("Result: %s, Source: %s", result, source)
        LOGGER.error("Reason: %s", reason)
        self.rejection = (indication.result, indication.source, indication.reason)
        self._rejected = True
        self._established = False
        self._notify(events.EVT_REJECTED)

    def _on_release_requested(self, indication: ReleaseRequested) -> None:
        # Collision (we asked too): answer, then our A-RELEASE-RP still comes.
        # Otherwise the peer releases us: answer and we are done.
        if self.transport is not None:  # not if the connection just went down
            self._write(self.engine.release_response())
            self._notify(events.EVT_ACSE_SENT, primitive=AReleaseRP())
        if not indication.collision:
            LOGGER.info("Association Released")
            self._mark_released()

    def _mark_released(self) -> None:
        if not self._released:
            self._released = True
            self._established = False
            self._notify(events.EVT_RELEASED)

    def _mark_aborted(self) -> None:
        if not self._aborted:
            self._aborted = True
            self._established = False
            self._notify(events.EVT_ABORTED)


# -- AE.associate --------------------------------------------------------------------


def open_association(
    ae: Any,
    addr: str | tuple,
    port: int,
    *,
    contexts: Sequence[PresentationContext] | None = None,
    ae_title: str | bytes = b"ANY-SCP",
    max_pdu: int = DEFAULT_MAX_PDU,
    ext_neg: Iterable | None = None,
    bind_address: tuple | None = ("", 0),
    tls_args: tuple | None = None,
    evt_handlers: Iterable | None = None,
) -> Association:
    """Request an association with the peer at addr:port, as ``AE.associate`` does.

    Returns the Association whether or not it was accepted: check
    ``is_established``. A connection that fails leaves it aborted.
    """
    assoc = Association(ae, MODE_REQUESTOR)
    assoc.bind_handlers(evt_handlers)
    contexts = contexts or getattr(ae, "requested_contexts", None)
    if not contexts:
        raise RuntimeError(
            "At least one requested presentation context is required before associating with a peer"
        )
    assoc.request(
        addr,
        port,
        contexts,
        ae_title=ae_title,
        max_pdu=max_pdu,
        ext_neg=ext_neg,
        bind_address=bind_address,
        tls_args=tls_args,
    )
    return assoc


def _text(value: str | bytes | None) -> str:
    """An Implementation Version Name as the request carries it ("" for none)."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("ascii").strip(" \0")
    return value.strip()
