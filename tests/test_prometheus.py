"""A real Prometheus scrapes a running hsscp; the deploy/ examples are what their tools accept."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from .datagen import dataset_of, write_instances
from .hsscp_process import hsscp_storescp
from .ops_helpers import http_get
from .peers import dcmtk_env, free_port, require_binary, running

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ALERTS = ("HsscpNoInstances", "HsscpStoreFailures", "HsscpDiskNearlyFull", "HsscpProcessRestarts", "HsscpNotReady")


def _haproxy_binary() -> str:
    from .test_proxy_protocol import _haproxy_binary

    return _haproxy_binary()


def test_the_deploy_examples_pass_their_own_tools_checks():
    promtool = require_binary("promtool")
    config = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert config.returncode == 0, config.stdout + config.stderr
    rules = subprocess.run([promtool, "check", "rules", str(DEPLOY / "hsscp-alerts.yml")],
                           capture_output=True, text=True, timeout=60)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in rules.stdout
    fired = subprocess.run([promtool, "test", "rules", str(DEPLOY / "hsscp-alerts.test.yml")],
                           capture_output=True, text=True, timeout=60)
    assert fired.returncode == 0, fired.stdout + fired.stderr  # each alert fires where it should
    haproxy = subprocess.run([_haproxy_binary(), "-c", "-f", str(DEPLOY / "haproxy.cfg")],
                             capture_output=True, text=True, timeout=60)
    assert haproxy.returncode == 0, haproxy.stdout + haproxy.stderr
    printed = subprocess.run([sys.executable, "-m", "hsscp", "storescp", "--config", str(DEPLOY / "hsscp.toml"),
                              "--print-config"], capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert "proxy_protocol = true" in printed.stdout and 'metrics = "0.0.0.0:9100"' in printed.stdout
    assert f"min_free_space = {20 * 1024**3}" in printed.stdout


def query(port: int, expression: str) -> list[dict]:
    status, body = http_get(f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expression)}")
    assert status == 200, body
    return json.loads(body)["data"]["result"]


def wait_for_value(port: int, expression: str, expected: float, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = query(port, expression)
        if result and float(result[0]["value"][1]) == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{expression} = {result}, expected {expected}")
        time.sleep(0.3)


@pytest.mark.interop
def test_a_real_prometheus_reads_back_exactly_what_was_sent(tmp_path):
    sources = write_instances(tmp_path / "src", 7, pixel_bytes=5000)
    metrics, web = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {DEPLOY / "hsscp-alerts.yml"}
scrape_configs:
  - job_name: hsscp
    static_configs:
      - targets: ["127.0.0.1:{metrics}"]
""")
    prometheus = [require_binary("prometheus"), f"--config.file={config}",
                  f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web}"]
    with hsscp_storescp(tmp_path / "out", "--metrics", f"127.0.0.1:{metrics}") as scp, \
            running(prometheus, ready_port=web, timeout=30):
        subprocess.run([require_binary("storescu"), "-aet", "PROM_TEST", "-aec", "HSSCP", "127.0.0.1",
                        str(scp.port), *map(str, sources)], check=True, env=dcmtk_env(), timeout=60)
        wait_for_value(web, 'up{job="hsscp"}', 1)
        wait_for_value(web, 'hsscp_instances_total{status="0x0000"}', len(sources))
        wait_for_value(web, "hsscp_bytes_received_total", sum(len(dataset_of(p)) for p in sources))
        wait_for_value(web, 'hsscp_associations_total{result="accepted"}', 1)
        wait_for_value(web, 'hsscp_calling_ae_instances_total{calling_ae="PROM_TEST"}', len(sources))
        wait_for_value(web, "hsscp_store_seconds_count", len(sources))
        wait_for_value(web, "hsscp_ready", 1)
        status, body = http_get(f"http://127.0.0.1:{web}/api/v1/rules")
        loaded = [rule["name"] for group in json.loads(body)["data"]["groups"] for rule in group["rules"]]
        assert sorted(loaded) == sorted(ALERTS)
