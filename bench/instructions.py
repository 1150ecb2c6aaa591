"""Instructions per stored instance on the store path, counted by valgrind: a cost guard for noisy machines.

    python -m bench.instructions [--datasets tiny,ct] [--fsync file] [--journal]

Seconds on a shared machine swing by tens of percent; instruction counts
do not. This runs the path one C-STORE takes through a worker and a writer,
in one process and without sockets, under ``valgrind --tool=callgrind``,
counting only the loop over N instances after a few warm-up ones (start-up,
imports and set-up are not counted), and prints instructions per instance:

the requestor engine encodes each C-STORE into 16 KiB PDUs; the bytes are
read, as the worker reads them, into the shared-memory arena through a
``Landing`` into a ``StoreSink``; the acceptor engine parses them; the job
is framed and parsed as on the worker-writer socket; the writer's batch
handler stores it (``Storage`` on a tmpfs: check, File Meta, write,
fsync by policy, rename; the journal if asked); the result is framed and
parsed back and the C-STORE-RSP encoded and decoded.

Kernel work (the write and fsync themselves, socket hops) is not counted:
callgrind sees user space only. ``--smoke`` checks the script works, fast,
without valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

from hsscp.loadgen.files import read_instance

PDU = 16384
READ_SIZE = 65536
COUNTS = {"tiny": 100, "ct": 12, "mixed": 13, "multiframe": 1}
WARM_UP = 5  # instances stored before counting starts: first calls fill caches, import lazily
SHM_WORK = "/dev/shm"  # a tmpfs on Linux: the write itself costs no disk time


def store_instances(paths: list[str], count: int, out_dir: str, fsync: str, journal: str | None) -> int:
    """Run ``count`` of the instances in ``paths`` through the store path; returns how many succeeded."""
    from hsscp import dimse, items, pdu
    from hsscp.engine import Engine, Role
    from hsscp.journal import Journal
    from hsscp.storage import Storage, StoreRequest
    from workers.arena import Arena, Landing, StoreSink
    from workers.heartbeat import HeartbeatTable
    from workers.messages import FrameReader, frame, frames
    from workers.writer_main import Writer
    from workers.writer_pool import WriterPool

    instances = [read_instance(path) for path in paths]
    datasets = []
    for instance in instances:  # read them all whatever the count: the set-up cancels out
        with open(instance.path, "rb") as f:
            f.seek(instance.dataset_offset)
            datasets.append(f.read(instance.dataset_length))
    syntaxes = sorted({(i.sop_class_uid, i.transfer_syntax) for i in instances})
    context_of = {pair: 2 * n + 1 for n, pair in enumerate(syntaxes)}

    storage = Storage(out_dir, fsync=fsync)
    if journal:
        storage.journal = Journal(journal, durable=fsync != "none")
    arena = Arena(4 * 1024 * 1024, 8)
    landing = Landing(arena, memoryview(bytearray(READ_SIZE)))
    pool = WriterPool([], arena.name, arena.slot_size)
    writer = Writer(os.path.join(out_dir, "unused.sock"), storage, HeartbeatTable(1).heartbeat(0, 60))
    to_writer, to_worker = FrameReader(), FrameReader()

    def new_sink(context_id: int, command):
        if not isinstance(command, dimse.CStoreRQ):
            return dimse.BytesSink()
        sop_class, syntax = syntaxes[(context_id - 1) // 2]
        request = StoreRequest(command.affected_sop_class_uid, command.affected_sop_instance_uid, syntax,
                               "STORESCU", called_ae_title="HSSCP", peer="127.0.0.1:40000")
        return StoreSink(landing, storage, request)

    requestor, acceptor = Engine(Role.REQUESTOR), Engine(Role.ACCEPTOR, sink_factory=new_sink)
    rq = pdu.AAssociateRQ(
        called_ae_title="HSSCP", calling_ae_title="STORESCU",
        presentation_contexts=[items.PresentationContextRQ(context_of[p], p[0], [p[1]]) for p in syntaxes],
        user_information=items.UserInformation([items.MaximumLength(PDU), items.ImplementationClassUID("1.2.3")]),
    )

    def carry(sender: Engine, receiver: Engine, sent=(), through_arena: bool = False) -> list:
        data = b"".join(bytes(b) for b in [*sent, *sender.pop_output()])
        found = []
        for start in range(0, len(data), READ_SIZE):
            chunk = memoryview(data)[start : start + READ_SIZE]
            if not through_arena:
                found += receiver.receive_data(chunk)
                continue
            target = landing.buffer()  # the socket read lands in shared memory
            target[: len(chunk)] = chunk
            found += receiver.receive_data(landing.landed(len(chunk)))
            landing.read_done()
        return found

    requestor.request_association(rq)
    requestor.connection_made()
    acceptor.connection_made()
    (asked,) = carry(requestor, acceptor)
    ac = pdu.AAssociateAC(
        called_ae_title="HSSCP", calling_ae_title="STORESCU",
        presentation_contexts=[items.PresentationContextAC(pc.context_id, 0, pc.transfer_syntaxes[0])
                               for pc in asked.request.presentation_contexts],
        user_information=items.UserInformation([items.MaximumLength(PDU), items.ImplementationClassUID("1.2.4")]),
    )
    carry(acceptor, requestor, acceptor.accept(ac))

    stored = 0
    for n in range(count + WARM_UP):
        if n == WARM_UP:
            os.getppid()  # callgrind zeroes its counters here (--zero-before=getppid)
        instance, data = instances[n % len(instances)], datasets[n % len(datasets)]
        command = dimse.CStoreRQ(n + 1, instance.sop_class_uid, instance.sop_instance_uid)
        context_id = context_of[(instance.sop_class_uid, instance.transfer_syntax)]
        (message,) = carry(requestor, acceptor, requestor.send_message(context_id, command, data), True)
        sink = message.dataset
        (job,) = to_writer.feed(frame(pool.job_for(sink)))
        (done,) = to_worker.feed(frames(writer.handle([job])))
        sink.discard()
        response = dimse.CStoreRSP(command.message_id, done.outcome.status, command.affected_sop_class_uid,
                                   command.affected_sop_instance_uid)
        carry(acceptor, requestor, acceptor.send_message(context_id, response))
        stored += done.outcome.status == 0
    os.getpgrp()  # and dumps them here (--dump-before=getpgrp): the loop's instructions alone
    writer.arenas.close()
    landing.close()
    arena.close()
    return stored


def _count_under_valgrind(paths_file: str, count: int, fsync: str, journal: bool, work: str) -> int:
    """Instructions of the store loop alone: callgrind zeroes before it and dumps after it."""
    out = tempfile.mkdtemp(dir=work)
    profile = os.path.join(out, "callgrind.out")
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}", "--zero-before=getppid",
            "--dump-before=getpgrp", sys.executable, "-m", "bench.instructions", "--child", paths_file,
            str(count), out, fsync, os.path.join(out, "journal.jsonl") if journal else ""]
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if done.returncode != 0:
        raise RuntimeError(f"the store path failed under valgrind: {done.stderr[-2000:]}")
    with open(profile + ".1") as f:  # the first dump: from the zeroing to getpgrp
        totals = re.search(r"^totals:\s*(\d+)", f.read(), re.MULTILINE)
    if totals is None:
        raise RuntimeError(f"no instruction count in {profile}.1")
    return int(totals.group(1))


def measure(kind: str, fsync: str, journal: bool, work: str, count: int | None = None) -> float:
    """Instructions per stored instance of ``kind`` (after a warm-up)."""
    from hsscp.loadgen.datasets import generate

    n = count or COUNTS[kind]
    paths = generate(kind, n + WARM_UP if kind != "mixed" else 13, os.path.join(work, f"data-{kind}"))
    paths_file = os.path.join(work, f"{kind}.paths")
    with open(paths_file, "w") as f:
        f.write("\n".join(paths))
    return _count_under_valgrind(paths_file, n, fsync, journal, work) / n


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":  # the run valgrind watches
        paths_file, count, out, fsync, journal = argv[1:6]
        with open(paths_file) as f:
            paths = f.read().split("\n")
        stored = store_instances(paths, int(count), out, fsync, journal or None)
        return 0 if stored == int(count) + WARM_UP else 1
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="tiny,ct", help="of tiny, ct, mixed, multiframe (default tiny,ct)")
    parser.add_argument("--fsync", default="file", choices=("none", "file", "file+dir"))
    parser.add_argument("--journal", action="store_true", help="also write the journal")
    parser.add_argument("--count", type=int, help="N (default: per data set)")
    parser.add_argument("--smoke", action="store_true", help="run the path a few times without valgrind")
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="hsscp-instructions-", dir=SHM_WORK if os.path.isdir(SHM_WORK) else None)
    try:
        if args.smoke:
            from hsscp.loadgen.datasets import generate

            paths = generate("tiny", 3, os.path.join(work, "data"))
            out = tempfile.mkdtemp(dir=work)
            stored = store_instances(paths, 6 - WARM_UP, out, args.fsync, os.path.join(out, "j") if args.journal else None)
            print(f"smoke: {stored} of 6 instances stored")
            return 0 if stored == 6 else 1
        if shutil.which("valgrind") is None:
            print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
            return 2
        print(f"store path, fsync {args.fsync}{', journal' if args.journal else ''}: instructions per instance")
        for kind in args.datasets.split(","):
            per = measure(kind, args.fsync, args.journal, work, args.count)
            print(f"  {kind:<11} {per:12,.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
