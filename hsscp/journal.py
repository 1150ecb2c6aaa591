"""The journal: one JSON line per answered C-STORE (and per completed series or study).

Several processes (writers, inline-storing workers, the pipeline) append to
one file. Each opens it itself, ``O_APPEND``, and writes whole lines with
one ``write()`` per batch, so lines from different processes never
interleave. :meth:`Journal.sync` makes what this process appended durable
(``fdatasync``); the store path calls it in its group commit, before the
answers go out, so a record is as durable as its file.

Rotation is by size: past ``max_bytes`` the file is renamed ``FILE.1``
(``FILE.1`` becomes ``FILE.2``, ... up to ``keep`` files) under an
exclusive ``flock`` of ``FILE.lock``; appenders hold it shared and reopen
when the name no longer points at their file. A rotated file keeps what was
appended to it, so nothing is lost when another process rotates between
one's write and its sync.

:func:`read_journal` reads the rotated files and the current one, oldest
first, skipping a last line cut by a crash.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from hsscp.dimse_status import StatusCategory, status_category
from hsscp.storage.backend import InstanceFact

_IN_PLACE = (StatusCategory.SUCCESS, StatusCategory.WARNING)

__all__ = ["Journal", "StoreRecord", "journal_of", "read_journal", "rotated_paths", "store_record"]

DEFAULT_KEEP = 5


class StoreRecord(InstanceFact, array_like=False, kw_only=True):
    """The journal line of one answered C-STORE: the instance's fact, what became of it, and when."""

    event: str  # "stored" or "failed"
    time: datetime


def journal_of(storage: object) -> Journal | None:
    """The journal a storage backend records its answered stores in, if it has one."""
    return getattr(storage, "journal", None)


def store_record(fact: InstanceFact, when: datetime | None = None) -> StoreRecord:
    """The journal record of ``fact``, stamped ``when`` (default: now, UTC)."""
    stored = status_category(fact.status) in _IN_PLACE  # Success or a warning: the file is in place
    return StoreRecord(*msgspec.structs.astuple(fact), event="stored" if stored else "failed",
                       time=when or datetime.now(UTC))


class Journal:
    """Appends JSON lines to ``path`` from any number of processes; rotates past ``max_bytes``.

    The file is opened lazily by each process that appends (after a fork,
    the child opens its own), so one instance can be built before forking
    and shared by every child. ``max_bytes`` 0 never rotates. Not ``durable``
    (the files are not fsynced either), :meth:`sync` does nothing: a record
    is then as durable as its file, and still written before the answer.
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = 0, keep: int = DEFAULT_KEEP,
                 durable: bool = True) -> None:
        if max_bytes < 0 or keep < 1:
            raise ValueError("journal max_bytes must be 0 or more and keep at least 1")
        self.path = os.path.abspath(os.fspath(path))
        self.max_bytes = max_bytes
        self.keep = keep
        self.durable = durable
        self._encoder = msgspec.json.Encoder()
        self._fd = -1
        self._pid = 0
        self._lock_fd = -1
        self._dirty = False

    def append(self, records: Iterable[Any]) -> None:
        """Write ``records`` (msgspec Structs or dicts) as JSON lines, with one ``write()``."""
        data = self._encoder.encode_lines(records)
        if not data:
            return
        if self._pid != os.getpid():
            self._open()
        if not self.max_bytes:
            _write_all(self._fd, data)
            self._dirty = True
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        try:
            if not _same_file(self.path, self._fd):  # another process rotated it
                self._reopen()
            _write_all(self._fd, data)
            self._dirty = True
            size = os.fstat(self._fd).st_size
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        if size > self.max_bytes:
            self._rotate()

    def sync(self) -> None:
        """Make everything this process appended durable (a no-op when nothing was)."""
        if self._dirty and self.durable and self._pid == os.getpid():
            os.fdatasync(self._fd)
            self._dirty = False

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in (self._fd, self._lock_fd):
                if fd >= 0:
                    os.close(fd)
        self._fd = self._lock_fd = -1
        self._pid = 0

    def _open(self) -> None:
        # Inherited descriptors belong to the parent: a child opens its own.
        self._pid = os.getpid()
        self._fd = self._lock_fd = -1
        if self.max_bytes:
            self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._fd = _open_append(self.path)

    def _reopen(self) -> None:
        if self._dirty:
            os.fdatasync(self._fd)  # what went to the rotated file stays as durable as promised
            self._dirty = False
        os.close(self._fd)
        self._fd = _open_append(self.path)

    def _rotate(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            try:
                if os.stat(self.path).st_size <= self.max_bytes:
                    return  # another process rotated first
            except FileNotFoundError:
                return
            for number in range(self.keep, 0, -1):
                older = f"{self.path}.{number - 1}" if number > 1 else self.path
                try:
                    os.replace(older, f"{self.path}.{number}")
                except FileNotFoundError:
                    continue
            self._reopen()
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)


def rotated_paths(path: str | os.PathLike[str]) -> list[str]:
    """The journal's files, oldest first: ``FILE.N`` ... ``FILE.1``, ``FILE``."""
    path = os.fspath(path)
    older = []
    number = 1
    while os.path.exists(f"{path}.{number}"):
        older.append(f"{path}.{number}")
        number += 1
    return [*reversed(older), path] if os.path.exists(path) else list(reversed(older))


def read_journal(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of the journal at ``path`` and its rotated files, oldest first.

    A last line without its newline (cut by a crash mid-write) is skipped;
    any other line that is not JSON raises ``ValueError``.
    """
    decoder = msgspec.json.Decoder()
    records: list[dict[str, Any]] = []
    for name in rotated_paths(path):
        with open(name, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        for number, line in enumerate(lines[:-1], 1):  # the piece after the last newline is incomplete
            if not line.strip():
                continue
            try:
                records.append(decoder.decode(line))
            except msgspec.DecodeError as exc:
                raise ValueError(f"{name} line {number} is not a JSON record: {exc}") from None
    return records


def _open_append(path: str) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    # A new file's name must survive a crash as well as the lines in it.
    folder = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return fd


def _same_file(path: str, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
