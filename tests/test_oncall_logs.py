"""The running SCP's logs for the person on call: one line per association, -v per C-STORE, JSON."""

from __future__ import annotations

import json
import subprocess

from hsscp import AE

from .datagen import CT_IMAGE_STORAGE, stored_files, write_instances
from .hsscp_process import hsscp_storescp
from .peers import dcmtk_env, require_binary

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_json_lines_at_the_default_level_say_who_what_and_how_each_association_ended(tmp_path):
    sources = write_instances(tmp_path / "src", 3)
    with hsscp_storescp(tmp_path / "out", "--log-format", "json", "--require-called-aet",
                        workers=1, writers=1) as scp:
        subprocess.run([require_binary("storescu"), "-aet", "CT_ROOM_1", "-aec", "HSSCP", "127.0.0.1",
                        str(scp.port), *map(str, sources)], check=True, env=dcmtk_env(), timeout=60)
        ae = AE("ABORTER")
        ae.add_requested_context(CT_IMAGE_STORAGE, EXPLICIT_LE)
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="HSSCP")
        assert assoc.send_c_store(str(sources[0])).Status == 0x0000
        assoc.abort()
        rejected = ae.associate("127.0.0.1", scp.port, ae_title="HSSCPX")
        assert rejected.is_rejected
        assert scp.stop() == 0
    lines = json_lines(scp.output)
    (released,) = [line for line in lines if line.get("event") == "association" and line["calling_ae"] == "CT_ROOM_1"]
    (aborted,) = [line for line in lines if line.get("event") == "association" and line["calling_ae"] == "ABORTER"]
    (refused,) = [line for line in lines if line.get("event") == "rejected"]
    files = stored_files(tmp_path / "out")
    assert {k: released[k] for k in ("calling_ae", "called_ae", "instances", "failed", "outcome", "ended")} == {
        "calling_ae": "CT_ROOM_1", "called_ae": "HSSCP", "instances": 3, "failed": 0,
        "outcome": "released", "ended": "released by the peer"}  # fmt: skip
    assert released["bytes"] == sum(path.stat().st_size for path in files.values())
    assert released["peer"].startswith("127.0.0.1:") and released["level"] == "INFO"
    assert (aborted["outcome"], aborted["instances"]) == ("aborted", 1)
    assert aborted["ended"] == "aborted by the peer (service user): no reason given"
    assert (refused["outcome"], refused["level"], refused["called_ae"]) == ("rejected", "WARNING", "HSSCPX")
    assert refused["ended"] == "called AE title HSSCPX is not ours"
    assert not [line for line in lines if line.get("event") == "store"]  # per C-STORE only at -v


def test_at_verbose_one_line_per_store_and_every_failure_is_a_warning_naming_peer_and_ae(tmp_path):
    sources = write_instances(tmp_path / "src", 2)
    out = tmp_path / "out"
    with hsscp_storescp(out, "-v", workers=1, writers=1) as scp:
        ae = AE("VERBOSE")
        ae.add_requested_context(CT_IMAGE_STORAGE, EXPLICIT_LE)
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="HSSCP")
        assert assoc.send_c_store(str(sources[0])).Status == 0x0000
        # The study folder turned into a file: the next store of that study cannot be written.
        study = next(iter(stored_files(out).values())).parent.parent
        for series in study.iterdir():
            for path in series.iterdir():
                path.unlink()
            series.rmdir()
        study.rmdir()
        study.write_bytes(b"")
        status = assoc.send_c_store(str(sources[1])).Status
        assoc.release()
        assert scp.stop() == 0
    assert status != 0x0000
    log = scp.output
    stored = [line for line in log.splitlines() if "hsscp.store: stored CT Image Storage" in line]
    assert len(stored) == 1 and f"{sources[0].stem} (0x0000 Success) from VERBOSE at 127.0.0.1:" in stored[0]
    assert " ms" in stored[0] and ".dcm, " in stored[0]
    warning = [line for line in log.splitlines() if "WARNING" in line and "hsscp.store:" in line]
    assert len(warning) == 1 and f"answered 0x{status:04X}" in warning[0] and "from VERBOSE at 127.0.0.1:" in warning[0]
    assert "1 stored, 1 failed" in log
