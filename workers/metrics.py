"""``--metrics HOST:PORT``: Prometheus metrics, ``/healthz`` and ``/readyz``, served by the supervisor.

The HTTP server is a thread of the supervisor, not a process of its own:
what it reports is the supervisor's to know (restarts, draining), and it
lives exactly as long as the supervisor, so ``/readyz`` answers 503 through
the whole drain after SIGTERM. It takes nothing from the store path: each
scrape sums the shared-memory rows the workers count in
(:mod:`workers.stats`) through a custom ``prometheus_client`` collector. The
thread logs nothing (a fork while it held a logging or stdio lock would
leave that lock taken in the child); children close its socket at start.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from hsscp import __version__
from workers import stats as stats_table
from workers.health import HealthMonitor

__all__ = ["HsscpCollector", "MetricsServer"]


class HsscpCollector(Collector):
    """The storage SCP's metrics, read from shared memory at each scrape."""

    def __init__(self, shared: stats_table.SharedStats, active: Callable[[], int],
                 restarts: Callable[[], dict[str, int]], monitor: HealthMonitor, roles: Iterable[str]) -> None:
        self.shared = shared
        self.active = active
        self.restarts = restarts
        self.monitor = monitor
        self.roles = tuple(roles)

    def collect(self) -> Iterable[Metric]:
        shared = self.shared
        counts = stats_table.totals(shared)
        instances = CounterMetricFamily(
            "hsscp_instances", "C-STORE requests answered, by the status answered (0x%04X, or other)",
            labels=["status"])
        for label, n in stats_table.status_totals(shared).items():
            instances.add_metric([label], n)
        yield instances
        yield CounterMetricFamily("hsscp_bytes_received", "Data set bytes of the C-STORE requests received",
                                  value=counts["received_bytes"])
        yield CounterMetricFamily("hsscp_bytes_stored", "Bytes of the files stored (File Meta included)",
                                  value=counts["bytes"])
        yield GaugeMetricFamily("hsscp_associations_active", "Associations open now, over all workers",
                                value=self.active())
        associations = CounterMetricFamily("hsscp_associations", "Association requests answered",
                                           labels=["result"])
        associations.add_metric(["accepted"], counts["associations"])
        associations.add_metric(["rejected"], counts["rejected"])
        yield associations
        yield self._store_seconds()
        restarts = CounterMetricFamily("hsscp_process_restarts", "Child processes replaced after they ended",
                                       labels=["role"])
        done = self.restarts()
        for role in self.roles:
            restarts.add_metric([role], done.get(role, 0))
        yield restarts
        yield from self._per_calling_ae()
        yield from self._health()
        build = InfoMetricFamily("hsscp_build", "hsscp version and Python it runs on")
        build.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield build

    def _store_seconds(self) -> Metric:
        counts, total_seconds = stats_table.store_histogram(self.shared)
        cumulative, buckets = 0, []
        for bound, n in zip([*map(str, stats_table.STORE_BUCKETS), "+Inf"], counts, strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        return HistogramMetricFamily(
            "hsscp_store_seconds", "Seconds from the last PDV of a C-STORE received to its answer "
            "(the file in place)", buckets=buckets, sum_value=total_seconds)

    def _per_calling_ae(self) -> Iterable[Metric]:
        associations = CounterMetricFamily(
            "hsscp_calling_ae_associations", "Associations accepted per calling AE title "
            f"(the first {stats_table.MAX_CALLING_AES} titles seen; later ones count as other)",
            labels=["calling_ae"])
        instances = CounterMetricFamily(
            "hsscp_calling_ae_instances", "Instances stored per calling AE title", labels=["calling_ae"])
        for title, n in stats_table.calling_ae_totals(self.shared).items():
            associations.add_metric([title], n["associations"])
            instances.add_metric([title], n["instances"])
        yield associations
        yield instances

    def _health(self) -> Iterable[Metric]:
        monitor = self.monitor
        yield GaugeMetricFamily("hsscp_spool_bytes", "Bytes in the temporary folder (spool files, "
                                "files being written)", value=monitor.spool_bytes())
        if monitor.free_bytes is not None:
            yield GaugeMetricFamily("hsscp_output_free_bytes", "Free bytes on the output file system",
                                    value=monitor.free_bytes)
        yield GaugeMetricFamily("hsscp_min_free_bytes", "--min-free-space: stores are refused below it",
                                value=monitor.min_free_space)
        yield GaugeMetricFamily("hsscp_ready", "1 while /readyz answers 200", value=int(monitor.readiness().ready))


class _SilentHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass  # see the module docstring: this thread must not log


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one port; bound at once, served by :meth:`start`."""

    def __init__(self, address: tuple[str, int], collector: HsscpCollector, monitor: HealthMonitor) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        self._metrics = make_wsgi_app(registry)
        self._monitor = monitor
        self._server = make_server(address[0], address[1], self._app,
                                   server_class=_ThreadingServer, handler_class=_SilentHandler)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_address[:2]

    def _app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok")
        if path == "/readyz":
            readiness = self._monitor.readiness()
            status = "200 OK" if readiness.ready else "503 Service Unavailable"
            return _text(start_response, status, readiness.reason)
        if path == "/metrics":
            return self._metrics(environ, start_response)
        return _text(start_response, "404 Not Found", "not found: try /metrics, /healthz or /readyz")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="hsscp-metrics", daemon=True)
        self._thread.start()

    def close_in_child(self) -> None:
        """In a forked child: let go of the inherited listening socket."""
        self._server.socket.close()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=2)
        self._server.server_close()


def _text(start_response: Callable, status: str, text: str) -> list[bytes]:
    body = (text + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
