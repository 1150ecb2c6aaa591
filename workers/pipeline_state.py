"""Completion state that outlives the pipeline process: a study quiet while it was down still completes.

With a journal (``--journal``), :class:`JournalState`: each completion is
recorded as a ``series_complete`` / ``study_complete`` line (UIDs,
``instances``, ``path`` the folder, ``time``), synced. At start the journal is
read back: the ``stored`` records with no completion record of their study
(or series) after them are noted again, at the times they were stored, so
what went quiet while the server was down completes at once and the rest
keeps its deadline. The journal holds every acknowledged instance, so nothing
the workers could not tell the pipeline (it was down, or behind) is missed.
Periods without a completion record between them (a crash came before it)
are counted as one: completion is at least once. The messages workers kept
for the restarted pipeline are not counted twice for an instance the journal
gave already.

Without a journal, the open quiet periods (:meth:`CompletionTracker.snapshot`)
are kept in a hidden file of the output folder, ``.hsscp-completion.json``:
written at most every :data:`SNAPSHOT_INTERVAL` seconds while they change, and
at a stop; read back at start, where every period that went quiet meanwhile
completes at once. An instance stored in the last interval before a crash
(SIGKILL, power loss) may be missing from its period's count, and a period
that completed in that interval may complete again: completion is at least
once, never lost for a study whose instances were all in a snapshot.

The file is written to a temporary name and renamed, so a crash leaves the
old snapshot or the new one, never half of one; a file that cannot be read is
set aside (``.bad``) with a warning and the pipeline starts empty.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from hsscp.completion import Completion, CompletionKind, CompletionTracker
from workers.stored_file import layout_folders, uids_of_file

__all__ = ["SNAPSHOT_INTERVAL", "STATE_FILE_NAME", "JournalState", "SnapshotState", "replay_journal"]

log = logging.getLogger("hsscp.pipeline")

STATE_FILE_NAME = ".hsscp-completion.json"
SNAPSHOT_INTERVAL = 0.5  # seconds: the most a crash can lose of the open periods' arrivals
# Seconds after a start during which a worker's kept message may repeat an instance the journal gave.
RESENT_WINDOW = 60.0

_COMPLETION_EVENTS = {CompletionKind.SERIES: "series_complete", CompletionKind.STUDY: "study_complete"}


class SnapshotState:
    """Open quiet periods in a snapshot file; completions need no record."""

    def __init__(self, path: str, interval: float = SNAPSHOT_INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self._save_timer: asyncio.TimerHandle | None = None

    def restore(self, tracker: CompletionTracker) -> None:
        try:
            with open(self.path, encoding="utf-8") as fp:
                state = json.load(fp)
            tracker.restore(state)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            log.warning("completion state %s cannot be read (%s): set aside, starting empty", self.path, exc)
            os.replace(self.path, self.path + ".bad")
            return
        log.info("completion state restored: %d studies, %d series open",
                 tracker.tracked(CompletionKind.STUDY), tracker.tracked(CompletionKind.SERIES))

    def is_new(self, sop_instance_uid: str) -> bool:
        """Whether this instance is not yet counted (a snapshot never counts one twice)."""
        return True

    def changed(self, tracker: CompletionTracker) -> None:
        if self._save_timer is None:
            self._save_timer = asyncio.get_running_loop().call_later(self.interval, self._save, tracker)

    def completed(self, completion: Completion) -> None:
        """Nothing to record: the next snapshot no longer holds the period."""

    def close(self, tracker: CompletionTracker) -> None:
        if self._save_timer is not None:
            self._save_timer.cancel()
        self._save(tracker)

    def _save(self, tracker: CompletionTracker) -> None:
        self._save_timer = None
        temp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(temp, "w", encoding="utf-8") as fp:
                json.dump(tracker.snapshot(), fp, separators=(",", ":"))
            os.replace(temp, self.path)
        except OSError as exc:
            log.warning("cannot write the completion state %s: %s", self.path, exc)


class JournalState:
    """Completions recorded in the journal; open periods read back from it at start.

    ``journal`` appends records and syncs them (:class:`hsscp.journal.Journal`);
    ``read`` returns every record, oldest first (:func:`hsscp.journal.read_journal`).
    """

    def __init__(self, journal: Any, read: Callable[[], list[dict[str, Any]]]) -> None:
        self.journal = journal
        self.read = read
        self._replayed: set[str] = set()

    def restore(self, tracker: CompletionTracker) -> None:
        try:
            records = self.read()
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("the journal cannot be read back (%s): completion starts empty", exc)
            return
        self._replayed = replay_journal(records, tracker)
        if self._replayed:
            log.info("journal read back: %d instances of open studies or series", len(self._replayed))
            asyncio.get_running_loop().call_later(RESENT_WINDOW, self._replayed.clear)

    def is_new(self, sop_instance_uid: str) -> bool:
        if sop_instance_uid in self._replayed:
            self._replayed.discard(sop_instance_uid)
            return False
        return True

    def changed(self, tracker: CompletionTracker) -> None:
        """Nothing to save: the journal has every stored instance already."""

    def completed(self, completion: Completion) -> None:
        try:
            self.journal.append([completion_record(completion)])
            self.journal.sync()
        except OSError as exc:
            log.error("cannot record the completion of %s %s in the journal: %s",
                      completion.kind, completion.series_uid or completion.study_uid, exc)

    def close(self, tracker: CompletionTracker) -> None:
        self.journal.close()


def completion_record(completion: Completion) -> dict[str, Any]:
    """The journal line of a completion."""
    return {
        "event": _COMPLETION_EVENTS[completion.kind],
        "study_instance_uid": completion.study_uid,
        "series_instance_uid": completion.series_uid,
        "instances": completion.instances,
        "path": completion.folder,
        "time": datetime.now(UTC).isoformat(),
    }


def replay_journal(records: Iterable[dict[str, Any]], tracker: CompletionTracker) -> set[str]:
    """Note in ``tracker`` the stored instances no completion record follows.

    Returns their SOP Instance UIDs. A stored record without study and
    series UIDs takes them from its file; records of other kinds are passed over.
    """
    open_instances: dict[str, set[str]] = {}
    for record in records:
        event = record.get("event")
        study = record.get("study_instance_uid") or ""
        series = record.get("series_instance_uid") or ""
        path = str(record.get("path") or "")
        if event == "stored" and path and not (study and series):
            study, series = uids_of_file(path)  # a record without them: the file has them
        if event == "stored" and study and series:
            folder = os.path.dirname(path)
            series_folder, study_folder = layout_folders(folder, study, series)
            facts = {key: str(record.get(key) or "") for key in ("calling_ae", "called_ae")}
            host, _, port = str(record.get("peer") or "").rpartition(":")
            tracker.note(study, series, study_folder, series_folder, _epoch(record.get("time")),
                         peer=host.strip("[]"), peer_port=port, **facts)
            open_instances.setdefault(study, set()).add(str(record.get("sop_instance_uid")))
        elif event == "series_complete" and study and series:
            tracker.discard(CompletionKind.SERIES, study, series)
        elif event == "study_complete" and study:
            tracker.discard(CompletionKind.STUDY, study)
            open_instances.pop(study, None)
    return set().union(*open_instances.values())


def _epoch(text: Any) -> float:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return time.time()
