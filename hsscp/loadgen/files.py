"""The files to send: discovery, their File Meta Information, and the contexts they need.

Only the meta group of each file is read (:mod:`hsscp.part10`); the data
set itself is never decoded, it is streamed as it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from hsscp import context_plan
from hsscp.acse import MAX_REQUESTED_CONTEXTS
from hsscp.loadgen import uidpatch
from hsscp.part10 import Part10Error, read_file_meta
from hsscp.presentation import PresentationContext, build_context

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
# Syntaxes a data set can be re-encoded between by pydicom without decoding pixel data
# (a change of byte order would need OW values swapped, which pydicom does not do).
CONVERTIBLE = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR: not an instance to store
HEAD_READ = 16 * 1024  # first read of a data set's start when looking for its UIDs
SCAN_LIMIT = 1024 * 1024  # scanning gives up looking for the UIDs past this


@dataclass(frozen=True, slots=True)
class Instance:
    """One file to send: what its meta group says and where its data set lies."""

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    dataset_offset: int
    dataset_length: int


@dataclass(slots=True)
class Scan:
    instances: list[Instance]
    skipped: list[tuple[str, str]]  # (path, why)


def discover(paths: Iterable[str]) -> Iterator[str]:
    """Every file under ``paths`` (folders recursively, in name order); missing paths raise."""
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    yield os.path.join(root, name)
        elif os.path.exists(path):
            yield path
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")


def read_range(path: str, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, length, offset)
    finally:
        os.close(fd)
    if len(data) != length:
        raise OSError(f"{path} is shorter than when it was scanned")
    return data


def locate_uids(
    path: str, offset: int, length: int, transfer_syntax: str, limit: int | None = None
) -> tuple[uidpatch.PatchPlan, bytes]:
    """Where the data set's UIDs are, reading only as much of its start as that takes.

    Returns the plan and the bytes read; raises PatchError (past ``limit``
    bytes too).
    """
    size = HEAD_READ
    while True:
        head = read_range(path, offset, min(size, length))
        try:
            return uidpatch.locate(memoryview(head), transfer_syntax, complete=size >= length), head
        except uidpatch.NeedMoreData:
            if limit is not None and size >= limit:
                raise uidpatch.PatchError(f"no UIDs in the first {size} bytes") from None
            size *= 4


def read_instance(path: str) -> Instance:
    """The meta group of one Part 10 file (raises Part10Error or OSError).

    The SOP Class and Instance UIDs are taken from the data set where it
    has them (they go in the C-STORE-RQ, and peers check they match), else
    from the meta group.
    """
    with open(path, "rb") as stream:
        meta = read_file_meta(stream)
        size = os.fstat(stream.fileno()).st_size
    if meta.sop_class_uid == MEDIA_STORAGE_DIRECTORY:
        raise Part10Error("a DICOMDIR, not an instance")
    sop_class, sop_instance = meta.sop_class_uid, meta.sop_instance_uid
    length = size - meta.dataset_offset
    try:
        plan, _ = locate_uids(path, meta.dataset_offset, length, meta.transfer_syntax, SCAN_LIMIT)
        sop_class = plan.original(uidpatch.SOP_CLASS_UID) or sop_class
        sop_instance = plan.original(uidpatch.SOP_INSTANCE_UID) or sop_instance
    except uidpatch.PatchError:
        pass  # deflated or unusual: the meta group's word will do
    return Instance(path, sop_class, sop_instance, meta.transfer_syntax, meta.dataset_offset, length)


def scan(paths: Iterable[str]) -> Scan:
    """Read the meta group of every file found; files that are not Part 10 are skipped, with why."""
    result = Scan([], [])
    for path in discover(paths):
        try:
            result.instances.append(read_instance(path))
        except (Part10Error, OSError) as exc:
            result.skipped.append((path, str(exc)))
    return result


def plan_contexts(instances: Sequence[Instance], only: Sequence[str] | None = None) -> list[PresentationContext]:
    """The presentation contexts to propose for ``instances``.

    :func:`hsscp.context_plan.plan_contexts`: one context per (SOP class,
    transfer syntax) of the files with that syntax alone, so a peer that
    accepts it gets the bytes as they are, and fallback contexts only for
    what can be re-encoded. With ``only``, one context per SOP class
    proposing just those syntaxes (DCMTK storescu's ``-xi``).
    """
    if only is not None:
        classes = dict.fromkeys(i.sop_class_uid for i in instances)
        return [build_context(sop, list(only)) for sop in _within_limit(classes)]
    return context_plan.plan_contexts((i.sop_class_uid, i.transfer_syntax) for i in instances)


def _within_limit(by_class: dict) -> dict:
    if len(by_class) > MAX_REQUESTED_CONTEXTS:
        raise ValueError(
            f"the files hold {len(by_class)} SOP classes; one association can propose "
            f"at most {MAX_REQUESTED_CONTEXTS}: send them in smaller groups"
        )
    return by_class


@dataclass(frozen=True, slots=True)
class Route:
    """Where an instance goes on an association: its context and the syntax to send in."""

    context_id: int
    transfer_syntax: str

    def needs_conversion(self, instance: Instance) -> bool:
        return self.transfer_syntax != instance.transfer_syntax


class ContextMap:
    """Chooses the accepted context for each (SOP class, transfer syntax) an instance has."""

    def __init__(self, accepted: Iterable[PresentationContext]) -> None:
        self._by_class: dict[str, list[tuple[int, str]]] = {}
        for pc in accepted:
            self._by_class.setdefault(str(pc.abstract_syntax), []).append(
                (pc.context_id, str(pc.transfer_syntax[0]))
            )
        self._cache: dict[tuple[str, str], Route | None] = {}

    def route(self, sop_class_uid: str, transfer_syntax: str) -> Route | None:
        """The file's own syntax where accepted; else a little endian one it can be rewritten to."""
        key = (sop_class_uid, transfer_syntax)
        if key not in self._cache:
            self._cache[key] = self._choose(*key)
        return self._cache[key]

    def _choose(self, sop_class_uid: str, transfer_syntax: str) -> Route | None:
        offers = self._by_class.get(sop_class_uid, [])
        for context_id, ts in offers:
            if ts == transfer_syntax:
                return Route(context_id, ts)
        if transfer_syntax in CONVERTIBLE:
            for wanted in CONVERTIBLE:
                for context_id, ts in offers:
                    if ts == wanted:
                        return Route(context_id, ts)
        return None
