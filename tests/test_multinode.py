"""Three hsscp nodes behind HAProxy (leastconn, send-proxy-v2, /readyz checks), one shared folder.

Each node runs in its own network namespace (see tests/netns_nodes.py). The
test shows: associations spread over the nodes; the peer the nodes log is the
client's address, not HAProxy's; SIGTERM drains a node (HAProxy sends it no
new association once /readyz fails, its open one finishes); SIGKILL of a
node mid-load loses no acknowledged instance and leaves no partial file,
and the senders reconnect through the node that is left.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

import pytest

from hsscp import AE

from .datagen import CT_IMAGE_STORAGE, dataset_of, stored_files, write_instances
from .netns_nodes import haproxy_in_front, hsscp_nodes
from .ops_helpers import sample, wait_for_readiness

EXPLICIT_LE = "1.2.840.10008.1.2.1"
SENDERS = 4


def accepted(node) -> int:
    return int(sample(node.scrape(), "hsscp_associations_total", result="accepted"))


def new_scu() -> AE:
    ae = AE("MULTINODE")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(CT_IMAGE_STORAGE, EXPLICIT_LE)
    return ae


def send_all(port: int, paths: list[Path], acks: dict[str, int], per_association: int) -> None:
    """Send ``paths``, ``per_association`` to an association, reconnecting after an abort."""
    ae, pending = new_scu(), list(paths)
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        assoc = ae.associate("127.0.0.1", port, ae_title="HSSCP")
        if not assoc.is_established:
            time.sleep(0.1)
            continue
        sent = 0
        while pending and assoc.is_established and sent < per_association:
            status = assoc.send_c_store(str(pending[0]))
            if "Status" not in status:  # the node died under us: send this one again
                break
            acks[pending.pop(0).stem] = status.Status
            sent += 1
        if assoc.is_established:
            assoc.release()


def load(port: int, paths: list[Path], acks: dict[str, int], per_association: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=send_all, args=(port, paths[i::SENDERS], acks, per_association))
               for i in range(SENDERS)]
    for thread in threads:
        thread.start()
    return threads


@pytest.fixture
def cluster(tmp_path):
    shared = tmp_path / "shared"
    with hsscp_nodes(3, shared, "--max-associations", "8", "--graceful-timeout", "30") as nodes, \
            haproxy_in_front(nodes, tmp_path, maxconn=8) as balancer:
        yield nodes, balancer, shared


@pytest.mark.interop
def test_nodes_behind_haproxy_share_the_load_drain_and_survive_a_kill(cluster, tmp_path):
    nodes, balancer, shared = cluster
    sources = {p.stem: p for p in write_instances(tmp_path / "src", 240, pixel_bytes=16384)}
    paths = list(sources.values())
    acks: dict[str, int] = {}

    # 1. Spread: concurrent senders, short associations, land on every node.
    for thread in load(balancer.port, paths[:48], acks, per_association=4):
        thread.join()
    spread = [accepted(node) for node in nodes]
    assert all(n > 0 for n in spread), spread
    assert sum(spread) == 12

    # 2. Drain: an association open on node 2 finishes after SIGTERM; no new one goes there.
    draining = nodes[2]
    ae = new_scu()
    held = []
    while accepted(draining) == spread[2] or not held:
        assoc = ae.associate("127.0.0.1", balancer.port, ae_title="HSSCP")
        assert assoc.is_established
        held.append(assoc)
        assert len(held) < 10
    on_draining = held.pop()  # the last one opened is the one node 2 took
    for assoc in held:
        assoc.release()
    draining.signal(signal.SIGTERM)
    wait_for_readiness(9100, False, host=draining.address)
    time.sleep(0.6)  # inter 200 ms, fall 1: HAProxy has seen the 503
    before = accepted(draining)
    for thread in load(balancer.port, paths[48:96], acks, per_association=4):
        thread.join()
    assert accepted(draining) == before  # HAProxy sent it nothing new
    assert on_draining.send_c_store(str(paths[96])).Status == 0x0000
    acks[paths[96].stem] = 0x0000
    on_draining.release()
    assert draining.proc.wait(timeout=30) == 0

    # 3. SIGKILL of node 0 mid-load: the senders go on through node 1.
    victim, survivor = nodes[0], nodes[1]
    survivor_before = accepted(survivor)
    threads = load(balancer.port, paths[97:], acks, per_association=8)
    deadline = time.monotonic() + 60
    while len(acks) < 97 + 40:
        assert time.monotonic() < deadline, len(acks)
        time.sleep(0.02)
    victim_accepted = accepted(victim)
    victim.kill_all()
    for thread in threads:
        thread.join()
    survivor_after = accepted(survivor)
    assert survivor_after > survivor_before

    # Every acknowledged instance is in the shared folder, whole; no final name holds less.
    stored = stored_files(shared)
    assert sorted(acks) == sorted(sources)
    lost = [uid for uid, status in acks.items() if status == 0x0000 and uid not in stored]
    assert lost == []
    for uid, path in stored.items():
        assert dataset_of(path) == dataset_of(sources[uid]), f"{uid} is not what was sent"

    # The nodes saw the client (127.0.0.1), never HAProxy's address on the veth (10.203.0.x).
    survivor.signal(signal.SIGTERM)
    assert survivor.proc.wait(timeout=30) == 0
    for node in nodes:
        log = node.log()
        assert "from 10.203." not in log
        assert re.search(r"association MULTINODE -> HSSCP from 127\.0\.0\.1:\d+: \d+ stored", log), log
    print(f"\nassociations per node after spreading: {spread}; node 0 at its kill: {victim_accepted}; "
          f"node 1: {survivor_before} before the kill, {survivor_after} at the end; "
          f"acknowledged {sum(s == 0 for s in acks.values())}, stored {len(stored)}, lost {len(lost)}")
