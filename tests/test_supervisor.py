"""The supervisor's process management, with fork, waitpid, kill and the clock faked (as gunicorn's tests do)."""

from __future__ import annotations

import os
import signal

import pytest

from workers.child import BOOT_FAILED, DECLARED_STUCK, DUMP_STACKS
from workers.heartbeat import HeartbeatTable
from workers.supervisor import BOOT_FAILURES_TOLERATED, STACK_DUMP_WAIT, Role, Supervisor

HEARTBEAT_TIMEOUT = 10.0


def exited(code: int) -> int:
    """A wait status: exit with ``code``."""
    return code << 8


def killed(signum: int) -> int:
    """A wait status: ended by ``signum``."""
    return signum


class FakeSystem:
    """Processes that exist only as pids: forks return new ones, exits are queued by the test."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._next_pid = 100
        self.exits: list[tuple[int, int]] = []
        self.signals: list[tuple[int, int]] = []

    def fork(self) -> int:
        self._next_pid += 1
        return self._next_pid

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        if pid != -1:
            return pid, killed(signal.SIGKILL)
        return self.exits.pop(0) if self.exits else (0, 0)

    def kill(self, pid: int, signum: int) -> None:
        self.signals.append((pid, signum))

    def monotonic(self) -> float:
        return self.now

    def take_signals(self) -> list[tuple[int, int]]:
        signals, self.signals = self.signals, []
        return signals


class FakeProgram:
    def __init__(self, writers: int = 1, workers: int = 2) -> None:
        self.writer = Role("writer", writers, stop_timeout=5.0)
        self.worker = Role("worker", workers, stop_timeout=30.0)
        self.roles = (self.writer, self.worker)
        self.exited: list[tuple[str, int, int]] = []
        self.stopped_accepting = 0

    def run_child(self, role, index, heartbeat) -> int:
        raise AssertionError("a fake fork never returns in the child")

    def child_exited(self, role, index, pid) -> None:
        self.exited.append((role.name, index, pid))

    def stop_accepting(self) -> None:
        self.stopped_accepting += 1


@pytest.fixture
def system() -> FakeSystem:
    return FakeSystem()


@pytest.fixture
def program() -> FakeProgram:
    return FakeProgram()


@pytest.fixture
def supervisor(program: FakeProgram, system: FakeSystem) -> Supervisor:
    supervisor = Supervisor(program, HEARTBEAT_TIMEOUT, system)
    supervisor.start()
    return supervisor


def pids_of(supervisor: Supervisor, role: str) -> list[int]:
    return [pid for pid, child in supervisor.children.items() if child.role.name == role]


def test_start_forks_every_role_in_order(supervisor: Supervisor) -> None:
    started = [(child.role.name, child.index) for child in supervisor.children.values()]
    assert started == [("writer", 0), ("worker", 0), ("worker", 1)]
    assert sorted(supervisor.children) == list(supervisor.children)  # forked in that order


def test_a_child_that_dies_is_reaped_cleaned_up_and_replaced(supervisor, program, system) -> None:
    dead = pids_of(supervisor, "worker")[1]
    system.exits.append((dead, killed(signal.SIGKILL)))
    assert supervisor.step() is False
    assert program.exited == [("worker", 1, dead)]
    assert dead not in supervisor.children
    (replacement,) = [c for c in supervisor.children.values() if c.role.name == "worker" and c.index == 1]
    assert replacement.pid > dead and len(supervisor.children) == 3
    assert not supervisor.stopping


def test_a_role_that_cannot_boot_stops_the_program_instead_of_respawning(supervisor, program, system) -> None:
    for attempt in range(1, BOOT_FAILURES_TOLERATED + 1):
        (pid,) = [p for p, c in supervisor.children.items() if c.role.name == "worker" and c.index == 0]
        system.exits.append((pid, exited(BOOT_FAILED)))
        supervisor.step()
        assert supervisor.stopping is (attempt == BOOT_FAILURES_TOLERATED)
    assert supervisor.exit_code == 1
    assert program.stopped_accepting == 1
    assert not [c for c in supervisor.children.values() if c.role.name == "worker" and c.index == 0]


def test_a_successful_boot_in_between_resets_the_count(supervisor, system) -> None:
    def exit_worker_0(status: int) -> None:
        (pid,) = [p for p, c in supervisor.children.items() if c.role.name == "worker" and c.index == 0]
        system.exits.append((pid, status))
        supervisor.step()

    for _ in range(BOOT_FAILURES_TOLERATED - 1):
        exit_worker_0(exited(BOOT_FAILED))
    exit_worker_0(exited(1))  # it booted, then crashed: a fresh start
    for _ in range(BOOT_FAILURES_TOLERATED - 1):
        exit_worker_0(exited(BOOT_FAILED))
    assert not supervisor.stopping


def test_a_child_that_stops_beating_dumps_its_stacks_then_is_killed(supervisor, system) -> None:
    stuck, *beating = supervisor.children.values()
    system.now += HEARTBEAT_TIMEOUT + 0.1
    for child in beating:
        supervisor.heartbeats.expect(child.slot, HEARTBEAT_TIMEOUT)
    supervisor.step()
    # Dump first, then continue: a stopped process writes where it was stuck.
    assert system.take_signals() == [(stuck.pid, DUMP_STACKS), (stuck.pid, signal.SIGCONT)]
    assert supervisor.heartbeats.condemned(stuck.slot)
    system.now += STACK_DUMP_WAIT / 2
    supervisor.step()
    assert system.take_signals() == []  # its stacks are still being written
    system.now += STACK_DUMP_WAIT / 2
    supervisor.step()
    supervisor.step()
    assert system.take_signals() == [(stuck.pid, signal.SIGKILL)]  # once
    system.exits.append((stuck.pid, killed(signal.SIGKILL)))
    supervisor.step()
    (replacement,) = [c for c in supervisor.children.values() if c.slot == stuck.slot]
    assert not supervisor.heartbeats.condemned(replacement.slot)


def test_graceful_stop_drains_roles_in_reverse_start_order(supervisor, program, system) -> None:
    writers, workers = pids_of(supervisor, "writer"), pids_of(supervisor, "worker")
    supervisor.signal_received(signal.SIGTERM)
    assert supervisor.step() is False
    assert program.stopped_accepting == 1
    assert system.take_signals() == [(pid, signal.SIGTERM) for pid in workers]
    system.exits.append((workers[0], exited(0)))
    system.now += program.worker.stop_timeout + 0.1
    assert supervisor.step() is False
    assert system.take_signals() == [(workers[1], signal.SIGKILL)]  # past its deadline
    system.exits.append((workers[1], killed(signal.SIGKILL)))
    assert supervisor.step() is False
    assert system.take_signals() == [(pid, signal.SIGTERM) for pid in writers]  # now, not before
    system.exits.append((writers[0], exited(0)))
    assert supervisor.step() is True
    assert supervisor.children == {} and supervisor.exit_code == 0
    assert sorted(pid for _, _, pid in program.exited) == sorted(workers + writers)  # none respawned


def test_a_second_interrupt_kills_at_once(supervisor, system) -> None:
    workers = pids_of(supervisor, "worker")
    supervisor.signal_received(signal.SIGINT)
    supervisor.step()
    system.take_signals()
    supervisor.signal_received(signal.SIGINT)
    supervisor.step()
    assert system.take_signals() == [(pid, signal.SIGKILL) for pid in workers]


def test_close_kills_and_reaps_what_is_left(supervisor, program, system) -> None:
    pids = list(supervisor.children)
    supervisor.close()
    assert system.take_signals() == [(pid, signal.SIGKILL) for pid in pids]
    assert [pid for _, _, pid in program.exited] == pids
    assert supervisor.children == {}


def test_a_beat_promises_the_next_within_the_timeout_plus_an_allowance(system) -> None:
    table = HeartbeatTable(1, clock=system.monotonic)
    beat = table.heartbeat(0, timeout=2.0)
    beat.beat(allowance=30.0)
    system.now += 31.0
    assert not table.overdue(0)  # a long job was announced
    beat.beat()
    system.now += 2.1
    assert table.overdue(0)


def test_a_condemned_process_exits_at_its_next_beat() -> None:
    table = HeartbeatTable(1)
    beat = table.heartbeat(0, timeout=2.0)
    table.condemn(0)
    pid = os.fork()
    if pid == 0:
        try:
            beat.beat()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == DECLARED_STUCK
