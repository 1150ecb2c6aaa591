"""Associations as pynetdicom's API shows them, driven synchronously on a blocking socket.

The requestor (SCU) side runs in the caller's thread: each call writes what
the engine produces and reads until the answer it waits for arrives, so
there is no reactor thread and no queue between the socket and the engine.
A file path given to ``send_c_store`` is streamed from disk without being
decoded. ``Association(ae, "acceptor")`` makes a bare object of the same
shape; an acceptor's I/O lives in the server.

Timeouts follow pynetdicom: ``acse_timeout`` while waiting for the
A-ASSOCIATE and A-RELEASE answers, ``dimse_timeout`` for a DIMSE response,
``network_timeout`` for any one read or write. Whichever expires, the
association is aborted.
"""

from __future__ import annotations

import logging
import os
import socket
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from time import monotonic
from typing import Any, BinaryIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID, ExplicitVRBigEndian, ImplicitVRLittleEndian

from hsscp import dimse, events, items
from hsscp.acse import LocalIdentity, build_request, requestor_contexts
from hsscp.aet import normalize_ae_title
from hsscp.engine import Engine, Role
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
from hsscp.pdu import PDU_HEADER, PDU_HEADER_LENGTH, AAssociateAC, decode_pdu
from hsscp.presentation import ContextResult, PresentationContext, build_context
from hsscp.transport import IOV_MAX, BlockingTransport, address_family
from hsscp.uid import VERIFICATION_SOP_CLASS

__all__ = ["MODE_ACCEPTOR", "MODE_REQUESTOR", "Association", "ServiceUser", "open_association"]

LOGGER = logging.getLogger("hsscp.association")

MODE_REQUESTOR = "requestor"
MODE_ACCEPTOR = "acceptor"

DEFAULT_MAX_PDU = 16382
# File reads and socket writes per batch: big enough to amortise Python and
# syscall costs, small enough that a huge file never sits in memory.
STREAM_CHUNK_SIZE = 1024 * 1024
SEND_BATCH_BYTES = 1024 * 1024

# The status elements a response may carry: (field, tag, VR), as pynetdicom copies them.
_STATUS_FIELDS = (
    ("error_comment", 0x00000902, "LO"),
    ("offending_element", 0x00000901, "AT"),
    ("error_id", 0x00000903, "US"),
    ("affected_sop_instance_uid", 0x00001000, "UI"),
)


# -- who is who ---------------------------------------------------------------


@dataclass
class ServiceUser:
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
    def is_requestor(self) -> bool:
        return self.mode == MODE_REQUESTOR

    @property
    def is_acceptor(self) -> bool:
        return self.mode == MODE_ACCEPTOR

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


# -- events -------------------------------------------------------------------


class _PduSplitter:
    """Cuts a byte stream into whole PDUs, for PDU events only (it copies)."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data) -> Iterator:
        pending = self._pending
        pending += data
        while len(pending) >= PDU_HEADER_LENGTH:
            _, length = PDU_HEADER.unpack_from(pending)
            end = PDU_HEADER_LENGTH + length
            if len(pending) < end:
                return
            raw = bytes(pending[:end])
            del pending[:end]
            yield decode_pdu(raw)


# -- the association ------------------------------------------------------------


class Association:
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

        self.acse_timeout: float | None = getattr(ae, "acse_timeout", 30)
        self.dimse_timeout: float | None = getattr(ae, "dimse_timeout", 30)
        self.network_timeout: float | None = getattr(ae, "network_timeout", 60)
        self.connection_timeout: float | None = getattr(ae, "connection_timeout", None)

        self.engine: Engine | None = None
        self.transport: BlockingTransport | None = None
        self._pdu_in: _PduSplitter | None = None
        self.bind_handlers(None)
        self._sent_abort = False
        self._registered = False
        self._batch_pdus = 1

    # -- pynetdicom's read-only views ----------------------------------------

    @property
    def ae(self) -> Any:
        return self._ae

    @property
    def is_requestor(self) -> bool:
        return self.mode == MODE_REQUESTOR

    @property
    def is_acceptor(self) -> bool:
        return self.mode == MODE_ACCEPTOR

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
        self._watch_sent = self.handlers.has(events.EVT_PDU_SENT)
        watch_received = self.handlers.has(events.EVT_PDU_RECV)
        if not watch_received:
            self._pdu_in = None
        elif self._pdu_in is None:
            self._pdu_in = _PduSplitter()

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
        remote = _remote_address(addr, port)
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
            maximum_pdu_size=_max_pdu(max_pdu),
            implementation_class_uid=str(ae.implementation_class_uid),
            implementation_version_name=_text(getattr(ae, "implementation_version_name", None)),
        )
        called = normalize_ae_title(ae_title)
        extra, roles = _user_items(ext_neg)
        request, requested = build_request(identity, called, _with_roles(contexts, roles), extra)
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
            self.transport = BlockingTransport.connect(
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
        local = self.transport.local_address
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
        fragment = self.engine.max_fragment
        self._batch_pdus = max(1, min(IOV_MAX // 2, SEND_BATCH_BYTES // fragment))
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
        _check_message_id(msg_id)
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
        _check_message_id(msg_id)
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
        syntax = _dataset_transfer_syntax(dataset)
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
            length = os.fstat(stream.fileno()).st_size - meta.dataset_offset
            # Whole PDVs per chunk, so chunk boundaries do not leave runt PDUs.
            fragment = self.engine.max_fragment
            size = fragment * max(1, STREAM_CHUNK_SIZE // fragment)
            # PS3.5 A.5: a deflated stream is padded to even length; files
            # written without the pad exist, and DCMTK refuses odd fragments.
            pad = length % 2 == 1 and UID(meta.transfer_syntax).is_deflated
            chunks = read_chunks(stream, length, size, pad)
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
            context = _match_context(self.accepted_contexts, *key)
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
                sent = self._write_batches(engine.iter_message(context_id, command, dataset))
        except BaseException:
            self.abort()
            raise
        if sent:
            self.handlers.notify(self, events.EVT_DIMSE_SENT, message=command)
        return sent

    def _write_batches(self, steps: Iterator[None]) -> bool:
        engine, batch, count = self.engine, self._batch_pdus, 0
        for _ in steps:
            count += 1
            if count == batch:
                count = 0
                if not self._write(engine.pop_output()):
                    return False
        return self._write(engine.pop_output())

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

    # -- the engine on a socket ------------------------------------------------------

    def _await(self, wanted: tuple[type, ...], timeout: float | None) -> Indication | None:
        """Read until an indication of a ``wanted`` type; None on timeout or a closed connection."""
        deadline = None if timeout is None else monotonic() + timeout
        read_timeout = _shorter(timeout, self.network_timeout)
        while self.transport is not None:
            indications = self._read(read_timeout)
            if indications is None:
                return None
            for indication in indications:
                if isinstance(indication, wanted):
                    return indication
            if deadline is not None:
                read_timeout = _shorter(deadline - monotonic(), self.network_timeout)
        return None

    def _read(self, timeout: float | None) -> list[Indication] | None:
        """One read fed to the engine; None if nothing came within ``timeout``."""
        try:
            data = self.transport.receive(timeout)
        except TimeoutError:
            return None
        except OSError as exc:
            LOGGER.error("Connection error: %s", exc)
            data = b""
        engine = self.engine
        if data:
            if self._pdu_in is not None:
                self._notify_received(data)
            indications = engine.receive_data(data)
        else:
            indications = engine.connection_lost()
        # What the engine queued on its own (an A-ABORT answering a protocol error) goes first.
        self._write(engine.pop_output())
        self._process(indications)
        if self.transport is not None and (
            engine.close_requested or engine.is_finished
        ):
            # Sta13 waits for the peer to close; nothing more can come that we need.
            self._close()
        return indications

    def _write(self, buffers: list) -> bool:
        """Send buffers as they are; False if the connection is gone (the association has ended)."""
        if not buffers:
            return True
        transport = self.transport
        if transport is None:
            return False
        if self._watch_sent:
            self._notify_sent(buffers)
        try:
            transport.set_timeout(self.network_timeout)
            transport.send(buffers)
        except OSError as exc:
            LOGGER.error("Connection error while sending: %s", exc)
            self._close()
            return False
        return True

    def _close(self) -> None:
        transport, self.transport = self.transport, None
        if transport is None:
            return
        transport.close()
        if not self.engine.is_closed:
            self._process(self.engine.connection_lost())
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

    # -- low-level events (only when a handler is bound) --------------------------

    def _notify_sent(self, buffers: list) -> None:
        for pdu in _PduSplitter().feed(b"".join(bytes(buffer) for buffer in buffers)):
            self.handlers.notify(self, events.EVT_PDU_SENT, pdu=pdu)

    def _notify_received(self, data: memoryview) -> None:
        try:
            pdus = list(self._pdu_in.feed(data))
        except Exception:  # the engine reports malformed input; events only observe
            self._pdu_in = None
            return
        for pdu in pdus:
            self.handlers.notify(self, events.EVT_PDU_RECV, pdu=pdu)


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


# -- helpers ---------------------------------------------------------------------------


def read_chunks(stream: BinaryIO, length: int, size: int, pad: bool = False) -> Iterator[bytes]:
    """``length`` bytes from ``stream`` in reads of ``size``; ``pad`` adds a NUL to the last one.

    Each chunk is a new bytes object (the engine holds one back). A file
    shorter than ``length`` raises ValueError rather than send a short data set.
    """
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(size, remaining))
        if not chunk:
            raise ValueError(f"the file ended {remaining} bytes short of its data set")
        remaining -= len(chunk)
        yield chunk + b"\0" if pad and remaining == 0 else chunk


def status_dataset(response) -> Dataset:
    """The status Dataset pynetdicom returns: Status plus the optional status elements present."""
    status = Dataset()
    status.add_new(0x00000900, "US", response.status)
    for attribute, tag, vr in _STATUS_FIELDS:
        value = getattr(response, attribute, None)
        if value is not None and value != "":
            status.add_new(tag, vr, value)
    return status


def encode_dataset(dataset: Dataset, transfer_syntax: UID) -> bytes:
    """Encode ``dataset`` (no file meta) in ``transfer_syntax``; ValueError if pydicom cannot."""
    fp = DicomBytesIO()
    fp.is_implicit_VR = transfer_syntax.is_implicit_VR
    fp.is_little_endian = transfer_syntax.is_little_endian
    try:
        write_dataset(fp, dataset)
    except Exception as exc:
        raise ValueError("Failed to encode the supplied dataset") from exc
    encoded = fp.getvalue()
    if transfer_syntax.is_deflated:
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        encoded = compressor.compress(encoded) + compressor.flush()
        if len(encoded) % 2:
            encoded += b"\x00"
    return encoded


def _dataset_transfer_syntax(dataset: Dataset) -> UID:
    """The transfer syntax a Dataset says it is in, squared with how it was read (as pynetdicom)."""
    try:
        syntax = UID(dataset.file_meta.TransferSyntaxUID)
    except AttributeError:
        raise AttributeError(
            "Unable to determine the presentation context to use with `dataset` as it "
            "contains no '(0002,0010) Transfer Syntax UID' file meta information element"
        ) from None
    original = dataset.original_encoding
    encoding = (
        dataset.is_implicit_VR if original[0] is None else original[0],
        dataset.is_little_endian if original[1] is None else original[1],
    )
    if None in encoding or encoding == (syntax.is_implicit_VR, syntax.is_little_endian):
        return syntax
    if encoding == (True, True):
        LOGGER.warning(
            "'dataset' is encoded as implicit VR little endian, using that instead of %s",
            syntax.name,
        )
        return ImplicitVRLittleEndian
    if encoding == (False, False):
        LOGGER.warning(
            "'dataset' is encoded as explicit VR big endian, using that instead of %s", syntax.name
        )
        return ExplicitVRBigEndian
    raise AttributeError(
        f"'dataset' encoding does not match its (0002,0010) Transfer Syntax UID of "
        f"'{syntax.name}' - please set an appropriate Transfer Syntax"
    )


def _match_context(
    accepted: list[PresentationContext],
    abstract_syntax: str,
    transfer_syntax: str,
    allow_conversion: bool,
) -> PresentationContext:
    """pynetdicom's ``_get_valid_context`` for the SCU role."""
    wanted = UID(transfer_syntax) if transfer_syntax else None
    candidates = [cx for cx in accepted if cx.abstract_syntax == abstract_syntax and cx.as_scu]
    convertible = []
    for cx in candidates:
        syntax = cx.transfer_syntax[0]
        if wanted is not None:
            if syntax == wanted:
                return cx
            # Only uncompressed syntaxes of the same byte order convert into each other.
            if (
                wanted.is_compressed
                or syntax.is_compressed
                or wanted.is_little_endian != syntax.is_little_endian
            ):
                continue
        convertible.append(cx)
    if allow_conversion and convertible:
        return convertible[0]
    message = (
        f"No presentation context for '{UID(abstract_syntax).name}' has been accepted by the peer"
    )
    if wanted is not None:
        message += f" with '{wanted.name}' transfer syntax"
    raise ValueError(message + " for the SCU role")


def _with_roles(
    contexts: Sequence[PresentationContext], roles: dict[str, tuple]
) -> list[PresentationContext]:
    """Copies of the contexts (never the caller's) carrying SCP/SCU role proposals."""
    copies = []
    for context in contexts:
        if not isinstance(context, PresentationContext):
            raise TypeError("'contexts' must be a list of PresentationContext items")
        copy = build_context(context.abstract_syntax, context.transfer_syntax)
        copy.scu_role, copy.scp_role = context.scu_role, context.scp_role
        role = roles.get(str(context.abstract_syntax))
        if role is not None:
            # As pynetdicom: a role left out of a proposal is not proposed.
            copy.scu_role, copy.scp_role = bool(role[0]), bool(role[1])
        copies.append(copy)
    return copies


def _user_items(ext_neg: Iterable | None) -> tuple[list, dict[str, tuple]]:
    """Extended negotiation items as :mod:`hsscp.items`, plus role proposals by SOP class.

    Takes hsscp items or objects shaped like pynetdicom's negotiation primitives.
    """
    extra: list = []
    roles: dict[str, tuple] = {}
    for item in ext_neg or ():
        if isinstance(item, items.RoleSelection) or hasattr(item, "scu_role"):
            roles[str(item.sop_class_uid)] = (item.scu_role, item.scp_role)
        else:
            extra.append(_as_sub_item(item))
    return extra, roles


def _as_sub_item(item: Any):
    if isinstance(
        item,
        (
            items.AsyncOperationsWindow,
            items.SOPClassExtendedNegotiation,
            items.SOPClassCommonExtendedNegotiation,
            items.UserIdentityRQ,
        ),
    ):
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


def _remote_address(addr: str | tuple, port: int) -> tuple:
    if isinstance(addr, tuple):
        if (
            len(addr) != 3
            or not isinstance(addr[0], str)
            or not all(isinstance(v, int) for v in addr[1:])
        ):
            raise TypeError("'addr' must be str or tuple[str, int, int]")
    elif not isinstance(addr, str):
        raise TypeError("'addr' must be str or tuple[str, int, int]")
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError("'port' must be int")
    if isinstance(addr, tuple):
        return (addr[0], port, addr[1], addr[2])
    return (addr, port)


def _max_pdu(value: int) -> int:
    if not isinstance(value, int) or value < 0 or value > 0xFFFFFFFF:
        raise ValueError("'max_pdu' must be an int from 0 (unlimited) to 4294967295")
    return value


def _check_message_id(msg_id: int) -> None:
    if not isinstance(msg_id, int) or not 0 <= msg_id <= 0xFFFF:
        raise ValueError("'msg_id' must be an int between 0 and 65535, inclusive")


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("ascii").strip(" \0")
    return value.strip()


def _shorter(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
