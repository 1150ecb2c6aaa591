"""The flags DCMTK users type, against DCMTK's own storescp/storescu/echoscu; and ``make run``."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from .datagen import dataset_of, stored_files, write_instances
from .hsscp_process import hsscp_storescp
from .peers import dcmtk_env, free_port, require_binary, running, wait_for_port
from .scp_fixtures import sample_path

ROOT = Path(__file__).resolve().parent.parent
IMPLICIT = "1.2.840.10008.1.2"


def _dcmtk(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary(tool), *args], env=dcmtk_env(), capture_output=True, text=True,
                          timeout=60)


def _hsscp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hsscp", *args], capture_output=True, text=True, timeout=60)


def test_storescp_with_dcmtk_flags_stores_what_dcmtk_storescu_sends(tmp_path) -> None:
    # Explicit VR little endian, written plainly: what DCMTK's storescu proposes first and
    # encodes back to the same bytes.
    paths = write_instances(tmp_path / "src", 4)
    out = tmp_path / "out"
    flags = ("+B", "-dhl", "+xa", "-ll", "info", "-aet", "DCMTKFLAGS", "--layout", "flat")
    with hsscp_storescp(out, *flags, workers=1, writers=1) as scp:
        sent = _dcmtk("storescu", "-aec", "DCMTKFLAGS", "127.0.0.1", str(scp.port), *map(str, paths))
        assert sent.returncode == 0, sent.stderr
    stored = stored_files(out)
    for path in paths:
        uid = dcmread(path, stop_before_pixels=True).SOPInstanceUID
        assert dataset_of(stored[uid]) == dataset_of(path), path
    # The start says who and where the server is.
    assert f"AE title DCMTKFLAGS, address 127.0.0.1, port {scp.port}, output folder {out}" in scp.output


def test_storescp_refuses_fork_and_names_unknown_flags_as_flags(tmp_path) -> None:
    done = _hsscp("storescp", "--fork", "11112")
    assert done.returncode == 2
    assert "argument --fork: every association already runs in a worker process: see --workers" in done.stderr
    done = _hsscp("storescp", "+xa", "--no-such-flag", "x", "11112")
    assert done.returncode == 2 and "--no-such-flag" in done.stderr
    assert "invalid int value" not in done.stderr and "Traceback" not in done.stderr


def test_address_in_use_names_the_address_and_port(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _hsscp("storescp", "--bind", "127.0.0.1", "--workers", "1", "--writers", "1",
                      "-od", str(tmp_path / "out"), str(port))
    output = done.stdout + done.stderr
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in output
    assert output.count("Address already in use") == 1, output
    assert "Traceback" not in output


@contextlib.contextmanager
def dcmtk_storescp(out: Path) -> Iterator[int]:
    port = free_port()
    out.mkdir()
    with running(["storescp", "+B", "-aet", "STORESCP", "-od", str(out), str(port)], env=dcmtk_env(),
                 ready_port=port):
        yield port


def _stored_by_dcmtk(out: Path) -> dict[str, Path]:
    return {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in out.iterdir()}


def test_storescu_with_dcmtk_flags_sends_each_files_bytes_to_dcmtk_storescp(tmp_path) -> None:
    # Explicit VR little endian files, which DCMTK's storescp takes as they are.
    paths = [*write_instances(tmp_path / "src" / "sub", 2), Path(sample_path("CT_small.dcm"))]
    with dcmtk_storescp(tmp_path / "out") as port:
        done = _hsscp("storescu", "-aet", "HSSCU", "-aec", "STORESCP", "+sd", "+r", "-R", "-q",
                      "127.0.0.1", str(port), str(tmp_path / "src"), str(paths[-1]))
    assert done.returncode == 0, done.stdout + done.stderr
    stored = _stored_by_dcmtk(tmp_path / "out")
    for path in paths:
        assert dataset_of(stored[dcmread(path, stop_before_pixels=True).SOPInstanceUID]) == dataset_of(path)


def test_storescu_propose_implicit_sends_implicit_vr_only(tmp_path) -> None:
    (explicit,) = write_instances(tmp_path / "src", 1)
    jpeg = sample_path("JPEG2000.dcm")
    with dcmtk_storescp(tmp_path / "out") as port:
        done = _hsscp("storescu", "-xi", "-aec", "STORESCP", "127.0.0.1", str(port), str(explicit), jpeg)
    # The explicit VR file is converted and stored; the JPEG 2000 one cannot go as implicit VR.
    assert done.returncode == 1
    assert f"{jpeg}: no accepted presentation context" in done.stdout
    (stored,) = _stored_by_dcmtk(tmp_path / "out").values()
    assert dcmread(stored).file_meta.TransferSyntaxUID == IMPLICIT
    assert dcmread(stored) == dcmread(explicit)


def test_echoscu_with_dcmtk_flags_and_a_bad_ae_title(tmp_path) -> None:
    with dcmtk_storescp(tmp_path / "out") as port:
        done = _hsscp("echoscu", "-aet", "HSSCU", "--call", "STORESCP", "-ll", "error", "-q",
                      "127.0.0.1", str(port))
        assert done.returncode == 0, done.stderr
        done = _hsscp("echoscu", "-aec", "THIS_AE_TITLE_IS_TOO_LONG", "127.0.0.1", str(port))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hsscp echoscu: error: -aec/--called-aet: AE title 'THIS_AE_TITLE_IS_TOO_LONG' is longer than 16 characters"
    ]


# -- make run ----------------------------------------------------------------------------


def _fake_venv(folder: Path) -> Path:
    """A VENV for make whose python is the one running the tests, marked as installed."""
    (folder / "bin").mkdir(parents=True)
    python = folder / "bin" / "python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    for marker in (".installed", ".installed-run"):
        (folder / marker).touch()
    return folder


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the IPv4 sockets listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_make_run_installs_only_the_runtime_dependencies(tmp_path) -> None:
    plan = subprocess.run(["make", "-n", "run", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout
    assert "pip install -q -e .\n" in plan and "[test]" not in plan
    assert f"{tmp_path / 'venv'}/.installed-run" in plan


def test_make_run_listens_on_loopback_and_says_where(tmp_path) -> None:
    port = free_port()
    out = tmp_path / "received"
    venv = _fake_venv(tmp_path / "venv")
    proc = subprocess.Popen(["make", "-s", "run", f"VENV={venv}", f"PORT={port}", f"OUT={out}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for_port(port, proc=proc, timeout=60)
        assert _listening_addresses(port) == {"127.0.0.1"}
        echo = _dcmtk("echoscu", "127.0.0.1", str(port))
        assert echo.returncode == 0, echo.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert f"AE title HSSCP, address 127.0.0.1, port {port}, output folder {out}" in output


@pytest.mark.parametrize("flag", ["+x=", "+xe", "+xb", "+xi", "+xs", "+xr"])
def test_the_preference_lists_choose_as_dcmtk_storescp_does(tmp_path, flag) -> None:
    """What the +x flags parse into, negotiated with the acceptor's order first, picks DCMTK's syntax."""
    from hsscp import AE
    from hsscp.cli_dcmtk import PREFERENCE_FLAGS
    from hsscp.presentation import build_context, negotiate_as_acceptor

    ct = "1.2.840.10008.5.1.4.1.1.2"
    proposal = [IMPLICIT, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.70",
                "1.2.840.10008.1.2.5"]
    syntaxes = next(value for flags, value in PREFERENCE_FLAGS.items() if flag in flags)
    proposed = build_context(ct, proposal)
    proposed.context_id = 1
    (ours,), _ = negotiate_as_acceptor([proposed], [build_context(ct, syntaxes)], prefer_proposed=False)

    port = free_port()
    (tmp_path / "out").mkdir()
    with running(["storescp", flag, "-od", str(tmp_path / "out"), str(port)], env=dcmtk_env(), ready_port=port):
        scu = AE("HSSCP")
        scu.add_requested_context(ct, proposal)
        assoc = scu.associate("127.0.0.1", port, ae_title="STORESCP")
        assert assoc.is_established
        (theirs,) = assoc.accepted_contexts
        assoc.release()
    assert ours.transfer_syntax == theirs.transfer_syntax
