"""The built-in C-STORE path of a worker: arena slots in, writer jobs out, Success only once stored.

Replaces the user-handler dispatch of :class:`AcceptorService` for C-STORE
when no ``EVT_C_STORE`` handler is given: each dataset lands in a
:class:`StoreSink` as it arrives, a writer process turns it into a Part 10
file, and the C-STORE-RSP carries the writer's status.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from hsscp import dimse
from hsscp.acse import AcceptorPolicy
from hsscp.aet import normalize_ae_title
from hsscp.indications import MessageReceived
from hsscp.journal import journal_of, store_record
from hsscp.service import AcceptorService
from hsscp.storage import (
    InstanceFact,
    StorageBackend,
    StoreOutcome,
    StoreRequest,
    os_error_outcome,
    store_batch,
)
from hsscp.storage.durable import fsync_waits
from workers.arena import Arena, Landing, StoreSink
from workers.notify import Notifier, instance_stored
from workers.stats import Stats
from workers.writer_pool import WriterPool

if TYPE_CHECKING:
    from hsscp.protocol import AcceptorProtocol

log = logging.getLogger("hsscp.server")

LOW_SPACE = StoreOutcome(dimse.Status.OUT_OF_RESOURCES, error_comment="out of resources: free space is low")


class StorageService(AcceptorService):
    """Stores every C-STORE through the writer pool (or discards it, with ``ignore``)."""

    def __init__(self, *args, arena: Arena, storage: StorageBackend, writers: WriterPool | None,
                 stats: Stats, ignore: bool = False, inline_limit: int = 0, async_ops: int = 1,
                 notifier: Notifier | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.async_ops = async_ops
        self.stats = stats
        self.inline_limit = inline_limit
        self.arena = arena
        self.storage = storage
        self.writers = writers
        self.ignore = ignore
        self.notifier = notifier  # tells the pipeline process (hooks, completion) what was stored
        self.journal = None if ignore else journal_of(storage)

    def policy(self) -> AcceptorPolicy:
        # Stores of one association can be in the writers at once: grant that window.
        return dataclasses.replace(super().policy(), max_operations_performed=self.async_ops)

    def landing_for(self, protocol: AcceptorProtocol, fallback: memoryview) -> Landing | None:
        return None if self.ignore else Landing(self.arena, fallback)

    def sink_factory_for(self, protocol: AcceptorProtocol):
        source: list[str] = []  # calling AE title, called AE title, peer: once per association

        def new_sink(context_id: int, command) -> StoreSink | dimse.BytesSink:
            if not isinstance(command, dimse.CStoreRQ):
                return dimse.BytesSink()
            if self.ignore:
                return DiscardSink()
            context = protocol.contexts.get(context_id)
            if not source:
                assoc = protocol.assoc
                source.extend((_valid_or_empty(assoc.requestor.ae_title), _valid_or_empty(assoc.acceptor.ae_title),
                               f"{protocol.peer[0]}:{protocol.peer[1]}"))
            request = StoreRequest(
                sop_class_uid=command.affected_sop_class_uid,
                sop_instance_uid=command.affected_sop_instance_uid,
                transfer_syntax=str(context.transfer_syntax) if context else "",
                source_ae_title=source[0],
                called_ae_title=source[1],
                peer=source[2],
            )
            return StoreSink(protocol.landing, self.storage, request)

        return new_sink

    def message_received(self, protocol: AcceptorProtocol, message: MessageReceived) -> None:
        command = message.command
        if not isinstance(command, dimse.CStoreRQ):
            super().message_received(protocol, message)
            return
        sink = message.dataset
        started = time.monotonic()  # the last PDV is in: the store time runs from here
        self.stats.add("received_bytes", sink.length)
        if self.ignore:
            self._answer(protocol, message.context_id, command, StoreOutcome(0, bytes_written=sink.length), started)
            return
        if sink.error is not None:
            outcome = _failure(sink.error)
            self._answer(protocol, message.context_id, command, outcome, started,
                         InstanceFact.of(sink.request, outcome), True)
            return
        context_id = message.context_id
        if self.stats.refuse_stores:  # below --min-free-space: refused before a byte is written
            sink.discard()
            self._answer(protocol, context_id, command, LOW_SPACE, started, InstanceFact.of(sink.request, LOW_SPACE),
                         True)  # answered, so journaled as failed like any other refusal
            return
        if sink.spool_path is None and sink.length <= self.inline_limit:
            # Small, and fsync (if any) is cheap here: storing it costs less than the hop to a writer.
            outcome, fact = self._store_inline(sink, command)
            sink.discard()
            self._answer(protocol, context_id, command, outcome, started, fact, True)
            return

        def stored(outcome: StoreOutcome, fact: InstanceFact | None) -> None:
            sink.discard()
            # A writer journals what it stores and sends its fact; what no writer stored, the worker journals.
            if fact is None:
                self._answer(protocol, context_id, command, outcome, started, InstanceFact.of(sink.request, outcome),
                             True)
            else:
                self._answer(protocol, context_id, command, outcome, started, fact)

        self.writers.submit(sink, stored)

    def _store_inline(self, sink: StoreSink, command) -> tuple[StoreOutcome, InstanceFact]:
        try:
            ((outcome, fact),) = store_batch(self.storage, [(sink.request, sink.views())])
        except Exception:  # a bug must not become a false Success, nor kill the association
            log.exception("storing %s failed", command.affected_sop_instance_uid)
            outcome = StoreOutcome(dimse.Status.PROCESSING_FAILURE, error_comment="processing failure")
            fact = InstanceFact.of(sink.request, outcome)
        if fsync_waits():  # the disk went slow: every association of this worker would wait on it
            log.warning("fsync in the event loop has come to wait for the disk: the writers store every "
                        "data set from now on")
            self.inline_limit = 0
        return outcome, fact

    def request_dropped(self, message: MessageReceived) -> None:
        if isinstance(message.dataset, StoreSink):
            message.dataset.discard()  # its slot reference and spool file, else held for ever

    def _answer(self, protocol: AcceptorProtocol, context_id: int, command, outcome: StoreOutcome,
                started: float, fact: InstanceFact | None = None, journal: bool = False) -> None:
        """Send the C-STORE-RSP; first journal ``fact`` if asked (no writer did)."""
        self.stats.count(outcome.status, outcome.bytes_written, started=started,
                         calling_ae=protocol.assoc.requestor.ae_title)
        if journal and self.journal is not None:
            # Only failures and fsync-less inline stores get here: nothing to sync before answering.
            self.journal.append([store_record(fact)])
        self.store_answered(protocol, command, outcome.status, outcome.path, outcome.bytes_written, started,
                            outcome.error_comment)
        protocol.reply(
            context_id,
            dimse.CStoreRSP(
                command.message_id,
                outcome.status,
                command.affected_sop_class_uid,
                command.affected_sop_instance_uid,
                error_comment=outcome.error_comment or None,
            ),
        )
        if self.notifier is not None and outcome.path:  # after the response: it never waits for this
            self.notifier.send(instance_stored(protocol, command, outcome, fact))


class DiscardSink:
    """``--ignore``: read the dataset, keep nothing but its length."""

    __slots__ = ("length",)

    def __init__(self) -> None:
        self.length = 0

    def write(self, data: memoryview) -> None:
        self.length += len(data)

    def finish(self) -> DiscardSink:
        return self

    def abort(self) -> None:
        pass


def _valid_or_empty(ae_title: str) -> str:
    """A calling AE title fit for the file meta; a malformed one is left out, not fatal."""
    try:
        return normalize_ae_title(ae_title)
    except (TypeError, ValueError):
        return ""


def _failure(exc: OSError) -> StoreOutcome:
    """A failed spool write is answered as the storage backend answers a failed write."""
    return os_error_outcome(exc)
