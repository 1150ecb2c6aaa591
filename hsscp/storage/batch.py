"""Group commit: a batch of stores made durable together, each answered only once it is.

A backend that can split a store into phases (:class:`StagingBackend`)
writes every data set of the batch under its temporary name first, then
makes them durable and moves them into place together (one sync round for
the batch instead of one per file). Any other backend stores them one by
one: each store is then durable on its own before the next starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from hsscp.storage.backend import InstanceFact, StorageBackend, StoreOutcome, StoreRequest

__all__ = ["SpoolSource", "StagingBackend", "store_batch"]

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


def store_batch(storage: StorageBackend, items: Sequence[tuple[StoreRequest, Source]]
                ) -> list[tuple[StoreOutcome, InstanceFact]]:
    """Store every ``(request, source)``; in order, each outcome (durable as the policy says) and its fact."""
    if not hasattr(storage, "commit"):  # not a StagingBackend (isinstance on a Protocol costs µs)
        return [_with_fact(request, _store_one(storage, request, source)) for request, source in items]
    staged: list[Any] = []
    try:
        for request, source in items:
            if isinstance(source, tuple):
                staged.append(storage.stage_spooled(request, source[0], source[1]))
            else:
                staged.append(storage.stage_segments(request, source))
    except BaseException:
        storage.abandon([s for s in staged if not isinstance(s, StoreOutcome)])
        raise
    committed = iter(storage.commit([s for s in staged if not isinstance(s, StoreOutcome)]))
    results = []
    for (request, _), stage in zip(items, staged, strict=True):
        if isinstance(stage, StoreOutcome):
            results.append(_with_fact(request, stage))
        else:
            outcome = next(committed)
            results.append((outcome, InstanceFact.of(request, outcome, stage.study_instance_uid,
                                                     stage.series_instance_uid)))
    return results


def _with_fact(request: StoreRequest, outcome: StoreOutcome) -> tuple[StoreOutcome, InstanceFact]:
    return outcome, InstanceFact.of(request, outcome)


def _store_one(storage: StorageBackend, request: StoreRequest, source: Source) -> StoreOutcome:
    if isinstance(source, tuple):
        return storage.store_spooled(request, source[0], source[1])
    return storage.store_segments(request, source)
