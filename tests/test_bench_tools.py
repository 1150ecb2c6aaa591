"""The benchmark's tools: the instruction-count guard runs, a fresh ext4 per SCP mounts and goes, SCP variants."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hsscp.loadgen import bench, scps

REPO = Path(__file__).resolve().parents[1]


def test_the_instruction_guard_runs_the_store_path():
    # The smoke run skips valgrind: it checks that the path the guard measures still stores.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for extra in ([], ["--journal"]):
        done = subprocess.run([sys.executable, "-m", "bench.instructions", "--smoke", *extra], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "smoke: 6 of 6 instances stored" in done.stdout


def test_a_fresh_disk_is_an_empty_ext4_mounted_for_the_run_and_gone_after(tmp_path):
    bench.check_disk_support()  # the tests run as root, with loop devices
    with bench.fresh_disk(str(tmp_path), "disk-x", size=64 << 20) as mount_point:
        with open("/proc/self/mounts") as f:
            mounts = {line.split()[1]: line.split()[2] for line in f}
        assert mounts.get(mount_point) == "ext4"
        assert sorted(os.listdir(mount_point)) == ["lost+found"]
        Path(mount_point, "file").write_bytes(b"x" * 4096)
    with open("/proc/self/mounts") as f:
        assert mount_point not in f.read()
    assert os.listdir(tmp_path) == []  # image and mount point removed


def test_an_hsscp_variant_adds_its_flags_with_the_output_folder_filled_in():
    spec = scps.hsscp_variant("hsscp-x", "with a journal", "--journal", "{out}/j.jsonl")
    argv = spec.argv(11112, "/srv/out", 16384)
    assert argv[-3:] == ["--journal", "/srv/out/j.jsonl", "11112"]
    assert scps.SCPS["hsscp-journal"].argv(1, "/o", 4096)[-3:] == ["--journal", "/o/.hsscp-journal.jsonl", "1"]


def test_the_readme_pivot_puts_each_scp_in_a_column_with_its_ratio_to_dcmtk_fork():
    from bench.pivot import pivot

    def row(scp, rate, cpu):
        return {"outfs": "disk", "dataset": "ct", "max_pdu": 16384, "associations": 4, "sender": "dcmtk",
                "scp": scp, "instances_per_s": rate, "mb_per_s": rate / 2, "scp_cpu_us_per_instance": cpu, "ok": True}

    table = pivot([row("hsscp", 1500.0, 600.0), row("dcmtk-fork", 1000.0, 40_000.0)])
    assert table.splitlines()[0] == "| output | data set | PDU | K | hsscp | dcmtk-fork |"
    assert table.splitlines()[2] == "| disk | ct | 16 KiB | 4 | 1500 (1.50x), 750 MB/s, 600 µs | 1000, 500 MB/s, 40.0 ms |"
