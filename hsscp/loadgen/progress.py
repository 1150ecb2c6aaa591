"""A one-line live progress display on stderr, shown only on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

INTERVAL = 0.25  # seconds between refreshes


class ProgressLine:
    def __init__(self, noun: str, total: int | None, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.noun = noun
        self.total = total
        self._start = time.monotonic()
        self._shown = False

    def update(self, done: int, failed: int, nbytes: int) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = done / elapsed
        line = f"{done} {self.noun}"
        if self.total:
            filled = min(20, 20 * (done + failed) // self.total)
            line = f"[{'#' * filled}{'.' * (20 - filled)}] {done}/{self.total} {self.noun}"
        line += f"  {rate:,.0f}/s  {nbytes / elapsed / 1e6:,.1f} MB/s  {failed} failed  {elapsed:,.1f} s"
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
