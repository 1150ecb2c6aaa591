"""Series and study completion: "no instance of it has arrived for S seconds".

DICOM never says that a study or series is complete, and hsscp receives the
instances of one study interleaved, over several associations at once, so
DCMTK's other rule ("an instance of another study arrived") would cut studies
short. Completion here is only the quiet period: once no instance of a study
has arrived for ``study_timeout`` seconds, it completes, once; the same per
series with ``series_timeout``.

Each quiet period gives exactly one completion. An instance that arrives
after its study (or series) completed starts a new period, which completes
again later on its own, with the count and first arrival of the new period
only: the second completion says "these N more arrived", not the total.

:class:`CompletionTracker` is pure: no I/O, no clock, no timers. The caller
passes ``now`` (wall-clock seconds, ``time.time()``, so that times survive a
restart), calls :meth:`~CompletionTracker.due` when
:meth:`~CompletionTracker.next_deadline` comes, and keeps
:meth:`~CompletionTracker.snapshot` somewhere durable. The tracker's time
never runs backwards: an arrival earlier than one already seen counts as at
that later time, so a clock stepped back delays completions (by the step at
most) and never reorders them.

Memory is bounded: at most ``max_tracked`` studies and as many series are
tracked; a new one past the cap completes the one that has been quiet longest
early (logged at WARNING, marked ``early``), at the next :meth:`due`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgspec

__all__ = ["DEFAULT_MAX_TRACKED", "Completion", "CompletionKind", "CompletionTracker"]

_log = logging.getLogger(__name__)

DEFAULT_MAX_TRACKED = 100_000
_SNAPSHOT_VERSION = 1


class CompletionKind(StrEnum):
    SERIES = "series"
    STUDY = "study"


@dataclass(frozen=True, slots=True)
class Completion:
    """One quiet period that ended: a study or series is complete (for now)."""

    kind: CompletionKind
    study_uid: str
    series_uid: str | None  # None for a study
    folder: str
    instances: int  # arrived in this quiet period
    first_arrival: float
    last_arrival: float
    facts: dict[str, str]  # of the period's last instance: calling/called AE, peer...
    early: bool = False  # completed before its quiet period, to keep within the cap


@dataclass(slots=True)
class _Period:
    folder: str
    instances: int
    first_arrival: float
    last_arrival: float
    facts: dict[str, str] = field(default_factory=dict)


# A series is keyed (study UID, series UID): its UID alone would do, but the
# pair says which study it belongs to without another table.
_Key = tuple[str, str | None]


class _SavedPeriod(msgspec.Struct, forbid_unknown_fields=True):
    kind: CompletionKind
    study_uid: str
    series_uid: str | None
    folder: str
    instances: int
    first_arrival: float
    last_arrival: float
    facts: dict[str, str]
    early: bool = False


class _Snapshot(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    periods: list[_SavedPeriod]


class _Table:
    """The open quiet periods of one kind, the longest quiet first."""

    def __init__(self, kind: CompletionKind, timeout: float, cap: int) -> None:
        self.kind = kind
        self.timeout = timeout
        self.cap = cap
        self.periods: OrderedDict[_Key, _Period] = OrderedDict()

    def note(self, key: _Key, folder: str, now: float, facts: dict[str, str]) -> Completion | None:
        """Record an arrival; the period pushed out by the cap, if one was."""
        period = self.periods.get(key)
        if period is not None:
            period.instances += 1
            period.last_arrival = now
            period.folder = folder
            period.facts = facts
            self.periods.move_to_end(key)
            return None
        evicted = self.evict_oldest() if len(self.periods) >= self.cap else None
        self.periods[key] = _Period(folder, 1, now, now, facts)
        return evicted

    def evict_oldest(self) -> Completion:
        """Complete the period quiet longest, before its time, to stay within the cap."""
        evicted = self.completion(*self.periods.popitem(last=False), early=True)
        _log.warning(
            "%d open %s periods, the cap: %s %s completes early, after %d instances",
            self.cap,
            self.kind,
            self.kind,
            _key_text(evicted),
            evicted.instances,
        )
        return evicted

    def due(self, now: float) -> list[Completion]:
        done = []
        while self.periods:
            key, period = next(iter(self.periods.items()))
            if period.last_arrival + self.timeout > now:
                break
            del self.periods[key]
            done.append(self.completion(key, period))
        return done

    def next_deadline(self) -> float | None:
        if not self.periods:
            return None
        return next(iter(self.periods.values())).last_arrival + self.timeout

    def completion(self, key: _Key, period: _Period, early: bool = False) -> Completion:
        study_uid, series_uid = key
        return Completion(
            self.kind,
            study_uid,
            series_uid,
            period.folder,
            period.instances,
            period.first_arrival,
            period.last_arrival,
            period.facts,
            early,
        )

    def merge(self, key: _Key, saved: _Period) -> None:
        """Fold a restored period in (the caller re-sorts afterwards)."""
        period = self.periods.get(key)
        if period is None:
            self.periods[key] = saved
            return
        period.instances += saved.instances
        period.first_arrival = min(period.first_arrival, saved.first_arrival)
        if saved.last_arrival > period.last_arrival:
            period.last_arrival = saved.last_arrival
            period.folder, period.facts = saved.folder, saved.facts

    def resort(self) -> None:
        ordered = sorted(self.periods.items(), key=lambda item: item[1].last_arrival)
        self.periods = OrderedDict(ordered)


def _key_text(completion: Completion) -> str:
    if completion.series_uid is None:
        return completion.study_uid
    return f"{completion.series_uid} (study {completion.study_uid})"


class CompletionTracker:
    """Open quiet periods of studies and series; which of them have ended.

    ``study_timeout`` / ``series_timeout``: seconds of quiet that complete a
    study / series; None leaves that kind untracked.
    """

    def __init__(
        self,
        study_timeout: float | None,
        series_timeout: float | None,
        *,
        max_tracked: int = DEFAULT_MAX_TRACKED,
    ) -> None:
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self._tables: dict[CompletionKind, _Table] = {}
        # Series first: when both end at one due(), a study's series come before it.
        for kind, timeout in (
            (CompletionKind.SERIES, series_timeout),
            (CompletionKind.STUDY, study_timeout),
        ):
            if timeout is not None:
                if timeout < 0:
                    raise ValueError(f"{kind} timeout must not be negative")
                self._tables[kind] = _Table(kind, timeout, max_tracked)
        self._early: list[Completion] = []
        self._latest = float("-inf")

    def tracked(self, kind: CompletionKind) -> int:
        """How many studies or series have an open quiet period."""
        table = self._tables.get(kind)
        return len(table.periods) if table else 0

    def note(
        self,
        study_uid: str,
        series_uid: str,
        folder_study: str,
        folder_series: str,
        now: float,
        **facts: str,
    ) -> None:
        """Record that an instance of this series and study arrived at ``now``.

        ``facts`` (e.g. ``calling_ae``, ``called_ae``, ``peer``) are kept from
        the latest instance and handed on with the completion.
        """
        now = self._advance(now)
        arrivals = {
            CompletionKind.SERIES: ((study_uid, series_uid), folder_series),
            CompletionKind.STUDY: ((study_uid, None), folder_study),
        }
        for kind, table in self._tables.items():
            key, folder = arrivals[kind]
            evicted = table.note(key, folder, now, dict(facts))
            if evicted is not None:
                self._early.append(evicted)

    def discard(self, kind: CompletionKind, study_uid: str, series_uid: str | None = None) -> bool:
        """Forget an open period without completing it (it completed elsewhere: a journal
        record says so); False if none was open."""
        table = self._tables.get(kind)
        key = (study_uid, series_uid if kind is CompletionKind.SERIES else None)
        return table is not None and table.periods.pop(key, None) is not None

    def due(self, now: float) -> list[Completion]:
        """The completions whose quiet period has passed by ``now``; forgotten here.

        Early completions (pushed out by the cap) come first, then series,
        then studies, each in the order they went quiet.
        """
        done, self._early = self._early, []
        for table in self._tables.values():
            done += table.due(now)
        return done

    def next_deadline(self) -> float | None:
        """When :meth:`due` will next have something; None when nothing is tracked.

        A time already past when an early completion waits.
        """
        deadlines = [table.next_deadline() for table in self._tables.values()]
        if self._early:
            deadlines.append(self._latest)
        known = [deadline for deadline in deadlines if deadline is not None]
        return min(known) if known else None

    def snapshot(self) -> dict[str, Any]:
        """Everything not yet completed, as JSON-able builtins for :meth:`restore`."""
        periods = [_saved(completion) for completion in self._early]
        for table in self._tables.values():
            periods += [
                _saved(table.completion(key, period)) for key, period in table.periods.items()
            ]
        return msgspec.to_builtins(_Snapshot(_SNAPSHOT_VERSION, periods))

    def restore(self, state: Any) -> None:
        """Take back what :meth:`snapshot` gave, merged with what is tracked now.

        The current timeouts apply; periods of a kind no longer tracked are
        dropped (logged). A period that went quiet meanwhile (the server was
        down) is in the next :meth:`due`. Raises ValueError for a malformed state.
        """
        try:
            snapshot = msgspec.convert(state, _Snapshot)
        except msgspec.ValidationError as exc:
            raise ValueError(f"completion state: {exc}") from None
        if snapshot.version != _SNAPSHOT_VERSION:
            raise ValueError(f"completion state: version {snapshot.version} is not known")
        dropped = 0
        for saved in snapshot.periods:
            self._advance(saved.last_arrival)
            table = self._tables.get(saved.kind)
            if table is None:
                dropped += 1
                continue
            key = (saved.study_uid, saved.series_uid)
            period = _Period(
                saved.folder, saved.instances, saved.first_arrival, saved.last_arrival, saved.facts
            )
            if saved.early:
                self._early.append(table.completion(key, period, early=True))
            else:
                table.merge(key, period)
        for table in self._tables.values():
            table.resort()
            while len(table.periods) > table.cap:
                self._early.append(table.evict_oldest())
        if dropped:
            _log.warning("completion state: %d periods of an untracked kind dropped", dropped)

    def _advance(self, now: float) -> float:
        self._latest = max(self._latest, now)
        return self._latest


def _saved(completion: Completion) -> _SavedPeriod:
    return _SavedPeriod(
        completion.kind,
        completion.study_uid,
        completion.series_uid,
        completion.folder,
        completion.instances,
        completion.first_arrival,
        completion.last_arrival,
        dict(completion.facts),
        completion.early,
    )
