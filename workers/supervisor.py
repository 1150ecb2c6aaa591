"""The pre-fork supervisor of the multiprocess Storage SCP.

Binds the listening socket once, forks N association workers that all
accept on it and M writer processes, and then only supervises: signal
handlers just queue the signal, the main loop handles it; children are
reaped with ``waitpid(-1, WNOHANG)``, logged with their exit status and
replaced (their association slots given back, their temporary files
removed); a worker whose heartbeat stops is killed and replaced; a worker
that cannot boot is not respawned in a loop. SIGTERM or SIGINT stop
gracefully: no new associations, open ones finish up to the graceful
timeout, then abort. A second SIGINT stops at once.
"""

from __future__ import annotations

import collections
import gc
import logging
import multiprocessing
import os
import select
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from hsscp.storage import FsyncPolicy, Layout, Storage
from hsscp.transport import bind_listener
from hsscp.uid import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from workers import stats as stats_table
from workers.arena import remove_arenas_of
from workers.limits import SharedLimiter
from workers.worker_main import BOOT_FAILED, WorkerContext, run_worker
from workers.writer_main import run_writer

log = logging.getLogger("hsscp.supervisor")

BOOT_FAILURES_TOLERATED = 3  # in a row, per worker slot
_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP)
STOP_MARGIN = 10.0  # seconds past the graceful timeout before children are killed


@dataclass
class ServeResult:
    exit_code: int
    summary: str


@dataclass
class _Child:
    role: str  # "worker" or "writer"
    index: int
    pid: int
    started: float = field(default_factory=time.monotonic)


def build_ae(config: Any):
    """An AE carrying the SCP's settings: every storage class in every transfer syntax."""
    from hsscp import AE, AllStoragePresentationContexts, VerificationPresentationContexts
    from hsscp.uid import ALL_TRANSFER_SYNTAXES

    ae = AE(config.ae_title)
    ae.acse_timeout = config.acse_timeout
    ae.dimse_timeout = config.dimse_timeout
    ae.network_timeout = config.network_timeout
    ae.maximum_pdu_size = config.max_pdu
    ae.maximum_associations = config.max_associations
    ae.require_called_aet = config.require_called_aet
    ae.require_calling_aet = list(config.require_calling_aet)
    for context in [*VerificationPresentationContexts, *AllStoragePresentationContexts]:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    return ae


class Supervisor:
    def __init__(
        self,
        config: Any,
        ae: Any = None,
        evt_handlers: list | None = None,
        ssl_context=None,
        listener=None,
        ae_title: str | None = None,
        contexts: list | None = None,
    ) -> None:
        self.config = config
        self.ae = ae or build_ae(config)
        self.ae_title = ae_title or self.ae._ae_title_str
        self.contexts = contexts or self.ae.supported_contexts
        self.evt_handlers = evt_handlers
        self.ssl_context = ssl_context
        self.listener = listener
        # A user's C-STORE handler stores the data itself: no writer pool then.
        self.writers = 0 if _handles_store(evt_handlers) or config.ignore else config.writers
        self.children: dict[int, _Child] = {}
        self.stopping = False
        self.exit_code = 0
        self._signals: collections.deque[int] = collections.deque()
        self._boot_failures: collections.Counter = collections.Counter()
        self._stop_deadline = 0.0
        self._writers_stopping = False
        self.rundir = ""
        self._started = time.monotonic()

    # -- set-up ------------------------------------------------------------------

    def _prepare(self) -> None:
        config = self.config
        if self.listener is None:
            self.listener = bind_listener((config.bind, config.port))
        self.storage = Storage(
            config.output_directory,
            Layout(config.layout),
            FsyncPolicy(config.fsync),
            implementation_class_uid=str(self.ae.implementation_class_uid or IMPLEMENTATION_CLASS_UID),
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
        )
        stale = self.storage.remove_temp_files()
        if stale:
            log.warning("removed %d temporary files left by an earlier run", stale)
        self.rundir = tempfile.mkdtemp(prefix="hsscp-")
        self.limiter = SharedLimiter(config.workers, config.max_associations, os.path.join(self.rundir, "slots.lock"))
        self.heartbeats = multiprocessing.RawArray("d", config.workers)
        self.stats = stats_table.new_table(config.workers)
        self.writer_paths = [os.path.join(self.rundir, f"writer-{i}.sock") for i in range(self.writers)]
        self._wakeup_r, self._wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def _install_signals(self) -> None:
        self._previous_handlers = {
            signum: signal.signal(signum, self._queue_signal) for signum in _HANDLED_SIGNALS
        }

    def _queue_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)
        try:
            os.write(self._wakeup_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    # -- children ---------------------------------------------------------------

    def _fork(self, role: str, index: int) -> None:
        pid = os.fork()
        if pid:
            self.children[pid] = _Child(role, index, pid)
            return
        code = 1
        try:
            for signum in _HANDLED_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)
            set_process_name(f"hsscp-{role}-{index}")
            code = self._child_main(role, index)
        except BaseException:
            log.exception("%s %d crashed", role, index)
        finally:
            logging.shutdown()
            os._exit(code)

    def _child_main(self, role: str, index: int) -> int:
        if role == "writer":
            self.listener.close()
            run_writer(self.writer_paths[index], self.storage)
            return 0
        self.heartbeats[index] = time.monotonic()
        return run_worker(
            WorkerContext(
                index=index,
                listener=self.listener,
                ae=self.ae,
                ae_title=self.ae_title,
                contexts=self.contexts,
                limiter=self.limiter,
                heartbeats=self.heartbeats,
                stats_table=self.stats,
                graceful_timeout=self.config.graceful_timeout,
                writer_paths=self.writer_paths,
                storage=self.storage,
                spool_threshold=self.config.spool_threshold,
                ignore=self.config.ignore,
                # fsync in the event loop would stall every association of the worker.
                inline_limit=self.config.inline_limit if self.config.fsync == "none" else 0,
                async_ops=self.config.async_ops,
                ssl_context=self.ssl_context,
                evt_handlers=self.evt_handlers,
            )
        )

    def _spawn_worker(self, index: int) -> None:
        self.heartbeats[index] = time.monotonic()
        self._fork("worker", index)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                self._child_exited(child, status)

    def _child_exited(self, child: _Child, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        quiet = self.stopping and code == 0
        (log.debug if quiet else log.warning)("%s %d (pid %d) ended with %s", child.role, child.index, child.pid, how)
        removed = self.storage.remove_temp_files(child.pid)
        if removed:
            log.info("removed %d temporary files of pid %d", removed, child.pid)
        if child.role == "worker":
            self.limiter.reclaim(child.index)
            remove_arenas_of(child.pid)  # a killed worker leaves its shared memory behind
        if self.stopping:
            return
        if child.role == "worker" and code == BOOT_FAILED:
            self._boot_failures[child.index] += 1
            if self._boot_failures[child.index] >= BOOT_FAILURES_TOLERATED:
                log.error("worker %d cannot start; stopping the server", child.index)
                self.exit_code = 1
                self._begin_stop()
                return
        else:
            self._boot_failures[child.index] = 0
        if child.role == "worker":
            self._spawn_worker(child.index)
        else:
            self._fork("writer", child.index)

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        for child in list(self.children.values()):
            if child.role == "worker" and now - self.heartbeats[child.index] > self.config.heartbeat_timeout:
                log.error("worker %d (pid %d) stopped beating: killing it", child.index, child.pid)
                self.heartbeats[child.index] = now  # one kill per stall
                _kill(child.pid, signal.SIGKILL)

    # -- stopping ----------------------------------------------------------------

    def _begin_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.listener.close()
        self._stop_deadline = time.monotonic() + self.config.graceful_timeout + STOP_MARGIN
        for child in self.children.values():
            if child.role == "worker":
                _kill(child.pid, signal.SIGTERM)

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.popleft()
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self.stopping and signum == signal.SIGINT:
                    log.warning("second interrupt: stopping now")
                    self._stop_deadline = 0.0
                log.info("stopping (%s)", signal.Signals(signum).name)
                self._begin_stop()
            elif signum == signal.SIGHUP:
                log.info("SIGHUP: nothing to reload; configuration is read at start")

    def _stop_progress(self) -> bool:
        """Advance the stop; True once every child is gone."""
        workers = [c for c in self.children.values() if c.role == "worker"]
        if workers:
            if time.monotonic() > self._stop_deadline:
                for child in workers:
                    _kill(child.pid, signal.SIGKILL)
            return False
        if not self._writers_stopping:
            # Workers are gone, so no more jobs: writers finish the one in hand.
            self._writers_stopping = True
            self._stop_deadline = time.monotonic() + STOP_MARGIN
            for child in self.children.values():
                _kill(child.pid, signal.SIGTERM)
        elif time.monotonic() > self._stop_deadline:
            for child in self.children.values():
                _kill(child.pid, signal.SIGKILL)
        return not self.children

    # -- main loop ---------------------------------------------------------------

    def run(self) -> ServeResult:
        try:
            self._prepare()
        except OSError as exc:  # port taken, output folder not writable, ...
            log.error("cannot start: %s", exc)
            if self.rundir:
                shutil.rmtree(self.rundir, ignore_errors=True)
            return ServeResult(2, f"not started: {exc}")
        self._install_signals()
        # Everything loaded so far (pydicom's dictionaries above all) lives as long as
        # the process: keep it out of the collector's way, and shared with the children.
        gc.collect()
        gc.freeze()
        try:
            for index in range(self.writers):
                self._fork("writer", index)
            for index in range(self.config.workers):
                self._spawn_worker(index)
            log.info(
                "hsscp storescp listening on %s:%d with %d workers and %d writers",
                *self.listener.getsockname()[:2], self.config.workers, self.writers,
            )
            while True:
                select.select([self._wakeup_r], [], [], 0.25)
                _drain_pipe(self._wakeup_r)
                self._handle_signals()
                self._reap()
                if self.stopping:
                    if self._stop_progress():
                        break
                else:
                    self._check_heartbeats()
        finally:
            self._cleanup()
        return ServeResult(self.exit_code, self.summary())

    def _cleanup(self) -> None:
        for child in self.children.values():
            _kill(child.pid, signal.SIGKILL)
        for pid in list(self.children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.children.clear()
        self.storage.remove_temp_files()
        shutil.rmtree(self.rundir, ignore_errors=True)
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)

    def summary(self) -> str:
        text = format_summary(stats_table.totals(self.stats), time.monotonic() - self._started)
        per_worker = stats_table.per_row(self.stats, "associations")
        return f"{text}\nassociations per worker: {' '.join(map(str, per_worker))}"


def format_summary(counts: dict[str, int], seconds: float) -> str:
    instances = counts["stored"] + counts["warnings"]
    megabytes = counts["bytes"] / 1e6
    seconds = max(seconds, 1e-9)
    lines = [
        f"received {instances} instances ({megabytes:.1f} MB) over {counts['associations']} associations "
        f"in {seconds:.1f} s: {instances / seconds:.1f} instances/s, {megabytes / seconds:.1f} MB/s"
    ]
    if counts["warnings"]:
        lines.append(f"stored with a warning status: {counts['warnings']}")
    failures = {k: v for k, v in counts.items() if v and k not in ("associations", "stored", "bytes", "warnings")}
    if failures:
        lines.append("not stored: " + ", ".join(f"{name.replace('_', ' ')} {n}" for name, n in failures.items()))
    return "\n".join(lines)


def serve(config: Any, ae: Any = None, evt_handlers: list | None = None) -> ServeResult:
    """Run the multiprocess SCP in this process until SIGTERM/SIGINT."""
    from hsscp.config import ssl_context

    return Supervisor(config, ae=ae, evt_handlers=evt_handlers, ssl_context=ssl_context(config)).run()


def _handles_store(evt_handlers: list | None) -> bool:
    from hsscp import events

    return bool(evt_handlers) and events.HandlerSet(evt_handlers).has(events.EVT_C_STORE)


def set_process_name(name: str) -> None:
    """Name the process as ps and /proc/PID/comm show it (Linux; 15 characters)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
