"""Counting what a run did, merging the counts of several processes, and the final report.

Latency of one operation (C-STORE or C-ECHO) is measured from the moment
its request's first PDU is handed to the transport (after any pacing or
asynchronous-window wait) until its response has been decoded: it covers
our send, the network, the peer's work and our receive, and with several
operations outstanding also the queueing behind them.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Iterable

import msgspec

from hsscp.dimse import status_category

TIMELINE_STEP = 0.1  # seconds per throughput bucket

LATENCY_DEFINITION = (
    "from the request's first PDU handed to the transport (after pacing and window waits) "
    "to its response decoded"
)


class RawResult(msgspec.Struct, array_like=True):
    """What one process counted; merged across processes before summarising."""

    statuses: dict[int, int]
    failures: dict[str, int]  # operations that got no response, by why
    events: dict[str, int]  # association-level events, by kind
    stored_bytes: int
    latencies: bytes  # array('d') of seconds
    setup_times: bytes  # array('d') of seconds
    timeline: list[list[int]]  # per TIMELINE_STEP bucket: [operations, bytes]
    started: float
    finished: float
    cpu_seconds: float
    associations: int
    max_outstanding: int
    conversions: int = 0
    file_failures: dict[str, dict[str, int]] = {}  # path -> why -> count


class Stats:
    """Live counters of one process; the event loop thread is the only writer."""

    def __init__(self, epoch: float | None = None) -> None:
        self.epoch = time.monotonic() if epoch is None else epoch
        self.statuses: dict[int, int] = {}
        self.failures: dict[str, int] = {}
        self.events: dict[str, int] = {}
        self.completed = 0  # operations answered with success or warning
        self.failed = 0  # operations answered with a failure or never answered
        self.stored_bytes = 0
        self.latencies = array("d")
        self.setup_times = array("d")
        self.timeline: list[list[int]] = []
        self.associations = 0
        self.max_outstanding = 0
        self.conversions = 0
        self.file_failures: dict[str, dict[str, int]] = {}
        self.started = time.monotonic()
        self._cpu_start = time.process_time()

    def response(self, status: int, nbytes: int, latency: float, now: float, path: str | None = None) -> None:
        """Count a response; ``path`` names the file a failure status was for."""
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies.append(latency)
        if status == 0 or status_category(status) == "warning":
            self.completed += 1
            self.stored_bytes += nbytes
            bucket = int((now - self.epoch) / TIMELINE_STEP)
            timeline = self.timeline
            while len(timeline) <= bucket:
                timeline.append([0, 0])
            cell = timeline[bucket]
            cell[0] += 1
            cell[1] += nbytes
        else:
            self.failed += 1
            if path is not None:
                self._file_failed(path, f"status 0x{status:04X}", 1)

    def failure(self, why: str, count: int = 1, path: str | None = None) -> None:
        """Count operations that got no response, for ``path`` if they were a file's."""
        if count:
            self.failures[why] = self.failures.get(why, 0) + count
            self.failed += count
            if path is not None:
                self._file_failed(path, why, count)

    def _file_failed(self, path: str, why: str, count: int) -> None:
        # Bounded by files x reasons, however long the run: repeats add to a count.
        reasons = self.file_failures.setdefault(path, {})
        reasons[why] = reasons.get(why, 0) + count

    def event(self, kind: str, count: int = 1) -> None:
        self.events[kind] = self.events.get(kind, 0) + count

    def association_opened(self, setup_seconds: float) -> None:
        self.associations += 1
        self.setup_times.append(setup_seconds)

    def result(self) -> RawResult:
        return RawResult(
            statuses=dict(self.statuses),
            failures=dict(self.failures),
            events=dict(self.events),
            stored_bytes=self.stored_bytes,
            latencies=self.latencies.tobytes(),
            setup_times=self.setup_times.tobytes(),
            timeline=self.timeline,
            started=self.started,
            finished=time.monotonic(),
            cpu_seconds=time.process_time() - self._cpu_start,
            associations=self.associations,
            max_outstanding=self.max_outstanding,
            conversions=self.conversions,
            file_failures={path: dict(reasons) for path, reasons in self.file_failures.items()},
        )


def _add(into: dict, other: dict) -> None:
    for key, count in other.items():
        into[key] = into.get(key, 0) + count


def _add_nested(into: dict[str, dict[str, int]], other: dict[str, dict[str, int]]) -> None:
    for key, counts in other.items():
        _add(into.setdefault(key, {}), counts)


def merge(results: Iterable[RawResult]) -> RawResult:
    """One result for a run made of several processes' results."""
    results = list(results)
    merged = RawResult({}, {}, {}, 0, b"", b"", [], math.inf, 0.0, 0.0, 0, 0, 0, {})
    timeline: list[list[int]] = []
    for r in results:
        _add(merged.statuses, r.statuses)
        _add(merged.failures, r.failures)
        _add(merged.events, r.events)
        merged.stored_bytes += r.stored_bytes
        merged.latencies += r.latencies
        merged.setup_times += r.setup_times
        while len(timeline) < len(r.timeline):
            timeline.append([0, 0])
        for cell, (count, nbytes) in zip(timeline, r.timeline, strict=False):
            cell[0] += count
            cell[1] += nbytes
        merged.started = min(merged.started, r.started)
        merged.finished = max(merged.finished, r.finished)
        merged.cpu_seconds += r.cpu_seconds
        merged.associations += r.associations
        merged.max_outstanding = max(merged.max_outstanding, r.max_outstanding)
        merged.conversions += r.conversions
        _add_nested(merged.file_failures, r.file_failures)
    merged.timeline = timeline
    if not results:
        merged.started = merged.finished = time.monotonic()
    return merged


class Percentiles(msgspec.Struct):
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def percentiles(samples: array) -> Percentiles:
    """Nearest-rank percentiles of ``samples`` (seconds) in milliseconds."""
    if not samples:
        return Percentiles(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    ordered = sorted(samples)
    n = len(ordered)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * n) - 1)] * 1000, 4)

    return Percentiles(n, rank(50), rank(90), rank(99), round(ordered[-1] * 1000, 4), round(sum(ordered) / n * 1000, 4))


class RunParameters(msgspec.Struct):
    """What a run was asked to do, kept with its report so results can be compared later."""

    target: str  # host:port
    called_ae_title: str
    calling_ae_title: str
    associations: int  # -c
    processes: int
    async_ops: int | None
    rate: float | None  # instances per second, all processes together
    repeat: int | None  # None when the run was timed (--duration)
    duration: float | None
    files: list[str]  # the paths as given
    instances: int  # files found to send
    new_uids: str | None
    hsscp_version: str
    started: str  # wall clock, ISO 8601 with the UTC offset


# Association outcomes of a run that went as asked; any other (rejected, aborted, refused
# connection, lost, timed out...) means the run did not do everything it was asked to.
GOOD_ASSOCIATION_EVENTS = frozenset({"released", "presentation context refused"})

# The printed report lists this many files per kind of trouble; --json has them all.
LISTED_FILES = 20


class Report(msgspec.Struct):
    """The final report, as printed and as written by ``--json``."""

    operation: str  # "C-STORE" or "C-ECHO"
    planned: int | None  # operations the run was asked for (None with --duration)
    succeeded: int
    warnings: int
    failed: int
    not_sent: int
    statuses: dict[str, int]
    failures: dict[str, int]
    association_events: dict[str, int]
    associations: int
    processes: int
    elapsed_s: float
    per_second: float
    mb_per_second: float
    stored_bytes: int
    setup: Percentiles
    latency: Percentiles
    latency_definition: str
    cpu_s: float
    cpu_per_operation_us: float
    max_outstanding: int
    conversions: int
    timeline_step_s: float
    timeline: list[list[int]]
    parameters: RunParameters | None = None
    skipped_files: dict[str, str] = {}  # path -> why it was not sent
    failed_files: dict[str, dict[str, int]] = {}  # path -> why -> how many times

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.not_sent == 0 and self.warnings == 0

    @property
    def troubled_associations(self) -> int:
        """Associations that were refused, aborted or otherwise did not end in a release."""
        return sum(n for kind, n in self.association_events.items() if kind not in GOOD_ASSOCIATION_EVENTS)


def summarize(
    raw: RawResult,
    operation: str,
    planned: int | None,
    not_sent: int,
    processes: int,
    parameters: RunParameters | None = None,
    skipped: dict[str, str] | None = None,
) -> Report:
    warnings = sum(n for s, n in raw.statuses.items() if status_category(s) == "warning")
    succeeded = raw.statuses.get(0, 0)
    answered_failures = sum(n for s, n in raw.statuses.items() if s != 0 and status_category(s) != "warning")
    elapsed = max(raw.finished - raw.started, 1e-9)
    done = succeeded + warnings
    operations = done + answered_failures + sum(raw.failures.values())
    return Report(
        operation=operation,
        planned=planned,
        succeeded=succeeded,
        warnings=warnings,
        failed=answered_failures + sum(raw.failures.values()),
        not_sent=not_sent,
        statuses={f"0x{s:04X}": n for s, n in sorted(raw.statuses.items())},
        failures=dict(sorted(raw.failures.items())),
        association_events=dict(sorted(raw.events.items())),
        associations=raw.associations,
        processes=processes,
        elapsed_s=round(elapsed, 6),
        per_second=round(done / elapsed, 3),
        mb_per_second=round(raw.stored_bytes / elapsed / 1e6, 3),
        stored_bytes=raw.stored_bytes,
        setup=percentiles(array("d", raw.setup_times)),
        latency=percentiles(array("d", raw.latencies)),
        latency_definition=LATENCY_DEFINITION,
        cpu_s=round(raw.cpu_seconds, 6),
        cpu_per_operation_us=round(raw.cpu_seconds / operations * 1e6, 3) if operations else 0.0,
        max_outstanding=raw.max_outstanding,
        conversions=raw.conversions,
        timeline_step_s=TIMELINE_STEP,
        timeline=raw.timeline,
        parameters=parameters,
        skipped_files=dict(skipped or {}),
        failed_files=dict(sorted(raw.file_failures.items())),
    )


def _listed(title: str, entries: list[str]) -> list[str]:
    lines = [f"  {title} ({len(entries)}):"] + [f"    {entry}" for entry in entries[:LISTED_FILES]]
    if len(entries) > LISTED_FILES:
        lines.append(f"    ... and {len(entries) - LISTED_FILES} more (all of them are in --json)")
    return lines


def format_report(report: Report) -> str:
    noun = "instances" if report.operation == "C-STORE" else "echoes"
    lat, setup = report.latency, report.setup
    lines = [
        f"{report.operation}: {report.succeeded + report.warnings} {noun} done in {report.elapsed_s:.3f} s "
        f"over {report.associations} association(s) in {report.processes} process(es)",
        f"  success {report.succeeded}   warning {report.warnings}   failed {report.failed}"
        f"   not sent {report.not_sent}",
        f"  rate {report.per_second:.1f} {noun}/s   {report.mb_per_second:.2f} MB/s",
        f"  association set-up  p50 {setup.p50_ms:.2f} ms   max {setup.max_ms:.2f} ms   ({setup.count})",
        f"  {report.operation} latency  p50 {lat.p50_ms:.3f} ms   p90 {lat.p90_ms:.3f} ms   "
        f"p99 {lat.p99_ms:.3f} ms   max {lat.max_ms:.3f} ms",
        f"  CPU {report.cpu_s:.3f} s   {report.cpu_per_operation_us:.1f} us per operation"
        f"   max outstanding {report.max_outstanding}",
    ]
    if report.statuses:
        lines.append("  statuses: " + ", ".join(f"{s} x{n}" for s, n in report.statuses.items()))
    if report.failures:
        lines.append("  failures: " + ", ".join(f"{k} x{n}" for k, n in report.failures.items()))
    if report.association_events:
        lines.append("  associations: " + ", ".join(f"{k} x{n}" for k, n in report.association_events.items()))
    if report.conversions:
        lines.append(f"  re-encoded with pydicom for an accepted transfer syntax: {report.conversions} file(s)")
    if report.skipped_files:
        lines += _listed("skipped files", [f"{path}: {why}" for path, why in report.skipped_files.items()])
    if report.failed_files:
        lines += _listed("failed files", [
            f"{path}: " + ", ".join(f"{why}" + (f" x{n}" if n > 1 else "") for why, n in reasons.items())
            for path, reasons in report.failed_files.items()
        ])
    return "\n".join(lines)


def write_json(report: Report, path: str) -> None:
    with open(path, "wb") as out:
        out.write(msgspec.json.format(msgspec.json.encode(report)))
