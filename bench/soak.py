"""Soak test of the multiprocess SCP: mixed load for minutes while its processes are killed.

``python -m bench.soak --duration 600`` (``make soak``) starts ``hsscp storescp``
on a free loopback port and, for ``--duration`` seconds, drives it with

* hsscp SCU threads (the AE API), each sending batches of instances over
  one association after another, a file that got no answer sent again on
  the next association;
* DCMTK ``storescu`` processes, their per-file answers read from ``-v``;
* requestors that stop a C-STORE half-way, by A-ABORT or by dropping the
  connection;
* hostile connections: garbage, lying lengths, P-DATA before association,
  silence;

with instances from 2 KB to 6 MB (some past the spool threshold), while a
random worker (now and then a writer) is SIGKILLed at random intervals.
Then it stops the server with SIGTERM and checks the output folder against
what the senders were told: every instance acknowledged with 0x0000 must be
there, byte for byte; nothing cut half-way may be; no temporary file may
remain. It prints the counts and exits non-zero if anything was lost.
Not part of the test suite: it runs for minutes.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hsscp import AE, dimse, items, pdu
from hsscp.engine import Engine, Role
from hsscp.indications import AssociationAccepted
from tests.datagen import (
    CT_IMAGE_STORAGE,
    ROOT,
    dataset_of,
    instance,
    stored_files,
    temp_files,
    write_instance,
)
from tests.hsscp_process import RunningSCP
from tests.peers import dcmtk_env, free_port, require_binary, wait_for_port

HOST = "127.0.0.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
VERIFICATION = "1.2.840.10008.1.1"
SPOOL_THRESHOLD = 1024 * 1024
# Instance sizes (pixel data bytes) and how often each is sent.
SIZES = {2 * 1024: 60, 64 * 1024: 25, 512 * 1024: 10, 3 * 1024 * 1024: 4, 6 * 1024 * 1024: 1}
DCMTK_SIZES = {2 * 1024: 70, 64 * 1024: 25, 512 * 1024: 5}


@dataclass
class Ledger:
    """What the senders sent and were told, shared by all of them."""

    expected: dict[str, str] = field(default_factory=dict)  # uid -> sha256 of the data set sent
    sends: collections.Counter = field(default_factory=collections.Counter)  # uid -> times sent
    statuses: dict[str, list[int]] = field(default_factory=lambda: collections.defaultdict(list))
    cut: set[str] = field(default_factory=set)  # sent only in part: must never be stored
    counts: collections.Counter = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self, uid: str, digest: str, by: str) -> None:
        with self.lock:
            self.expected[uid] = digest
            self.sends[uid] += 1
            self.counts[f"sent by {by}"] += 1

    def answered(self, uid: str, status: int | None) -> None:
        with self.lock:
            if status is None:
                self.counts["no response"] += 1
            else:
                self.statuses[uid].append(status)

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n


@dataclass
class Soak:
    port: int
    work: Path
    ledger: Ledger
    stop: threading.Event
    pixels: bytes
    serial: collections.Counter = field(default_factory=collections.Counter)

    def new_instance(self, rng: random.Random, sender: str, sizes: dict[int, int]) -> tuple[Path, str, str]:
        """A fresh instance on disk: (path, SOP Instance UID, sha256 of its data set)."""
        size = rng.choices(list(sizes), weights=list(sizes.values()))[0]
        with self.ledger.lock:
            self.serial[sender] += 1
            number = self.serial[sender]
            sender_id = list(self.serial).index(sender) + 1
        ds = instance(number, pixel_bytes=8, series=sender_id)
        side = int((size // 2) ** 0.5)
        ds.Rows = ds.Columns = side
        ds.PixelData = self.pixels[: side * side * 2]
        ds.SOPInstanceUID = f"{ROOT}.9.{os.getpid()}.{sender_id}.{number}"  # unique to this run and sender
        folder = self.work / "src" / sender
        folder.mkdir(parents=True, exist_ok=True)
        path = write_instance(folder, ds)
        return path, ds.SOPInstanceUID, hashlib.sha256(dataset_of(path)).hexdigest()


# -- senders -------------------------------------------------------------------------


def hsscp_sender(soak: Soak, name: str, seed: int) -> None:
    """Batches over one association after another; a file that got no answer goes again."""
    rng = random.Random(seed)
    ae = AE(name.upper())
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(CT_IMAGE_STORAGE, EXPLICIT_LE)
    retry: tuple[Path, str, str] | None = None
    while not soak.stop.is_set():
        assoc = ae.associate(HOST, soak.port, ae_title="HSSCP", max_pdu=rng.choice([0, 16384, 65536, 1 << 20]))
        if not assoc.is_established:
            soak.ledger.count("associations refused")
            time.sleep(0.1)
            continue
        for _ in range(rng.randint(1, 30)):
            if soak.stop.is_set():
                break
            path, uid, digest = retry or soak.new_instance(rng, name, SIZES)
            soak.ledger.sent(uid, digest, "hsscp")
            response = assoc.send_c_store(str(path))
            status = response.Status if "Status" in response else None
            soak.ledger.answered(uid, status)
            if status is None:
                retry = (path, uid, digest)  # its worker died under it, most likely
                break
            retry = None
            path.unlink()
            if not assoc.is_established:
                break
        if assoc.is_established:
            assoc.release()


SENDING = re.compile(r"Sending file: (\S+)")
RESPONSE = re.compile(r"Received Store Response \((.+?)\)")


def dcmtk_sender(soak: Soak, name: str, seed: int) -> None:
    """storescu -v over a batch of files; the answer to each file is read from its log."""
    rng = random.Random(seed)
    storescu = require_binary("storescu")
    while not soak.stop.is_set():
        batch = [soak.new_instance(rng, name, DCMTK_SIZES) for _ in range(rng.randint(3, 15))]
        by_path = {str(path): (uid, digest) for path, uid, digest in batch}
        done = subprocess.run(
            [storescu, "-v", "-R", "-aet", name.upper(), "-to", "30", "-ta", "30", "-td", "30",
             HOST, str(soak.port), *by_path],
            env=dcmtk_env(), capture_output=True, text=True, timeout=300,
        )
        current = None
        for line in (done.stdout + done.stderr).splitlines():
            if match := SENDING.search(line):
                current = by_path.get(match.group(1))
                if current is not None:
                    soak.ledger.sent(current[0], current[1], "dcmtk")
            elif (match := RESPONSE.search(line)) and current is not None:
                soak.ledger.answered(current[0], 0 if match.group(1) == "Success" else 0xFFFF)
                current = None
        if current is not None:
            soak.ledger.answered(current[0], None)
        for path, _, _ in batch:
            path.unlink()


def cutting_sender(soak: Soak, name: str, seed: int) -> None:
    """Start C-STOREs and stop them half-way, by A-ABORT or by dropping the connection."""
    rng = random.Random(seed)
    while not soak.stop.wait(rng.uniform(0.2, 1.0)):
        path, uid, _ = soak.new_instance(rng, name, {512 * 1024: 1, 3 * 1024 * 1024: 1})
        engine = Engine(Role.REQUESTOR)
        engine.request_association(pdu.AAssociateRQ(
            "HSSCP", name.upper(),
            presentation_contexts=[items.PresentationContextRQ(1, CT_IMAGE_STORAGE, [EXPLICIT_LE])],
            user_information=items.UserInformation([items.MaximumLength(16384)]),
        ))
        try:
            with socket.create_connection((HOST, soak.port), timeout=10) as sock:
                engine.connection_made()
                sock.sendall(b"".join(bytes(b) for b in engine.pop_output()))
                indications: list = []
                while not indications:
                    data = sock.recv(65536)
                    if not data:
                        break
                    indications = engine.receive_data(data)
                if not any(isinstance(i, AssociationAccepted) for i in indications):
                    soak.ledger.count("associations refused")
                    continue
                request = dimse.CStoreRQ(1, CT_IMAGE_STORAGE, uid)
                wire = b"".join(bytes(b) for b in engine.send_message(1, request, dataset_of(path)))
                with soak.ledger.lock:
                    soak.ledger.cut.add(uid)
                sock.sendall(wire[: rng.randint(len(wire) // 4, 3 * len(wire) // 4)])
                if rng.random() < 0.5:
                    sock.sendall(b"".join(bytes(b) for b in engine.abort()))
                soak.ledger.count("transfers cut half-way")
        except OSError:
            soak.ledger.count("cut transfers that failed to start")
        finally:
            path.unlink()


def hostile_peer(soak: Soak, name: str, seed: int) -> None:
    """Connections no real peer makes; the server must shrug them off."""
    rng = random.Random(seed)
    request = pdu.encode_pdu(pdu.AAssociateRQ(
        "HSSCP", "HOSTILE",
        presentation_contexts=[items.PresentationContextRQ(1, VERIFICATION, [IMPLICIT_LE])],
        user_information=items.UserInformation([items.MaximumLength(16384)]),
    ))
    attacks = [
        lambda: rng.randbytes(rng.randint(1, 4096)),
        lambda: bytes([rng.randint(1, 7), 0]) + (0xFFFFFFFF).to_bytes(4, "big") + bytes(1024),
        lambda: pdu.encode_pdu(pdu.PDataTF([pdu.PDV(1, 3, bytes(64))])),
        lambda: request[: rng.randint(1, len(request) - 1)],
        lambda: bytes(request[:10]) + rng.randbytes(64) + bytes(request[74:]),
        lambda: b"",
    ]
    while not soak.stop.wait(rng.uniform(0.05, 0.5)):
        try:
            with socket.create_connection((HOST, soak.port), timeout=5) as sock:
                sock.sendall(rng.choice(attacks)())
                sock.settimeout(rng.uniform(0.0, 2.0) or None)
                try:
                    sock.recv(65536)
                except OSError:
                    pass
            soak.ledger.count("hostile connections")
        except OSError:
            soak.ledger.count("hostile connections refused")


# -- the server, its killer and its memory ---------------------------------------------------


def start_server(out: Path, log: Path, workers: int, writers: int) -> RunningSCP:
    port = free_port()
    argv = [sys.executable, "-m", "hsscp", "storescp", "--bind", HOST, "-od", str(out),
            "--workers", str(workers), "--writers", str(writers), "--layout", "flat",
            "--spool-threshold", str(SPOOL_THRESHOLD), "--fsync", "none", "-ta", "5", "-tn", "15",
            "--max-associations", "48", "--graceful-timeout", "10", str(port)]
    with open(log, "wb") as sink:  # a file, not a pipe: minutes of log must not fill a pipe
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    scp = RunningSCP(proc, port, out)
    wait_for_port(port, proc=proc, timeout=20)
    scp.wait_for_children(workers, writers)
    return scp


def killer(scp: RunningSCP, soak: Soak, workers: int, writers: int, interval: tuple[float, float], seed: int) -> None:
    rng = random.Random(seed)
    while not soak.stop.wait(rng.uniform(*interval)):
        children = scp.children()
        role = "writer" if rng.random() < 0.2 else "worker"
        victims = sorted(pid for name, pid in children.items() if name.startswith(f"hsscp-{role}"))
        if not victims:
            continue
        victim = rng.choice(victims)
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            continue
        soak.ledger.count(f"{role}s killed")
        try:
            scp.wait_for_children(workers, writers, timeout=30, exclude=(victim,))
        except TimeoutError:
            soak.ledger.count(f"{role}s not replaced within 30 s")


def peak_rss(scp: RunningSCP, soak: Soak, peaks: dict[str, int]) -> None:
    """Highest VmHWM (KiB) seen in any worker and any writer, sampled until the stop."""
    while True:
        for name, pid in scp.children().items():
            role = "worker" if name.startswith("hsscp-worker") else "writer"
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks[role] = max(peaks.get(role, 0), int(line.split()[1]))
        if soak.stop.wait(0.5):
            return


# -- the verdict ---------------------------------------------------------------------------------


def verify(ledger: Ledger, out: Path) -> dict[str, int]:
    stored = stored_files(out)
    acknowledged = {uid for uid, statuses in ledger.statuses.items() if 0 in statuses}
    lost = corrupt = 0
    for uid, file in stored.items():
        expected = ledger.expected.get(uid)
        if expected is None or hashlib.sha256(dataset_of(file)).hexdigest() != expected:
            corrupt += 1
    for uid in acknowledged:
        file = stored.get(uid)
        if file is None or hashlib.sha256(dataset_of(file)).hexdigest() != ledger.expected[uid]:
            lost += 1
    return {
        "sent": sum(ledger.sends.values()),
        "distinct instances sent": len(ledger.sends),
        "acknowledged": len(acknowledged),
        "stored": len(stored),
        "lost": lost,
        "duplicates": sum(n - 1 for n in ledger.sends.values() if n > 1),
        "stored without acknowledgement": len(set(stored) - acknowledged),
        "failure statuses": sum(1 for s in ledger.statuses.values() for status in s if status != 0),
        "corrupt files": corrupt,
        "cut transfers stored": len(ledger.cut & set(stored)),
        "temporary files left": len(temp_files(out)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Soak the multiprocess SCP under mixed load and kills.")
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--hsscp-senders", type=int, default=4)
    parser.add_argument("--dcmtk-senders", type=int, default=2)
    parser.add_argument("--kill-every", type=float, nargs=2, default=(3.0, 12.0), metavar=("MIN", "MAX"),
                        help="seconds between kills, drawn uniformly (default 3 12)")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--work", type=Path, help="working folder (default: a new one under /tmp, removed after)")
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="hsscp-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    out, log = work / "out", work / "server.log"
    print(f"soak: {args.duration:.0f} s, {args.workers} workers, {args.writers} writers, seed {args.seed}, in {work}",
          flush=True)
    rng = random.Random(args.seed)
    pixels = rng.randbytes(max(SIZES))
    ledger, stop = Ledger(), threading.Event()
    scp = start_server(out, log, args.workers, args.writers)
    soak = Soak(scp.port, work, ledger, stop, pixels)
    peaks: dict[str, int] = {}
    roles = [
        *[(hsscp_sender, f"h{i}") for i in range(args.hsscp_senders)],
        *[(dcmtk_sender, f"d{i}") for i in range(args.dcmtk_senders)],
        (cutting_sender, "c0"),
        (hostile_peer, "x0"),
    ]
    threads = [threading.Thread(target=role, args=(soak, name, rng.randrange(2**32)), name=name, daemon=True)
               for role, name in roles]
    threads.append(threading.Thread(target=killer, name="killer", daemon=True, args=(
        scp, soak, args.workers, args.writers, tuple(args.kill_every), rng.randrange(2**32))))
    threads.append(threading.Thread(target=peak_rss, name="rss", args=(scp, soak, peaks), daemon=True))
    exit_code = None
    try:
        for thread in threads:
            thread.start()
        started = time.monotonic()
        while (left := args.duration - (time.monotonic() - started)) > 0:
            time.sleep(min(10.0, left))
            with ledger.lock:  # the senders go on adding
                sent = sum(ledger.sends.values())
                acknowledged = sum(1 for s in ledger.statuses.values() if 0 in s)
                killed = ledger.counts["workers killed"], ledger.counts["writers killed"]
            print(f"  {time.monotonic() - started:5.0f} s: {sent} sent, {acknowledged} acknowledged, "
                  f"{killed[0]} workers and {killed[1]} writers killed", flush=True)
            if scp.proc.poll() is not None:
                print("the server died", file=sys.stderr)
                break
        stop.set()
        for thread in threads:
            thread.join(330)
        stuck = [thread.name for thread in threads if thread.is_alive()]
        exit_code = scp.stop(timeout=120)
    finally:
        stop.set()
        if scp.proc.poll() is None:
            os.killpg(scp.proc.pid, signal.SIGKILL)
            scp.proc.wait()
    results = verify(ledger, out)
    counts = ledger.counts
    print(f"{'sent':<32}{results['sent']} (hsscp {counts['sent by hsscp']}, dcmtk {counts['sent by dcmtk']}),"
          f" {results['distinct instances sent']} distinct instances")
    for name in ("acknowledged", "stored", "lost", "duplicates", "stored without acknowledgement",
                 "failure statuses", "corrupt files", "cut transfers stored", "temporary files left"):
        print(f"{name:<32}{results[name]}")
    print(f"{'no response':<32}{counts['no response']}")
    print(f"{'cut half-way':<32}{counts['transfers cut half-way']}")
    print(f"{'hostile connections':<32}{counts['hostile connections']}")
    print(f"{'refused associations':<32}{counts['associations refused']}")
    print(f"{'killed':<32}{counts['workers killed']} workers, {counts['writers killed']} writers"
          + (f" (not replaced in time: {counts['workers not replaced within 30 s'] + counts['writers not replaced within 30 s']})"
             if counts["workers not replaced within 30 s"] + counts["writers not replaced within 30 s"] else ""))
    print(f"{'peak RSS (VmHWM)':<32}workers {peaks.get('worker', 0) / 1024:.0f} MiB, "
          f"writers {peaks.get('writer', 0) / 1024:.0f} MiB")
    print(f"{'server exit code':<32}{exit_code}")
    if stuck:
        print(f"senders still running at the end: {', '.join(stuck)}")
    bad = (results["lost"] or results["corrupt files"] or results["cut transfers stored"]
           or results["temporary files left"] or exit_code != 0 or stuck or not results["acknowledged"])
    if bad:
        print(f"FAILED; server log: {log}", file=sys.stderr)
        return 1
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
