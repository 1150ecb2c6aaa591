"""A pre-fork supervisor: forks the processes of a program, keeps them alive, stops them.

The supervisor knows processes, not what they do. A :class:`Program` names
its roles (how many processes of each, how long each may take to stop) and
says what a child of a role runs and what to clean up when one dies; the
storage SCP (:mod:`workers.scp`) is one.

Signal handlers only queue the signal; the main loop handles it. Children
are reaped with ``waitpid(-1, WNOHANG)``, logged with their exit status and
replaced; one that exits with :data:`~workers.child.BOOT_FAILED` several
times in a row stops the program instead of respawning in a loop. Every
child beats a heartbeat from inside its own loop: one that stops beating is
condemned, asked to dump its stacks (continued first, in case it was
stopped), and killed a moment later. SIGTERM or SIGINT stop gracefully:
roles stop in the reverse of their start order, each with SIGTERM and up to
its stop timeout, then SIGKILL. A second SIGINT cuts the wait short.
"""

from __future__ import annotations

import collections
import faulthandler
import gc
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from workers.child import BOOT_FAILED, DUMP_STACKS, become_child, dump_stacks_on_signal
from workers.heartbeat import Heartbeat, HeartbeatTable

log = logging.getLogger("hsscp.supervisor")

BOOT_FAILURES_TOLERATED = 3  # in a row, per process slot
STACK_DUMP_WAIT = 1.0  # seconds a condemned process has to write its stacks before SIGKILL
LOOP_INTERVAL = 0.25  # the loop turns at least this often, signals or not
PROCESS_PREFIX = "hsscp-"  # children are named hsscp-<role>-<index> in ps and /proc/PID/comm
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP)


@dataclass(frozen=True)
class Role:
    """A kind of process: ``count`` of them, each allowed ``stop_timeout`` seconds after SIGTERM."""

    name: str
    count: int
    stop_timeout: float


class Program(Protocol):
    """What the supervisor runs."""

    roles: Sequence[Role]  # in start order; they stop in the reverse order

    def run_child(self, role: Role, index: int, heartbeat: Heartbeat) -> int:
        """In the forked child: do the role's work, beating ``heartbeat``; the exit code."""

    def child_exited(self, role: Role, index: int, pid: int) -> None:
        """In the supervisor: clean up after a child that is gone, whatever the cause."""

    def stop_accepting(self) -> None:
        """In the supervisor: the stop began; let go of what brings in new work."""


class System:
    """The calls through which the supervisor acts on processes (tests pass fakes)."""

    fork: Callable[[], int] = staticmethod(os.fork)
    waitpid: Callable[[int, int], tuple[int, int]] = staticmethod(os.waitpid)
    kill: Callable[[int, int], None] = staticmethod(os.kill)
    monotonic: Callable[[], float] = staticmethod(time.monotonic)


@dataclass
class _Child:
    role: Role
    index: int
    pid: int
    slot: int  # its heartbeat slot
    kill_at: float | None = None  # condemned: SIGKILL due then
    killed: bool = False


class Supervisor:
    def __init__(self, program: Program, heartbeat_timeout: float, system: System | None = None) -> None:
        self.program = program
        self.roles = tuple(program.roles)
        self.heartbeat_timeout = heartbeat_timeout
        self.system = system or System()
        offsets, total = {}, 0
        for role in self.roles:
            offsets[role.name] = total
            total += role.count
        self._slot_offsets = offsets
        self.heartbeats = HeartbeatTable(total, clock=self.system.monotonic)
        self.children: dict[int, _Child] = {}
        self.stopping = False
        self.exit_code = 0
        self._signals: collections.deque[int] = collections.deque()
        self._boot_failures: collections.Counter[tuple[str, int]] = collections.Counter()
        self.restarts: collections.Counter[str] = collections.Counter()  # role name -> replacements
        self._roles_to_stop: list[Role] = []
        self._stopping_role: Role | None = None
        self._stop_deadline = 0.0
        self._wakeup: tuple[int, int] | None = None

    # -- running -------------------------------------------------------------------

    def run(self) -> int:
        """Fork every child, supervise until stopped; the exit code (1 if a role cannot boot)."""
        self._wakeup = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in HANDLED_SIGNALS}
        dump_stacks_on_signal()  # the supervisor answers DUMP_STACKS as its children do
        # Everything loaded so far (pydicom's dictionaries above all) lives as long as
        # the process: keep it out of the collector's way, and shared with the children.
        gc.collect()
        gc.freeze()
        try:
            self.start()
            while not self.step():
                self._wait(LOOP_INTERVAL)
        finally:
            self.close()
            faulthandler.unregister(DUMP_STACKS)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for fd in self._wakeup:
                os.close(fd)
            self._wakeup = None
        return self.exit_code

    def start(self) -> None:
        """Fork every child, role by role in their order."""
        for role in self.roles:
            for index in range(role.count):
                self._spawn(role, index)

    def step(self) -> bool:
        """One turn of the loop: signals, reaping, heartbeats, the stop; True once all is stopped."""
        self._handle_signals()
        self._reap()
        self._kill_condemned()
        if self.stopping:
            return self._stop_progress()
        self._check_heartbeats()
        return False

    def signal_received(self, signum: int) -> None:
        """Queue a signal for the loop (all a signal handler may safely do)."""
        self._signals.append(signum)

    def close(self) -> None:
        """Kill and reap whatever is still running (the loop ended early or by an error)."""
        for child in self.children.values():
            self._signal(child.pid, signal.SIGKILL)
        for pid, child in list(self.children.items()):
            try:
                self.system.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.program.child_exited(child.role, child.index, pid)
        self.children.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signal_received(signum)
        try:
            os.write(self._wakeup[1], b"\0")
        except (BlockingIOError, TypeError):
            pass  # the pipe is full of wake-ups already, or the loop is over

    def _wait(self, timeout: float) -> None:
        readable, _, _ = select.select([self._wakeup[0]], [], [], timeout)
        if readable:
            try:
                while os.read(self._wakeup[0], 4096):
                    pass
            except BlockingIOError:
                pass

    # -- children ------------------------------------------------------------------

    def _spawn(self, role: Role, index: int) -> None:
        slot = self._slot_offsets[role.name] + index
        self.heartbeats.expect(slot, self.heartbeat_timeout)  # booting counts as one beat
        supervisor_pid = os.getpid()
        pid = self.system.fork()
        if pid:
            self.children[pid] = _Child(role, index, pid, slot)
            return
        code = 1
        try:
            become_child(supervisor_pid, f"{PROCESS_PREFIX}{role.name}-{index}", HANDLED_SIGNALS)
            if self._wakeup is not None:
                for fd in self._wakeup:
                    os.close(fd)
            code = self.program.run_child(role, index, self.heartbeats.heartbeat(slot, self.heartbeat_timeout))
        except BaseException:
            log.exception("%s %d crashed", role.name, index)
        finally:
            logging.shutdown()
            os._exit(code)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = self.system.waitpid(-1, os.WNOHANG)
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
        (log.debug if quiet else log.warning)(
            "%s %d (pid %d) ended with %s", child.role.name, child.index, child.pid, how
        )
        self.program.child_exited(child.role, child.index, child.pid)
        if self.stopping:
            return
        key = (child.role.name, child.index)
        if code == BOOT_FAILED:
            self._boot_failures[key] += 1
            if self._boot_failures[key] >= BOOT_FAILURES_TOLERATED:
                log.error("%s %d cannot start; stopping the server", child.role.name, child.index)
                self.exit_code = 1
                self._begin_stop()
                return
        else:
            self._boot_failures[key] = 0
        self.restarts[child.role.name] += 1
        self._spawn(child.role, child.index)

    def _check_heartbeats(self) -> None:
        for child in self.children.values():
            if child.kill_at is None and self.heartbeats.overdue(child.slot):
                log.error(
                    "%s %d (pid %d) stopped beating: dumping its stacks, then killing it",
                    child.role.name, child.index, child.pid,
                )
                # Condemned first: should it run again, its next beat ends it, so it does
                # no more work (a writer answering jobs) after this verdict.
                self.heartbeats.condemn(child.slot)
                # The dump is asked for before the process is continued, so that a stopped
                # process writes where it was stuck before it runs on.
                self._signal(child.pid, DUMP_STACKS)
                self._signal(child.pid, signal.SIGCONT)
                child.kill_at = self.system.monotonic() + STACK_DUMP_WAIT

    def _kill_condemned(self) -> None:
        now = self.system.monotonic()
        for child in self.children.values():
            if child.kill_at is not None and not child.killed and now >= child.kill_at:
                child.killed = True
                self._signal(child.pid, signal.SIGKILL)

    def _signal(self, pid: int, signum: int) -> None:
        try:
            self.system.kill(pid, signum)
        except ProcessLookupError:
            pass

    # -- stopping ------------------------------------------------------------------

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

    def _begin_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.program.stop_accepting()
        self._roles_to_stop = list(self.roles)
        self._stop_next_role()

    def _stop_next_role(self) -> None:
        role = self._roles_to_stop.pop()
        self._stopping_role = role
        self._stop_deadline = self.system.monotonic() + role.stop_timeout
        for child in self._children_of(role):
            self._signal(child.pid, signal.SIGTERM)

    def _stop_progress(self) -> bool:
        """Advance the stop; True once every child is gone."""
        while True:
            left = self._children_of(self._stopping_role)
            if left:
                if self.system.monotonic() > self._stop_deadline:
                    for child in left:
                        self._signal(child.pid, signal.SIGKILL)
                return False
            if not self._roles_to_stop:
                return not self.children
            self._stop_next_role()

    def _children_of(self, role: Role | None) -> list[_Child]:
        return [child for child in self.children.values() if child.role is role]
