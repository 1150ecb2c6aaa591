"""Messages between processes: msgspec Structs, length-prefixed msgpack frames.

Dataset bytes never travel in a message: a job names the shared-memory
arena and the offset where they already are, or the spool file they were
streamed into.
"""

from __future__ import annotations

import struct

import msgspec

from hsscp.storage import InstanceFact, StoreOutcome, StoreRequest

FRAME_HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 20  # jobs and results are small; anything bigger is a bug or an attack


class StoreJob(msgspec.Struct, tag=True, array_like=True, frozen=True):
    """Write the dataset held in ``arena`` at ``segments`` ([offset, length] pairs, in order)."""

    job_id: int
    request: StoreRequest
    arena: str
    segments: list[tuple[int, int]]


class SpoolJob(msgspec.Struct, tag=True, array_like=True, frozen=True):
    """The dataset was streamed to ``spool_path`` (meta first): check it and put it in place."""

    job_id: int
    request: StoreRequest
    spool_path: str
    head: bytes  # the dataset's first bytes, for the UID checks
    length: int  # of the dataset: a writer claims time for a long job by it


class JobDone(msgspec.Struct, tag=True, array_like=True, frozen=True):
    job_id: int
    outcome: StoreOutcome
    fact: InstanceFact | None = None  # what the journal, logs, metrics and hooks know of the instance


Message = StoreJob | SpoolJob | JobDone

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def frame(message: Message) -> bytes:
    payload = _encoder.encode(message)
    return FRAME_HEADER.pack(len(payload)) + payload


def frames(messages: list[Message]) -> bytes:
    """Several messages as one buffer: a batch goes out with one write."""
    return b"".join([frame(message) for message in messages])


class FrameReader:
    """Collects bytes from a stream socket and yields the messages they complete."""

    def __init__(self, decoder: msgspec.msgpack.Decoder = _decoder) -> None:
        self._buffer = bytearray()
        self._decoder = decoder  # another channel's messages: its own Decoder

    def feed(self, data: bytes) -> list[Message]:
        buffer = self._buffer
        buffer += data
        messages, offset = [], 0
        while len(buffer) - offset >= FRAME_HEADER.size:
            (length,) = FRAME_HEADER.unpack_from(buffer, offset)
            if length > MAX_FRAME:
                raise ValueError(f"frame of {length} bytes on an internal channel")
            end = offset + FRAME_HEADER.size + length
            if end > len(buffer):
                break
            messages.append(self._decoder.decode(memoryview(buffer)[offset + FRAME_HEADER.size : end]))
            offset = end
        del buffer[:offset]
        return messages
