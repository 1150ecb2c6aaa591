"""Throughput over time and the latency histogram of a run, as a PNG (matplotlib, optional).

Both y axes start at 0, so a dip reads as the dip it is. Latencies span
orders of magnitude (a fast loopback answer and a stall behind an fsync), so
the histogram has logarithmic bins on a logarithmic axis. The run's
parameters and everything that went wrong are printed on the figure itself:
a PNG passed around without its report still says what it shows.
"""

from __future__ import annotations

import math
from array import array
from typing import Any

from hsscp.loadgen.report import RawResult, Report

INSTALL_HINT = "--plot needs matplotlib: pip install 'hsscp[plot]' (or pip install matplotlib)"
BINS = 60


def require_matplotlib(error: type[Exception]) -> None:
    """Raise ``error`` with the install hint before a run, not after it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise error(INSTALL_HINT) from None


def log_bins(samples: list[float], count: int = BINS) -> list[float]:
    """``count`` bins of equal width on a log axis, covering every (positive) sample."""
    low, high = min(samples), max(samples)
    if high <= low:
        low, high = low / 2, high * 2
    step = (math.log10(high) - math.log10(low)) / count
    return [10 ** (math.log10(low) + i * step) for i in range(count + 1)]


def _parameters_line(report: Report) -> str:
    p = report.parameters
    if p is None:
        return f"{report.operation}"
    amount = f"--duration {p.duration:g} s" if p.duration is not None else f"--repeat {p.repeat}"
    parts = [f"{report.operation} to {p.called_ae_title} at {p.target}", f"-c {p.associations}",
             f"{p.processes} process(es)", amount]
    if p.async_ops:
        parts.append(f"--async-ops {p.async_ops}")
    if p.rate:
        parts.append(f"--rate {p.rate:g}/s")
    if p.instances:
        parts.append(f"{p.instances} file(s)")
    parts.append(f"hsscp {p.hsscp_version}, {p.started}")
    return ", ".join(parts)


def _outcome_line(report: Report) -> str:
    line = (f"success {report.succeeded}, warning {report.warnings}, failed {report.failed}, "
            f"not sent {report.not_sent}, skipped files {len(report.skipped_files)}")
    if report.failures:
        line += "; " + ", ".join(f"{why} x{n}" for why, n in report.failures.items())
    troubled = {k: n for k, n in report.association_events.items() if k != "released"}
    if troubled:
        line += "; associations: " + ", ".join(f"{k} x{n}" for k, n in troubled.items())
    return line


def build_figure(report: Report, raw: RawResult) -> Any:
    """The figure :func:`plot_run` saves (a matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    step = report.timeline_step_s
    counts = [count for count, _ in report.timeline]
    times = [i * step for i in range(len(counts))]
    latencies_ms = [value * 1000 for value in array("d", raw.latencies) if value > 0]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), constrained_layout=True)
    fig.suptitle(f"{_parameters_line(report)}\n{_outcome_line(report)}", fontsize=9)
    top.plot(times, [c / step for c in counts], drawstyle="steps-post")
    top.set_ylim(bottom=0)
    top.set_xlim(left=0)
    top.set_xlabel("time since start (s)")
    top.set_ylabel(f"{report.operation} completed per second")
    top.set_title(f"{report.per_second:.0f}/s, {report.mb_per_second:.1f} MB/s overall")
    if latencies_ms:
        bottom.hist(latencies_ms, bins=log_bins(latencies_ms))
    bottom.set_xscale("log")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("latency (ms, log scale): first request PDU handed to the transport to response decoded")
    bottom.set_ylabel("operations")
    lat = report.latency
    bottom.set_title(f"p50 {lat.p50_ms:.2f} ms, p99 {lat.p99_ms:.2f} ms, max {lat.max_ms:.2f} ms")
    return fig


def plot_run(report: Report, raw: RawResult, path: str) -> None:
    fig = build_figure(report, raw)
    import matplotlib.pyplot as plt  # after build_figure has chosen the file-only backend

    fig.savefig(path, dpi=100)
    plt.close(fig)
