"""Group commit: a batch of stores made durable together, each answered only once it is.

A backend that can split a store into phases (:class:`StagingBackend`)
writes every data set of the batch under its temporary name first, then
makes them durable and moves them into place together (one sync round for
the batch instead of one per file). Any other backend stores them one by
one: each store is then durable on its own before the next starts.

A backend whose commit is itself two phases (:class:`SplitCommitBackend`,
as the local file system's is) lets a caller sync one batch in other
threads while it stages the next: :func:`stage_batch`, then
:func:`sync_batch` (in any thread), then :func:`install_batch`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from hsscp.storage.backend import InstanceFact, StorageBackend, StoreOutcome, StoreRequest

__all__ = ["SpoolSource", "SplitCommitBackend", "StagingBackend", "install_batch", "splits_commit",
           "stage_batch", "store_batch", "sync_batch"]

# Where a data set is: in memory as segments, or in a spool file with its first bytes.
SpoolSource = tuple[str, memoryview]
Source = list[memoryview] | SpoolSource


@runtime_checkable
class StagingBackend(StorageBackend, Protocol):
    """A backend whose stores are three phases: write (stage), make durable, install (commit)."""

    def stage_segments(self, request: StoreRequest, segments: list[memoryview]) -> Any | StoreOutcome:
        """Check and write a data set under a temporary name; the staged file, or why not.

        A staged file has ``study_instance_uid`` and ``series_instance_uid``
        attributes (as peeked, or ""), for the instance's fact.
        """
        ...

    def stage_spooled(
        self, request: StoreRequest, spool_path: str | os.PathLike[str], head: memoryview
    ) -> Any | StoreOutcome:
        """Check a spool file and take it as staged; or why not (the spool file is then removed)."""
        ...

    def commit(self, staged: Sequence[Any]) -> list[StoreOutcome]:
        """Make ``staged`` durable as the policy says and move them into place; an outcome each."""
        ...

    def abandon(self, staged: Sequence[Any]) -> None:
        """Remove staged files that will not be committed."""
        ...


@runtime_checkable
class SplitCommitBackend(StagingBackend, Protocol):
    """A staging backend whose commit is a sync (fsyncs only, safe in another thread), then an install."""

    def sync(self, staged: Sequence[Any]) -> OSError | None:
        """Make ``staged`` durable as the policy says; the error if that failed."""
        ...

    def install(self, staged: Sequence[Any], sync_error: OSError | None = None) -> list[StoreOutcome]:
        """Name each of ``staged`` after its sync (or, after a failed one, remove each); an outcome each."""
        ...


def splits_commit(storage: StorageBackend) -> bool:
    """Whether ``storage`` is a :class:`SplitCommitBackend` (without isinstance's µs on a Protocol)."""
    return hasattr(storage, "sync") and hasattr(storage, "install")


def store_batch(storage: StorageBackend, items: Sequence[tuple[StoreRequest, Source]]
                ) -> list[tuple[StoreOutcome, InstanceFact]]:
    """Store every ``(request, source)``; in order, each outcome (durable as the policy says) and its fact."""
    if not hasattr(storage, "commit"):  # not a StagingBackend (isinstance on a Protocol costs µs)
        return [_with_fact(request, _store_one(storage, request, source)) for request, source in items]
    staged = stage_batch(storage, items)
    return _results_of(items, staged, storage.commit(_files_of(staged)))


def stage_batch(storage: StagingBackend, items: Sequence[tuple[StoreRequest, Source]]) -> list[Any | StoreOutcome]:
    """Stage every ``(request, source)``: in order, its staged file, or the outcome that refused it."""
    staged: list[Any] = []
    try:
        for request, source in items:
            if isinstance(source, tuple):
                staged.append(storage.stage_spooled(request, source[0], source[1]))
            else:
                staged.append(storage.stage_segments(request, source))
    except BaseException:
        storage.abandon(_files_of(staged))
        raise
    return staged


def sync_batch(storage: SplitCommitBackend, staged: Sequence[Any | StoreOutcome]) -> OSError | None:
    """Make the files of a :func:`stage_batch` result durable (from any thread); the error if that failed."""
    return storage.sync(_files_of(staged))


def install_batch(storage: SplitCommitBackend, items: Sequence[tuple[StoreRequest, Source]],
                  staged: Sequence[Any | StoreOutcome], synced: Callable[[], OSError | None]
                  ) -> list[tuple[StoreOutcome, InstanceFact]]:
    """After :func:`sync_batch`, whose result ``synced()`` gives: each item's outcome and fact, in order.

    If ``synced()`` raises (a bug), the staged files are removed and the exception goes on.
    """
    files = _files_of(staged)
    try:
        sync_error = synced()
    except BaseException:
        storage.abandon(files)
        raise
    return _results_of(items, staged, storage.install(files, sync_error))


def _files_of(staged: Sequence[Any | StoreOutcome]) -> list[Any]:
    """The staged files of a :func:`stage_batch` result, for the commit: those not refused."""
    return [s for s in staged if not isinstance(s, StoreOutcome)]


def _results_of(items: Sequence[tuple[StoreRequest, Source]], staged: Sequence[Any | StoreOutcome],
               committed: Sequence[StoreOutcome]) -> list[tuple[StoreOutcome, InstanceFact]]:
    """Each item's outcome and fact: refused at staging, or as the commit of its staged file ended."""
    outcomes = iter(committed)
    results = []
    for (request, _), stage in zip(items, staged, strict=True):
        if isinstance(stage, StoreOutcome):
            results.append(_with_fact(request, stage))
        else:
            outcome = next(outcomes)
            results.append((outcome, InstanceFact.of(request, outcome, stage.study_instance_uid,
                                                     stage.series_instance_uid)))
    return results


def _with_fact(request: StoreRequest, outcome: StoreOutcome) -> tuple[StoreOutcome, InstanceFact]:
    return outcome, InstanceFact.of(request, outcome)


def _store_one(storage: StorageBackend, request: StoreRequest, source: Source) -> StoreOutcome:
    if isinstance(source, tuple):
        return storage.store_spooled(request, source[0], source[1])
    return storage.store_segments(request, source)
