"""DIMSE messages for verification and storage (PS3.7), without I/O.

* Command sets: :func:`encode_command` / :func:`decode_command` for C-ECHO and
  C-STORE; any other command decodes to :class:`UnknownCommand` (defined in
  :mod:`hsscp.command_set`, re-exported here).
* Sending: :func:`iter_fragments` cuts a message into PDV payloads (views,
  never copies).
* Receiving: :class:`MessageAssembler` rebuilds messages from PDV payload
  chunks and streams data set bytes into a :class:`DatasetSink`.
* Statuses: :class:`Status`, and :func:`status_category` for their PS3.7
  classes, live in :mod:`hsscp.dimse_status` and are re-exported here
  (:mod:`hsscp.status` holds pynetdicom's names for users).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import msgspec

from hsscp.command_set import (  # noqa: F401 (re-exported: the commands are this layer's vocabulary)
    C_CANCEL_RQ,
    C_ECHO_RQ,
    C_ECHO_RSP,
    C_STORE_RQ,
    C_STORE_RSP,
    COMMAND_NAMES,
    DATASET_PRESENT,
    NO_DATASET,
    SUCCESS,
    VERIFICATION_SOP_CLASS,
    CEchoRQ,
    CEchoRSP,
    Command,
    CStoreRQ,
    CStoreRSP,
    Priority,
    UnknownCommand,
    command_name,
    decode_command,
    encode_command,
)
from hsscp.dimse_status import Status, StatusCategory, status_category  # noqa: F401 (dimse.Status is public)
from hsscp.errors import AbortReason, RemoteProtocolError, invalid

# --- fragmentation ----------------------------------------------------------

_COMMAND_MORE = 0x01
_COMMAND_LAST = 0x03
_DATASET_MORE = 0x00
_DATASET_LAST = 0x02
_EMPTY = memoryview(b"")


def _as_bytes_view(obj: object) -> memoryview:
    view = memoryview(obj)  # type: ignore[arg-type]
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _split(
    view: memoryview, max_pdv_data: int, more: int, last: int
) -> Iterator[tuple[int, memoryview]]:
    last_start = max(len(view) - 1, 0) // max_pdv_data * max_pdv_data
    for start in range(0, last_start, max_pdv_data):
        yield more, view[start : start + max_pdv_data]
    yield last, view[last_start:]


def _split_chunks(chunks: Iterable[object], max_pdv_data: int) -> Iterator[tuple[int, memoryview]]:
    # Hold one chunk back: only once the next one exists do we know it is not the last.
    pending: memoryview | None = None
    for chunk in chunks:
        view = _as_bytes_view(chunk)
        if not view:
            continue
        if pending is not None:
            yield from _split(pending, max_pdv_data, _DATASET_MORE, _DATASET_MORE)
        pending = view
    if pending is None:
        pending = _EMPTY
    yield from _split(pending, max_pdv_data, _DATASET_MORE, _DATASET_LAST)


def iter_fragments(
    command: bytes | bytearray | memoryview,
    dataset: bytes | bytearray | memoryview | Iterable[bytes] | None,
    max_pdv_data: int,
) -> Iterator[tuple[int, memoryview]]:
    """Yield ``(message_control_header, payload)`` for each PDV of one message.

    ``dataset`` is None, a bytes-like object (sliced, never copied) or an
    iterable of bytes-like chunks. Chunks are held one ahead, so an iterable
    must not hand out the same buffer refilled in place.
    """
    if max_pdv_data < 1:
        raise ValueError(f"max_pdv_data must be >= 1, got {max_pdv_data}")
    return _fragments(command, dataset, max_pdv_data)


def _fragments(
    command: bytes | bytearray | memoryview,
    dataset: object,
    max_pdv_data: int,
) -> Iterator[tuple[int, memoryview]]:
    yield from _split(_as_bytes_view(command), max_pdv_data, _COMMAND_MORE, _COMMAND_LAST)
    if dataset is None:
        return
    try:
        view = _as_bytes_view(dataset)
    except TypeError:
        yield from _split_chunks(dataset, max_pdv_data)  # type: ignore[arg-type]
    else:
        yield from _split(view, max_pdv_data, _DATASET_MORE, _DATASET_LAST)


# --- reassembly -------------------------------------------------------------


class DatasetSink(Protocol):
    """Receives one message's data set bytes as they arrive."""

    def write(self, data: memoryview) -> None:
        """Take the next bytes; ``data`` is only valid during the call."""

    def finish(self) -> object:
        """All bytes arrived; the result becomes ``DimseMessage.dataset``."""

    def abort(self) -> None:
        """The message will never complete: release what was kept."""


class BytesSink:
    """Collects the data set in memory; ``finish()`` returns the bytearray itself."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: memoryview) -> None:
        self._buffer += data

    def finish(self) -> bytearray:
        return self._buffer

    def abort(self) -> None:
        self._buffer = bytearray()


def _bytes_sink_factory(context_id: int, command: Command) -> DatasetSink:
    return BytesSink()


class DimseMessage(msgspec.Struct, frozen=True):
    context_id: int
    command: Command
    dataset: object = None


SinkFactory = Callable[[int, Command], DatasetSink]


class MessageAssembler:
    """Rebuilds DIMSE messages from PDV payload chunks, in arrival order."""

    def __init__(
        self, sink_factory: SinkFactory | None = None, max_command_length: int = 65536
    ) -> None:
        self._sink_factory = sink_factory or _bytes_sink_factory
        self._max_command_length = max_command_length
        self._context_id: int | None = None
        self._command_buffer = bytearray()
        self._command: Command | None = None
        self._sink: DatasetSink | None = None
        self.messages_received = 0

    def feed(
        self, context_id: int, control: int, chunk: memoryview, pdv_end: bool
    ) -> DimseMessage | None:
        """Take one chunk of a PDV; return the message it completes, if any.

        ``control`` is the PDV's message control header; bits 2-7 are
        ignored, as PS3.8 E.2 says they shall not be tested.
        """
        try:
            if self._context_id is None:
                self._context_id = context_id
            elif context_id != self._context_id:
                raise RemoteProtocolError(
                    f"presentation context changed from {self._context_id} to "
                    f"{context_id} in the middle of a message",
                    AbortReason.UNEXPECTED_PDU_PARAMETER,
                )
            last = pdv_end and bool(control & 0x02)
            if control & 0x01:
                return self._feed_command(context_id, chunk, last)
            return self._feed_dataset(context_id, chunk, last)
        except Exception:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the message in progress and abort its sink, if any."""
        sink, self._sink = self._sink, None
        self._reset()
        if sink is not None:
            sink.abort()

    def _feed_command(self, context_id: int, chunk: memoryview, last: bool) -> DimseMessage | None:
        if self._command is not None:
            raise RemoteProtocolError(
                "command fragment while receiving a data set", AbortReason.UNEXPECTED_PDU_PARAMETER
            )
        buffer = self._command_buffer
        if len(buffer) + len(chunk) > self._max_command_length:
            raise invalid(f"command set longer than {self._max_command_length} bytes")
        buffer += chunk
        if not last:
            return None
        command = decode_command(buffer)
        buffer.clear()
        if not command.has_dataset:
            return self._complete(context_id, command, None)
        self._command = command
        self._sink = self._sink_factory(context_id, command)
        return None

    def _feed_dataset(self, context_id: int, chunk: memoryview, last: bool) -> DimseMessage | None:
        sink = self._sink
        if sink is None:
            if self._command_buffer:
                problem = "before its command set is complete"
            else:
                problem = "without a command that announced one"
            raise RemoteProtocolError(
                f"data set fragment {problem}", AbortReason.UNEXPECTED_PDU_PARAMETER
            )
        sink.write(chunk)
        if not last:
            return None
        command = self._command
        assert command is not None
        dataset = sink.finish()
        self._sink = None
        return self._complete(context_id, command, dataset)

    def _complete(self, context_id: int, command: Command, dataset: object) -> DimseMessage:
        self._reset()
        self.messages_received += 1
        return DimseMessage(context_id, command, dataset)

    def _reset(self) -> None:
        self._context_id = None
        self._command = None
        self._command_buffer.clear()
