"""Completion state that outlives the pipeline process: a study quiet while it was down still completes.

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

from hsscp.completion import Completion, CompletionKind, CompletionTracker

__all__ = ["SNAPSHOT_INTERVAL", "STATE_FILE_NAME", "SnapshotState"]

log = logging.getLogger("hsscp.pipeline")

STATE_FILE_NAME = ".hsscp-completion.json"
SNAPSHOT_INTERVAL = 0.5  # seconds: the most a crash can lose of the open periods' arrivals


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
