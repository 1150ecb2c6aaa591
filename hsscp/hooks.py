"""Hook commands: DCMTK storescp's ``--exec-on-reception`` / ``--exec-on-eostudy``, without a shell.

A configured command is split into words once, at start-up, by POSIX shell
rules (:func:`shlex.split`; ``#`` starts no comment). Each run substitutes
DCMTK's placeholders *inside* those words:

======  ================================================================
``#p``  the folder: the stored file's, or the study's / series' folder
        for an end-of-study / end-of-series hook
``#f``  the stored file's name (reception hooks only, as in DCMTK)
``#a``  the calling AE title of the peer
``#c``  the called AE title the peer addressed
``#r``  the peer's address (IP)
======  ================================================================

The result is an argv list given to exec; no shell ever runs. So a value from
the wire (an AE title such as ``a;rm -rf ~`` or ``$(touch x)``) stays one
literal argument: it can neither add, remove nor split a word, nor be read by
a shell. Substitution is one pass, so a value holding ``#c`` is not
substituted again. Other ``#`` sequences stay as written (DCMTK does the same).

Rules checked at start-up (:class:`HookConfigError`): the command has a
program; the program (the first word) holds no placeholder, so the peer never
chooses what runs; a hook uses only the placeholders its kind provides.
A program that parses options may see a value that starts with ``-``: write
``--`` before the placeholders if it matters to it.

NUL bytes: exec cannot pass them (C strings end there). A value holding one
is refused with :class:`HookValueError` and :meth:`HookRunner.run` logs that
run as refused: it is never run with a value cut short.

:class:`HookRunner` runs rendered argv lists from an asyncio (or uvloop) loop
and never blocks it: :meth:`HookRunner.submit` returns at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import signal
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from hsscp.errors import InvalidInput

__all__ = [
    "COMPLETION_PLACEHOLDERS",
    "PLACEHOLDERS",
    "RECEPTION_PLACEHOLDERS",
    "CommandTemplate",
    "HookConfigError",
    "HookRunner",
    "HookStats",
    "HookValueError",
]

_log = logging.getLogger(__name__)

# Placeholder -> the key of its value in the mapping given to render().
PLACEHOLDERS: Mapping[str, str] = {
    "#p": "folder",
    "#f": "filename",
    "#a": "calling_ae",
    "#c": "called_ae",
    "#r": "peer",
}
RECEPTION_PLACEHOLDERS = frozenset(PLACEHOLDERS)
# DCMTK's --exec-on-eostudy has every placeholder but #f: no single file.
COMPLETION_PLACEHOLDERS = RECEPTION_PLACEHOLDERS - {"#f"}

# The capture group makes re.split alternate literal, letter, literal, ...
_PLACEHOLDER = re.compile(r"#([pfacr])")
_READ_CHUNK = 65536


class HookConfigError(InvalidInput):
    """A configured hook command cannot be used (found at start-up)."""


class HookValueError(InvalidInput):
    """A value cannot fill a placeholder: missing, not str, or holding a NUL byte."""


@dataclass(frozen=True, slots=True)
class CommandTemplate:
    """A hook command split into words once; :meth:`render` fills the placeholders.

    Each word is kept as ``re.split`` parts: literals at even indexes, the
    letters of placeholders at odd ones.
    """

    text: str
    words: tuple[tuple[str, ...], ...]

    @classmethod
    def parse(cls, text: str, allowed: Collection[str] = RECEPTION_PLACEHOLDERS) -> CommandTemplate:
        """Split ``text`` into words (POSIX rules); refuse what cannot run safely."""
        try:
            words = shlex.split(text, comments=False, posix=True)
        except ValueError as exc:
            raise HookConfigError(f"hook command {text!r}: {exc}") from None
        if not words or not words[0]:
            raise HookConfigError(f"hook command {text!r} names no program")
        parts = tuple(tuple(_PLACEHOLDER.split(word)) for word in words)
        if len(parts[0]) > 1:
            raise HookConfigError(
                f"hook command {text!r}: the program {words[0]!r} must not hold a placeholder"
            )
        used = {f"#{letter}" for word in parts for letter in word[1::2]}
        refused = sorted(used - set(allowed))
        if refused:
            raise HookConfigError(
                f"hook command {text!r}: {', '.join(refused)} not available for this hook"
            )
        return cls(text, parts)

    @property
    def placeholders(self) -> frozenset[str]:
        """The placeholders the command uses."""
        return frozenset(f"#{letter}" for word in self.words for letter in word[1::2])

    def render(self, values: Mapping[str, str]) -> list[str]:
        """The argv list for one run: as many words as configured, values inside them.

        ``values`` maps the names in :data:`PLACEHOLDERS` (``folder``,
        ``filename``, ``calling_ae``, ``called_ae``, ``peer``) to strings; only
        the placeholders the command uses need one. Raises
        :class:`HookValueError` for a missing value, or one holding a NUL byte.
        """
        argv = []
        for parts in self.words:
            if len(parts) == 1:
                argv.append(parts[0])
                continue
            pieces = list(parts)
            for index in range(1, len(pieces), 2):
                pieces[index] = _value(values, pieces[index])
            argv.append("".join(pieces))
        return argv


def _value(values: Mapping[str, str], letter: str) -> str:
    name = PLACEHOLDERS[f"#{letter}"]
    value = values.get(name)
    if not isinstance(value, str):
        raise HookValueError(f"no text value for #{letter} ({name}): got {value!r}")
    if "\0" in value:
        raise HookValueError(f"value of #{letter} ({name}) holds a NUL byte: {value!r}")
    return value


@dataclass(slots=True)
class HookStats:
    """What a :class:`HookRunner` did since it was made."""

    started: int = 0
    succeeded: int = 0
    failed: int = 0  # could not start, or a non-zero exit status
    timed_out: int = 0
    dropped: int = 0  # the queue was full, or the runner was closing
    refused: int = 0  # a value exec cannot take (NUL byte, missing value)


@dataclass(slots=True, eq=False)
class _Job:
    argv: tuple[str, ...]
    tag: str
    process: asyncio.subprocess.Process | None = None
    finished: asyncio.Task[None] | None = None
    tail: bytearray = field(default_factory=bytearray)
    trimmed: bool = False


class HookRunner:
    """Runs hook argv lists in the background: bounded concurrency, queue and time.

    - At most ``concurrency`` hooks run at once; up to ``queue_size`` more wait
      behind them. When the queue is full a new run is dropped with a
      WARNING: the caller (a C-STORE on its way to its response) never waits.
    - Each run gets its own session and process group
      (``start_new_session=True``), stdin from ``/dev/null`` and one pipe for
      stdout and stderr, of which the last ``output_tail`` bytes are kept.
    - A run ends when the program has exited and its output is closed. After
      ``timeout`` seconds its process group gets SIGTERM, and SIGKILL
      ``kill_grace`` seconds later. (A background child that keeps the output
      open keeps the run going: redirect its output to detach it.)
    - Failures (cannot start, non-zero exit, signal, timeout) are logged at
      WARNING with the hook's tag, argv[0], the status and the output tail;
      success at DEBUG.

    Call :meth:`submit` and :meth:`run` from the event loop's thread (any
    asyncio loop, uvloop included); they return at once. :meth:`close` at
    shutdown.
    """

    def __init__(
        self,
        *,
        concurrency: int = 4,
        queue_size: int = 1000,
        timeout: float = 60.0,
        kill_grace: float = 2.0,
        output_tail: int = 4096,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if concurrency < 1 or queue_size < 0 or timeout <= 0 or kill_grace < 0:
            raise ValueError(
                "hook runner: needs concurrency >= 1, queue_size >= 0, timeout > 0, kill_grace >= 0"
            )
        self._concurrency = concurrency
        self._queue_size = queue_size
        self._timeout = timeout
        self._kill_grace = kill_grace
        self._output_tail = output_tail
        self._env = dict(env) if env is not None else None
        self._queue: deque[_Job] = deque()
        self._running: dict[asyncio.Task[None], _Job] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False  # close() was called: take no new runs
        self._abandoned = False  # close()'s deadline passed, or the loop is going away
        self.stats = HookStats()

    @property
    def running(self) -> int:
        """How many hooks run now."""
        return len(self._running)

    @property
    def queued(self) -> int:
        """How many hooks wait for a free slot."""
        return len(self._queue)

    def run(self, template: CommandTemplate, values: Mapping[str, str], tag: str) -> bool:
        """Render ``template`` with ``values`` and :meth:`submit` it.

        A value exec cannot take (see :meth:`CommandTemplate.render`) refuses
        this run: logged at WARNING, counted, and False returned.
        """
        try:
            argv = template.render(values)
        except HookValueError as exc:
            self.stats.refused += 1
            _log.warning("hook %s (%s): run refused: %s", tag, template.words[0][0], exc)
            return False
        return self.submit(argv, tag)

    def submit(self, argv: Sequence[str], tag: str) -> bool:
        """Start ``argv`` now, or queue it; False if it was dropped or refused."""
        job = _Job(tuple(argv), tag)
        if not job.argv or any("\0" in word for word in job.argv):
            self.stats.refused += 1
            _log.warning("hook %s: run refused: argv %r is empty or holds a NUL byte", tag, argv)
            return False
        if self._closing:
            return self._drop(job, "the hook runner is closing")
        if len(self._running) < self._concurrency:
            self._start(job)
        elif len(self._queue) < self._queue_size:
            self._queue.append(job)
        else:
            return self._drop(job, f"{self._queue_size} runs already wait")
        self._idle.clear()
        return True

    async def close(self, timeout: float) -> None:
        """Stop taking runs; wait up to ``timeout`` s for queued and running ones.

        At the deadline, runs that have not started are dropped (logged) and the
        running ones are stopped as on their own timeout (SIGTERM, then SIGKILL
        after the grace period), so this takes at most about ``timeout`` plus
        twice the grace period.
        """
        self._closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return
        except TimeoutError:
            pass
        self._abandoned = True
        self._drop_queued()
        jobs = [job for job in self._running.values() if job.finished is not None]
        await asyncio.gather(*(self._stop(job) for job in jobs))
        # Runs still starting see _abandoned and stop themselves.
        if self._running:
            await asyncio.wait(list(self._running))

    def _drop(self, job: _Job, why: str) -> bool:
        self.stats.dropped += 1
        _log.warning("hook %s (%s): run dropped: %s", job.tag, job.argv[0], why)
        return False

    def _start(self, job: _Job) -> None:
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._running[task] = job
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        job = self._running.pop(task)
        if task.cancelled():
            self._abandoned = True  # the loop is going away: start nothing more
        elif task.exception() is not None:
            _log.error(
                "hook %s (%s): runner error", job.tag, job.argv[0], exc_info=task.exception()
            )
        if self._abandoned:
            self._drop_queued()
        elif self._queue:
            self._start(self._queue.popleft())
        if not self._running and not self._queue:
            self._idle.set()

    def _drop_queued(self) -> None:
        if self._queue:
            _log.warning("hook runner stopping: %d queued runs dropped", len(self._queue))
            self.stats.dropped += len(self._queue)
            self._queue.clear()

    async def _run(self, job: _Job) -> None:
        try:
            job.process = await asyncio.create_subprocess_exec(
                *job.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                env=self._env,
            )
        except (OSError, ValueError) as exc:
            self.stats.failed += 1
            _log.warning("hook %s (%s): cannot start: %s", job.tag, job.argv[0], exc)
            return
        self.stats.started += 1
        job.finished = asyncio.get_running_loop().create_task(self._collect(job))
        try:
            if self._abandoned:
                await self._stop(job)
            elif not await _done_within(job.finished, self._timeout):
                self.stats.timed_out += 1
                await self._stop(job)
                _log.warning(
                    "hook %s (%s): timed out after %gs, its process group was killed; output: %s",
                    job.tag,
                    job.argv[0],
                    self._timeout,
                    _tail_text(job),
                )
                return
        except asyncio.CancelledError:
            # The loop is shutting down under us: leave no orphan behind.
            _signal_group(job.process.pid, signal.SIGKILL)
            raise
        self._report(job)

    async def _collect(self, job: _Job) -> None:
        """Keep the output's last bytes until it closes, then reap the program."""
        assert job.process is not None and job.process.stdout is not None
        while chunk := await job.process.stdout.read(_READ_CHUNK):
            job.tail += chunk
            excess = len(job.tail) - self._output_tail
            if excess > 0:
                del job.tail[:excess]
                job.trimmed = True
        await job.process.wait()

    async def _stop(self, job: _Job) -> None:
        """SIGTERM the run's process group, SIGKILL it after the grace period."""
        assert job.process is not None and job.finished is not None
        for signum in (signal.SIGTERM, signal.SIGKILL):
            _signal_group(job.process.pid, signum)
            if await _done_within(job.finished, self._kill_grace):
                return
        _log.warning(
            "hook %s (%s): output still open after SIGKILL: a child left its process group",
            job.tag,
            job.argv[0],
        )
        job.finished.cancel()

    def _report(self, job: _Job) -> None:
        assert job.process is not None
        status = job.process.returncode
        if status == 0:
            self.stats.succeeded += 1
            _log.debug("hook %s (%s): done", job.tag, job.argv[0])
            return
        self.stats.failed += 1
        _log.warning(
            "hook %s (%s): failed, %s; output: %s",
            job.tag,
            job.argv[0],
            _describe_status(status),
            _tail_text(job),
        )


async def _done_within(task: asyncio.Task[None], seconds: float) -> bool:
    """Wait up to ``seconds`` for ``task`` without cancelling it; True if it is done."""
    await asyncio.wait({task}, timeout=seconds)
    return task.done()


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass  # the whole group has exited already


def _describe_status(status: int | None) -> str:
    if status is None:
        return "no exit status"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


def _tail_text(job: _Job) -> str:
    """The kept output as one log-safe line (repr: no raw newlines reach the log)."""
    text = job.tail.decode("utf-8", "replace")
    return ("..." if job.trimmed else "") + repr(text)
