"""Associations as pynetdicom's API shows them: the ``Association`` a requestor gets.

``AE.associate`` (:func:`open_association`) connects, negotiates and hands
back an Association whose ``send_c_echo``/``send_c_store`` block until the
peer answers; :mod:`hsscp.blocking_driver` does the socket work around the
sans-IO engine. A file path given to ``send_c_store`` is streamed from disk
without being decoded (:mod:`hsscp.scu_datasets`).
``Association(ae, "acceptor")`` makes a bare object of the same shape; an
acceptor's I/O lives in the server.

Timeouts follow pynetdicom: ``acse_timeout`` while waiting for the
A-ASSOCIATE and A-RELEASE answers, ``dimse_timeout`` for a DIMSE response,
``network_timeout`` for any one read or write. Whichever expires, the
association is aborted.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from pydicom.dataset import Dataset

from hsscp import dimse, events
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
from hsscp.part10 import read_file_meta
from hsscp.pdu import PDU, AAssociateAC
from hsscp.presentation import ContextResult, PresentationContext
from hsscp.scu_datasets import (
    choose_context,
    dataset_transfer_syntax,
    encode_dataset,
    file_dataset_chunks,
    status_dataset,
)
from hsscp.service_user import MODE_ACCEPTOR, MODE_REQUESTOR, HasMode, ServiceUser
from hsscp.transport import BlockingTransport, address_family
from hsscp.uid import VERIFICATION_SOP_CLASS
from hsscp.validation import DEFAULT_MAX_PDU, check_max_pdu, check_message_id, remote_address

__all__ = ["MODE_ACCEPTOR", "MODE_REQUESTOR", "Association", "ServiceUser", "open_association"]

LOGGER = logging.getLogger("hsscp.association")


class Association(HasMode):
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

        self.is_established = False
        self.is_rejected = False
        self.is_aborted = False
        self.is_released = False
        # (result, source, reason) of an A-ASSOCIATE-RJ, and the Aborted indication, if any.
        self.rejection: tuple[int, int, int] | None = None
        self.abort_indication: Aborted | None = None

        self._accepted: dict[int, PresentationContext] = {}
        self._rejected: list[PresentationContext] = []
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
    def accepted_contexts(self) -> list[PresentationContext]:
        return sorted(self._accepted.values(), key=lambda cx: cx.context_id or 0)

    @property
    def rejected_contexts(self) -> list[PresentationContext]:
        return self._rejected

    @property
    def local(self) -> dict[str, Any]:
        return (self.acceptor if self.is_acceptor else self.requestor).info

    @property
    def remote(self) -> dict[str, Any]:
        return (self.requestor if self.is_acceptor else self.acceptor).info

    def set_contexts(self, negotiated: Iterable[PresentationContext]) -> None:
        """Record the negotiation's outcome: accepted by context ID, the rest as rejected."""
        negotiated = list(negotiated)
        self._accepted = {
            cx.context_id: cx for cx in negotiated if cx.result == ContextResult.ACCEPTANCE
        }
        self._rejected = [cx for cx in negotiated if cx.result != ContextResult.ACCEPTANCE]
        self._context_cache.clear()

    def bind_handlers(self, evt_handlers: Iterable | None) -> None:
        """Use ``evt_handlers`` ((event, handler[, args]) tuples) for this association's events."""
        self.handlers = events.HandlerSet(evt_handlers)
        self._watch_pdus()

    def bind(self, event: events.EventType, handler: Callable, args: list | None = None) -> None:
        """Bind ``handler`` to ``event``, as pynetdicom's ``Association.bind``."""
        self.handlers.bind(event, handler, args)
        self._watch_pdus()

    def unbind(self, event: events.EventType, handler: Callable) -> None:
        self.handlers.unbind(event, handler)
        self._watch_pdus()

    def get_handlers(self, event: events.EventType) -> list:
        return self.handlers.get_handlers(event)

    def _watch_pdus(self) -> None:
        # PDU events cost a copy and a decode of every PDU: only with a handler bound.
        if self._driver is not None:
            self._driver.watch_pdus(
                self._pdu_sent if self.handlers.has(events.EVT_PDU_SENT) else None,
                self._pdu_received if self.handlers.has(events.EVT_PDU_RECV) else None,
            )

    def _pdu_sent(self, pdu: PDU) -> None:
        self.handlers.notify(self, events.EVT_PDU_SENT, pdu=pdu)

    def _pdu_received(self, pdu: PDU) -> None:
        self.handlers.notify(self, events.EVT_PDU_RECV, pdu=pdu)

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
        self.engine.request_association(request)
        if not self._connect(remote, bind_address, tls_args):
            return
        self._process(self.engine.connection_made())
        if not self._write(self.engine.pop_output()):
            return
        self.handlers.notify(self, events.EVT_REQUESTED)
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
        self._watch_pdus()
        local = transport.local_address
        self.requestor.address, self.requestor.port = local[0], local[1]
        self.handlers.notify(self, events.EVT_CONN_OPEN, address=remote[:2])
        return True

    def _accepted_by_peer(self, response: AAssociateAC) -> None:
        user_info = response.user_information
        self.acceptor.maximum_length = user_info.maximum_length
        self.acceptor.implementation_class_uid = user_info.implementation_class_uid
        self.acceptor.implementation_version_name = user_info.implementation_version_name
        self.acceptor.user_information = user_info
        self.set_contexts(requestor_contexts(self.requestor.requested_contexts, response))
        self.handlers.notify(self, events.EVT_ACCEPTED)
        if not self._accepted:
            LOGGER.error("No accepted presentation contexts")
            self.abort()
            return
        LOGGER.info("Association Accepted")
        self.is_established = True
        self.handlers.notify(self, events.EVT_ESTABLISHED)
        register = getattr(self._ae, "_register", None)
        if register is not None:
            register(self)
            self._registered = True

    # -- release and abort -------------------------------------------------------

    def release(self) -> None:
        """Release the association (A-RELEASE); aborts if the peer does not answer in time."""
        if not self.is_established or self.transport is None:
            return
        LOGGER.info("Releasing Association")
        if not self._write(self.engine.release()):
            return
        answer = self._await((ReleaseConfirmed, Aborted), self.acse_timeout)
        if answer is None and self.transport is not None:
            LOGGER.error("ACSE timeout reached while waiting for the A-RELEASE response")
            self.abort()

    def abort(self) -> None:
        """Abort the association (A-ABORT) and close the connection."""
        if self._sent_abort or self.is_released or self.transport is None:
            return
        self._sent_abort = True
        LOGGER.info("Aborting Association")
        self._write(self.engine.abort_if_open())
        self._mark_aborted()
        self._close()

    # -- DIMSE services ------------------------------------------------------------

    def send_c_echo(self, msg_id: int = 1) -> Dataset:
        """C-ECHO; the status Dataset of the response, empty if none came (then aborted)."""
        self._require_established("C-ECHO")
        check_message_id(msg_id)
        context = self._find_context(VERIFICATION_SOP_CLASS, "", allow_conversion=True)
        LOGGER.debug("Sending Echo Request: MsgID %s", msg_id)
        if not self._send_message(context.context_id, dimse.CEchoRQ(msg_id), None):
            return Dataset()
        return self._await_response(msg_id, dimse.CEchoRSP)

    def send_c_store(
        self,
        dataset: Dataset | str | os.PathLike,
        msg_id: int = 1,
        priority: int = 2,
        originator_aet: str | bytes | None = None,
        originator_id: int | None = None,
    ) -> Dataset:
        """C-STORE a pydicom Dataset, or a Part 10 file streamed as its dataset bytes are.

        A file needs an accepted context with its own SOP class and transfer
        syntax; a Dataset is encoded in the accepted context's transfer syntax
        (pynetdicom's rules for which one may stand in for another). Raises
        ValueError without such a context. Returns the response's status
        Dataset, empty if none came (the association is then aborted).
        """
        self._require_established("C-STORE")
        check_message_id(msg_id)
        if priority not in (0, 1, 2):
            raise ValueError("'priority' must be 0 (medium), 1 (high) or 2 (low)")
        originator = None if originator_aet is None else normalize_ae_title(originator_aet)
        store = partial(
            dimse.CStoreRQ,
            msg_id,
            priority=priority,
            move_originator_aet=originator,
            move_originator_message_id=originator_id,
        )
        if isinstance(dataset, Dataset):
            sent = self._store_dataset(dataset, store)
        else:
            sent = self._store_file(os.fspath(dataset), store)
        if not sent:
            return Dataset()
        return self._await_response(msg_id, dimse.CStoreRSP)

    def _store_dataset(self, dataset: Dataset, store: partial) -> bool:
        missing = [kw for kw in ("SOPClassUID", "SOPInstanceUID") if kw not in dataset]
        if missing:
            raise AttributeError(
                "Unable to send the dataset as one or more required element are missing: "
                + ", ".join(missing)
            )
        syntax = dataset_transfer_syntax(dataset)
        context = self._find_context(dataset.SOPClassUID, syntax, allow_conversion=True)
        encoded = encode_dataset(dataset, context.transfer_syntax[0])
        request = store(str(dataset.SOPClassUID), str(dataset.SOPInstanceUID))
        return self._send_message(context.context_id, request, encoded)

    def _store_file(self, path: str | bytes, store: partial) -> bool:
        with open(path, "rb") as stream:
            meta = read_file_meta(stream)
            context = self._find_context(
                meta.sop_class_uid, meta.transfer_syntax, allow_conversion=False
            )
            request = store(meta.sop_class_uid, meta.sop_instance_uid)
            chunks = file_dataset_chunks(stream, meta, self.engine.max_fragment)
            return self._send_message(context.context_id, request, chunks)

    def _require_established(self, service: str) -> None:
        if not self.is_established:
            raise RuntimeError(
                "The association with a peer SCP must be established before sending a "
                f"{service} request"
            )

    def _find_context(
        self, abstract_syntax: str, transfer_syntax: str, allow_conversion: bool
    ) -> PresentationContext:
        """An accepted context we may use as SCU, by pynetdicom's matching rules."""
        key = (str(abstract_syntax), str(transfer_syntax), allow_conversion)
        context = self._context_cache.get(key)
        if context is None:
            context = choose_context(self.accepted_contexts, *key)
            self._context_cache[key] = context
        return context

    def _send_message(self, context_id: int, command, dataset) -> bool:
        """Write one DIMSE message, PDUs batched per sendmsg; False if the connection died.

        Any other failure (a file that cannot be read, say) aborts the
        association, as half a message cannot be taken back, and is raised.
        """
        engine = self.engine
        try:
            if dataset is None:
                sent = self._write(engine.send_message(context_id, command))
            else:
                sent = self._driver.write_message(engine.iter_message(context_id, command, dataset))
        except BaseException:
            self.abort()
            raise
        if sent:
            self.handlers.notify(self, events.EVT_DIMSE_SENT, message=command)
        return sent

    def _await_response(self, msg_id: int, expected: type) -> Dataset:
        answer = self._await((MessageReceived,), self.dimse_timeout)
        if answer is None:
            if self.is_established:
                LOGGER.error("DIMSE timeout reached while waiting for message response")
                self.abort()
            elif self.is_aborted:
                LOGGER.error("Association aborted while waiting for DIMSE message")
            return Dataset()
        command = answer.command
        if type(command) is not expected or command.message_id_being_responded_to != msg_id:
            LOGGER.error("Received an invalid %s response from the peer", expected.__name__)
            self.abort()
            return Dataset()
        return status_dataset(command)

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
        self.is_established = False
        address = (self.acceptor.address, self.acceptor.port)
        self.handlers.notify(self, events.EVT_CONN_CLOSE, address=address)
        if self._registered:
            self._registered = False
            self._ae._unregister(self)

    def _process(self, indications: list[Indication]) -> None:
        for indication in indications:
            kind = type(indication)
            if kind is MessageReceived:
                self.handlers.notify(self, events.EVT_DIMSE_RECV, message=indication.command)
            elif kind is AssociationAccepted:
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
            LOGGER.error("Association Aborted")
        else:
            LOGGER.error(
                "Association aborted by the provider: %s", indication.detail or indication.reason
            )
        self._mark_aborted()

    def _on_rejected(self, indication: AssociationRejected) -> None:
        LOGGER.error("Association Rejected")
        LOGGER.error(
            "Result: %s, Source: %s, Reason: %s",
            indication.result,
            indication.source,
            indication.reason,
        )
        self.rejection = (indication.result, indication.source, indication.reason)
        self.is_rejected = True
        self.is_established = False
        self.handlers.notify(self, events.EVT_REJECTED)

    def _on_release_requested(self, indication: ReleaseRequested) -> None:
        # Collision (we asked too): answer, then our A-RELEASE-RP still comes.
        # Otherwise the peer releases us: answer and we are done.
        if self.transport is not None:  # not if the connection just went down
            self._write(self.engine.release_response())
        if not indication.collision:
            self._mark_released()

    def _mark_released(self) -> None:
        if not self.is_released:
            self.is_released = True
            self.is_established = False
            LOGGER.info("Association Released")
            self.handlers.notify(self, events.EVT_RELEASED)

    def _mark_aborted(self) -> None:
        if not self.is_aborted:
            self.is_aborted = True
            self.is_established = False
            self.handlers.notify(self, events.EVT_ABORTED)


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
