"""Reading a running hsscp's /metrics, /healthz and /readyz in tests."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET, 4xx/5xx included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int, host: str = "127.0.0.1") -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted label items): value}."""
    status, text = http_get(f"http://{host}:{port}/metrics")
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def wait_for_readiness(port: int, ready: bool, timeout: float = 10.0, host: str = "127.0.0.1") -> str:
    """Poll /readyz until it answers 200 (``ready``) or 503; the body it gave."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, body = http_get(f"http://{host}:{port}/readyz")
        except urllib.error.URLError as exc:  # not listening yet
            status, body = 0, str(exc)
        if status and (status == 200) == ready:
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"/readyz still answers {status}: {body}")
        time.sleep(0.1)
