"""The storage backend interface: what the writer, the arena and the service ask of a store.

The messages (:class:`StoreRequest`, :class:`StoreOutcome`) travel between
processes; :class:`StorageBackend` is the one contract every backend meets
(the local file system's is :class:`hsscp.storage.local.Storage`; another,
object storage say, is one more module implementing it). Failures become
C-STORE statuses here, in one place, so every backend answers alike.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgspec

from hsscp.dimse_status import Status

__all__ = [
    "COMMENT_LENGTH",
    "DUPLICATE_SOP_INSTANCE",
    "InstanceFact",
    "StorageBackend",
    "StoreOutcome",
    "StoreRequest",
    "failure",
    "os_error_outcome",
]

# Error comments are LO (PS3.7 C.4: at most 64 characters).
COMMENT_LENGTH = 64
# PS3.7 C.4.1: "Duplicate SOP Instance" (pynetdicom's name), a failure.
DUPLICATE_SOP_INSTANCE = 0x0111
# What the system lacks rather than what is wrong: the store may succeed later (0xA700).
OUT_OF_RESOURCES_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.ENOMEM, errno.EMFILE, errno.ENFILE}
)


class StoreRequest(msgspec.Struct, frozen=True, array_like=True):
    """What a writer needs to store one C-STORE data set; travels between processes.

    ``spool_path`` names a temporary file (from :meth:`StorageBackend.temp_path`)
    already holding the meta group and the data set; without it the data set
    is a buffer handed over separately. Fields are plain ``str``: msgspec
    cannot encode str subclasses such as pydicom's ``UID``.
    """

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    source_ae_title: str = ""
    spool_path: str | None = None
    # Who sent it, for the journal, logs and hooks: not used to store.
    called_ae_title: str = ""
    peer: str = ""  # "ip:port" of the calling peer


class StoreOutcome(msgspec.Struct, frozen=True, array_like=True):
    """The result of a store: the C-STORE-RSP status, and where the file went.

    ``duplicate`` is None for a SOP instance not stored before; otherwise what
    became of the new copy: "overwritten", "kept", "renamed", "rejected", or
    "identical" (the same bytes were stored already and were left as they
    were). ``path`` then names the file that holds the instance (for
    "rejected", none).
    """

    status: int
    path: str = ""
    error_comment: str = ""
    bytes_written: int = 0
    duplicate: str | None = None


class InstanceFact(msgspec.Struct, frozen=True, array_like=True):
    """What is known of one answered C-STORE: built once, read by the journal, logs, metrics, hooks."""

    status: int
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    path: str
    bytes: int
    transfer_syntax: str
    calling_ae: str
    called_ae: str
    peer: str
    duplicate: str | None = None

    @classmethod
    def of(cls, request: StoreRequest, outcome: StoreOutcome, study_instance_uid: str = "",
           series_instance_uid: str = "") -> InstanceFact:
        """The fact of ``request`` answered with ``outcome``; the study and series as the storage peeked them."""
        return cls(
            outcome.status,
            request.sop_class_uid,
            request.sop_instance_uid,
            study_instance_uid,
            series_instance_uid,
            outcome.path,
            outcome.bytes_written,
            request.transfer_syntax,
            request.source_ae_title,
            request.called_ae_title,
            request.peer,
            outcome.duplicate,
        )


@runtime_checkable
class StorageBackend(Protocol):
    """Where received data sets become stored instances.

    A backend must guarantee:

    * **Success only when durable.** An outcome with status 0x0000 is
      returned only once the instance is in place under its final name,
      as durable as the backend's policy promises; the C-STORE-RSP is sent
      on the strength of it.
    * **No partial object under a final name.** The object is written under
      a temporary name and moved into place whole; every failure removes
      what it wrote (and the spool file it was handed), so a final name
      only ever holds a complete instance.
    * **Temporary names carry the owner's machine and pid**, so that
      :meth:`remove_temp_files` can clean up after a process that died
      mid-store, while the others keep writing, and other nodes sharing
      the output folder keep their files.
    * **Only whole data sets.** A data set that is structurally cut (an
      element running past its end, a sequence, item or encapsulated pixel
      data never closed) is refused with 0xC000 and stored nowhere; a stored
      copy of that SOP instance is left as it was.
    * **Duplicates by policy.** A SOP instance stored before is overwritten,
      kept, stored beside it or refused (0x0111) as configured, and the
      outcome says which; the very same bytes again are a Success that
      leaves the stored copy as it is ("identical").
    * **Failures are statuses, not exceptions**, for bad requests and
      failed writes alike: 0xA700 out of resources, 0xA900 data set does not
      match the request, 0xC000 cannot understand, 0x0110 processing failure
      (see :func:`os_error_outcome`); the comment never names a path.
    * **Safe from several processes at once**: writers share one backend;
      two copies of one SOP instance stored at once never mix.
    """

    def temp_path(self, tag: str) -> Path:
        """A fresh local file name, unique to this process, for spooling a data set to."""
        ...

    def meta_for(self, request: StoreRequest) -> bytes:
        """The bytes stored before the data set: preamble, ``DICM``, File Meta Information."""
        ...

    def store_segments(self, request: StoreRequest, segments: list[memoryview]) -> StoreOutcome:
        """Check and store a data set held in memory, in pieces, without copying it."""
        ...

    def store_spooled(
        self, request: StoreRequest, spool_path: str | os.PathLike[str], head: memoryview
    ) -> StoreOutcome:
        """Check and store a spool file from :meth:`temp_path` holding ``meta_for(request)`` + data set.

        ``head`` is the start of the data set, for the checks. The spool
        file is consumed: moved into place or removed.
        """
        ...

    def remove_temp_files(self, owner_pid: int | None = None) -> int:
        """Delete this machine's stale temporary files: those of every process gone, or of ``owner_pid``."""
        ...


def failure(status: Status, comment: str) -> StoreOutcome:
    """A failed store, its comment cut to what an LO holds."""
    return StoreOutcome(status, error_comment=comment[:COMMENT_LENGTH])


def os_error_outcome(error: OSError) -> StoreOutcome:
    """The outcome of a store that failed on ``error``; the comment names the errno, never a path."""
    code = error.errno
    name = errno.errorcode.get(code, str(code)) if code else "unknown error"
    if code in OUT_OF_RESOURCES_ERRNOS:
        return failure(Status.OUT_OF_RESOURCES, f"out of resources: {name}")
    return failure(Status.PROCESSING_FAILURE, f"cannot store the file: {name}")
