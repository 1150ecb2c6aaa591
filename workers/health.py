"""Whether the storage SCP can take work: free space, a writable output folder, not draining.

A :class:`HealthMonitor` lives in the supervisor. A thread of its own checks
the output folder at most every :data:`CHECK_INTERVAL` seconds (a
``statvfs`` and an unnamed temporary file made and dropped), never per
instance, and publishes one flag in shared memory that the workers read per
C-STORE: below ``min_free_space`` free bytes they answer 0xA700 without
writing, and store again once space is back. ``/readyz`` reports
:meth:`HealthMonitor.readiness`.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from dataclasses import dataclass

from workers.stats import SharedStats

log = logging.getLogger("hsscp.supervisor")

CHECK_INTERVAL = 1.0  # seconds between two checks of the output folder


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str  # why not, in words; "ready" when ready


class HealthMonitor:
    """The output folder's state, refreshed by :meth:`check`; the readiness derived from it."""

    def __init__(self, output_directory: str, temp_directory: str, min_free_space: int,
                 shared: SharedStats) -> None:
        self.output_directory = output_directory
        self.temp_directory = temp_directory  # probed for writability; spool files live here
        self.min_free_space = min_free_space
        self.shared = shared
        self.free_bytes: int | None = None
        self.writable = True
        self.draining = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def low_on_space(self) -> bool:
        return self.free_bytes is not None and self.free_bytes < self.min_free_space

    def check(self) -> None:
        """Look at the output folder once; tell the workers whether to refuse stores."""
        try:
            stat = os.statvfs(self.output_directory)
            self.free_bytes = stat.f_bavail * stat.f_frsize
        except OSError as exc:
            log.warning("cannot read the free space of %s: %s", self.output_directory, exc)
            self.free_bytes = None
        self.writable = _can_write_in(self.temp_directory)
        refuse = self.low_on_space
        if refuse != bool(self.shared.refuse_stores.value):
            if refuse:
                log.warning("free space %d bytes is below --min-free-space %d: C-STOREs are refused (0xA700)",
                            self.free_bytes, self.min_free_space)
            else:
                log.warning("free space is back (%s bytes): C-STOREs are stored again", self.free_bytes)
            self.shared.refuse_stores.value = int(refuse)

    def readiness(self) -> Readiness:
        if self.draining:
            return Readiness(False, "draining: stopping after SIGTERM")
        if not self.writable:
            return Readiness(False, f"the output folder {self.output_directory} is not writable")
        if self.low_on_space:
            return Readiness(False, f"free space {self.free_bytes} bytes is below {self.min_free_space}")
        return Readiness(True, "ready")

    def spool_bytes(self) -> int:
        """Bytes in the temporary folder: spool files and files being written."""
        total = 0
        try:
            with os.scandir(self.temp_directory) as entries:
                for entry in entries:
                    try:
                        total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        pass  # renamed into place or removed meanwhile
        except OSError:
            return 0
        return total

    def start(self) -> None:
        self.check()
        self._thread = threading.Thread(target=self._run, name="hsscp-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=CHECK_INTERVAL * 2)

    def _run(self) -> None:
        while not self._stop.wait(CHECK_INTERVAL):
            try:
                self.check()
            except Exception:  # the check must not die silently and leave a stale verdict
                log.exception("health check failed")


def _can_write_in(folder: str) -> bool:
    """Whether a file can be made in ``folder``: an unnamed one, so a crash leaves nothing."""
    try:
        fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return False
        return _can_write_named(folder)  # a file system without O_TMPFILE
    os.close(fd)
    return True


def _can_write_named(folder: str) -> bool:
    path = os.path.join(folder, f"health.{os.getpid()}.probe")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    os.close(fd)
    os.unlink(path)
    return True
