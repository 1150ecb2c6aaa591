"""Giving a finished temporary file its final name, by the policy for duplicate SOP instances.

Create-if-absent is ``os.link``, which fails with EEXIST atomically: of two
processes storing one SOP instance at once, exactly one creates the name and
the other learns it is a duplicate, with no stat() before. Overwriting is
``os.replace``. A file under a final name is never written in place, only
replaced whole, so reading one (to compare it) is never disturbed by a
concurrent store. The same bytes sent again leave the stored file as it is,
whatever the policy.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from enum import StrEnum

from hsscp.storage.content import DatasetBytes, stored_dataset_equals
from hsscp.storage.durable import link_tmpfile

__all__ = ["Duplicate", "DuplicatePolicy", "Installer", "discard"]

_log = logging.getLogger(__name__)

# A file system that cannot hard-link (some network and FAT file systems) says so with these.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK})
# "rename" gives up past this many copies of one SOP instance (answered processing failure).
MAX_COPIES = 1000
_SUFFIX = ".dcm"


class DuplicatePolicy(StrEnum):
    """What a store does when its SOP instance is already stored with other bytes."""

    OVERWRITE = "overwrite"  # the new copy replaces the stored one
    KEEP = "keep"  # the stored copy stays; the new one is answered Success and dropped
    RENAME = "rename"  # the new copy is stored beside it: <uid>_1.dcm, <uid>_2.dcm, ...
    REJECT = "reject"  # the new copy is refused with 0x0111 (Duplicate SOP Instance)


class Duplicate(StrEnum):
    """What became of a store whose SOP instance was already stored (``StoreOutcome.duplicate``)."""

    OVERWRITTEN = "overwritten"
    KEPT = "kept"
    RENAMED = "renamed"
    REJECTED = "rejected"
    IDENTICAL = "identical"  # the very same bytes: the stored file is left as it was


class Installer:
    """Moves temporary files into place below ``out_dir``, making folders and fsyncing them."""

    def __init__(self, out_dir: str, policy: DuplicatePolicy, sync_folders: bool) -> None:
        self.out_dir = out_dir
        self.policy = policy
        self.sync_folders = sync_folders
        self._hard_links = True
        self._changed: set[str] = set()  # folders whose entries changed, fsynced by sync_changed()

    def install(
        self, temp: str, target: str, content: DatasetBytes, transfer_syntax: str
    ) -> tuple[str, Duplicate | None]:
        """Give ``temp`` the name ``target``; the path that names the instance, and the duplicate case.

        ``temp`` is consumed (renamed or removed) unless an OSError is raised.
        """
        created: list[str] = []
        try:
            claimed = self._claim(temp, target)
        except FileNotFoundError:  # first instance of its study or series
            created = self._make_folders(os.path.dirname(target))
            claimed = self._claim(temp, target)
        if claimed:
            self._sync(target, created)
            return target, None
        return self._duplicate(temp, target, content, transfer_syntax)

    def install_nameless(
        self, fd: int, target: str, content: DatasetBytes, transfer_syntax: str, temp_name: Callable[[], str]
    ) -> tuple[str, Duplicate | None]:
        """As :meth:`install`, for a file without a name (``O_TMPFILE``) open as ``fd``.

        Naming it is the atomic create-if-absent itself (``linkat``); only a
        duplicate gives it a temporary name first (``temp_name()``), for the policy.
        """
        created: list[str] = []
        try:
            try:
                link_tmpfile(fd, target)
            except FileNotFoundError:  # first instance of its study or series
                created = self._make_folders(os.path.dirname(target))
                link_tmpfile(fd, target)
        except FileExistsError:
            temp = temp_name()
            link_tmpfile(fd, temp)
            try:
                return self._duplicate(temp, target, content, transfer_syntax)
            except BaseException:
                discard(temp)  # the name given here is this method's to take back
                raise
        self._sync(target, created)
        return target, None

    def sync_changed(self) -> None:
        """Fsync every folder whose entries changed since the last call (once each, for a batch)."""
        changed, self._changed = self._changed, set()
        for folder in changed:
            fsync_path(folder, os.O_RDONLY | os.O_DIRECTORY)

    def _duplicate(
        self, temp: str, target: str, content: DatasetBytes, transfer_syntax: str
    ) -> tuple[str, Duplicate]:
        if stored_dataset_equals(target, transfer_syntax, content):
            discard(temp)
            return target, Duplicate.IDENTICAL
        if self.policy is DuplicatePolicy.OVERWRITE:
            os.replace(temp, target)
            self._sync(target, [])
            return target, Duplicate.OVERWRITTEN
        if self.policy is DuplicatePolicy.RENAME:
            return self._beside(temp, target, content, transfer_syntax)
        discard(temp)
        return target, Duplicate.KEPT if self.policy is DuplicatePolicy.KEEP else Duplicate.REJECTED

    def _beside(
        self, temp: str, target: str, content: DatasetBytes, transfer_syntax: str
    ) -> tuple[str, Duplicate]:
        """Store ``temp`` under the first free ``<uid>_<n>.dcm``, unless a copy holds the same bytes.

        ``_`` is in no UID, so a copy's name is never another instance's.
        """
        stem = target[: -len(_SUFFIX)] if target.endswith(_SUFFIX) else target
        for number in range(1, MAX_COPIES + 1):
            sibling = f"{stem}_{number}{_SUFFIX}"
            if self._claim(temp, sibling):
                self._sync(sibling, [])
                return sibling, Duplicate.RENAMED
            if stored_dataset_equals(sibling, transfer_syntax, content):
                discard(temp)
                return sibling, Duplicate.IDENTICAL
        raise OSError(errno.EEXIST, f"more than {MAX_COPIES} copies of one SOP instance")

    def _claim(self, temp: str, path: str) -> bool:
        """Name ``temp`` ``path`` unless that name is taken (then False, ``temp`` untouched).

        Atomic with hard links; on a file system without them, a check before
        the rename: two copies arriving at once may then replace each other
        (each whole).
        """
        if self._hard_links:
            try:
                os.link(temp, path)
            except FileExistsError:
                return False
            except OSError as error:
                if error.errno not in _NO_HARD_LINKS:
                    raise
                self._hard_links = False
                _log.warning("the output folder has no hard links: duplicates are found by a check, not atomically")
            else:
                discard(temp)
                return True
        if os.path.lexists(path):
            return False
        os.replace(temp, path)
        return True

    def _make_folders(self, folder: str) -> list[str]:
        """Create ``folder`` and its missing parents below the output folder; those created."""
        missing = []
        while folder != self.out_dir and not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        created = []
        for path in reversed(missing):
            try:
                os.mkdir(path)
            except FileExistsError:  # a concurrent store made it first
                continue
            created.append(path)
        return created

    def _sync(self, path: str, created: list[str]) -> None:
        """By policy, note the folders whose entries changed (the file's, new folders' parents) for sync_changed()."""
        if self.sync_folders:
            self._changed.add(os.path.dirname(path))
            self._changed.update(map(os.path.dirname, created))


def fsync_path(path: str, flags: int) -> None:
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard(path: str) -> None:
    """Remove a temporary file if it is still there; a failure is logged, never raised."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:  # e.g. a read-only file system: nothing more to do
        _log.warning(
            "cannot remove temporary file %s: %s",
            path,
            errno.errorcode.get(error.errno, error.errno),
        )
