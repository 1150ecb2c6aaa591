"""After the file lands: reception hooks, series and study completion, the API events.

One :class:`Pipeline` runs for the whole server, in the pipeline process
(:mod:`workers.pipeline_main`): every worker tells it about every stored
instance (:mod:`workers.notify`), so completion is global. The instances of
one study may arrive over several associations on different workers, at once
or minutes apart; its quiet period runs from the last of them, whichever
worker received it, and its completion hook runs once per quiet period.

For each stored instance, in this order: the study and series UIDs are read
from the file if the worker did not know them; the reception hook is
submitted (:class:`~hsscp.hooks.HookRunner`: bounded concurrency, a timeout,
failures logged); ``EVT_INSTANCE_STORED`` handlers are queued; the
:class:`~hsscp.completion.CompletionTracker` notes the arrival. A timer calls
the tracker when its next deadline comes; each completion submits the
end-of-series / end-of-study hook, queues ``EVT_SERIES_COMPLETE`` /
``EVT_STUDY_COMPLETE`` handlers and is recorded (:mod:`workers.pipeline_state`).

Event attributes (``event.assoc`` is None: the pipeline has no association):

- ``EVT_INSTANCE_STORED``: ``path``, ``sop_class_uid``, ``sop_instance_uid``,
  ``study_instance_uid``, ``series_instance_uid``, ``status``, ``bytes``,
  ``calling_ae``, ``called_ae``, ``peer`` (host, port), ``stored_at`` (epoch seconds),
  ``duplicate`` (None, or what became of a copy of an instance stored before:
  "overwritten", "kept", "renamed", "identical").
- ``EVT_SERIES_COMPLETE`` / ``EVT_STUDY_COMPLETE``: ``kind`` ("series" or
  "study"), ``study_instance_uid``, ``series_instance_uid`` (None for a
  study), ``folder``, ``instances`` (arrived in this quiet period),
  ``first_arrival``, ``last_arrival``, ``early`` (completed before its time to
  stay within the tracker's cap), and ``calling_ae``, ``called_ae``, ``peer``
  of the period's last instance.

Handlers run on one thread of the pipeline process, one at a time, in order:
they may block (a slow one delays the handlers after it, never a C-STORE-RSP,
a hook or a completion). At most :data:`MAX_WAITING_EVENTS` wait; past that
an event is dropped with a warning.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from hsscp import events
from hsscp.completion import Completion, CompletionKind, CompletionTracker
from hsscp.hooks import COMPLETION_PLACEHOLDERS, RECEPTION_PLACEHOLDERS, CommandTemplate, HookRunner
from workers.notify import InstanceStored
from workers.stored_file import layout_folders, uids_of_file

__all__ = ["MAX_WAITING_EVENTS", "Pipeline", "PipelinePlan"]

log = logging.getLogger("hsscp.pipeline")

MAX_WAITING_EVENTS = 10_000
_TIMER_SLACK = 0.005  # seconds past a deadline the timer fires, so the deadline has passed


@dataclass(frozen=True)
class PipelinePlan:
    """What runs after the file lands; made at start-up, before the fork, and inherited.

    A timeout of None leaves that kind of completion untracked.
    """

    reception: CommandTemplate | None = None
    eostudy: CommandTemplate | None = None
    eoseries: CommandTemplate | None = None
    study_timeout: float | None = None
    series_timeout: float | None = None
    hook_timeout: float = 300.0
    hook_concurrency: int = 4
    handlers: events.HandlerSet | None = None
    journaled: bool = False  # completion records go to the journal, and restarts read it back
    state_file: str = ""  # without a journal: the snapshot of open quiet periods

    @classmethod
    def from_settings(cls, settings: Any, evt_handlers: list | None, state_file: str) -> PipelinePlan | None:
        """The plan for ``settings`` (ProcessSettings) and the user's handlers; None if nothing runs."""
        handlers = events.HandlerSet(evt_handlers)
        bound = {event for event in events.PIPELINE_EVENTS if handlers.has(event)}
        journal = bool(settings.journal)

        def command(name: str, allowed: frozenset[str]) -> CommandTemplate | None:
            text = getattr(settings, name)
            return CommandTemplate.parse(text, allowed) if text else None

        eostudy = command("exec_on_eostudy", COMPLETION_PLACEHOLDERS)
        eoseries = command("exec_on_eoseries", COMPLETION_PLACEHOLDERS)
        track_study = bool(eostudy or events.EVT_STUDY_COMPLETE in bound or journal)
        track_series = bool(eoseries or events.EVT_SERIES_COMPLETE in bound or journal)
        plan = cls(
            reception=command("exec_on_reception", RECEPTION_PLACEHOLDERS),
            eostudy=eostudy,
            eoseries=eoseries,
            study_timeout=settings.eostudy_timeout if track_study else None,
            series_timeout=settings.eoseries_timeout if track_series else None,
            hook_timeout=settings.hook_timeout,
            hook_concurrency=settings.hook_concurrency,
            handlers=handlers if bound else None,
            journaled=journal,
            state_file=state_file,
        )
        return plan if plan.reception or track_study or track_series or bound else None

    @property
    def tracks_completion(self) -> bool:
        return self.study_timeout is not None or self.series_timeout is not None


class Pipeline:
    """Reacts to stored instances and to quiet periods ending; runs on the pipeline's loop."""

    def __init__(self, plan: PipelinePlan, state: Any, clock: Callable[[], float] = time.time) -> None:
        self.plan = plan
        self.state = state  # workers.pipeline_state: where open periods and completions are kept
        self.clock = clock
        self.runner = HookRunner(concurrency=plan.hook_concurrency, timeout=plan.hook_timeout)
        self.tracker = (
            CompletionTracker(plan.study_timeout, plan.series_timeout) if plan.tracks_completion else None
        )
        self.handlers = _HandlerThread(plan.handlers) if plan.handlers is not None else None
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    def start(self) -> None:
        """Take back what the last run left open; what went quiet meanwhile completes now."""
        if self.tracker is not None:
            self.state.restore(self.tracker)
            self._fire()

    def stored(self, message: InstanceStored) -> None:
        study, series = message.study_instance_uid, message.series_instance_uid
        if not (study and series) and (self.tracker is not None or self.handlers is not None):
            study, series = uids_of_file(message.path)
        folder, filename = os.path.split(message.path)
        facts = {"calling_ae": message.calling_ae, "called_ae": message.called_ae, "peer": message.peer_host}
        if self.plan.reception is not None:
            self.runner.run(self.plan.reception, {"folder": folder, "filename": filename, **facts}, "reception")
        if self.handlers is not None:
            self.handlers.notify(events.EVT_INSTANCE_STORED, _stored_attrs(message, study, series))
        if self.tracker is not None and study and series and self.state.is_new(message.sop_instance_uid):
            series_folder, study_folder = layout_folders(folder, study, series)
            self.tracker.note(study, series, study_folder, series_folder, message.time,
                              peer_port=str(message.peer_port), **facts)
            self.state.changed(self.tracker)
            self._schedule()

    async def close(self, timeout: float) -> None:
        """Stop the timer, keep what is open for the next run, let hooks and handlers finish."""
        if self._timer is not None:
            self._timer.cancel()
        if self.tracker is not None:
            self.state.close(self.tracker)
        waits = [self.runner.close(timeout)]
        if self.handlers is not None:
            waits.append(self.handlers.close(timeout))
        await asyncio.gather(*waits)

    def _schedule(self) -> None:
        deadline = self.tracker.next_deadline()
        if deadline is None or deadline >= self._timer_at:
            return  # nothing to wait for, or the timer comes first anyway and looks again
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_later(max(0.0, deadline - self.clock()) + _TIMER_SLACK, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        done = self.tracker.due(self.clock())
        for completion in done:
            self._completed(completion)
        if done:
            self.state.changed(self.tracker)
        self._schedule()

    def _completed(self, completion: Completion) -> None:
        study = completion.kind is CompletionKind.STUDY
        uid = completion.study_uid if study else completion.series_uid
        log.info("%s %s complete: %d instances", completion.kind, uid, completion.instances)
        template = self.plan.eostudy if study else self.plan.eoseries
        if template is not None:
            values = {"folder": completion.folder, **completion.facts}
            self.runner.run(template, values, f"end of {completion.kind} {uid}")
        if self.handlers is not None:
            event = events.EVT_STUDY_COMPLETE if study else events.EVT_SERIES_COMPLETE
            self.handlers.notify(event, _completion_attrs(completion))
        self.state.completed(completion)


def _stored_attrs(message: InstanceStored, study: str, series: str) -> dict[str, Any]:
    return {
        "path": message.path,
        "sop_class_uid": message.sop_class_uid,
        "sop_instance_uid": message.sop_instance_uid,
        "study_instance_uid": study,
        "series_instance_uid": series,
        "status": message.status,
        "bytes": message.bytes,
        "calling_ae": message.calling_ae,
        "called_ae": message.called_ae,
        "peer": (message.peer_host, message.peer_port),
        "stored_at": message.time,
        "duplicate": message.duplicate,
    }


def _completion_attrs(completion: Completion) -> dict[str, Any]:
    facts = completion.facts
    return {
        "kind": str(completion.kind),
        "study_instance_uid": completion.study_uid,
        "series_instance_uid": completion.series_uid,
        "folder": completion.folder,
        "instances": completion.instances,
        "first_arrival": completion.first_arrival,
        "last_arrival": completion.last_arrival,
        "early": completion.early,
        "calling_ae": facts.get("calling_ae", ""),
        "called_ae": facts.get("called_ae", ""),
        "peer": (facts.get("peer", ""), int(facts.get("peer_port", 0) or 0)),
    }


class _HandlerThread:
    """The user's handlers of the pipeline events, on one thread, in order, a bounded backlog."""

    def __init__(self, handlers: events.HandlerSet) -> None:
        self._handlers = handlers
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hsscp-pipeline-handler")
        self._lock = threading.Lock()
        self._waiting = 0
        self.dropped = 0

    def notify(self, event: events.NotificationEvent, attrs: dict[str, Any]) -> None:
        if not self._handlers.has(event):
            return
        with self._lock:
            if self._waiting >= MAX_WAITING_EVENTS:
                self.dropped += 1
                full = True
            else:
                self._waiting += 1
                full = False
        if full:
            log.warning("%d events wait for their handlers: %s dropped", MAX_WAITING_EVENTS, event.name)
            return
        self._executor.submit(self._call, event, attrs)

    def _call(self, event: events.NotificationEvent, attrs: dict[str, Any]) -> None:
        try:
            self._handlers.notify(None, event, **attrs)  # logs what a handler raises
        finally:
            with self._lock:
                self._waiting -= 1

    async def close(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the events already queued; drop the rest."""
        last = asyncio.wrap_future(self._executor.submit(lambda: None))
        try:
            await asyncio.wait_for(last, timeout)
        except TimeoutError:
            log.warning("stopping: handlers still busy after %gs; queued events dropped", timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)
