"""The benchmark's tools: the instruction-count guard runs, a fresh ext4 per SCP mounts and goes, SCP variants,
the pivot of the README's tables, the durable ceiling's measurement."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsscp.loadgen import bench, scps
from hsscp.loadgen.fsync_bound import store_synced

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


def test_the_pivot_puts_the_fsync_bound_of_a_data_set_and_k_beside_every_pdu_of_that_case():
    from bench.pivot import pivot

    def row(scp, pdu, k, rate):
        return {"outfs": "disk", "dataset": "tiny", "max_pdu": pdu, "associations": k, "sender": "dcmtk" if pdu else "-",
                "scp": scp, "instances_per_s": rate, "mb_per_s": 1.0, "scp_cpu_us_per_instance": 90.0, "ok": True}

    rows = [row("hsscp", 16384, 4, 800.0), row("dcmtk-fork", 16384, 4, 3200.0), row("hsscp", 131072, 4, 700.0),
            row("dcmtk-fork", 131072, 4, 3000.0), row("hsscp", 16384, 1, 300.0), row("dcmtk-fork", 16384, 1, 2000.0),
            row("fsync-bound", 0, 4, 900.0), row("fsync-bound", 0, 1, 310.0)]
    lines = pivot(rows).splitlines()
    assert lines[0] == "| output | data set | PDU | K | hsscp | dcmtk-fork | fsync-bound |"
    assert lines[2:] == [
        "| disk | tiny | 16 KiB | 4 | 800 (0.25x), 1 MB/s, 90 µs | 3200, 1 MB/s, 90 µs | 900, 1 MB/s, 90 µs |",
        "| disk | tiny | 128 KiB | 4 | 700 (0.23x), 1 MB/s, 90 µs | 3000, 1 MB/s, 90 µs | 900, 1 MB/s, 90 µs |",
        "| disk | tiny | 16 KiB | 1 | 300 (0.15x), 1 MB/s, 90 µs | 2000, 1 MB/s, 90 µs | 310, 1 MB/s, 90 µs |",
    ]


def test_the_fsync_bound_stores_every_file_whole_under_its_own_name(tmp_path):
    sources = []
    for i in range(7):
        path = tmp_path / f"source-{i}"
        path.write_bytes(os.urandom(1000 + 4096 * i))
        sources.append(str(path))
    out = tmp_path / "out"
    out.mkdir()
    assert store_synced(sources, str(out), writers=3) > 0
    stored = sorted(out.iterdir())
    assert [p.name for p in stored] == [f"{i:08d}.dcm" for i in range(7)]
    assert [p.read_bytes() for p in stored] == [Path(s).read_bytes() for s in sources]


def test_a_fsync_bound_that_cannot_write_fails_rather_than_give_a_rate(tmp_path):
    source = tmp_path / "source"
    source.write_bytes(b"x" * 100)
    with pytest.raises(OSError):
        store_synced([str(source)] * 3, str(tmp_path / "missing"), writers=2)
