"""Two SCPs on one output folder, as nodes behind a balancer share one: neither removes what the other writes.

A node that starts cleans the temporary folder of what dead processes left;
a data set another live SCP is spooling there at that moment must survive
it and be stored whole when its last bytes come.
"""

from __future__ import annotations

import os
import time

from hsscp.indications import MessageReceived

from .datagen import dataset_of, instance, write_instance
from .raw_peers import Requestor, serving, studies

SERVER_ARGS = ("--spool-threshold", "64K", "--inline-limit", "0", "--layout", "flat")


def spool_files(out) -> list[str]:
    folder = out / ".hsscp-tmp"
    return [name for name in os.listdir(folder) if name.endswith(".part")] if folder.exists() else []


def test_an_scp_that_starts_leaves_the_spool_of_another_on_the_same_folder_alone(tmp_path):
    out = tmp_path / "out"
    path = write_instance(tmp_path, instance(1, pixel_bytes=400_000, study=next(studies)))
    with serving(out, *SERVER_ARGS, workers=1, writers=1) as first:
        peer = Requestor(first.port).associate()
        wire = peer.store_wire(path)
        half = len(wire) // 2
        peer.send(wire[:half])
        deadline = time.monotonic() + 10
        while not spool_files(out):
            assert time.monotonic() < deadline, "the first SCP spooled nothing"
            time.sleep(0.02)
        (spooling,) = spool_files(out)
        with serving(out, *SERVER_ARGS, workers=1, writers=1):  # its start-up cleans the shared folder
            assert spooling in spool_files(out), "the second SCP removed a spool file the first was writing"
            peer.send(wire[half:])
            (response,) = [i for i in peer.receive(MessageReceived) if isinstance(i, MessageReceived)]
        assert response.command.status == 0x0000
        peer.close()
    assert dataset_of(out / f"{path.stem}.dcm") == dataset_of(path)
    assert spool_files(out) == []
