"""Hook commands: DCMTK's placeholders filled inside words, run as argv lists by real processes.

The hooks are tiny scripts in tmp_path that record what they were given, so
each test sees what the program really received: its argv, whether a shell
ran, how many of its kind ran at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from hsscp.hooks import (
    COMPLETION_PLACEHOLDERS,
    CommandTemplate,
    HookConfigError,
    HookRunner,
    HookValueError,
)

LOGGER = "hsscp.hooks"
VALUES = {
    "folder": "/data/in/1.2.3/1.2.3.4",
    "filename": "1.2.3.4.5.dcm",
    "calling_ae": "MODALITY",
    "called_ae": "HSSCP",
    "peer": "127.0.0.1",
}
HOSTILE = [
    "A&B",
    "A|B",
    "A;B",
    "$HOME",
    "`id`",
    "two words",
    "it's",
    '"quoted"',
    "line\nbreak",
    "-rf",
    "#c",
    "",
]

Runner = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(params=["asyncio", "uvloop"])
def run_loop(request: pytest.FixtureRequest) -> Runner:
    """Run a coroutine to completion in a fresh loop of either kind."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)

    return run


def script(folder: Path, name: str, body: str) -> str:
    """An executable Python script (fast start: no site) that runs ``body``."""
    path = folder / name
    path.write_text(f"#!{sys.executable} -IS\nimport json, os, sys, time\n{body}\n")
    path.chmod(0o755)
    return str(path)


def recorder(folder: Path) -> tuple[str, Path]:
    """A hook that appends its arguments (after the output path) as one JSON line."""
    program = script(
        folder,
        "record.py",
        "with open(sys.argv[1], 'a') as out:\n    out.write(json.dumps(sys.argv[2:]) + '\\n')",
    )
    return program, folder / "calls.jsonl"


def calls(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition never came"
        time.sleep(0.02)


async def arrived(path: Path, seconds: float = 10.0) -> None:
    """Wait, without blocking the loop, until a hook has created ``path``."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never came"
        await asyncio.sleep(0.01)


def gone(pid: int) -> bool:
    """The process exited (a zombie counts: it runs nothing any more)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def template(text: str, **kwargs: Any) -> CommandTemplate:
    return CommandTemplate.parse(text, **kwargs)


# --- parsing and rendering: pure ---------------------------------------------------------


def test_parse_splits_once_by_posix_rules_and_hash_starts_no_comment() -> None:
    command = template("/bin/hook --dir='#p' \"a b\" #f --tag=x#ay c\\ d")
    assert command.render(VALUES) == [
        "/bin/hook",
        "--dir=/data/in/1.2.3/1.2.3.4",
        "a b",
        "1.2.3.4.5.dcm",
        "--tag=xMODALITYy",
        "c d",
    ]
    assert command.placeholders == {"#p", "#f", "#a"}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "names no program"),
        ("   \n\t", "names no program"),
        ("''", "names no program"),
        ("/bin/hook 'unclosed", "No closing quotation"),
        ("#a --x", "must not hold a placeholder"),
        ("/opt/#c/run #p", "must not hold a placeholder"),
    ],
)
def test_parse_refuses_commands_that_cannot_run_safely(text: str, why: str) -> None:
    with pytest.raises(HookConfigError, match=why):
        template(text)


def test_completion_hooks_refuse_the_file_placeholder_at_start_up() -> None:
    assert template("/bin/zip-study #p #a #c #r", allowed=COMPLETION_PLACEHOLDERS)
    with pytest.raises(HookConfigError, match="#f not available"):
        template("/bin/zip-study #p/#f", allowed=COMPLETION_PLACEHOLDERS)


@pytest.mark.parametrize("value", HOSTILE)
def test_a_value_stays_inside_its_one_word(value: str) -> None:
    command = template("/bin/hook --calling=#a #a end")
    argv = command.render({**VALUES, "calling_ae": value})
    assert argv == ["/bin/hook", f"--calling={value}", value, "end"]


def test_substitution_is_one_pass_and_other_hashes_stay_literal() -> None:
    command = template("/bin/hook #a-#c #x ## #")
    argv = command.render({**VALUES, "calling_ae": "#c#p", "called_ae": "#a"})
    assert argv == ["/bin/hook", "#c#p-#a", "#x", "##", "#"]


def test_render_refuses_nul_bytes_and_missing_values() -> None:
    command = template("/bin/hook #a #f")
    with pytest.raises(HookValueError, match="NUL"):
        command.render({**VALUES, "calling_ae": "A\0B"})
    with pytest.raises(HookValueError, match=r"#f \(filename\)"):
        command.render({"calling_ae": "A"})
    # Only the placeholders used need a value.
    assert template("/bin/hook #a").render({"calling_ae": "A"}) == ["/bin/hook", "A"]


# --- running real processes ---------------------------------------------------------------


def test_reception_hook_gets_every_placeholder(tmp_path: Path, run_loop: Runner) -> None:
    program, out = recorder(tmp_path)
    command = template(f"{program} {out} #p #f #a #c #r '#p/#f'")

    async def main() -> HookRunner:
        runner = HookRunner(timeout=10)
        assert runner.run(command, VALUES, "exec-on-reception")
        await runner.close(10)
        return runner

    runner = run_loop(main())
    assert calls(out) == [
        [
            VALUES["folder"],
            VALUES["filename"],
            "MODALITY",
            "HSSCP",
            "127.0.0.1",
            VALUES["folder"] + "/" + VALUES["filename"],
        ]
    ]
    assert (runner.stats.started, runner.stats.succeeded, runner.stats.failed) == (1, 1, 0)


def test_shell_metacharacters_reach_the_hook_literally_and_no_shell_runs(
    tmp_path: Path, run_loop: Runner
) -> None:
    program, out = recorder(tmp_path)
    sentinel = tmp_path / "injected"
    hostile = HOSTILE + [
        f"$(touch {sentinel})",
        f"`touch {sentinel}`",
        f"; touch {sentinel}",
        f"x && touch {sentinel}",
        f"x | touch {sentinel}",
        f"'; touch {sentinel}; '",
    ]
    command = template(f"{program} {out} #a --called=#c")

    async def main() -> None:
        runner = HookRunner(concurrency=4, timeout=10)
        for value in hostile:
            assert runner.run(command, {"calling_ae": value, "called_ae": value}, "rx")
        await runner.close(30)

    run_loop(main())
    received = sorted(calls(out))
    assert received == sorted([[value, f"--called={value}"] for value in hostile])
    assert not sentinel.exists()


def test_a_nul_byte_refuses_the_run_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    program, out = recorder(tmp_path)
    command = template(f"{program} {out} #a")

    async def main() -> HookRunner:
        runner = HookRunner()
        assert not runner.run(command, {"calling_ae": "A\0; touch x"}, "exec-on-reception")
        assert not runner.submit([program, "a\0b"], "exec-on-reception")
        assert not runner.submit([], "exec-on-reception")
        await runner.close(1)
        return runner

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        runner = asyncio.run(main())
    assert runner.stats.refused == 3 and runner.stats.started == 0
    assert not out.exists()
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 3
    assert "exec-on-reception" in refusals[0].getMessage()
    assert program in refusals[0].getMessage()


def test_a_failing_hook_logs_its_exit_status_and_output_tail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, run_loop: Runner
) -> None:
    failing = script(tmp_path, "fail.py", "sys.stderr.write('boom: no space left\\n'); sys.exit(3)")
    chatty = script(
        tmp_path,
        "chatty.py",
        "sys.stdout.write('x' * 100_000); sys.stdout.flush()\n"
        "sys.stderr.write('END'); sys.stderr.flush(); sys.exit(1)",
    )
    quiet = script(tmp_path, "ok.py", "print('fine')")

    async def main() -> HookRunner:
        runner = HookRunner(output_tail=4096, timeout=10)
        runner.submit([failing, "arg"], "exec-on-eostudy")
        runner.submit([chatty], "exec-on-reception")
        runner.submit([quiet], "exec-on-reception")
        runner.submit([str(tmp_path / "no-such-program")], "exec-on-eoseries")
        await runner.close(10)
        return runner

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        runner = run_loop(main())
    assert (runner.stats.succeeded, runner.stats.failed) == (1, 3)
    warnings = {r.getMessage() for r in caplog.records if r.levelno == logging.WARNING}
    (fail,) = [m for m in warnings if failing in m]
    assert "exec-on-eostudy" in fail and "exit status 3" in fail and "boom: no space left" in fail
    (long,) = [m for m in warnings if chatty in m]
    assert "exit status 1" in long and long.endswith("END'")
    assert 4096 <= len(long) < 4096 + 200  # the tail only, marked as cut
    assert "...'" in long
    (missing,) = [m for m in warnings if "no-such-program" in m]
    assert "exec-on-eoseries" in missing and "cannot start" in missing
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(quiet in m and "done" in m for m in debug)
    assert not any(quiet in m for m in warnings)


def test_a_hanging_hook_is_killed_with_its_process_group_after_the_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, run_loop: Runner
) -> None:
    pids = tmp_path / "pids"
    # The hook starts a child of its own, says so, and hangs; both ignore SIGTERM.
    hanging = script(
        tmp_path,
        "hang.py",
        "import signal, subprocess\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        "open(sys.argv[1], 'w').write(f'{os.getpid()} {child.pid}')\n"
        "print('started, now hanging', flush=True)\n"
        "time.sleep(60)",
    )

    async def main() -> HookRunner:
        runner = HookRunner(timeout=1.0, kill_grace=0.2)
        runner.submit([hanging, str(pids)], "exec-on-eostudy")
        await runner.close(20)
        return runner

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        runner = run_loop(main())
    assert runner.stats.timed_out == 1
    hook_pid, child_pid = map(int, pids.read_text().split())
    wait_until(lambda: gone(hook_pid) and gone(child_pid))
    (message,) = [r.getMessage() for r in caplog.records if hanging in r.getMessage()]
    assert "exec-on-eostudy" in message and "timed out after 1s" in message
    assert "started, now hanging" in message


def test_never_more_than_n_at_once_and_the_rest_wait_in_the_queue(
    tmp_path: Path, run_loop: Runner
) -> None:
    # Each run counts the runs alive with it, under a lock, and records the count.
    counter = tmp_path / "counter"
    counter.write_text("0 0")
    counting = script(
        tmp_path,
        "count.py",
        "import fcntl\n"
        "def change(step):\n"
        "    with open(sys.argv[1], 'r+') as f:\n"
        "        fcntl.flock(f, fcntl.LOCK_EX)\n"
        "        now, most = map(int, f.read().split())\n"
        "        now += step\n"
        "        f.seek(0); f.truncate(); f.write(f'{now} {max(now, most)}')\n"
        "change(1)\n"
        "time.sleep(0.2)\n"
        "change(-1)",
    )

    async def main() -> HookRunner:
        runner = HookRunner(concurrency=2, queue_size=10, timeout=20)
        for _ in range(6):
            assert runner.submit([counting, str(counter)], "exec-on-reception")
        assert (runner.running, runner.queued) == (2, 4)
        await runner.close(30)
        return runner

    runner = run_loop(main())
    alive, most = map(int, counter.read_text().split())
    assert alive == 0 and 1 <= most <= 2
    assert runner.stats.succeeded == 6


def test_a_full_queue_drops_the_run_with_a_warning_and_never_blocks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    program, out = recorder(tmp_path)

    async def main() -> tuple[HookRunner, list[bool]]:
        runner = HookRunner(concurrency=1, queue_size=1, timeout=10)
        accepted = [
            runner.submit([program, str(out), str(n)], "exec-on-reception") for n in range(3)
        ]
        await runner.close(10)
        return runner, accepted

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        runner, accepted = asyncio.run(main())
    assert accepted == [True, True, False]
    assert sorted(calls(out)) == [["0"], ["1"]]
    assert runner.stats.dropped == 1
    (drop,) = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert "exec-on-reception" in drop and program in drop


def test_submit_returns_at_once_and_the_uvloop_loop_keeps_running(tmp_path: Path) -> None:
    go = tmp_path / "go"
    saw = tmp_path / "saw"
    # The hook can only finish if the loop goes on after submit and creates the go file.
    waiting = script(
        tmp_path,
        "wait.py",
        "while not os.path.exists(sys.argv[1]):\n"
        "    time.sleep(0.01)\n"
        "open(sys.argv[2], 'w').write('go seen')",
    )

    async def main() -> tuple[HookRunner, int]:
        runner = HookRunner(timeout=10)
        assert runner.submit([waiting, str(go), str(saw)], "exec-on-reception")
        assert not saw.exists()
        ticks = 0
        await asyncio.sleep(0)
        go.write_text("")
        while runner.running:
            ticks += 1
            await asyncio.sleep(0.01)
        await runner.close(1)
        return runner, ticks

    runner, ticks = uvloop.run(main())
    assert saw.read_text() == "go seen"
    assert runner.stats.succeeded == 1 and runner.stats.timed_out == 0
    assert ticks > 0


def test_close_drains_what_it_can_then_kills_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, run_loop: Runner
) -> None:
    program, out = recorder(tmp_path)
    pid_file = tmp_path / "pid"
    hanging = script(
        tmp_path, "hang.py", "open(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(60)"
    )

    async def main() -> tuple[HookRunner, bool]:
        runner = HookRunner(concurrency=1, timeout=60, kill_grace=0.2)
        runner.submit([program, str(out), "before"], "rx")
        runner.submit([hanging, str(pid_file)], "eostudy")
        runner.submit([program, str(out), "never"], "rx")
        await arrived(pid_file)
        await runner.close(0.5)
        late = runner.submit([program, str(out), "after close"], "rx")
        return runner, late

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        runner, late = run_loop(main())
    assert not late
    assert calls(out) == [["before"]]
    assert runner.stats.dropped == 2  # the queued one at the deadline, the one after close
    assert (runner.running, runner.queued) == (0, 0)
    wait_until(lambda: gone(int(pid_file.read_text())))
    assert any(hanging in r.getMessage() and "SIGTERM" in r.getMessage() for r in caplog.records)
