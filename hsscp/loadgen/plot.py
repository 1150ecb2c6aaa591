"""Throughput over time and the latency histogram of a run, as a PNG (matplotlib, optional)."""

from __future__ import annotations

from array import array

from hsscp.loadgen.report import RawResult, Report

INSTALL_HINT = "--plot needs matplotlib: pip install 'hsscp[plot]' (or pip install matplotlib)"


def require_matplotlib(error: type[Exception]) -> None:
    """Raise ``error`` with the install hint before a run, not after it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise error(INSTALL_HINT) from None


def plot_run(report: Report, raw: RawResult, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    step = report.timeline_step_s
    counts = [count for count, _ in report.timeline]
    times = [i * step for i in range(len(counts))]
    latencies_ms = [value * 1000 for value in array("d", raw.latencies)]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), constrained_layout=True)
    top.plot(times, [c / step for c in counts], drawstyle="steps-post")
    top.set_xlabel("time since start (s)")
    top.set_ylabel(f"{report.operation} completed per second")
    top.set_title(f"{report.per_second:.0f}/s, {report.mb_per_second:.1f} MB/s overall")
    bottom.hist(latencies_ms, bins=100)
    bottom.set_xlabel("latency (ms): first request PDU handed to the transport to response decoded")
    bottom.set_ylabel("operations")
    bottom.set_title(f"p50 {report.latency.p50_ms:.2f} ms, p99 {report.latency.p99_ms:.2f} ms")
    fig.savefig(path, dpi=100)
    plt.close(fig)
