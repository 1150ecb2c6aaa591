"""The multiprocess storage SCP: the program the supervisor runs.

Its two roles are writers (started first: workers connect to them) and
association workers. Protocol settings come from the AE (AE title,
timeouts, maximum PDU, association limit, AE title checks, contexts),
process settings from :class:`~hsscp.config.ProcessSettings`. Before
forking it binds the listening socket and sets up what the children share:
the storage, the global association limit, the counters, the writers'
sockets. When a child dies it gives back what that child held: its
association slots, its temporary files, its shared memory.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hsscp.aet import normalize_ae_title
from hsscp.config import ProcessSettings, ServerConfig, parse_host_port, ssl_context
from hsscp.journal import Journal, journal_of
from hsscp.storage import TEMP_DIR_NAME, FsyncPolicy, Layout, Storage
from hsscp.transport import bind_listener
from hsscp.uid import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from workers import stats as stats_table
from workers.arena import remove_arenas_of
from workers.health import HealthMonitor
from workers.heartbeat import Heartbeat
from workers.limits import SharedLimiter
from workers.pipeline import PipelinePlan
from workers.pipeline_main import STOP_WAIT, PipelineContext, run_pipeline
from workers.pipeline_state import STATE_FILE_NAME
from workers.supervisor import Role, Supervisor
from workers.worker_main import WorkerContext, run_worker
from workers.writer_main import run_writer

log = logging.getLogger("hsscp.supervisor")

STOP_MARGIN = 10.0  # seconds past its own deadline a process has to exit after SIGTERM


@dataclass
class ServeResult:
    exit_code: int
    summary: str


class StorageSCP:
    """The storage SCP's roles, what each child runs, and the clean-up after each."""

    def __init__(
        self,
        ae: Any,
        settings: ProcessSettings,
        *,
        address: tuple[str, int] = ("", 11112),
        listener: socket.socket | None = None,
        ae_title: str | bytes | None = None,
        contexts: Sequence | None = None,
        evt_handlers: list | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.ae = ae
        self.settings = settings
        self.address = address
        self.listener = listener
        self.ae_title = normalize_ae_title(ae_title or ae.ae_title)
        self.contexts = list(contexts or ae.supported_contexts)
        self.evt_handlers = evt_handlers
        self.ssl_context = ssl_context
        # A user's C-STORE handler stores the data itself: no writer pool then.
        writers = 0 if _handles_store(evt_handlers) or settings.ignore else settings.writers
        self.writer_role = Role("writer", writers, stop_timeout=STOP_MARGIN)
        self.worker_role = Role("worker", settings.workers, stop_timeout=settings.graceful_timeout + STOP_MARGIN)
        # After the file lands (hooks, completion, events): one process (hsscp-pipe-0), started
        # first and stopped last.
        self.pipeline = PipelinePlan.from_settings(
            settings, evt_handlers, os.path.join(os.path.abspath(settings.output_directory), STATE_FILE_NAME)
        )
        if self.pipeline is not None and writers == 0:
            log.warning("hooks and completion events need the built-in storage: with --ignore or an "
                        "EVT_C_STORE handler they never run")
            self.pipeline = None
        self.pipeline_role = Role("pipe", 1 if self.pipeline else 0, stop_timeout=STOP_WAIT + STOP_MARGIN)
        self.roles = (self.pipeline_role, self.writer_role, self.worker_role)
        self.pipeline_path = ""
        self.rundir = ""
        self.storage: Storage | None = None  # these are set up by run(), before the fork
        self.stats: Any = None
        self.monitor: HealthMonitor | None = None  # with --metrics or --min-free-space
        self.metrics: Any = None  # the workers.metrics.MetricsServer of --metrics
        self.supervisor: Supervisor | None = None
        self._started = time.monotonic()

    def run(self) -> ServeResult:
        """Serve in this process until SIGTERM/SIGINT."""
        try:
            self._prepare()
        except OSError as exc:  # port taken, output folder not writable, ...
            log.error("cannot start: %s", exc)
            self._cleanup()
            return ServeResult(2, "")
        host, port = self.listener.getsockname()[:2]
        where = "writing nothing (--ignore)" if self.settings.ignore else (
            f"output folder {os.path.abspath(self.settings.output_directory)}")
        log.info(
            "hsscp storescp listening: AE title %s, address %s, port %d, %s; %d workers and %d writers",
            self.ae_title, host or "every interface", port, where, self.worker_role.count, self.writer_role.count,
        )
        self.supervisor = Supervisor(self, self.settings.heartbeat_timeout)
        self._start_operations()
        try:
            exit_code = self.supervisor.run()
        finally:
            self._stop_operations()
            self._cleanup()
        return ServeResult(exit_code, self.summary())

    def _prepare(self) -> None:
        settings = self.settings
        if self.listener is None:
            self.listener = bind_listener(self.address)
        self.storage = Storage(
            settings.output_directory,
            Layout(settings.layout),
            FsyncPolicy(settings.fsync),
            implementation_class_uid=str(self.ae.implementation_class_uid or IMPLEMENTATION_CLASS_UID),
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
            on_duplicate=settings.on_duplicate,
        )
        if settings.journal:  # writers and inline-storing workers append to it
            self.storage.journal = Journal(settings.journal, settings.journal_max_bytes, settings.journal_keep,
                                           durable=settings.fsync != "none")
        stale = self.storage.remove_temp_files()
        if stale:
            log.warning("removed %d temporary files left by an earlier run", stale)
        self.rundir = tempfile.mkdtemp(prefix="hsscp-")
        self.limiter = SharedLimiter(
            settings.workers, self.ae.maximum_associations, os.path.join(self.rundir, "slots.lock")
        )
        self.stats = stats_table.new_table(settings.workers, os.path.join(self.rundir, "stats.lock"))
        self._prepare_operations()
        self.writer_paths = [os.path.join(self.rundir, f"writer-{i}.sock") for i in range(self.writer_role.count)]
        if self.pipeline is not None:
            self.pipeline_path = os.path.join(self.rundir, "pipeline.sock")

    def _prepare_operations(self) -> None:
        """The health monitor and the metrics server (bound here: a port taken stops the start)."""
        settings = self.settings
        if not (settings.metrics or settings.min_free_space):
            return
        temp = os.path.join(settings.output_directory, TEMP_DIR_NAME)
        self.monitor = HealthMonitor(settings.output_directory, temp, settings.min_free_space, self.stats)
        if settings.metrics:
            from workers.metrics import HsscpCollector, MetricsServer

            collector = HsscpCollector(self.stats, lambda: self.limiter.active, self._restarts,
                                       self.monitor, (role.name for role in self.roles))
            self.metrics = MetricsServer(parse_host_port(settings.metrics), collector, self.monitor)

    def _restarts(self) -> dict[str, int]:
        return dict(self.supervisor.restarts) if self.supervisor is not None else {}

    def _start_operations(self) -> None:
        """Threads of this process, started before the first fork (see workers.metrics on why)."""
        if self.monitor is not None:
            self.monitor.start()
        if self.metrics is not None:
            self.metrics.start()
            log.info("metrics, /healthz and /readyz on http://%s:%d/", *self.metrics.address)

    def _stop_operations(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()

    def _cleanup(self) -> None:
        if self.metrics is not None:
            self.metrics.stop()  # also when the start failed: the port is given back
            self.metrics = None
        # No sweep of every temporary file here: each child's were removed as it exited, and
        # nodes sharing the output folder (behind a load balancer) own the others.
        if self.rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)

    # -- the program the supervisor runs ----------------------------------------------

    def run_child(self, role: Role, index: int, heartbeat: Heartbeat) -> int:
        if self.metrics is not None:
            self.metrics.close_in_child()
        if role is self.pipeline_role:
            self.listener.close()
            return run_pipeline(PipelineContext(self.pipeline, self.pipeline_path, heartbeat, journal_of(self.storage)))
        if role is self.writer_role:
            self.listener.close()
            return run_writer(self.writer_paths[index], self.storage, heartbeat)
        return run_worker(
            WorkerContext(
                index=index,
                listener=self.listener,
                ae=self.ae,
                ae_title=self.ae_title,
                contexts=self.contexts,
                settings=self.settings,
                limiter=self.limiter,
                heartbeat=heartbeat,
                stats_table=self.stats,
                storage=self.storage,
                writer_paths=self.writer_paths,
                ssl_context=self.ssl_context,
                evt_handlers=self.evt_handlers,
                pipeline_path=self.pipeline_path or None,
            )
        )

    def child_exited(self, role: Role, index: int, pid: int) -> None:
        removed = self.storage.remove_temp_files(pid)
        if removed:
            log.info("removed %d temporary files of pid %d", removed, pid)
        if role is self.worker_role:
            self.limiter.reclaim(index)
            remove_arenas_of(pid)  # a killed worker could not unlink its shared memory itself

    def stop_accepting(self) -> None:
        if self.monitor is not None:
            self.monitor.draining = True  # /readyz answers 503 from now on
        # The workers close their copies; with ours closed too the port is free at once.
        self.listener.close()

    def summary(self) -> str:
        if self.stats is None:
            return "not started"
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
    if counts.get("rejected"):
        lines.append(f"associations rejected: {counts['rejected']}")
    not_failures = ("associations", "stored", "bytes", "warnings", "rejected", "received_bytes")
    failures = {k: v for k, v in counts.items() if v and k not in not_failures}
    if failures:
        lines.append("not stored: " + ", ".join(f"{name.replace('_', ' ')} {n}" for name, n in failures.items()))
    return "\n".join(lines)


def serve(config: ServerConfig) -> ServeResult:
    """Run ``hsscp storescp`` with ``config`` in this process until SIGTERM/SIGINT."""
    scp = StorageSCP(
        config.application_entity(),
        config.process_settings(),
        address=(config.bind, config.port),
        ssl_context=ssl_context(config),
    )
    return scp.run()


def _handles_store(evt_handlers: list | None) -> bool:
    from hsscp import events

    return bool(evt_handlers) and events.HandlerSet(evt_handlers).has(events.EVT_C_STORE)
