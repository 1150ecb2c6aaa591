"""What a file system allows a durable SCP: K writers storing files one after another, an fsync each.

An SCP that answers an instance only once its file is synced, fed by K
senders that each wait for the answer before they send the next (DCMTK
``storescu``), can store no faster than K writers that do nothing but
that: each of K threads takes its share of the files and, one after
another, creates each nameless in the output (``O_TMPFILE``, or a
temporary name where there is none), writes it whole, fsyncs it and gives
it its name, as ``--fsync file`` does. No network, no parsing, no hop
between processes: the bytes are read into memory first. ``hsscp bench``
measures this on hsscp's disk just before each of its runs, so a durable
SCP's rate can be read against what fsync on that disk allows, not only
against SCPs that never sync.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

from hsscp.storage.durable import has_tmpfile, link_tmpfile, open_tmpfile
from hsscp.storage.local import write_all

__all__ = ["store_synced"]


def store_synced(sources: Sequence[str], out: str, writers: int) -> float:
    """Store a copy of every file in ``sources`` under ``out``, synced, with ``writers`` threads; the seconds."""
    contents = [_read(path) for path in sources]
    nameless = has_tmpfile(out)
    shares = [list(range(start, len(contents), writers)) for start in range(writers)]
    failures: list[BaseException] = []

    def write_share(share: list[int]) -> None:
        try:
            for index in share:
                _store_one(contents[index], os.path.join(out, f"{index:08d}.dcm"), out, nameless)
        except BaseException as exc:  # the measurement is void: say so, never a rate from half the files
            failures.append(exc)

    threads = [threading.Thread(target=write_share, args=(share,), daemon=True) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    return elapsed


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _store_one(content: bytes, path: str, folder: str, nameless: bool) -> None:
    if nameless:
        fd = open_tmpfile(folder)
        temp = None
    else:
        temp = f"{path}.part"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, [memoryview(content)])
        os.fsync(fd)
        if temp is None:
            link_tmpfile(fd, path)
        else:
            os.rename(temp, path)
    finally:
        os.close(fd)
