"""hsscp nodes each in a network namespace of its own, behind a real HAProxy on 127.0.0.1.

Each node gets a veth pair: the host end and the node end hold the two
addresses of one /30 carved from 10.203.0.0/24, a range used only here
(nothing is routed anywhere else: no default route, no forwarding). The
nodes share one output folder, as nodes behind a load balancer share
storage. Everything made (namespaces, links, processes) is undone by the
context managers, whatever happens in the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .ops_helpers import scrape, wait_for_readiness
from .peers import free_port, wait_for_port

SUBNET = "10.203.0"  # /24; pair i is 10.203.0.(4i+1) host side, (4i+2) node side, a /30 each
DICOM_PORT = 11112
METRICS_PORT = 9100


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run([*prefix, "ip", *args], check=check, capture_output=True, text=True, timeout=30)


@dataclass
class Node:
    index: int
    netns: str
    host_link: str
    address: str
    log_path: Path
    proc: subprocess.Popen | None = None
    output: str = field(default="", repr=False)

    def scrape(self) -> dict:
        return scrape(METRICS_PORT, host=self.address)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the node's supervisor only (SIGTERM: the node drains)."""
        self.proc.send_signal(signum)

    def kill_all(self) -> None:
        """SIGKILL to the whole node at once: supervisor, workers and writers."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def network_namespaces(count: int) -> Iterator[list[tuple[str, str, str]]]:
    """``count`` namespaces, each linked to the host: [(netns, host link, node address)]."""
    tag = f"{os.getpid() % 100000}"
    made: list[tuple[str, str, str]] = []
    try:
        for i in range(count):
            netns, host_link, node_link = f"hsscp-{tag}-{i}", f"hsh{tag}{i}", f"hsn{tag}{i}"
            host_address, node_address = f"{SUBNET}.{4 * i + 1}", f"{SUBNET}.{4 * i + 2}"
            ip("netns", "add", netns)
            made.append((netns, host_link, node_address))
            ip("link", "add", host_link, "type", "veth", "peer", "name", node_link)
            ip("link", "set", node_link, "netns", netns)
            ip("addr", "add", f"{host_address}/30", "dev", host_link)
            ip("link", "set", host_link, "up")
            ip("addr", "add", f"{node_address}/30", "dev", node_link, netns=netns)
            ip("link", "set", node_link, "up", netns=netns)
            ip("link", "set", "lo", "up", netns=netns)
        yield made
    finally:
        for netns, host_link, _ in made:
            ip("link", "del", host_link, check=False)  # takes its peer in the namespace with it
            ip("netns", "del", netns, check=False)


@contextlib.contextmanager
def hsscp_nodes(count: int, shared: Path, *args: str) -> Iterator[list[Node]]:
    """``count`` hsscp nodes (1 worker, 1 writer each) with --proxy-protocol and --metrics."""
    logs = Path(tempfile.mkdtemp(prefix="hsscp-nodes-"))
    with network_namespaces(count) as spaces:
        nodes = [Node(i, netns, link, address, logs / f"node{i}.log")
                 for i, (netns, link, address) in enumerate(spaces)]
        try:
            for node in nodes:
                argv = ["ip", "netns", "exec", node.netns, sys.executable, "-m", "hsscp", "storescp",
                        "--bind", node.address, "-od", str(shared), "--workers", "1", "--writers", "1",
                        "--proxy-protocol", "--metrics", f"{node.address}:{METRICS_PORT}", *args,
                        str(DICOM_PORT)]
                with open(node.log_path, "wb") as log:
                    node.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL, start_new_session=True,
                                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
            for node in nodes:
                wait_for_port(DICOM_PORT, 30, host=node.address, proc=node.proc)
                wait_for_readiness(METRICS_PORT, True, host=node.address)
            yield nodes
        finally:
            for node in nodes:
                if node.proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(node.proc.pid, signal.SIGKILL)
                    node.proc.wait(timeout=30)


HAPROXY_CONFIG = """
global
    maxconn 256
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout queue 30s
    retries 3
    option redispatch
frontend ready
    bind 127.0.0.1:{ready}
    tcp-request connection reject
frontend dicom
    bind 127.0.0.1:{front}
    default_backend hsscp
backend hsscp
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server send-proxy-v2 check port {metrics} inter 200ms fall 1 rise 2 maxconn {maxconn}
{servers}
"""


@dataclass
class Balancer:
    port: int
    proc: subprocess.Popen


@contextlib.contextmanager
def haproxy_in_front(nodes: list[Node], folder: Path, maxconn: int) -> Iterator[Balancer]:
    from .peers import running
    from .test_proxy_protocol import _haproxy_binary

    front, ready = free_port(), free_port()
    servers = "\n".join(f"    server node{n.index} {n.address}:{DICOM_PORT}" for n in nodes)
    config = folder / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(ready=ready, front=front, metrics=METRICS_PORT,
                                            maxconn=maxconn, servers=servers))
    with running([_haproxy_binary(), "-db", "-f", str(config)], ready_port=ready) as proc:
        time.sleep(1.0)  # the first health checks: every node marked up (rise 2 x 200 ms)
        yield Balancer(front, proc)
