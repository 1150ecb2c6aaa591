"""--metrics and health on a running multiprocess SCP: values checked exactly against what was sent."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import time
from pathlib import Path

from hsscp import AE
from hsscp.journal import read_journal

from .datagen import CT_IMAGE_STORAGE, dataset_of, stored_files, write_instances
from .hsscp_process import hsscp_storescp
from .ops_helpers import http_get, sample, scrape, wait_for_readiness
from .peers import dcmtk_env, free_port, require_binary

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def storescu(port: int, paths: list[Path], calling: str) -> None:
    subprocess.run([require_binary("storescu"), "-aet", calling, "-aec", "HSSCP", "127.0.0.1", str(port),
                    *map(str, paths)], check=True, env=dcmtk_env(), capture_output=True, timeout=60)


def test_metrics_count_exactly_what_was_sent(tmp_path):
    sources = write_instances(tmp_path / "src", 5, pixel_bytes=3000)
    metrics = free_port()
    with hsscp_storescp(tmp_path / "out", "--metrics", f"127.0.0.1:{metrics}", "--require-called-aet") as scp:
        storescu(scp.port, sources, "CT_ROOM_1")
        wrong = subprocess.run([require_binary("echoscu"), "-aec", "HSSCPX", "127.0.0.1", str(scp.port)],
                               env=dcmtk_env(), capture_output=True, timeout=30)
        assert wrong.returncode != 0
        samples = scrape(metrics)
        worker = scp.children()["hsscp-worker-0"]
        os.kill(worker, signal.SIGKILL)
        scp.wait_for_children(2, 2, exclude={worker})
        deadline = time.monotonic() + 10
        while sample(scrape(metrics), "hsscp_process_restarts_total", role="worker") != 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert http_get(f"http://127.0.0.1:{metrics}/healthz")[0] == 200
        assert http_get(f"http://127.0.0.1:{metrics}/readyz") == (200, "ready\n")
        assert http_get(f"http://127.0.0.1:{metrics}/nothing")[0] == 404
    assert len(stored_files(tmp_path / "out")) == 5
    sent_bytes = sum(len(dataset_of(path)) for path in sources)
    assert sample(samples, "hsscp_instances_total", status="0x0000") == 5
    assert sample(samples, "hsscp_instances_total", status="other") == 0
    assert sample(samples, "hsscp_bytes_received_total") == sent_bytes
    assert sample(samples, "hsscp_associations_total", result="accepted") == 1
    assert sample(samples, "hsscp_associations_total", result="rejected") == 1
    assert sample(samples, "hsscp_associations_active") == 0
    assert sample(samples, "hsscp_store_seconds_count") == 5
    assert sample(samples, "hsscp_store_seconds_bucket", le="+Inf") == 5
    assert sample(samples, "hsscp_calling_ae_associations_total", calling_ae="CT_ROOM_1") == 1
    assert sample(samples, "hsscp_calling_ae_instances_total", calling_ae="CT_ROOM_1") == 5
    assert sample(samples, "hsscp_calling_ae_instances_total", calling_ae="other") == 0
    assert sample(samples, "hsscp_process_restarts_total", role="writer") == 0
    assert sample(samples, "hsscp_output_free_bytes") > 0
    assert sample(samples, "hsscp_spool_bytes") == 0
    assert ("hsscp_build_info", (("python", platform.python_version()), ("version", "0.1.0"))) in samples


def test_readyz_fails_while_draining_and_open_associations_finish(tmp_path):
    metrics = free_port()
    source = write_instances(tmp_path / "src", 1)[0]
    with hsscp_storescp(tmp_path / "out", "--metrics", f"127.0.0.1:{metrics}", "--graceful-timeout", "20") as scp:
        ae = AE("DRAINING")
        ae.add_requested_context(CT_IMAGE_STORAGE, EXPLICIT_LE)
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="HSSCP")
        assert assoc.is_established
        wait_for_readiness(metrics, True)
        scp.proc.send_signal(signal.SIGTERM)
        assert "draining" in wait_for_readiness(metrics, False)
        assert http_get(f"http://127.0.0.1:{metrics}/healthz")[0] == 200  # still running
        assert assoc.send_c_store(str(source)).Status == 0x0000  # the open association finishes
        assoc.release()
        assert scp.stop() == 0
    assert list(stored_files(tmp_path / "out")) == [source.stem]


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    """A tmpfs of ``size`` at ``path``, unmounted whatever happens (the tests run as root)."""
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def store_one(port: int, path: Path) -> int:
    ae = AE("FILLER")
    ae.add_requested_context(CT_IMAGE_STORAGE, EXPLICIT_LE)
    assoc = ae.associate("127.0.0.1", port, ae_title="HSSCP")
    assert assoc.is_established
    try:
        return assoc.send_c_store(str(path)).Status
    finally:
        assoc.release()


def test_below_min_free_space_stores_are_refused_until_space_comes_back(tmp_path):
    first, second = write_instances(tmp_path / "src", 2)
    metrics = free_port()
    journal = tmp_path / "journal.jsonl"  # off the small file system, which turns read-only below
    with small_tmpfs(tmp_path / "out", "16m") as out, hsscp_storescp(
        out, "--metrics", f"127.0.0.1:{metrics}", "--min-free-space", "8M", "--journal", str(journal)
    ) as scp:
        wait_for_readiness(metrics, True)
        ballast = out / "ballast"
        ballast.write_bytes(b"\0" * (10 * 1024 * 1024))
        assert "free space" in wait_for_readiness(metrics, False)
        assert store_one(scp.port, first) == 0xA700
        assert first.stem not in stored_files(out)
        ballast.unlink()
        wait_for_readiness(metrics, True)
        assert store_one(scp.port, second) == 0x0000
        assert list(stored_files(out)) == [second.stem]
        samples = scrape(metrics)
        subprocess.run(["mount", "-o", "remount,ro", str(out)], check=True)
        assert "not writable" in wait_for_readiness(metrics, False)
        assert store_one(scp.port, first) == 0x0110  # a read-only folder: a failure, and a warning
        subprocess.run(["mount", "-o", "remount,rw", str(out)], check=True)
        wait_for_readiness(metrics, True)
        assert scp.stop() == 0
    assert sample(samples, "hsscp_instances_total", status="0xA700") == 1
    assert sample(samples, "hsscp_instances_total", status="0x0000") == 1
    assert sample(samples, "hsscp_min_free_bytes") == 8 * 1024 * 1024
    assert f"C-STORE of CT Image Storage {first.stem} from FILLER at 127.0.0.1:" in scp.output
    assert "answered 0xA700 Out of Resources (out of resources: free space is low)" in scp.output
    assert "answered 0x0110 Processing Failure (cannot store the file: EROFS)" in scp.output
    # Every answered C-STORE has its record, the refusals below the free-space limit too.
    records = [(r["event"], r["status"]) for r in read_journal(journal) if r["event"] in ("stored", "failed")]
    assert records == [("failed", 0xA700), ("stored", 0x0000), ("failed", 0x0110)]
