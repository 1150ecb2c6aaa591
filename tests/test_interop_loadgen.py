"""``hsscp storescu`` against real SCPs: DCMTK storescp, a pynetdicom SCP and Orthanc.

What arrives must be byte for byte what the files hold (or, with
--new-uids, exactly the patched bytes, carrying the new UIDs). A missing
peer fails these tests rather than skipping them: Orthanc is installed with
apt-get when we are root, else the test names the package to install.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.filereader import read_dataset

from hsscp.loadgen import cli, datasets, uidpatch
from hsscp.loadgen.files import read_instance, read_range
from hsscp.part10 import read_file_meta
from tests.peers import dcmtk_env, free_port, running, wait_for_port
from tests.scp_fixtures import sample_path

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[1]
PYNETDICOM_PEER = REPO / "bench" / "peers" / "pynetdicom_scp.py"


def stored_datasets(folder: Path) -> dict[str, tuple[str, bytes]]:
    """SOP Instance UID -> (transfer syntax, data set bytes) of every Part 10 file under ``folder``."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            with path.open("rb") as stream:
                meta = read_file_meta(stream)
                found[meta.sop_instance_uid] = (meta.transfer_syntax, stream.read())
    return found


def originals(paths: list[str]) -> dict[str, bytes]:
    """SOP Instance UID (as the C-STORE-RQ carries it) -> data set bytes of each file."""
    found = {}
    for path in paths:
        instance = read_instance(path)
        found[instance.sop_instance_uid] = read_range(path, instance.dataset_offset, instance.dataset_length)
    assert len(found) == len(paths), "test files must have distinct SOP Instance UIDs"
    return found


def send(port: int, tmp_path: Path, *args: str) -> tuple[int, dict]:
    report = tmp_path / f"report-{time.monotonic_ns()}.json"
    code = cli.main(["storescu", "127.0.0.1", str(port), "-q", "--json", str(report), *args])
    return code, json.loads(report.read_text())


def assert_patched(stored: dict[str, bytes], sources: list[str], copies: int) -> None:
    """Every stored data set is a source file with new UIDs patched in and nothing else changed."""
    plans = []
    for path in sources:
        with open(path, "rb") as stream:
            meta = read_file_meta(stream)
            data = stream.read()
        plans.append((data, uidpatch.plan(memoryview(data), meta.transfer_syntax), meta.transfer_syntax))
    assert len(stored) == len(sources) * copies
    for uid, data in stored.items():
        for original, plan, syntax in plans:
            found = uidpatch.locate(memoryview(data), syntax)
            new = {tag: found.original(tag) for tag in uidpatch.TARGETS if tag in found.uids}
            rendered = uidpatch.render(plan, memoryview(original), new)
            if b"".join(bytes(c) for c in rendered) + original[plan.end :] == data:
                assert uid == new[uidpatch.SOP_INSTANCE_UID] != plan.original(uidpatch.SOP_INSTANCE_UID)
                break
        else:
            raise AssertionError(f"stored instance {uid} is no source file with new UIDs")


# Files each SCP takes in their own transfer syntax (so nothing is re-encoded on our side):
# DCMTK prefers explicit VR little endian, pynetdicom implicit VR little endian.
DCMTK_SAMPLES = ["CT_small.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "JPEG-lossy.dcm",
                 "liver_1frame.dcm", "reportsi.dcm"]
PYNETDICOM_SAMPLES = ["MR_small_implicit.dcm", "rtplan.dcm", "rtdose.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> list[str]:
    return datasets.generate("tiny", 20, str(tmp_path_factory.mktemp("tiny")))


@contextlib.contextmanager
def dcmtk_storescp(out: Path) -> Iterator[int]:
    port = free_port()
    # +B: the files hold the data sets exactly as they arrived.
    with running(["storescp", "--fork", "+xa", "+B", "-od", str(out), str(port)], env=dcmtk_env(), ready_port=port):
        yield port


def test_dcmtk_storescp_stores_exactly_what_the_files_hold(tmp_path, tiny):
    paths = [sample_path(name) for name in DCMTK_SAMPLES] + tiny
    out = tmp_path / "out"
    out.mkdir()
    with dcmtk_storescp(out) as port:
        code, report = send(port, tmp_path, *paths, "-c", "3")
    assert code == 0 and report["succeeded"] == len(paths) and report["conversions"] == 0
    stored = stored_datasets(out)
    assert {uid: data for uid, (_, data) in stored.items()} == originals(paths)


def test_dcmtk_storescp_stores_the_patched_bytes_with_new_uids(tmp_path, tiny):
    paths = [sample_path("CT_small.dcm"), *tiny[:5]]
    out = tmp_path / "out"
    out.mkdir()
    with dcmtk_storescp(out) as port:
        code, report = send(port, tmp_path, *paths, "--new-uids", "instance", "--repeat", "3", "-c", "2")
    assert code == 0 and report["succeeded"] == 18
    assert_patched({uid: data for uid, (_, data) in stored_datasets(out).items()}, paths, copies=3)


@contextlib.contextmanager
def pynetdicom_scp(out: Path, *args: str) -> Iterator[int]:
    port = free_port()
    with running([sys.executable, str(PYNETDICOM_PEER), str(port), "-od", str(out), *args], ready_port=port):
        yield port


def test_pynetdicom_scp_stores_exactly_what_the_files_hold(tmp_path):
    paths = [sample_path(name) for name in PYNETDICOM_SAMPLES]
    patched_sources = [sample_path("rtplan.dcm"), sample_path("rtdose.dcm")]
    out = tmp_path / "out"
    with pynetdicom_scp(out) as port:
        code, report = send(port, tmp_path, *paths, "-c", "2")
        code_new, report_new = send(port, tmp_path, *patched_sources, "--new-uids", "study", "--repeat", "2")
    assert code == 0 and report["succeeded"] == len(paths) and report["conversions"] == 0
    assert code_new == 0 and report_new["succeeded"] == 4 and report_new["conversions"] == 0
    stored = {uid: data for uid, (_, data) in stored_datasets(out).items()}
    expected = originals(paths)
    assert {uid: stored[uid] for uid in expected} == expected
    assert_patched({uid: data for uid, data in stored.items() if uid not in expected}, patched_sources, copies=2)


def test_failure_status_from_a_pynetdicom_handler_is_counted(tmp_path, tiny):
    with pynetdicom_scp(tmp_path / "out", "--status", "0xA700") as port:
        code, report = send(port, tmp_path, *tiny[:6], "-c", "2")
    assert code == cli.EXIT_FAILED
    assert report["statuses"] == {"0xA700": 6} and report["failed"] == 6 and report["succeeded"] == 0


# -- Orthanc ---------------------------------------------------------------------------------


def orthanc_binary() -> str:
    found = shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc",) if os.path.exists(p)), None)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail("Orthanc is missing: install the Debian package 'orthanc' (apt-get install orthanc)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "orthanc"], env=env, check=True, capture_output=True)
    return shutil.which("Orthanc") or "/usr/sbin/Orthanc"


@pytest.fixture(scope="module")
def orthanc_server(tmp_path_factory) -> Iterator[tuple[int, int]]:
    """Orthanc on free loopback ports with its own storage, stopped afterwards: (DICOM port, HTTP port)."""
    tmp_path = tmp_path_factory.mktemp("orthanc")
    binary = orthanc_binary()
    dicom_port, http_port = free_port(), free_port()
    config = {
        "Name": "hsscp-interop",
        "StorageDirectory": str(tmp_path / "orthanc-storage"),
        "IndexDirectory": str(tmp_path / "orthanc-index"),
        "StorageCompression": False,
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "DicomCheckCalledAet": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
        "DicomServerEnabled": True,
        "HttpServerEnabled": True,
        "ConcurrentJobs": 1,
    }
    path = tmp_path / "orthanc.json"
    path.write_text(json.dumps(config))
    with running([binary, str(path)], cwd=tmp_path, ready_port=dicom_port, timeout=30) as proc:
        wait_for_port(http_port, 30, proc=proc)
        yield dicom_port, http_port


@pytest.fixture
def orthanc(orthanc_server) -> tuple[int, int]:
    """The module's Orthanc, emptied of what earlier tests stored."""
    base = f"http://127.0.0.1:{orthanc_server[1]}"
    with urllib.request.urlopen(f"{base}/instances", timeout=10) as response:
        ids = json.load(response)
    for instance in ids:
        urllib.request.urlopen(urllib.request.Request(f"{base}/instances/{instance}", method="DELETE"), timeout=10)
    return orthanc_server


def orthanc_datasets(http_port: int) -> dict[str, bytes]:
    """SOP Instance UID -> data set bytes of every instance Orthanc stored, through its REST API."""
    base = f"http://127.0.0.1:{http_port}"
    with urllib.request.urlopen(f"{base}/instances", timeout=10) as response:
        ids = json.load(response)
    found = {}
    for instance in ids:
        with urllib.request.urlopen(f"{base}/instances/{instance}/file", timeout=10) as response:
            content = response.read()
        meta = read_file_meta(_Reader(content))
        found[meta.sop_instance_uid] = content[meta.dataset_offset :]
    return found


class _Reader:
    """The little of a binary stream read_file_meta needs, over bytes already in memory."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        chunk = self.data[self.pos : end]
        self.pos += len(chunk)
        return chunk

    def seek(self, pos: int) -> None:
        self.pos = pos


def test_orthanc_stores_exactly_what_the_files_hold(tmp_path, tiny, orthanc):
    dicom_port, http_port = orthanc
    paths = [sample_path("CT_small.dcm"), *tiny[:8]]  # no sequences of undefined length: see below
    code, report = send(dicom_port, tmp_path, *paths, "-aec", "ORTHANC", "-c", "2")
    assert code == 0 and report["succeeded"] == len(paths) and report["conversions"] == 0
    assert orthanc_datasets(http_port) == originals(paths)


def test_orthanc_rewrites_undefined_lengths_but_nothing_else(tmp_path, orthanc):
    """Orthanc stores sequences of undefined length with explicit lengths: the same data set, other bytes."""
    dicom_port, http_port = orthanc
    path = sample_path("JPEG2000.dcm")
    code, _ = send(dicom_port, tmp_path, path)
    assert code == 0
    ((uid, data),) = orthanc_datasets(http_port).items()
    (original,) = originals([path]).values()
    assert data != original
    encoding = uidpatch.encoding_of("1.2.840.10008.1.2.1")
    assert read_dataset(io.BytesIO(data), encoding.implicit, encoding.little) == \
        read_dataset(io.BytesIO(original), encoding.implicit, encoding.little)


def test_orthanc_stores_the_patched_bytes_with_new_uids(tmp_path, tiny, orthanc):
    dicom_port, http_port = orthanc
    paths = tiny[:4]
    code, report = send(dicom_port, tmp_path, *paths, "--new-uids", "series", "--repeat", "2")
    assert code == 0 and report["succeeded"] == 8
    assert_patched(orthanc_datasets(http_port), paths, copies=2)


# -- the benchmark ---------------------------------------------------------------------------


def test_bench_quick_runs_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "hsscp.loadgen", "bench", "--quick", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(out.read_text())
    scps = {row["scp"] for row in document["rows"]}
    assert {"hsscp", "dcmtk", "dcmtk-fork", "dcmtk-ignore", "pynetdicom"} <= scps
    assert all(row["ok"] and row["instances_per_s"] > 0 for row in document["rows"])
    assert "| tiny | 16384 | 2 | hsscp | hsscp |" in done.stdout and "sender's own /s" in done.stdout


def test_bench_on_a_fresh_disk_measures_the_fsync_bound_beside_the_scps(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "hsscp.loadgen", "bench", "--quick", "--scps", "hsscp,dcmtk-fork", "--senders", "dcmtk",
         "-c", "1,2", "--outfs", "disk", "--disk-dir", str(tmp_path), "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert {(row["scp"], row["associations"]) for row in rows} == {
        (scp, k) for scp in ("hsscp", "dcmtk-fork", "fsync-bound") for k in (1, 2)}
    assert all(row["ok"] and row["instances_per_s"] > 0 for row in rows)
    bounds = [row for row in rows if row["scp"] == "fsync-bound"]
    assert all(row["max_pdu"] == 0 and row["sender"] == "-" and row["ratio_to_reference"] is None for row in bounds)
    assert sorted(os.listdir(tmp_path)) == ["bench.json"]  # every image unmounted and removed
