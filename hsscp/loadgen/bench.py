"""``hsscp bench``: end-to-end storage throughput of several SCPs, driven by the same senders, in one run.

For every output file system asked for (``--outfs``: ``tmpfs``, one tmpfs
for all SCPs; ``disk``, a fresh loop-mounted ext4 image on the machine's
disk for each SCP and maximum PDU, since ext4 slows down after mass
deletions), every SCP (each started on a free 127.0.0.1 port), every
maximum PDU, data set and number of associations K, each sender sends the
same instances ``--runs`` times:

* ``hsscp``: ``hsscp storescu -c K`` (one process, one event loop);
* ``hsscp-async``: the same with ``--async-ops`` (when asked for);
* ``dcmtk``: K DCMTK ``storescu`` processes over disjoint parts of the files.

Measured per run: wall time from the senders' start to their exit (process
start-up included, for every sender alike), instances/s and MB/s of data
set bytes, CPU of the SCP's whole process tree per instance, and CPU of the
senders per instance. On a disk the durable ceiling is measured too, as
the row ``fsync-bound``: K threads storing the same files with an fsync
each and nothing else (:mod:`hsscp.loadgen.fsync_bound`), what an SCP that
syncs before it answers can reach there. It runs on each hsscp SCP's disk
just before each of that SCP's runs: this disk's speed drifts by the
minute, and a ceiling measured at another time says little. The table
shows medians and the ratio of instances/s to DCMTK ``storescp --fork``
with the same sender; for hsscp senders also the rate they report themselves (from the first association to the last
response: Python start-up and the file scan excluded). The output is cleared
before each run, so every run stores new instances, not duplicates. Runs should last
seconds, or the ~0.4 s an hsscp sender takes to start dominates.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgspec

from hsscp.loadgen import datasets, fsync_bound, scps
from hsscp.loadgen.files import read_instance

REFERENCE_SCP = "dcmtk-fork"
FSYNC_BOUND = "fsync-bound"  # the rows of the durable ceiling: no SCP, no sender, no PDU
DEFAULT_SCPS = ("hsscp", "dcmtk", "dcmtk-fork", "dcmtk-ignore", "pynetdicom")
# Files per data set kind and passes over them per run. One pass: a second would store duplicates.
FULL_COUNTS = {"tiny": (10000, 1), "ct": (1000, 1), "multiframe": (8, 1), "mixed": (1300, 1)}
QUICK_COUNTS = {"tiny": (100, 2), "ct": (8, 1), "multiframe": (1, 1), "mixed": (13, 1)}


class RunResult(msgspec.Struct):
    outfs: str
    scp: str
    sender: str
    dataset: str
    associations: int
    max_pdu: int
    instances: int
    bytes: int
    wall_s: float
    scp_cpu_s: float
    sender_cpu_s: float
    ok: bool
    detail: str = ""
    sender_reported_per_s: float | None = None  # hsscp senders: their own rate, start-up excluded


class Row(msgspec.Struct):
    outfs: str
    dataset: str
    max_pdu: int
    associations: int
    scp: str
    sender: str
    runs: int
    instances_per_s: float
    mb_per_s: float
    scp_cpu_us_per_instance: float
    sender_cpu_us_per_instance: float
    ratio_to_reference: float | None
    ok: bool
    sender_reported_per_s: float | None = None  # hsscp senders' own rate, start-up excluded


@dataclass
class Plan:
    scps: list[str]
    senders: list[str]
    datasets: list[str]
    associations: list[int]
    max_pdus: list[int]
    runs: int
    counts: dict[str, tuple[int, int]]
    async_ops: int
    run_timeout: float
    sender_processes: int = 1
    preload: bool = False
    outfs: list[str] = field(default_factory=lambda: ["tmpfs"])
    disk_dir: str | None = None  # where the ext4 images go (default: the work folder)
    results: list[RunResult] = field(default_factory=list)


# -- senders ---------------------------------------------------------------------


def _split(paths: list[str], parts: int) -> list[list[str]]:
    return [part for part in (paths[i::parts] for i in range(parts)) if part]


def _sender_commands(sender: str, port: int, folder: str, paths: list[str], k: int, repeat: int,
                     pdu: int, plan: Plan, report: str) -> tuple[list[list[str]], dict[str, str]]:
    if sender == "dcmtk":
        commands = [["storescu", "-R", "--repeat", str(repeat), "-pdu", str(pdu), scps.HOST, str(port), *part]
                    for part in _split(paths, k)]
        return commands, scps.dcmtk_env()
    command = [sys.executable, "-m", "hsscp.loadgen", "storescu", scps.HOST, str(port), folder, "-c", str(k),
               "--repeat", str(repeat), "-pdu", str(pdu), "-q", "--json", report]
    if sender == "hsscp-async":
        command += ["--async-ops", str(plan.async_ops)]
    if plan.sender_processes > 1:
        command += ["--processes", str(plan.sender_processes)]
    if plan.preload:
        command.append("--preload")
    return [command], scps.python_env()


def _run_senders(commands: list[list[str]], env: dict[str, str], timeout: float, log_path: str
                 ) -> tuple[float, float, list[int]]:
    """Start every command at once; return (wall seconds, CPU seconds, exit codes)."""
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        procs = [subprocess.Popen(c, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
                 for c in commands]
    cpu, codes = 0.0, []
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            while (waited := os.wait4(proc.pid, os.WNOHANG))[0] == 0:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"a sender ran past {timeout} s")
                time.sleep(0.002)
            _, status, usage = waited
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu += usage.ru_utime + usage.ru_stime
            codes.append(proc.returncode)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
    return time.perf_counter() - started, cpu, codes


def _tail(path: str, lines: int = 3) -> str:
    with open(path, "rb") as f:
        return " | ".join(f.read().decode(errors="replace").strip().splitlines()[-lines:])


# -- one run -----------------------------------------------------------------------


def _one_run(plan: Plan, outfs: str, scp: str, proc: subprocess.Popen, port: int, sender: str, kind: str,
             folder: str, paths: list[str], size: int, k: int, pdu: int, work: str) -> RunResult:
    files, repeat = plan.counts[kind]
    report = os.path.join(work, "sender-report.json")
    commands, env = _sender_commands(sender, port, folder, paths, k, repeat, pdu, plan, report)
    before = scps.tree_cpu_seconds(proc.pid)
    detail, own_rate = "", None
    try:
        log_path = os.path.join(work, "senders.log")
        wall, sender_cpu, codes = _run_senders(commands, env, plan.run_timeout, log_path)
        ok = all(code == 0 for code in codes)
        if not ok:
            detail = f"sender exit codes {codes}: {_tail(log_path)}"
    except TimeoutError as exc:
        wall, sender_cpu, ok, detail = plan.run_timeout, 0.0, False, str(exc)
    time.sleep(0.05)  # let forked children of the SCP finish exiting before reading their CPU
    scp_cpu = scps.tree_cpu_seconds(proc.pid) - before
    if sender.startswith("hsscp") and os.path.exists(report):
        with open(report, "rb") as f:
            own_rate = json.loads(f.read()).get("per_second")
        os.unlink(report)
    return RunResult(outfs, scp, sender, kind, k, pdu, len(paths) * repeat, size * repeat, wall, scp_cpu,
                     sender_cpu, ok, detail, own_rate)


# -- the whole benchmark ---------------------------------------------------------------


@contextlib.contextmanager
def output_folder(work: str) -> Iterator[tuple[str, bool]]:
    """A folder for the SCPs' files: a fresh tmpfs when we may mount one, else a plain folder."""
    out = os.path.join(work, "out")
    os.makedirs(out)
    mounted = False
    if os.geteuid() == 0:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=50%", "tmpfs", out], capture_output=True)
        mounted = done.returncode == 0
    try:
        yield out, mounted
    finally:
        if mounted:
            subprocess.run(["umount", out], capture_output=True)


def check_disk_support() -> None:
    """Raise RuntimeError saying why ``--outfs disk`` cannot run here."""
    if os.geteuid() != 0:
        raise RuntimeError("--outfs disk mounts ext4 images on loop devices: run as root")
    for program in ("mkfs.ext4", "losetup", "mount"):
        if shutil.which(program) is None:
            raise RuntimeError(f"--outfs disk needs {program} (apt-get install e2fsprogs mount)")
    if not os.path.exists("/dev/loop-control") and not os.path.exists("/dev/loop0"):
        raise RuntimeError("--outfs disk needs loop devices (/dev/loop-control): none on this machine")


@contextlib.contextmanager
def fresh_disk(folder: str, name: str, size: int) -> Iterator[str]:
    """A new ext4 file system of ``size`` bytes in an image under ``folder``, mounted; removed afterwards."""
    image, mount_point = os.path.join(folder, f"{name}.ext4"), os.path.join(folder, name)
    os.makedirs(mount_point)
    mounted = False
    try:
        with open(image, "wb") as f:
            f.truncate(size)  # sparse: the image takes only what is written
        for argv in (["mkfs.ext4", "-q", "-F", image], ["mount", "-o", "loop", image, mount_point]):
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.returncode}")
        mounted = True
        yield mount_point
    finally:
        if mounted and subprocess.run(["umount", mount_point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mount_point], capture_output=True)
        with contextlib.suppress(OSError):
            os.rmdir(mount_point)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(image)


def _generate(plan: Plan, data_root: str) -> dict[str, tuple[str, list[str], int]]:
    made = {}
    for kind in plan.datasets:
        files, _ = plan.counts[kind]
        folder = os.path.join(data_root, f"{kind}-{files}")
        paths = datasets.generate(kind, files, folder)
        made[kind] = (folder, paths, sum(read_instance(p).dataset_length for p in paths))
    return made


def run_plan(plan: Plan, data_root: str, work: str, say) -> bool:
    """Run every case; return whether the tmpfs output (if asked for) was a tmpfs."""
    data = _generate(plan, data_root)
    on_tmpfs = False
    for outfs in plan.outfs:
        if outfs == "tmpfs":
            with output_folder(work) as (out, on_tmpfs):
                say("SCP output on a tmpfs" if on_tmpfs else f"SCP output in {out} (no tmpfs: could not mount one)")
                _run_scps(plan, outfs, data, work, functools.partial(_subfolder, out), say)
        else:
            say("SCP output on a fresh ext4 file system (loop-mounted image) per SCP and PDU")
            # Every run overwrites the same files: room for one copy of every data set, twice over.
            size = max(1 << 30, 2 * sum(length for _, _, length in data.values()) + (256 << 20))
            _run_scps(plan, outfs, data, work, functools.partial(fresh_disk, plan.disk_dir or work, size=size), say)
    return on_tmpfs


def _fsync_bound_run(outfs: str, kind: str, paths: list[str], size: int, k: int, out: str) -> RunResult:
    """One measurement of the durable ceiling of the file system holding ``out`` (left empty after)."""
    cpu, started = time.process_time(), time.perf_counter()
    try:
        wall, ok, detail = fsync_bound.store_synced(paths, out, k), True, ""
    except OSError as exc:
        wall, ok, detail = time.perf_counter() - started, False, str(exc)
    result = RunResult(outfs, FSYNC_BOUND, "-", kind, k, 0, len(paths), size, wall, time.process_time() - cpu,
                       0.0, ok, detail)
    clear_output(out)
    return result


@contextlib.contextmanager
def _subfolder(parent: str, name: str) -> Iterator[str]:
    yield os.path.join(parent, name)


def clear_output(folder: str) -> None:
    """Remove what earlier runs stored (not the SCP's hidden folders), and flush the removal.

    Every run sends the same files: without this each run after the first would
    store duplicates, a different path (hsscp compares them with the stored copy).
    """
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    os.sync()  # the deletion's write-back is not the next run's to pay


def _run_scps(plan: Plan, outfs: str, data: dict, work: str,
              filesystem: Callable[[str], contextlib.AbstractContextManager[str]], say) -> None:
    """Each SCP and PDU in its own folder (``filesystem(name)`` gives it: a subfolder, a fresh disk)."""
    for scp in plan.scps:
        spec = scps.SCPS[scp]
        for pdu in plan.max_pdus:
            with filesystem(f"{outfs}-{scp}-{pdu}") as root:
                scp_out = os.path.join(root, "out")
                os.makedirs(scp_out)
                bound_out = None
                if outfs == "disk" and scp.startswith("hsscp"):  # beside the SCP whose durability it bounds
                    bound_out = os.path.join(root, FSYNC_BOUND)
                    os.makedirs(bound_out)
                port = scps.free_port()
                with scps.running(spec, port, scp_out, pdu, os.path.join(work, f"{scp}.log")) as proc:
                    for kind in plan.datasets:
                        folder, paths, size = data[kind]
                        for k in plan.associations:
                            for sender in plan.senders:
                                for _ in range(plan.runs):
                                    if bound_out is not None:
                                        bound = _fsync_bound_run(outfs, kind, paths, size, k, bound_out)
                                        plan.results.append(bound)
                                        say(_progress_line(bound))
                                    clear_output(scp_out)
                                    result = _one_run(plan, outfs, scp, proc, port, sender, kind, folder, paths,
                                                      size, k, pdu, work)
                                    plan.results.append(result)
                                    say(_progress_line(result))
                shutil.rmtree(scp_out)


def _progress_line(r: RunResult) -> str:
    rate = r.instances / r.wall_s if r.wall_s else 0.0
    state = "ok" if r.ok else f"FAILED ({r.detail})"
    return (f"  {r.outfs:<5} {r.dataset:<10} pdu {r.max_pdu:<6} K={r.associations} {r.scp:<13} <- {r.sender:<11} "
            f"{rate:9.1f}/s  {r.wall_s:6.2f} s  {state}")


def summarize(results: list[RunResult]) -> list[Row]:
    groups: dict[tuple, list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.outfs, r.dataset, r.max_pdu, r.associations, r.scp, r.sender), []).append(r)
    rows = []
    for (outfs, kind, pdu, k, scp, sender), runs in groups.items():
        rows.append(Row(
            outfs, kind, pdu, k, scp, sender, len(runs),
            round(statistics.median(r.instances / r.wall_s for r in runs), 1),
            round(statistics.median(r.bytes / r.wall_s / 1e6 for r in runs), 2),
            round(statistics.median(r.scp_cpu_s / r.instances * 1e6 for r in runs), 1),
            round(statistics.median(r.sender_cpu_s / r.instances * 1e6 for r in runs), 1),
            None, all(r.ok for r in runs), _median_or_none(r.sender_reported_per_s for r in runs),
        ))
    reference = {(r.outfs, r.dataset, r.max_pdu, r.associations, r.sender): r.instances_per_s
                 for r in rows if r.scp == REFERENCE_SCP}
    for row in rows:
        base = reference.get((row.outfs, row.dataset, row.max_pdu, row.associations, row.sender))
        row.ratio_to_reference = round(row.instances_per_s / base, 2) if base else None
    return rows


def _median_or_none(values) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None


def format_table(rows: list[Row]) -> str:
    header = ("| output | data set | max PDU | K | SCP | sender | instances/s | MB/s | SCP CPU us/inst "
              f"| sender CPU us/inst | x {REFERENCE_SCP} | sender's own /s |")
    lines = [header, "|" + "---|" * 12]
    for r in rows:
        ratio = f"{r.ratio_to_reference:.2f}" if r.ratio_to_reference is not None else ""
        own = f"{r.sender_reported_per_s:.0f}" if r.sender_reported_per_s is not None else ""
        flag = "" if r.ok else " FAILED"
        lines.append(f"| {r.outfs} | {r.dataset} | {r.max_pdu} | {r.associations} | {r.scp} | {r.sender} | "
                     f"{r.instances_per_s:.1f}{flag} | {r.mb_per_s:.2f} | {r.scp_cpu_us_per_instance:.0f} | "
                     f"{r.sender_cpu_us_per_instance:.0f} | {ratio} | {own} |")
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------


def _names(text: str) -> list[str]:
    return [name for name in text.split(",") if name]


def _ints(text: str) -> list[int]:
    return [int(value) for value in _names(text)]


def _per_kind(text: str) -> dict[str, int]:
    """``N`` (every kind) or ``KIND=N,KIND=N``."""
    if text.isdigit():
        return dict.fromkeys(datasets.KINDS, int(text))
    try:
        pairs = dict(item.split("=", 1) for item in _names(text))
        counts = {kind: int(n) for kind, n in pairs.items()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not N nor KIND=N,...") from None
    unknown = set(counts) - set(datasets.KINDS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown data set kinds: {', '.join(sorted(unknown))}")
    return counts


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="compare storage SCPs end to end, driven by the same senders",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=run_bench)
    p.add_argument("--quick", action="store_true", help="small counts, one run, K=2, 16 KiB PDUs: a smoke test")
    p.add_argument("--scps", type=_names, metavar="LIST",
                   help=f"SCPs to compare, of {', '.join(scps.SCPS)} (default {','.join(DEFAULT_SCPS)})")
    p.add_argument("--senders", "--sender", type=_names, metavar="LIST",
                   help="hsscp, hsscp-async, dcmtk (default hsscp,dcmtk)")
    p.add_argument("--datasets", type=_names, metavar="LIST",
                   help=f"of {', '.join(datasets.KINDS)} (default tiny,ct)")
    p.add_argument("-c", "--associations", type=_ints, metavar="LIST", help="values of K (default 1,4)")
    p.add_argument("--max-pdu", type=_ints, metavar="LIST", help="maximum PDU sizes (default 16384,131072)")
    p.add_argument("--runs", type=int, metavar="N", help="runs per case; the table shows medians (default 3)")
    p.add_argument("--files", type=_per_kind, metavar="N|KIND=N,...",
                   help="files per data set: one number for all, or per kind as tiny=5000,ct=400 (default: per kind)")
    p.add_argument("--repeat", type=int, metavar="N", help="passes over the files per run (default: per kind)")
    p.add_argument("--async-ops", type=int, default=16, metavar="N", help="window of the hsscp-async sender")
    p.add_argument("--sender-processes", type=int, default=1, metavar="P",
                   help="hsscp senders spread their K associations over P processes (default 1)")
    p.add_argument("--preload", action="store_true", help="hsscp senders read the files into memory first")
    p.add_argument("--run-timeout", type=float, default=900.0, metavar="SECONDS", help="a run taking longer fails")
    p.add_argument("--outfs", type=_names, metavar="LIST",
                   help="where the SCPs write: tmpfs (one for all), disk (a fresh ext4 image per SCP and PDU, "
                        "loop-mounted; needs root) or both (default tmpfs)")
    p.add_argument("--disk-dir", metavar="DIR", help="where --outfs disk puts its images (default: a temporary "
                                                    "folder; it must be on the disk to measure)")
    p.add_argument("--data-dir", metavar="DIR", help="keep the generated data sets here, to reuse them")
    p.add_argument("--json", metavar="FILE", help="write every run and the table as JSON")


def _plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    counts = dict(QUICK_COUNTS if quick else FULL_COUNTS)
    for kind, (files, repeat) in counts.items():
        counts[kind] = ((args.files or {}).get(kind, files), args.repeat or repeat)
    plan = Plan(
        scps=args.scps or list(DEFAULT_SCPS),
        senders=args.senders or ["hsscp", "dcmtk"],
        datasets=args.datasets or (["tiny"] if quick else ["tiny", "ct"]),
        associations=args.associations or ([2] if quick else [1, 4]),
        max_pdus=args.max_pdu or ([16384] if quick else [16384, 131072]),
        runs=args.runs or (1 if quick else 3),
        counts=counts, async_ops=args.async_ops, run_timeout=args.run_timeout,
        sender_processes=args.sender_processes, preload=args.preload,
        outfs=args.outfs or ["tmpfs"], disk_dir=args.disk_dir,
    )
    unknown = [s for s in plan.scps if s not in scps.SCPS] + \
        [s for s in plan.senders if s not in ("hsscp", "hsscp-async", "dcmtk")] + \
        [d for d in plan.datasets if d not in datasets.KINDS] + \
        [f for f in plan.outfs if f not in ("tmpfs", "disk")]
    if unknown:
        raise ValueError(f"unknown names: {', '.join(unknown)}")
    for scp in plan.scps:
        scps.require(scps.SCPS[scp])
    if "disk" in plan.outfs:
        check_disk_support()
    if "dcmtk" in plan.senders and shutil.which("storescu") is None:
        raise ValueError("the dcmtk sender needs DCMTK's storescu: apt-get install dcmtk")
    return plan


def run_bench(args: argparse.Namespace) -> int:
    try:
        plan = _plan(args)
    except (ValueError, RuntimeError) as exc:
        print(f"hsscp bench: error: {exc}", file=sys.stderr)
        return 2

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    work = tempfile.mkdtemp(prefix="hsscp-bench-")
    try:
        data_root = args.data_dir or os.path.join(work, "data")
        on_tmpfs = run_plan(plan, data_root, work, say)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = summarize(plan.results)
    print(format_table(rows))
    if args.json:
        document = {"output_on_tmpfs": on_tmpfs, "reference_scp": REFERENCE_SCP, "cpus": os.cpu_count(),
                    "rows": rows, "runs": plan.results}
        with open(args.json, "wb") as out:
            out.write(msgspec.json.format(msgspec.json.encode(document)))
    return 0 if all(row.ok for row in rows) else 1
