"""The local file system backend: Part 10 files from received C-STORE data sets.

Implements :class:`hsscp.storage.backend.StorageBackend` with layouts, UID
checks and atomic writes.

A stored file is the preamble and a File Meta Information group built for
the request (from a template per SOP class, transfer syntax and source AE),
then the data set bytes exactly as received. It is written without a name
(``O_TMPFILE``) or, where that is not supported, under a unique temporary
name, in ``<out_dir>/.hsscp-tmp`` (the same file system, so naming it is
atomic), fsynced as the policy says and given its final name; only then is
the store a success. Every failure removes the temporary file, so no
partial file ever carries a final name.

A store is three phases, so that a writer with several data sets can make
them durable together (group commit, :mod:`hsscp.storage.durable`):
:meth:`Storage.stage_segments` / :meth:`Storage.stage_spooled` check and
write one, :meth:`Storage.commit` makes a batch durable (its fsyncs issued
together where the disk is slow, so they share a journal commit) and then
names each (and, with ``file+dir``, fsyncs each changed folder once per
batch).

Before that, the data set must be whole (:mod:`hsscp.storage.content`: its
element headers walked to the end, values skipped), or it is refused with
0xC000. A SOP instance already stored is handled by the duplicate policy
(:mod:`hsscp.storage.install`).

UIDs become folder and file names only after :func:`hsscp.uid.is_valid_uid`
accepted them (digits and dots, at most 64 characters), so nothing from the
wire can name a path outside the output folder.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
import socket
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from hsscp.aet import normalize_ae_title
from hsscp.dataset_peek import PeekError, peek_prefix
from hsscp.dimse import Status
from hsscp.storage.backend import (
    DUPLICATE_SOP_INSTANCE,
    StoreOutcome,
    StoreRequest,
    failure,
    os_error_outcome,
)
from hsscp.storage.content import DatasetBytes, InMemory, Spooled, defect_of
from hsscp.storage.durable import fsync_cost, has_tmpfile, make_durable, open_tmpfile
from hsscp.storage.file_meta import FileMetaTemplates
from hsscp.storage.install import Duplicate, DuplicatePolicy, Installer, discard
from hsscp.uid import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, is_valid_uid

_log = logging.getLogger(__name__)

TEMP_DIR_NAME = ".hsscp-tmp"
# The UID checks walk at most this much of a data set, so a hostile one of
# many tiny elements costs milliseconds at worst. The UIDs come far earlier.
PEEK_LIMIT = 1024 * 1024

_TEMP_SUFFIX = ".part"
_TEMP_TAG = re.compile(r"[A-Za-z0-9_-]{1,32}")
_NOT_IN_HOST_TAG = re.compile(r"[^A-Za-z0-9_-]")

SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
_TAG_NAMES = {
    SOP_CLASS_UID: "SOP Class UID",
    SOP_INSTANCE_UID: "SOP Instance UID",
    STUDY_INSTANCE_UID: "Study Instance UID",
    SERIES_INSTANCE_UID: "Series Instance UID",
}
_MISMATCH = Status.DATASET_DOES_NOT_MATCH_SOP_CLASS
_FLAT_TAGS = frozenset({SOP_CLASS_UID, SOP_INSTANCE_UID})
_STUDY_TAGS = _FLAT_TAGS | {STUDY_INSTANCE_UID, SERIES_INSTANCE_UID}
FSYNC_PROBES = 5  # small files fsynced to tell a fast file system from a slow one
MAX_CHECKED = 4096  # (SOP class, transfer syntax, AE title) combinations remembered as valid


class Layout(StrEnum):
    """Where a stored instance goes below the output folder."""

    STUDY = "study"  # <out>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm
    FLAT = "flat"  # <out>/<SOPInstanceUID>.dcm


class FsyncPolicy(StrEnum):
    """How durable a file is when its store is answered Success."""

    NONE = "none"  # renamed into place; the kernel writes it back when it likes
    FILE = "file"  # the file's data is fsynced before the rename
    FILE_AND_DIR = "file+dir"  # also the directory entries: the rename and new folders


class Placement(NamedTuple):
    """Where a checked data set goes, and what the peek found on the way."""

    path: str
    walked: int  # bytes of the data set whose structure the peek walked already
    study: str
    series: str


class Staged:
    """A data set written to a file not yet durable nor named: what :meth:`Storage.commit` takes."""

    __slots__ = ("request", "fd", "temp", "target", "content", "size", "study_instance_uid", "series_instance_uid")

    def __init__(self, request: StoreRequest, fd: int, temp: str | None, target: str, content: DatasetBytes,
                 size: int, study: str, series: str) -> None:
        self.request = request
        self.fd = fd  # open until the commit is done
        self.temp = temp  # None: a nameless file (O_TMPFILE)
        self.target = target
        self.content = content
        self.size = size
        self.study_instance_uid = study
        self.series_instance_uid = series


class Storage:
    """Writes Part 10 files into ``out_dir`` in a layout, atomically, with an fsync policy.

    The local file system :class:`~hsscp.storage.backend.StorageBackend`.

    Safe to use from several threads and processes at once: temporary names
    are unique, and final names are only ever created atomically
    (``os.link``) or replaced whole (``os.replace``), so concurrent stores of
    one SOP Instance UID never mix: each final file is one whole copy.
    ``on_duplicate`` says what a store of an instance already stored does.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        layout: Layout | str = Layout.STUDY,
        fsync: FsyncPolicy | str = FsyncPolicy.FILE,
        implementation_class_uid: str = IMPLEMENTATION_CLASS_UID,
        implementation_version_name: str = IMPLEMENTATION_VERSION_NAME,
        on_duplicate: DuplicatePolicy | str = DuplicatePolicy.OVERWRITE,
    ) -> None:
        self.layout = Layout(layout)
        self.fsync = FsyncPolicy(fsync)
        self.on_duplicate = DuplicatePolicy(on_duplicate)
        self.implementation_class_uid = str(implementation_class_uid)
        self.implementation_version_name = implementation_version_name
        # Plain strings on the hot path: os.path is much cheaper than pathlib.
        self._out = os.path.abspath(os.fspath(out_dir))
        self._tmp = os.path.join(self._out, TEMP_DIR_NAME)
        os.makedirs(self._tmp, exist_ok=True)
        self._counter = itertools.count()
        self._host = host_tag()
        self._meta = FileMetaTemplates(self.implementation_class_uid, self.implementation_version_name)
        self._tmpfile = has_tmpfile(self._tmp)
        self._checked: set[tuple[str, str, str]] = set()  # (SOP class, transfer syntax, AE) found valid
        self._installer = Installer(
            self._out, self.on_duplicate, sync_folders=self.fsync is FsyncPolicy.FILE_AND_DIR
        )

    @property
    def out_dir(self) -> Path:
        return Path(self._out)

    @property
    def tmp_dir(self) -> Path:
        return Path(self._tmp)

    def meta_for(self, request: StoreRequest) -> bytes:
        """Preamble, ``DICM`` and the File Meta Information group for ``request``.

        Raises ValueError (UnicodeEncodeError) if a UID or the AE title is not ASCII.
        """
        return self._meta.build(
            request.sop_class_uid, request.sop_instance_uid, request.transfer_syntax, request.source_ae_title
        )

    def temp_path(self, tag: str) -> Path:
        """A fresh name in the temporary folder: ``<tag>.<host>.<pid>.<counter>.<random>.part``.

        Machine and pid let :meth:`remove_temp_files` clean up after a dead
        process of this machine, and leave alone the files of other nodes
        that share the output folder.
        """
        return Path(self._temp_name(tag))

    def _temp_name(self, tag: str) -> str:
        if not _TEMP_TAG.fullmatch(tag):
            raise ValueError(f"temporary file tag {tag!r} is not 1-32 letters, digits, - or _")
        name = f"{tag}.{self._host}.{os.getpid()}.{next(self._counter)}.{os.urandom(4).hex()}{_TEMP_SUFFIX}"
        return os.path.join(self._tmp, name)

    def fsync_cost(self) -> float:
        """Seconds an fsync of a small new file in the output file system takes, measured now."""
        return fsync_cost([self._temp_name("probe") for _ in range(FSYNC_PROBES)])

    def store_buffer(self, request: StoreRequest, dataset: memoryview) -> StoreOutcome:
        """Check ``request`` and ``dataset``, then write the file and rename it into place.

        The data set is written from the buffer itself (``os.writev``), never copied.
        """
        return self.store_segments(request, [dataset])

    def store_segments(self, request: StoreRequest, segments: list[memoryview]) -> StoreOutcome:
        """As ``store_buffer``, for a data set held in pieces (one per PDV, as it was received)."""
        staged = self.stage_segments(request, segments)
        return staged if isinstance(staged, StoreOutcome) else self.commit([staged])[0]

    def store_spooled(
        self, request: StoreRequest, spool_path: str | os.PathLike[str], head: memoryview
    ) -> StoreOutcome:
        """Check and rename into place a spool file holding ``meta_for(request)`` + the data set.

        ``head`` is the start of the data set (the UID checks read at most
        PEEK_LIMIT bytes of it). On any failure the spool file is removed.
        """
        staged = self.stage_spooled(request, spool_path, head)
        return staged if isinstance(staged, StoreOutcome) else self.commit([staged])[0]

    def stage_segments(self, request: StoreRequest, segments: list[memoryview]) -> Staged | StoreOutcome:
        """Check a data set held in pieces and write it to a file not yet durable nor named; or why not."""
        views = [_bytes_view(segment) for segment in segments]
        rejected = self._check_request(request)
        if rejected is not None:
            return rejected
        length = sum(len(view) for view in views)
        head = views[0][:PEEK_LIMIT] if views else memoryview(b"")
        placed = self._target(request, head, complete=len(head) >= length)
        if isinstance(placed, StoreOutcome) and len(head) < min(length, PEEK_LIMIT):
            # The first piece was too short to tell: look again at a longer start (a rare copy).
            head = _joined_head(views)
            placed = self._target(request, head, complete=len(head) >= length)
        if isinstance(placed, StoreOutcome):
            return placed
        content = InMemory(views, length)
        refused = self._refuse_incomplete(request, content, placed.walked)
        if refused is not None:
            return refused
        meta = self.meta_for(request)
        temp = None if self._tmpfile else self._temp_name("store")
        try:
            if temp is None:
                fd = open_tmpfile(self._tmp)
            else:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as error:
            return _os_failure(error, request)
        try:
            write_all(fd, [memoryview(meta), *views])
        except BaseException as error:
            os.close(fd)
            if temp is not None:
                discard(temp)
            if isinstance(error, OSError):
                return _os_failure(error, request)
            raise
        return Staged(request, fd, temp, placed.path, content, len(meta) + length, placed.study, placed.series)

    def stage_spooled(
        self, request: StoreRequest, spool_path: str | os.PathLike[str], head: memoryview
    ) -> Staged | StoreOutcome:
        """Check a spool file holding ``meta_for(request)`` + the data set and take it as staged; or why not.

        On any failure the spool file is removed.
        """
        spool = os.path.abspath(os.fspath(spool_path))
        if os.path.dirname(spool) != self._tmp:  # never rename or remove anything else
            return failure(Status.PROCESSING_FAILURE, "spool file outside the temporary folder")
        fd = -1
        try:
            rejected = self._check_request(request)
            if rejected is not None:
                discard(spool)
                return rejected
            fd = os.open(spool, os.O_RDONLY | os.O_CLOEXEC)
            size = os.fstat(fd).st_size
            meta_length = len(self.meta_for(request))
            dataset_length = size - meta_length
            peeked = memoryview(head)[:PEEK_LIMIT]
            placed = self._target(request, peeked, complete=len(peeked) >= dataset_length)
            if isinstance(placed, StoreOutcome):
                refused = placed
            else:
                content = Spooled(fd, meta_length, dataset_length, memoryview(head))
                refused = self._refuse_incomplete(request, content, placed.walked)
            if refused is not None:
                os.close(fd)
                discard(spool)
                return refused
        except BaseException as error:
            if fd >= 0:
                os.close(fd)
            discard(spool)
            if isinstance(error, OSError):
                return _os_failure(error, request)
            raise
        # Kept open: it is synced through it, and a stored copy may be compared with it.
        return Staged(request, fd, spool, placed.path, content, size, placed.study, placed.series)

    def commit(self, staged: list[Staged]) -> list[StoreOutcome]:
        """Make ``staged`` durable as the policy says, then name each; an outcome each, in order.

        Every staged file is consumed: named, or removed.
        """
        return self.install(staged, self.sync(staged))

    def sync(self, staged: list[Staged]) -> OSError | None:
        """Make ``staged`` durable as the policy says; the error if that failed.

        Only fsyncs: it may run in another thread while this storage stages
        more, and :meth:`install` then takes its result.
        """
        try:
            if staged and self.fsync is not FsyncPolicy.NONE:
                make_durable([s.fd for s in staged])
        except OSError as error:
            return error
        return None

    def install(self, staged: list[Staged], sync_error: OSError | None = None) -> list[StoreOutcome]:
        """Name each of ``staged``, synced by :meth:`sync` (which found ``sync_error``); an outcome each.

        Every staged file is consumed: named, or (after a failed sync) removed.
        """
        if sync_error is not None:
            self.abandon(staged)
            return [_os_failure(sync_error, s.request) for s in staged]
        outcomes = []
        try:
            for s in staged:
                outcomes.append(self._install_staged(s))
        finally:
            self.abandon(staged[len(outcomes) :])  # only if one raised what is not an OSError
        if self.fsync is FsyncPolicy.FILE_AND_DIR:
            try:
                self._installer.sync_changed()
            except OSError as error:  # in place, but not as durable as promised: a true failure
                return [_os_failure(error, s.request) if o.status == Status.SUCCESS else o
                        for s, o in zip(staged, outcomes, strict=True)]
        return outcomes

    def abandon(self, staged: list[Staged]) -> None:
        """Remove staged files that will not be committed."""
        for s in staged:
            os.close(s.fd)
            if s.temp is not None:
                discard(s.temp)

    def _install_staged(self, staged: Staged) -> StoreOutcome:
        request = staged.request
        try:
            if staged.temp is None:
                path, duplicate = self._installer.install_nameless(
                    staged.fd, staged.target, staged.content, request.transfer_syntax,
                    lambda: self._temp_name("store"),
                )
            else:
                path, duplicate = self._installer.install(
                    staged.temp, staged.target, staged.content, request.transfer_syntax
                )
        except OSError as error:
            if staged.temp is not None:
                discard(staged.temp)
            return _os_failure(error, request)
        finally:
            os.close(staged.fd)
        if duplicate is None:
            return StoreOutcome(Status.SUCCESS, path, bytes_written=staged.size)
        return _duplicate_outcome(request.sop_instance_uid, path, duplicate, staged.size)

    def remove_temp_files(self, owner_pid: int | None = None) -> int:
        """Delete stale temporary files of this machine: those of ``owner_pid``, or of every process gone.

        Without ``owner_pid`` (at start-up) it removes the files of every
        process of this machine that no longer runs. Files another machine
        named are left alone: a node sharing the output folder may still be
        writing them. Returns the count.
        """
        removed = 0
        with os.scandir(self._tmp) as entries:
            for entry in entries:
                owner = _temp_owner(entry.name)
                if owner is None or owner[0] not in (self._host, None):
                    continue
                stale = owner[1] == owner_pid if owner_pid is not None else not _running(owner[1])
                if not stale:
                    continue
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                removed += 1
        return removed

    def _check_request(self, request: StoreRequest) -> StoreOutcome | None:
        """Refuse a request whose UIDs or AE title cannot go into a meta group or a path."""
        if not is_valid_uid(request.sop_instance_uid):
            return failure(Status.CANNOT_UNDERSTAND, "invalid SOP Instance UID in the request")
        context = (request.sop_class_uid, request.transfer_syntax, request.source_ae_title)
        if context in self._checked:  # the same for every instance of an association: checked once
            return None
        for name, uid in (("SOP Class UID", request.sop_class_uid), ("Transfer Syntax UID", request.transfer_syntax)):
            if not is_valid_uid(uid):
                return failure(Status.CANNOT_UNDERSTAND, f"invalid {name} in the request")
        if request.source_ae_title:
            try:
                normalize_ae_title(request.source_ae_title)
            except (TypeError, ValueError):
                return failure(Status.PROCESSING_FAILURE, "invalid source AE title")
        if len(self._checked) >= MAX_CHECKED:
            self._checked.clear()
        self._checked.add(context)
        return None

    def _target(
        self, request: StoreRequest, head: memoryview, complete: bool
    ) -> Placement | StoreOutcome:
        """Where a valid data set goes, how far its structure was walked, its study and series; or why not.

        The study and series are peeked in either layout: the instance's fact reports them.
        """
        try:
            found, walked = peek_prefix(head, request.transfer_syntax, _STUDY_TAGS, complete=complete)
        except PeekError as error:
            # PeekError messages carry tags, offsets and VRs (repr), no wire text.
            return failure(Status.CANNOT_UNDERSTAND, str(error))
        for tag, expected in (
            (SOP_CLASS_UID, request.sop_class_uid),
            (SOP_INSTANCE_UID, request.sop_instance_uid),
        ):
            actual = found.get(tag)
            if actual is None:
                return failure(_MISMATCH, f"data set lacks {_TAG_NAMES[tag]}")
            if actual != expected:
                return failure(_MISMATCH, f"{_TAG_NAMES[tag]} differs from the request")
        file_name = request.sop_instance_uid + ".dcm"
        if self.layout is Layout.FLAT:
            study, series = found.get(STUDY_INSTANCE_UID, ""), found.get(SERIES_INSTANCE_UID, "")
            if not (is_valid_uid(study) and is_valid_uid(series)):
                study = series = ""  # not needed for the path: reported only when well formed
            return Placement(os.path.join(self._out, file_name), walked, study, series)
        folders = []
        for tag in (STUDY_INSTANCE_UID, SERIES_INSTANCE_UID):
            uid = found.get(tag)
            if uid is None:
                return failure(Status.CANNOT_UNDERSTAND, f"data set lacks {_TAG_NAMES[tag]}")
            if not is_valid_uid(uid):
                return failure(
                    Status.CANNOT_UNDERSTAND, f"invalid {_TAG_NAMES[tag]} in the data set"
                )
            folders.append(uid)
        return Placement(os.path.join(self._out, *folders, file_name), walked, folders[0], folders[1])

    def _refuse_incomplete(
        self, request: StoreRequest, content: DatasetBytes, checked: int
    ) -> StoreOutcome | None:
        """Refuse a data set that is not structurally whole past ``checked``; None if it is."""
        defect = defect_of(content, request.transfer_syntax, checked)
        if defect is None:
            return None
        _log.warning("refused %s: data set not whole: %s", request.sop_instance_uid, defect)
        return failure(Status.CANNOT_UNDERSTAND, defect.message)



IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def write_all(fd: int, chunks: list[memoryview]) -> None:
    """Write every byte of ``chunks`` with as few ``writev`` calls as the kernel allows."""
    pending = [chunk for chunk in chunks if len(chunk)]
    first = 0
    while first < len(pending):
        batch = pending[first : first + IOV_MAX]
        written = os.writev(fd, batch)
        if written <= 0:
            raise OSError(errno.EIO, "write made no progress")
        for chunk in batch:  # skip what went out whole; resume inside a partial one
            if written < len(chunk):
                pending[first] = chunk[written:]
                break
            written -= len(chunk)
            first += 1


def _bytes_view(data) -> memoryview:
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _joined_head(views: list[memoryview]) -> memoryview:
    """The first PEEK_LIMIT bytes of a data set held in pieces, as one buffer."""
    head, size = [], 0
    for view in views:
        head.append(view[: PEEK_LIMIT - size])
        size += len(head[-1])
        if size >= PEEK_LIMIT:
            break
    return memoryview(b"".join(head))


def _duplicate_outcome(uid: str, path: str, duplicate: Duplicate, size: int) -> StoreOutcome:
    """The outcome of a store whose SOP instance was stored before, logged."""
    if duplicate is Duplicate.IDENTICAL:
        _log.info("SOP instance %s received again with the same bytes: left as stored", uid)
        return StoreOutcome(Status.SUCCESS, path, duplicate=duplicate.value)
    _log.warning("duplicate SOP instance %s: %s (%s)", uid, duplicate, os.path.basename(path))
    if duplicate is Duplicate.REJECTED:
        return StoreOutcome(
            DUPLICATE_SOP_INSTANCE, error_comment="duplicate SOP instance", duplicate=duplicate.value
        )
    written = 0 if duplicate is Duplicate.KEPT else size
    return StoreOutcome(Status.SUCCESS, path, bytes_written=written, duplicate=duplicate.value)


def host_tag() -> str:
    """This machine's name as temporary names carry it (letters, digits, - and _ only)."""
    return _NOT_IN_HOST_TAG.sub("-", socket.gethostname())[:64] or "-"


def _temp_owner(name: str) -> tuple[str | None, int] | None:
    """Machine and pid of ``<tag>.<host>.<pid>.<counter>.<random>.part``; None if it is not ours.

    Names of earlier versions, ``<tag>.<pid>.<counter>.<random>.part``, name no machine.
    """
    if not name.endswith(_TEMP_SUFFIX):
        return None
    parts = name.split(".")
    if len(parts) == 6 and parts[2].isdigit():
        return parts[1], int(parts[2])
    if len(parts) == 5 and parts[1].isdigit():
        return None, int(parts[1])
    return None


def _running(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one we may not signal runs too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _os_failure(error: OSError, request: StoreRequest) -> StoreOutcome:
    """The status for a failed write, logged; the SOP Instance UID was validated before."""
    outcome = os_error_outcome(error)
    _log.warning("store of %s failed: %s (%s)", request.sop_instance_uid, outcome.error_comment, error.strerror)
    return outcome
