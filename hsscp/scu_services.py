"""The DIMSE services of the requestor's Association: ``send_c_echo`` and ``send_c_store``.

A part of :class:`hsscp.association.Association` (which provides the
driver glue named below: ``_check``, ``_write``, ``_await``, ``abort``...).
A file path given to ``send_c_store`` is streamed from disk as it is when
an accepted context has its transfer syntax; only when none has, and one
has a syntax it can be re-encoded in (Implicit <-> Explicit VR Little
Endian, deflated <-> inflated, as pynetdicom converts), is it decoded and
sent re-encoded.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

from pydicom.dataset import Dataset

from hsscp import dimse, events, protocol_log
from hsscp.aet import normalize_ae_title
from hsscp.indications import MessageReceived
from hsscp.part10 import read_file_meta
from hsscp.presentation import PresentationContext
from hsscp.scu_datasets import (
    choose_context,
    converted_file,
    dataset_transfer_syntax,
    encode_dataset,
    file_dataset_chunks,
    status_dataset,
)
from hsscp.uid import VERIFICATION_SOP_CLASS
from hsscp.validation import check_message_id

__all__ = ["ScuServices"]

_LOG = protocol_log.EXCHANGE_LOG


class ScuServices:
    """C-ECHO and C-STORE as pynetdicom's ``Association`` offers them to an SCU."""

    engine: Any
    handlers: events.HandlerSet
    dimse_timeout: float | None
    _context_cache: dict
    _driver: Any

    def send_c_echo(self, msg_id: int = 1) -> Dataset:
        """C-ECHO; the status Dataset of the response, empty if none came (then aborted)."""
        self._require_established("C-ECHO")
        check_message_id(msg_id)
        context = self._find_context(VERIFICATION_SOP_CLASS, "", allow_conversion=True)
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
        """C-STORE a pydicom Dataset, or a Part 10 file streamed as its data set bytes are.

        A file goes on an accepted context with its own SOP class and transfer
        syntax, as it is; without one, on a context whose syntax it can be
        re-encoded in (decoded, then re-encoded: logged at INFO). A Dataset is
        encoded in the accepted context's transfer syntax (pynetdicom's rules
        for which one may stand in for another). Raises ValueError without a
        usable context. Returns the response's status Dataset, empty if none
        came (the association is then aborted).
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
            context = self._find_context(meta.sop_class_uid, meta.transfer_syntax, allow_conversion=True)
            request = store(meta.sop_class_uid, meta.sop_instance_uid)
            if context.transfer_syntax[0] == meta.transfer_syntax:
                chunks = file_dataset_chunks(stream, meta, self.engine.max_fragment)
                return self._send_message(context.context_id, request, chunks)
        encoded = converted_file(path, meta.transfer_syntax, context.transfer_syntax[0])
        return self._send_message(context.context_id, request, encoded)

    def _require_established(self, service: str) -> None:
        self._check()
        if not self._established:
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

    def _send_message(self, context_id: int, command: Any, dataset: Any) -> bool:
        """Write one DIMSE message, PDUs batched per sendmsg; False if the connection died.

        Any other failure (a file that cannot be read, say) aborts the
        association, as half a message cannot be taken back, and is raised.
        """
        engine = self.engine
        protocol_log.log_message(command, context_id, outgoing=True)
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
            if self._established:
                _LOG.error("DIMSE timeout reached while waiting for message response")
                self.abort()
            elif self._aborted:
                _LOG.error("Association aborted while waiting for DIMSE message")
            return Dataset()
        command = answer.command
        if type(command) is not expected or command.message_id_being_responded_to != msg_id:
            _LOG.error("Received an invalid %s response from the peer", expected.__name__)
            self.abort()
            return Dataset()
        return status_dataset(command)
